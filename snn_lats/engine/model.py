"""Networks and pruners as a configuration describes them, and models rebuilt from checkpoints."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from snn_lats import networks
from snn_lats.engine.checkpoint import CheckpointError, load_checkpoint, load_model_state
from snn_lats.engine.recipe import NETWORK_FIELDS, RecipeError, TrainConfig
from snn_lats.pruning import SoftThresholdPruner, attach, pruner_arguments

__all__ = ["attach_for_evaluation", "build_model", "build_model_from_checkpoint", "build_pruner", "model_kwargs"]


def model_kwargs(config: TrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The network options of ``config`` that are set (not None), for :func:`snn_lats.networks.create`."""
    values = config.to_dict() if isinstance(config, TrainConfig) else config
    return {k: values[k] for k in NETWORK_FIELDS if k != "model" and values.get(k) is not None}


def build_model(config: TrainConfig | Mapping[str, Any], num_classes: int) -> nn.Module:
    """``networks.create(config.model, num_classes=..., T=..., ...)`` with a clear error for an
    unknown name or an option the network does not take (``--T`` for an ANN, say)."""
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    kwargs = model_kwargs(values)
    name = values["model"]
    if name not in networks.names():
        raise RecipeError(f"model must be one of {', '.join(networks.names())}; got {name!r}")
    try:
        return networks.create(name, num_classes=num_classes, **kwargs)
    except TypeError as error:
        options = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise RecipeError(f"network {name!r} does not accept the options given ({options}): {error}") from None


def build_pruner(
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    planned_step_lrs: Sequence[float],
) -> SoftThresholdPruner | None:
    """The :class:`SoftThresholdPruner` of ``config.prune`` (None for ``"none"``).

    The pruning window ``[prune_start_epoch, prune_end_epoch)`` becomes optimizer steps, and the
    planned per-step lrs let a ``final_threshold`` or a target of "lats"/"pgh" be reached at its
    end (:func:`~snn_lats.pruning.pruner_arguments`). ``target_energy_uj`` (µJ) becomes the
    pruner's ``target_energy`` (pJ).
    """
    if config.prune == "none":
        return None
    kwargs = pruner_arguments(
        config.prune,
        l1=config.l1,
        final_threshold=config.final_threshold,
        target_sparsity=config.target_sparsity,
        target_sops=config.target_sops,
        target_energy=None if config.target_energy_uj is None else config.target_energy_uj * 1e6,
        energy_preset=config.energy_preset,
        beta=config.beta,
        start_step=config.prune_start_epoch * steps_per_epoch,
        end_step=config.pruning_end_epoch * steps_per_epoch,
        planned_lrs=planned_step_lrs,
        dense_first_last=config.dense_first_last,
        gradient=config.gradient,
    )
    return SoftThresholdPruner(model, optimizer, **kwargs)


def attach_for_evaluation(model: nn.Module, config: TrainConfig | Mapping[str, Any]) -> None:
    """Add the soft-threshold parametrizations a training run with ``config`` had, so that a
    checkpoint's theta and threshold buffers load strictly (no optimizer needed)."""
    values = config.to_dict() if isinstance(config, TrainConfig) else config
    if values["prune"] == "none":
        return
    attach(
        model,
        dense_first_last=values["dense_first_last"],
        gradient=values["gradient"],
        learnable=values["prune"] == "learnable",
    )


def build_model_from_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, Any], device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, checkpoint)``: the network of a checkpoint with its theta and saved thresholds,
    in eval mode on ``device``. Reading ``layer.weight`` gives the pruned weight ``S_d(theta)``.

    ``checkpoint`` is a path (read with :func:`load_checkpoint`) or an already loaded checkpoint.
    """
    if not isinstance(checkpoint, Mapping):
        checkpoint = load_checkpoint(checkpoint)
    config = checkpoint["config"]
    try:
        model = build_model(config, checkpoint["num_classes"])
    except (RecipeError, ValueError) as error:
        raise CheckpointError(f"cannot rebuild the checkpoint's network: {error}") from None
    attach_for_evaluation(model, config)
    load_model_state(model, checkpoint["model"])
    return model.to(device).eval(), dict(checkpoint)
