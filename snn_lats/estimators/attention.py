"""Synaptic operations of spike attention: products of two activations, no weight involved.

The spiking transformers' attention multiplies spike tensors with each other. Each network keeps
those products in a module of their own whose ``products`` attribute names the expression
(``snn_lats.networks``: Spikformer's and QKFormer's last stage, the Spike-driven Transformer,
QKFormer's token attention); the counter hooks it and counts from its operands, per call:

``"(Q K^T)V"``, ``"Q(K^T V)"`` (spiking self-attention, per head, operands ``[..., L, d]``)
    the two matrix products in that association, each by the exact rule of a product of
    activations (:func:`snn_lats.estimators.functional.product_ops`): ``A @ B`` costs
    ``Σ_k a_k b_k`` with ``a_k``, ``b_k`` the spike counts of column k of A and row k of B, i.e.
    one addition per pair of spikes, a count of c spikes (``Q Kᵀ`` is a count) c of them. The
    association matters: ``(Q Kᵀ) V`` and ``Q (Kᵀ V)`` have equal values and different counts.
``"Q*SN(sum_tokens K*V)"`` (spike-driven self-attention, operands ``[..., L, d]``)
    ``K ⊙ V`` and ``Q ⊙ SN(·)`` are masks (Hadamard products of binary spikes, an AND): none;
    the sum over tokens adds every spike of ``K ⊙ V`` once.
``"SN(sum_channels Q)*K"`` (Q-K token attention, operands ``[..., d, L]``)
    the sum over each head's channels adds every spike of Q once; ``⊙ K`` is a mask.

Every count is an AC when the operands are spikes (non-negative integers in a spiking model),
a MAC otherwise. ``flops`` is the dense count of the same expression (every element or pair, the
``FL`` of the papers' energy formulas); the ``paper`` convention charges ``fr × FL`` as ACs, with
``fr`` the mean of the operands (Spikformer, ICLR 2023, appendix; Spike-driven Transformer,
NeurIPS 2023, Table 1). NeuroBench, syops and sinabs hook layers with weights: their conventions
count none of these operations (0, said in the report's notes).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from snn_lats.estimators.functional import _spikes, _weighted, product_ops

__all__ = ["EXPRESSIONS", "AttentionOps", "attention_ops", "is_attention"]

EXPRESSIONS: tuple[str, ...] = ("(Q K^T)V", "Q(K^T V)", "Q*SN(sum_tokens K*V)", "SN(sum_channels Q)*K")


class AttentionOps(NamedTuple):
    ops: float  # the exact count
    dense: float  # every element or pair of the expression
    as_acs: bool  # the operands are spikes
    events: float  # spikes (or nonzero values) of the operands
    elements: int  # elements of the operands
    flops: int  # the dense count (FL)


def is_attention(module: nn.Module) -> bool:
    """Whether ``module`` declares spike-attention products the counter knows."""
    return getattr(module, "products", None) in EXPRESSIONS


@torch.no_grad()
def attention_ops(expression: str, operands: tuple[Tensor, ...], spiking: bool) -> AttentionOps:
    """The operations of one call of a module computing ``expression`` on ``operands``."""
    spikes = all(_spikes(x, spiking) for x in operands)
    weighted = [_weighted(x, spikes) for x in operands]
    events = float(sum(w.sum() for w in weighted))
    elements = sum(x.numel() for x in operands)
    if expression in ("(Q K^T)V", "Q(K^T V)"):
        q, k, v = weighted
        kt = k.transpose(-2, -1)
        # The inner product's result is the outer one's operand: spike counts, or its nonzeros.
        inner = (lambda a, b: a @ b) if spikes else (lambda a, b: ((a @ b) != 0).double())
        if expression == "(Q K^T)V":
            ops1, _, _, _, flops1 = product_ops(q, kt, spiking)
            ops2, _, _, _, flops2 = product_ops(inner(q, kt), v, spiking)
        else:
            ops1, _, _, _, flops1 = product_ops(kt, v, spiking)
            ops2, _, _, _, flops2 = product_ops(q, inner(kt, v), spiking)
        return AttentionOps(ops1 + ops2, float(flops1 + flops2), spikes, events, elements, flops1 + flops2)
    if expression == "Q*SN(sum_tokens K*V)":
        _, k, v = weighted
        summed = k * v  # the masked spikes that the column sums add
        return AttentionOps(float(summed.sum()), float(k.numel()), spikes, events, elements, k.numel())
    if expression == "SN(sum_channels Q)*K":
        q = weighted[0]
        return AttentionOps(float(q.sum()), float(q.numel()), spikes, events, elements, q.numel())
    raise ValueError(f"unknown attention expression {expression!r}; known: {', '.join(EXPRESSIONS)}")
