"""Networks and pruners as a configuration describes them, models rebuilt from checkpoints, and
starting points (``--weights``) loaded into a new network.

The builders take a :class:`~snn_lats.engine.recipe.TrainConfig`; a checkpoint's configuration
(a dict) becomes one once, in :func:`checkpoint_config`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snn_lats import networks
from snn_lats.data import EVENT_DATASETS
from snn_lats.engine.checkpoint import FORMAT, CheckpointError, load_checkpoint, load_model_state, read_torch_file
from snn_lats.engine.recipe import NETWORK_FIELDS, RecipeError, TrainConfig
from snn_lats.pruning import SoftThresholdPruner, finalize, pruned_layers

__all__ = [
    "attach_pruning",
    "build_model",
    "build_model_from_checkpoint",
    "build_pruner",
    "checkpoint_config",
    "load_weights",
    "model_kwargs",
    "read_weights",
]


def model_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The network options of ``config`` that are set (not None), for :func:`snn_lats.networks.create`;
    ``in_channels=2`` (the polarities) for event data."""
    kwargs = {k: getattr(config, k) for k in NETWORK_FIELDS if k != "model" and getattr(config, k) is not None}
    return {**kwargs, "in_channels": 2} if config.dataset in EVENT_DATASETS else kwargs


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """``networks.create(config.model, num_classes=..., T=..., ...)`` with a clear error for an
    unknown name or an option the network does not take (``--T`` for an ANN, say)."""
    kwargs = model_kwargs(config)
    if config.model not in networks.names():
        raise RecipeError(f"model must be one of {', '.join(networks.names())}; got {config.model!r}")
    try:
        return networks.create(config.model, num_classes=num_classes, **kwargs)
    except TypeError as error:
        if config.dataset in EVENT_DATASETS and "'T'" in str(error):
            raise RecipeError(
                f"dataset {config.dataset!r} is event data, a sequence of --T frames: it needs a spiking network, "
                f"and {config.model!r} has no time steps"
            ) from None
        options = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise RecipeError(f"network {config.model!r} does not accept the options given ({options}): {error}") from None


def build_pruner(
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    planned_step_lrs: Sequence[float],
) -> SoftThresholdPruner | None:
    """The :class:`SoftThresholdPruner` of ``config.pruning_spec()`` (None without pruning), its
    window ``[prune_start_epoch, prune_end_epoch)`` in optimizer steps, with the planned per-step
    lrs that a ``final_threshold`` or a target of "lats"/"pgh" needs to end the window on time."""
    spec = config.pruning_spec()
    if spec is None:
        return None
    return SoftThresholdPruner(model, optimizer, spec=spec.in_steps(steps_per_epoch), lr_schedule=planned_step_lrs)


def attach_pruning(model: nn.Module, config: TrainConfig) -> None:
    """Add the parametrizations a training run with ``config`` had, so that a checkpoint's θ,
    thresholds and masks load strictly (no optimizer needed)."""
    spec = config.pruning_spec()
    if spec is not None:
        spec.attach(model)


def checkpoint_config(checkpoint: Mapping[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` a checkpoint was trained with; :class:`CheckpointError` when this
    version cannot rebuild it."""
    try:
        return TrainConfig.from_dict(checkpoint["config"], source="the checkpoint's configuration")
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"cannot read the checkpoint's configuration: {error}") from None


def build_model_from_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, Any], device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, checkpoint)``: the network of a checkpoint with its theta and saved thresholds,
    in eval mode on ``device``. Reading ``layer.weight`` gives the pruned weight ``S_d(theta)``.

    ``checkpoint`` is a path (read with :func:`load_checkpoint`) or an already loaded checkpoint.
    """
    if not isinstance(checkpoint, Mapping):
        checkpoint = load_checkpoint(checkpoint)
    # The neuron backend computes the same on every machine and SpikingJelly release: take this one's.
    config = dataclasses.replace(checkpoint_config(checkpoint), backend=None)
    try:
        model = build_model(config, checkpoint["num_classes"])
        attach_pruning(model, config)
    except (RecipeError, ValueError) as error:
        raise CheckpointError(f"cannot rebuild the checkpoint's network: {error}") from None
    load_model_state(model, checkpoint["model"])
    return model.to(device).eval(), dict(checkpoint)


# ----------------------------------------------------------------------------------------------
# Starting points (--weights)


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str]:
    """``(state_dict, architecture, kind)`` of a starting point, read without unpickling any object.

    - an snn-lats checkpoint: the weights it computes with, ``S_d(θ)`` baked in when it was pruned;
      ``architecture`` is its ``model``, network options and ``num_classes``;
    - an export directory (``model.safetensors`` + ``export.json``) or its ``model.safetensors``/``model.pth``;
    - any other state dict, ``.safetensors`` or a torch file (``torch.load(weights_only=True)``):
      a bare ``{key: tensor}``, or one under ``"model"`` or ``"state_dict"`` (torchvision's reference
      checkpoints), ``"module."`` prefixes of DDP dropped; ``architecture`` is None.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise CheckpointError(f"--weights {str(path)!r} is a directory without model.safetensors (an export)")
        path = path / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"--weights {str(path)!r} does not exist")
    info = path.parent / "export.json"
    architecture = None
    if path.name in ("model.safetensors", "model.pth") and info.is_file():
        exported = json.loads(info.read_text(encoding="utf-8"))["architecture"]
        architecture = {k: v for k, v in exported.items() if k != "spiking"}
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path), architecture, "export" if architecture else "safetensors state dict"
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"--weights {str(path)!r} is not a readable safetensors file: {error}") from None
    content = read_torch_file(path, f"--weights {str(path)!r}")
    if isinstance(content, Mapping) and content.get("format") == FORMAT:
        checkpoint = load_checkpoint(path)  # the format's own checks
        model, _ = build_model_from_checkpoint(checkpoint)
        if pruned_layers(model):
            finalize(model)
        config = checkpoint_config(checkpoint)
        architecture = {"model": config.model, "num_classes": checkpoint["num_classes"], **model_kwargs(config)}
        return dict(model.state_dict()), architecture, f"snn-lats checkpoint, epoch {checkpoint['epoch']}"
    for key in ("model", "state_dict"):
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
            break
    if not isinstance(content, Mapping) or not content or not all(torch.is_tensor(v) for v in content.values()):
        raise CheckpointError(
            f"--weights {str(path)!r} is not a state dict (a mapping of names to tensors, possibly under "
            "'model' or 'state_dict'), an snn-lats checkpoint or an export"
        )
    state = dict(content)
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, architecture, "export" if architecture else "state dict"


def load_weights(model: nn.Module, config: TrainConfig) -> str:
    """Load the starting point ``config.weights`` (:func:`read_weights`) into ``model``, the freshly
    built, unpruned network of ``config``; return a line saying what was loaded.

    :class:`CheckpointError` naming the mismatch when the weights are of another network (another
    ``model`` of this project, missing or unexpected keys, other shapes) or of another number of
    classes. With ``config.num_classes`` set (``--num-classes``), a classifier (the last
    ``nn.Linear``) of another number of classes is left as ``model`` initialised it: a new
    classifier, as fine-tuning does (timm's ``num_classes`` does the same). BatchNorm
    ``num_batches_tracked`` counters missing from older torchvision files keep the model's.
    """
    path = config.weights
    state, architecture, kind = read_weights(path)
    if architecture is not None and architecture["model"] != config.model:
        raise CheckpointError(
            f"--weights {str(path)!r} holds a {architecture['model']}, this run trains {config.model}"
        )
    own = model.state_dict()
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    head = [f"{linear[-1]}.{p}" for p in ("weight", "bias") if linear and f"{linear[-1]}.{p}" in own]
    note = ""
    if head and head[0] in state and state[head[0]].shape[0] != own[head[0]].shape[0]:
        theirs, ours = state[head[0]].shape[0], own[head[0]].shape[0]
        if config.num_classes is None:
            raise CheckpointError(
                f"--weights {str(path)!r} has {theirs} classes (classifier {head[0]} {list(state[head[0]].shape)}), "
                f"the data set {ours}: give --num-classes {ours} to start with a new classifier"
            )
        for key in head:  # the model's fresh initialisation stays
            state.pop(key, None)
            own = {k: v for k, v in own.items() if k != key}
        note = f"; new classifier {linear[-1]}: {theirs} -> {ours} classes"
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(model.state_dict()))
    shapes = [
        f"{k} {list(state[k].shape)} there, {list(v.shape)} here"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{len(names)} {label} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
            for label, names in (("missing keys", missing), ("unexpected keys", unexpected), ("other shapes", shapes))
            if names
        ]
        source = f" ({architecture['model']}, {architecture['num_classes']} classes)" if architecture else ""
        raise CheckpointError(
            f"--weights {str(path)!r}{source} does not fit this run's {config.model}: " + "; ".join(parts)
        )
    model.load_state_dict({**model.state_dict(), **state}, strict=True)
    return f"weights: {path} ({kind}){note}"
