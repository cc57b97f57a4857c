"""SyncBatchNorm for multi-step networks: T folded into the batch, as SpikingJelly's BatchNorm does.

A multi-step ``spikingjelly.activation_based.layer.BatchNorm2d`` (``step_mode="m"``) normalises a
sequence ``[T, N, C, H, W]`` as the batch ``[T*N, C, H, W]`` (``functional.seq_to_ann_forward``):
the mean and variance of a channel are taken over ``T·N·H·W`` values. ``torch.nn.SyncBatchNorm.
convert_sync_batchnorm`` replaces it with a plain ``nn.SyncBatchNorm``, which reads T as the batch
and N as the channels, and fails at the first forward (``running_mean should contain 2 elements not
16``). :func:`convert_sync_batchnorm` keeps the folding: the statistics are those of ``T·N·H·W``
values on every process, ``T·ΣN·H·W`` in all.

``nn.SyncBatchNorm`` synchronises GPU tensors only: in training, inside a process group, a CPU input
raises ``ValueError`` (even in a group of one process). Without a process group, or in eval mode,
it is ``nn.BatchNorm``: local batch statistics, or the running ones.
"""

from __future__ import annotations

import torch
from torch import nn

from snn_lats._spikingjelly import base, functional

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]


class SyncBatchNorm(nn.SyncBatchNorm, base.StepModule):
    """``nn.SyncBatchNorm`` with SpikingJelly's step modes.

    ``step_mode="s"``: ``nn.SyncBatchNorm`` itself, on ``[N, C, ...]``. ``step_mode="m"``: a
    sequence ``[T, N, C, ...]`` is normalised as ``[T*N, C, ...]`` and returned as
    ``[T, N, C, ...]``, exactly as SpikingJelly's multi-step ``layer.BatchNorm1d/2d/3d``.
    Parameter and buffer names are those of ``nn.BatchNorm2d``.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group=None,
        step_mode: str = "s",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, process_group, device, dtype)
        self.step_mode = step_mode

    def extra_repr(self) -> str:
        return super().extra_repr() + f", step_mode={self.step_mode}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return super().forward(x)
        if x.dim() < 3:
            raise ValueError(f"expected x with shape [T, N, C, ...] (step_mode='m'), got shape {tuple(x.shape)}")
        return functional.seq_to_ann_forward(x, super().forward)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm of ``module`` with a :class:`SyncBatchNorm` of the same step mode.

    Like ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``, but a SpikingJelly multi-step BatchNorm
    keeps ``step_mode="m"`` (T folded into the batch); other BatchNorms become single-step ones.
    The new layers hold the old layers' Parameter and buffer objects (an optimizer built before
    still trains them), their training mode and their state-dict keys, so a checkpoint of the
    converted model loads into the unconverted one and back. Returns the converted module (a new
    object only when ``module`` itself is a BatchNorm).
    """
    converted = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        step_mode = module.step_mode if isinstance(module, base.StepModule) else "s"
        converted = SyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            process_group,
            step_mode=step_mode,
        )
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_batchnorm(child, process_group))
    return converted
