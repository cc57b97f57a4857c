"""Networks and pruners as a configuration describes them, and models rebuilt from checkpoints."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from snn_lats import networks
from snn_lats.engine.checkpoint import CheckpointError, load_checkpoint, load_model_state
from snn_lats.engine.recipe import RecipeError, TrainConfig
from snn_lats.pruning import SoftThresholdPruner, attach

#: Config fields passed to :func:`snn_lats.networks.create` when set (not None).
MODEL_FIELDS = ("T", "neuron", "cnf", "backend", "width", "width_mult", "stem")


def model_kwargs(config: TrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    values = config.to_dict() if isinstance(config, TrainConfig) else config
    return {k: values[k] for k in MODEL_FIELDS if values.get(k) is not None}


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

    The pruning window ``[prune_start_epoch, prune_end_epoch)`` becomes optimizer steps; a
    ``final_threshold`` for "lats"/"pgh" is reached at its end through the planned per-step lrs;
    a ``target_sparsity`` lets the pruner pick λ, re-estimated ``RE_ESTIMATES`` times over the window.
    """
    if config.prune == "none":
        return None
    kwargs: dict[str, Any] = dict(dense_first_last=config.dense_first_last, gradient=config.gradient)
    if config.prune not in ("constant", "learnable"):  # these two have no pruning window
        kwargs.update(
            start_step=config.prune_start_epoch * steps_per_epoch, end_step=config.pruning_end_epoch * steps_per_epoch
        )
    if config.l1 is not None:
        kwargs["l1"] = config.l1
    if config.final_threshold is not None:
        kwargs["final_threshold"] = config.final_threshold
        if config.prune in ("lats", "pgh"):
            kwargs["lr_schedule"] = list(planned_step_lrs)
    if config.target_sparsity is not None:
        kwargs.update(target_sparsity=config.target_sparsity, lr_schedule=list(planned_step_lrs))
    if config.beta is not None:
        kwargs["beta"] = config.beta
    return SoftThresholdPruner(model, optimizer, config.prune, **kwargs)


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
