"""QKFormer (Zhou et al., "QKFormer: Hierarchical Spiking Transformer using Q-K Attention",
NeurIPS 2024): the hierarchical ImageNet models.

The layout is the authors' code (``imagenet/qkformer.py`` of zhouchenlin2096/QKFormer), with its
module names. Three stages of D/4, D/2 and D channels; neurons as
:mod:`~snn_lats.networks.spikformer` (LIF ``tau=2``, ``detach_reset=True``, Sigmoid surrogate):

- ``patch_embed1``: conv3x3-BN-maxpool-LIF to D/8 channels, conv3x3-BN-maxpool-LIF to D/4,
  conv3x3-BN-LIF; plus the shortcut, 1x1 stride-2 conv-BN-LIF of the first stage's spikes.
  (Here the max-pools come *before* the LIF, as the authors' code has it.)
- ``stage1``: one block at D/4, ``stage2`` two blocks at D/2, each ``x + QKTA(x)``, ``x + MLP(x)``.
  **QKTA**, Q-K token attention: Q and K 1x1 conv-BN-LIF; per head the sum of Q over the head's
  channels, an attention LIF (``v_threshold=0.5``) giving one spike per token, which masks K; the
  projection 1x1 conv-BN-LIF. No V, no product of two matrices: linear in the tokens.
- ``patch_embed2``/``patch_embed3`` (down-sampling): conv3x3-BN-maxpool-LIF, conv3x3-BN-LIF, plus
  a 1x1 stride-2 conv-BN-LIF of the input.
- ``stage3``: ``depth - 3`` Spikformer blocks (SSA, :class:`~snn_lats.networks.spikformer.SSA`,
  computed as ``Q (Kᵀ V)`` as in the authors' code, and the MLP) at D.
- the readout: the mean over tokens, a linear ``head``, the mean over time.

``stem="imagenet"``: patch 16 (two pools in ``patch_embed1``, one in each down-sampling stage).
``stem="cifar"``: patch 4, ``patch_embed1`` without its two pools (its shortcut at stride 1), so a
small one runs on 32x32 images; this is *not* the authors' CIFAR model, which has another layout
(two stages of blocks, a pool after the last conv of each down-sampling stage).

Biases as the authors': none in the convs of the patch embeddings nor in Q, K, V; a bias in the
projections and the MLP. Initialisation as theirs: the head truncated-normal (std 0.02, zero bias),
every conv PyTorch's default. One number of heads in every stage (6, 8, 12 for D = 384, 512, 768).

Parameter counts (all parameters, BN included), against the paper: 10-384: 16,473,688 (16.47 M),
10-512: 29,079,336 (29.08 M), 10-768: 64,962,760 (64.96 M): the same to the paper's two decimals.

Differences of SpikingJelly 2.0.0's zoo (``activation_based.model.qkformer``) from the authors' code:
the patch-embedding convs have biases (``layer.Conv2d`` default), those neurons and the MLP's are
LIFNode's defaults with ``detach_reset=False``; Q and K of the token attention (and Q, K, V of the
SSA) are one fused conv-BN; no bias in the attention projections; default initialisation
everywhere; only ``qkformer_10_384`` is built in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from snn_lats._spikingjelly import layer

from ._common import STEMS, as_sequence, check_choice, check_positive_int, encode_once
from .neurons import reset_state
from .registry import register
from .sew_resnet import conv3x3, norm
from .spikformer import (
    ATTENTION_THRESHOLD,
    MLP,
    Block,
    max_pool,
    token_linear,
    token_norm,
    transformer_neuron,
)

__all__ = ["QKFormer", "QKTA", "qkformer_10_384", "qkformer_10_512", "qkformer_10_768"]


def shortcut_conv(in_planes: int, out_planes: int, stride: int) -> layer.Conv2d:
    return layer.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False, step_mode="m")


class PatchEmbedInit(nn.Module):
    """The first patch embedding: ``[T, N, C, H, W]`` images to ``[T, N, D/4, H/4, W/4]`` spikes
    (``pooled``; else ``H, W``)."""

    def __init__(self, in_channels: int, dim: int, pooled: bool, spiking_neuron: Callable[..., nn.Module]):
        super().__init__()
        self.pooled = pooled
        half = dim // 2
        self.proj_conv = conv3x3(in_channels, half)
        self.proj_bn = norm(half)
        if pooled:
            self.proj_maxpool = max_pool()
        self.proj_lif = spiking_neuron()
        self.proj1_conv = conv3x3(half, dim)
        self.proj1_bn = norm(dim)
        if pooled:
            self.proj1_maxpool = max_pool()
        self.proj1_lif = spiking_neuron()
        self.proj2_conv = conv3x3(dim, dim)
        self.proj2_bn = norm(dim)
        self.proj2_lif = spiking_neuron()
        self.proj_res_conv = shortcut_conv(half, dim, 2 if pooled else 1)
        self.proj_res_bn = norm(dim)
        self.proj_res_lif = spiking_neuron()

    def forward(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """``x``: a sequence, or a static batch as one step with ``steps`` (:func:`encode_once`)."""
        x = encode_once(self.proj_bn(self.proj_conv(x)), steps)
        if self.pooled:
            x = self.proj_maxpool(x)
        feat = self.proj_lif(x)
        x = self.proj1_bn(self.proj1_conv(feat))
        if self.pooled:
            x = self.proj1_maxpool(x)
        x = self.proj2_lif(self.proj2_bn(self.proj2_conv(self.proj1_lif(x))))
        return x + self.proj_res_lif(self.proj_res_bn(self.proj_res_conv(feat)))

    def extra_repr(self) -> str:
        return f"pooled={self.pooled}"


class PatchEmbeddingStage(nn.Module):
    """Down-sampling between stages: ``[T, N, C, H, W]`` to ``[T, N, 2C, H/2, W/2]`` spikes."""

    def __init__(self, in_channels: int, dim: int, spiking_neuron: Callable[..., nn.Module]):
        super().__init__()
        self.proj3_conv = conv3x3(in_channels, dim)
        self.proj3_bn = norm(dim)
        self.proj3_maxpool = max_pool()
        self.proj3_lif = spiking_neuron()
        self.proj4_conv = conv3x3(dim, dim)
        self.proj4_bn = norm(dim)
        self.proj4_lif = spiking_neuron()
        self.proj_res_conv = shortcut_conv(in_channels, dim, 2)
        self.proj_res_bn = norm(dim)
        self.proj_res_lif = spiking_neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.proj3_lif(self.proj3_maxpool(self.proj3_bn(self.proj3_conv(x))))
        out = self.proj4_lif(self.proj4_bn(self.proj4_conv(out)))
        return out + self.proj_res_lif(self.proj_res_bn(self.proj_res_conv(x)))


class QKTokenProducts(nn.Module):
    """The spike operations of Q-K token attention, per head: ``SN(Σ_channels Q) ⊙ K`` of spike
    tensors ``[T, N, heads, d, L]``: the sum over each head's channels (adds, one value per token),
    ``attn_lif`` (threshold 0.5) turning it into one spike per token, and the Hadamard product with
    K (a mask). A module of its own so that the synaptic-operation counter sees the operands
    (``products``; :mod:`snn_lats.estimators.attention`)."""

    products = "SN(sum_channels Q)*K"

    def __init__(self, spiking_neuron: Callable[..., nn.Module]):
        super().__init__()
        self.attn_lif = spiking_neuron(v_threshold=ATTENTION_THRESHOLD)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.attn_lif(q.sum(dim=3, keepdim=True)) * k  # [T, N, heads, 1, L]: one spike per token


class QKTA(nn.Module):
    """Q-K token attention on tokens ``[T, N, D, L]``: ``proj(SN(Σ_channels Q) ⊙ K)`` per head,
    the sum over each head's channels giving one value per token (an add), its spike masking K
    (a Hadamard product of binary spikes)."""

    def __init__(self, dim: int, num_heads: int, spiking_neuron: Callable[..., nn.Module]):
        super().__init__()
        self.num_heads = num_heads
        self.q_conv = token_linear(dim, dim, False)
        self.q_bn = token_norm(dim)
        self.q_lif = spiking_neuron()
        self.k_conv = token_linear(dim, dim, False)
        self.k_bn = token_norm(dim)
        self.k_lif = spiking_neuron()
        self.products = QKTokenProducts(spiking_neuron)
        self.proj_conv = token_linear(dim, dim, True)
        self.proj_bn = token_norm(dim)
        self.proj_lif = spiking_neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, N, C, L = x.shape
        q = self.q_lif(self.q_bn(self.q_conv(x))).reshape(T, N, self.num_heads, C // self.num_heads, L)
        k = self.k_lif(self.k_bn(self.k_conv(x))).reshape(T, N, self.num_heads, C // self.num_heads, L)
        x = self.products(q, k).reshape(T, N, C, L)
        return self.proj_lif(self.proj_bn(self.proj_conv(x)))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


class TokenBlock(nn.Module):
    """``x + QKTA(x)``, then ``x + MLP(x)``, on tokens ``[T, N, D, L]``."""

    def __init__(self, dim: int, num_heads: int, spiking_neuron: Callable[..., nn.Module], mlp_ratio: int = 4):
        super().__init__()
        self.tssa = QKTA(dim, num_heads, spiking_neuron)
        self.mlp = MLP(dim, dim * mlp_ratio, spiking_neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.tssa(x)
        return x + self.mlp(x)


class QKFormer(nn.Module):
    """QKFormer: three stages (1 and 2 Q-K token-attention blocks, ``depth - 3`` SSA blocks), the
    mean over tokens and a linear head. Input ``[T, N, C, H, W]`` or a static ``[N, C, H, W]``;
    logits ``[N, classes]``, the mean over time. Arguments: as
    :class:`~snn_lats.networks.Spikformer` (without ``qkv_bias``); ``width`` (D) a multiple of 8
    with ``num_heads`` dividing D/4, ``depth`` at least 4.
    """

    spiking = True

    def __init__(
        self,
        width: int = 384,
        depth: int = 10,
        num_heads: int = 6,
        num_classes: int = 1000,
        T: int = 4,
        stem: str = "imagenet",
        neuron: str = "lif",
        backend: str = "auto",
        in_channels: int = 3,
        neuron_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        for argument, value in (
            ("num_classes", num_classes),
            ("T", T),
            ("in_channels", in_channels),
            ("width", width),
            ("num_heads", num_heads),
        ):
            check_positive_int(argument, value)
        check_positive_int("depth", depth)
        if depth < 4:
            raise ValueError(f"depth must be at least 4 (1 + 2 token-attention blocks, then SSA blocks), got {depth}")
        if width % 8:
            raise ValueError(f"width must be a multiple of 8 (the first stage has width/8 channels), got {width}")
        if (width // 4) % num_heads:
            raise ValueError(f"width/4 must be a multiple of num_heads, got width={width}, num_heads={num_heads}")
        check_choice("stem", stem, STEMS)
        self.T = T
        self.in_channels = in_channels
        spiking_neuron = transformer_neuron(neuron, backend, neuron_kwargs)
        dims = (width // 4, width // 2, width)
        self.patch_embed1 = PatchEmbedInit(in_channels, dims[0], stem == "imagenet", spiking_neuron)
        self.stage1 = nn.ModuleList([TokenBlock(dims[0], num_heads, spiking_neuron)])
        self.patch_embed2 = PatchEmbeddingStage(dims[0], dims[1], spiking_neuron)
        self.stage2 = nn.ModuleList(TokenBlock(dims[1], num_heads, spiking_neuron) for _ in range(2))
        self.patch_embed3 = PatchEmbeddingStage(dims[1], dims[2], spiking_neuron)
        self.stage3 = nn.ModuleList(Block(width, num_heads, spiking_neuron, kv_first=True) for _ in range(depth - 3))
        self.head = nn.Linear(width, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """The last stage's output ``[T, N, D, h, w]`` of a sequence ``[T, N, C, H, W]`` (or of a
        static batch ``[1, N, C, H, W]`` encoded once and repeated over ``steps``), from the
        neurons' reset state."""
        reset_state(self)
        x = self._stage(self.patch_embed1(x, steps), self.stage1)
        x = self._stage(self.patch_embed2(x), self.stage2)
        return self._stage(self.patch_embed3(x), self.stage3)

    @staticmethod
    def _stage(x: torch.Tensor, blocks: nn.ModuleList) -> torch.Tensor:
        """The blocks of a stage on the tokens of ``x`` ``[T, N, D, h, w]``; the same shape back."""
        tokens = x.flatten(3)
        for block in blocks:
            tokens = block(tokens)
        return tokens.reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, static = as_sequence(x, self.T, self.in_channels)
        return self.head(self.forward_features(x, self.T if static else None).flatten(3).mean(3).mean(0))


def _build(defaults: dict[str, Any], kwargs: dict[str, Any]) -> QKFormer:
    return QKFormer(**{**defaults, **kwargs})


@register()
def qkformer_10_384(**kwargs: Any) -> QKFormer:
    """QKFormer-10-384 (ImageNet, patch 16, 6 heads; 16.47 M parameters). Arguments: :class:`QKFormer`."""
    return _build({"width": 384, "depth": 10, "num_heads": 6}, kwargs)


@register()
def qkformer_10_512(**kwargs: Any) -> QKFormer:
    """QKFormer-10-512 (ImageNet, patch 16, 8 heads; 29.08 M parameters). Arguments: :class:`QKFormer`."""
    return _build({"width": 512, "depth": 10, "num_heads": 8}, kwargs)


@register()
def qkformer_10_768(**kwargs: Any) -> QKFormer:
    """QKFormer-10-768 (ImageNet, patch 16, 12 heads; 64.96 M parameters). Arguments: :class:`QKFormer`."""
    return _build({"width": 768, "depth": 10, "num_heads": 12}, kwargs)
