"""The soft threshold S_d(θ) as a differentiable function, and the two gradients it can carry."""

from __future__ import annotations

import torch

from snn_lats.pruning.spec import GRADIENTS

__all__ = ["soft_threshold", "check_gradient"]


def check_gradient(gradient: str) -> str:
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    return gradient


def soft_threshold(
    theta: torch.Tensor, threshold: float | torch.Tensor, gradient: str = "straight-through"
) -> torch.Tensor:
    """``w = S_d(θ) = sign(θ)·max(|θ| − d, 0)``, written as ``θ − clamp(θ, −d, d)``.

    The dead zone ``|θ| ≤ d`` gives exact zeros (``θ − θ``). Gradient with respect to θ:
    ``"straight-through"`` passes ``dL/dw`` unchanged (pruned weights can regrow);
    ``"exact"`` multiplies it by ``1[|θ| > d]`` (STR: the dead zone gets none). A tensor
    ``threshold`` that requires grad receives ``dL/dd = −Σ dL/dw · sign(θ) · 1[|θ| > d]``
    in both modes (learnable thresholds, STR).
    """
    check_gradient(gradient)
    if not isinstance(threshold, torch.Tensor):
        threshold = float(threshold)
        if not threshold >= 0:  # also rejects nan
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        threshold = torch.tensor(threshold, dtype=theta.dtype, device=theta.device)
    inner = theta if gradient == "exact" else theta.detach()
    return theta - torch.clamp(inner, -threshold, threshold)


class _CachedSoftThreshold(torch.autograd.Function):
    """Returns an already computed ``weight = S_d(θ)`` as a function of θ.

    Forward costs nothing; backward is the identity (straight-through) or ``× 1[w ≠ 0]``
    (exact: ``w ≠ 0`` iff ``|θ| > d``). So S_d is evaluated once per change of θ or d, not
    once per forward, and autograd keeps no extra tensor for it.
    """

    @staticmethod
    def forward(ctx, theta: torch.Tensor, weight: torch.Tensor, exact: bool) -> torch.Tensor:
        ctx.exact = exact
        if exact:
            ctx.save_for_backward(weight)
        return weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.exact:
            (weight,) = ctx.saved_tensors
            grad = grad.masked_fill(weight == 0, 0)
        return grad, None, None
