"""BatchNorm folded into the preceding convolution: the eval-mode conv+BN as one convolution.

In eval mode a BatchNorm is the per-channel affine map ``y = (x - μ) · s + β`` with
``s = γ / sqrt(σ² + ε)`` (running mean μ and variance σ²). After a convolution ``x = W ⋆ u + b``:

    W' = W · s   (each output channel c scaled by s_c)
    b' = (b - μ) · s + β

so ``bn(conv(u)) = W' ⋆ u + b'`` exactly in real arithmetic. A pruned weight stays exactly zero
(``0 · s = 0``). The products are taken in float64 and rounded once to the weight's dtype.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fold_batchnorm"]


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of the convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode.

    ValueError when ``bn`` keeps no running statistics (it has no eval-mode affine form) or its
    channels are not the convolution's outputs.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"BatchNorm of {bn.num_features} channels after a conv of {conv.out_channels} outputs")
    dtype = conv.weight.dtype
    weight = conv.weight.detach().double()
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    folded_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    folded_bias = (bias - mean) * scale + beta
    return folded_weight.to(dtype), folded_bias.to(dtype)
