"""SGD or AdamW with per-kind weight decay, and the learning-rate schedule (warm-up, then cosine or step).

The schedule is per epoch, as in torchvision's reference and the STDS/LATS recipes: the lr of
epoch ``e`` is a closed form of ``e`` (:func:`epoch_lrs`), applied by a ``LambdaLR`` stepped once
per epoch. The same closed form gives the pruner the lr it will see at every step.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

__all__ = [
    "build_lr_scheduler",
    "build_optimizer",
    "epoch_lrs",
    "parameter_groups",
    "planned_step_lrs",
]


class OptimSettings(Protocol):
    """The fields of a :class:`~snn_lats.engine.recipe.TrainConfig` read here (a plain namespace
    with them will do)."""

    opt: str
    lr: float
    momentum: float
    weight_decay: float
    norm_weight_decay: float | None
    epochs: int
    lr_scheduler: str
    lr_warmup_epochs: int
    lr_warmup_decay: float
    lr_step_size: int
    lr_gamma: float
    lr_min: float


_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def parameter_groups(model: nn.Module, weight_decay: float, norm_weight_decay: float | None) -> list[dict]:
    """Two param groups: normalisation-layer parameters (``norm_weight_decay``; None: same as
    ``weight_decay``), and all others, theta included (``weight_decay``)."""
    norm_params, other_params, seen = [], [], set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (norm_params if isinstance(module, _NORM_LAYERS) else other_params).append(param)
    # Parameters registered under a parametrization (theta) belong to that ParametrizationList
    # module, which modules() visits too; nothing is lost.
    norm_wd = weight_decay if norm_weight_decay is None else norm_weight_decay
    groups = [{"params": other_params, "weight_decay": weight_decay}]
    if norm_params:
        groups.append({"params": norm_params, "weight_decay": norm_wd})
    return groups


def build_optimizer(config: OptimSettings, model: nn.Module) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay, config.norm_weight_decay)
    if config.opt == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def epoch_lrs(config: OptimSettings) -> list[float]:
    """The lr of each epoch ``e = 0 .. epochs-1``.

    Warm-up (``e < W``): ``lr * (decay + (1 - decay) * e / W)`` (torchvision's LinearLR).
    Then with ``k = e - W``, ``K = epochs - W``:
    cosine: ``lr_min + (lr - lr_min) * (1 + cos(pi k / K)) / 2``; step: ``lr * gamma ** (k // step_size)``.
    """
    base, warmup, decay = config.lr, config.lr_warmup_epochs, config.lr_warmup_decay
    out = []
    for e in range(config.epochs):
        if e < warmup:
            out.append(base * (decay + (1.0 - decay) * e / warmup))
            continue
        k, total = e - warmup, config.epochs - warmup
        if config.lr_scheduler == "cosine":
            out.append(config.lr_min + (base - config.lr_min) * (1.0 + math.cos(math.pi * k / total)) / 2.0)
        else:
            out.append(base * config.lr_gamma ** (k // config.lr_step_size))
    return out


def planned_step_lrs(config: OptimSettings, steps_per_epoch: int) -> list[float]:
    """The lr the optimizer will apply at every step of the run (the epoch's lr, repeated)."""
    return [lr for lr in epoch_lrs(config) for _ in range(steps_per_epoch)]


def build_lr_scheduler(config: OptimSettings, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` giving epoch ``e`` the lr of :func:`epoch_lrs`; call ``step()`` after each epoch.
    Build it after the pruner: a "learnable" pruner adds its own param group, which follows the same factor."""
    lrs = epoch_lrs(config)

    def factor(epoch: int) -> float:
        return lrs[min(epoch, len(lrs) - 1)] / config.lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
