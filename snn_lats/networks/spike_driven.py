"""Spike-driven Transformer (Yao et al., "Spike-driven Transformer", NeurIPS 2023), version 1.

The layout is the authors' code (``module/sps.py``, ``module/ms_conv.py``, ``model/spikeformer.py``
of BICLab/Spike-Driven-Transformer), with its module names. Every residual connection adds
*membrane potentials* (BN outputs), and every block starts with a LIF of its input:

- **SPS** (``patch_embed``): three 3x3 conv-BN-LIF stages (D/8, D/4, D/2 channels), each followed by
  a 3x3 stride-2 max-pool where the stem pools; a fourth 3x3 conv-BN (D channels) and its max-pool;
  then ``x + BN(conv3x3(LIF(x)))`` (relative position embedding on the membrane).
  ``stem="imagenet"``: all four stages pool (patch 16, the paper's ``pooling_stat="1111"``);
  ``stem="cifar"``: the last two (patch 4, ``"0011"``).
- ``depth`` **blocks** (``block``) on ``[T, N, D, H, W]``:

  - **SDSA**, spike-driven self-attention (version 1 of the paper, the code's ``MS_SSA_Conv``):
    ``S = LIF(x)``; Q, K, V each 1x1 conv-BN-LIF of S; per head ``Q ⊙ SN(Σ_tokens K ⊙ V)``
    (:class:`SpikeDrivenProducts`, the talking-heads LIF at ``v_threshold=0.5``); the projection
    1x1 conv-BN; plus x.
  - **MLP**: ``x + BN(conv(LIF(BN(conv(LIF(x))))))``, 1x1 convs D to 4D to D.
- the readout: the mean over tokens, a LIF (``head_lif``), a linear ``head``, the mean over time.

Neurons, biases and the rest: as :mod:`~snn_lats.networks.spikformer` (LIF ``tau=2``, hard reset,
``detach_reset=True``, Sigmoid surrogate; ``neuron_kwargs`` for all but the talking-heads LIF's
threshold). No bias in the SPS convs nor in Q, K, V; a bias in the projection and the MLP convs.
Initialisation as the authors': every conv truncated-normal with std 0.02 and zero bias, BN weight 1
and bias 0, the head PyTorch's default. 8 heads in every configuration (the authors' configs).

The authors' attention also builds a ``talking_heads`` Conv1d (heads² weights) and an ``attn_lif``
that its forward never uses; they are left out (no gradient would reach them; 512 parameters in an
8-layer, 8-head model).

Parameter counts (all parameters, BN included), against the paper's tables:

=====================================  =========  =========
model                                  here       paper
=====================================  =========  =========
sdt_8_384                              16.816 M   16.81 M
sdt_8_512                              29.689 M   29.68 M
sdt_8_768                              66.339 M   66.34 M
sdt_2_512_cifar, 100 classes           10.280 M   10.28 M
sdt_2_512_cifar, 10 classes            10.233 M   (10.28 M)
=====================================  =========  =========

The paper's CIFAR table gives one count, 10.28 M, for its 2-512 model on CIFAR-10 and CIFAR-100:
it is the count with the 100-class head (the 10-class one has 46,170 fewer weights, -0.45 %).

Differences of SpikingJelly 2.0.0's zoo (``activation_based.model.spike_driven_transformer``, and
``layer.attention.SpikeDrivenSelfAttention``) from the authors' code:

- the four SPS stage convs have biases (``layer.Conv2d`` default); the authors' have none. The
  rest of its SPS is the authors' (pools after the LIF in stages 1-3, before it in stage 4).
- the SPS, MLP and head neurons are LIFNode's defaults, ``detach_reset=False`` (the authors:
  ``True``); the attention's are ``detach_reset=True``. Same forward values, other gradients.
- MLP names ``fc1``/``bn1``/``lif1`` for the authors' ``fc1_conv``/``fc1_bn``/``fc1_lif``; the
  talking-heads LIF is called ``attn_lif``; no unused ``talking_heads`` conv.
- default PyTorch initialisation (the authors: truncated-normal 0.02 convs).
- only ``sdt_8_384`` is built in; the head runs on the time-mean (equal to the authors' mean of
  per-step logits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from snn_lats._spikingjelly import layer

from ._common import STEMS, as_sequence, check_choice, encode_once
from .neurons import reset_state
from .registry import register
from .sew_resnet import conv1x1, conv3x3, norm
from .spikformer import (
    ATTENTION_THRESHOLD,
    POOLED_STAGES,
    check_transformer_arguments,
    max_pool,
    stage_suffix,
    transformer_neuron,
)

__all__ = [
    "SpikeDrivenTransformer",
    "sdt_8_384",
    "sdt_8_512",
    "sdt_8_768",
    "sdt_2_512_cifar",
]


def conv1x1_bias(in_planes: int, out_planes: int) -> layer.Conv2d:
    return layer.Conv2d(in_planes, out_planes, 1, bias=True, step_mode="m")


class MembraneSPS(nn.Module):
    """The spike-driven SPS: ``[T, N, C, H, W]`` images to ``[T, N, D, H/p, W/p]`` membrane potentials.

    Args:
        in_channels: channels of the input.
        dim: the embedding dimension D.
        pooled: for each of the four stages, whether it max-pools.
        spiking_neuron: builds one neuron.
    """

    def __init__(self, in_channels: int, dim: int, pooled: Sequence[bool], spiking_neuron: Callable[..., nn.Module]):
        super().__init__()
        self.pooled = tuple(pooled)
        previous = in_channels
        for index, channels in enumerate((dim // 8, dim // 4, dim // 2, dim)):
            suffix = stage_suffix(index)
            self.add_module(f"proj_conv{suffix}", conv3x3(previous, channels))
            self.add_module(f"proj_bn{suffix}", norm(channels))
            if index < 3:
                self.add_module(f"proj_lif{suffix}", spiking_neuron())
            if self.pooled[index]:
                self.add_module(f"maxpool{suffix}", max_pool())
            previous = channels
        self.proj_lif3 = spiking_neuron()  # after the last pool: the membrane is pooled, then spikes
        self.rpe_conv = conv3x3(dim, dim)
        self.rpe_bn = norm(dim)

    def forward(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """``x``: a sequence, or a static batch as one step with ``steps`` (:func:`encode_once`)."""
        for index in range(4):
            suffix = stage_suffix(index)
            x = getattr(self, f"proj_bn{suffix}")(getattr(self, f"proj_conv{suffix}")(x))
            if index == 0:
                x = encode_once(x, steps)
            if index < 3:
                x = getattr(self, f"proj_lif{suffix}")(x)
            if self.pooled[index]:
                x = getattr(self, f"maxpool{suffix}")(x)
        return x + self.rpe_bn(self.rpe_conv(self.proj_lif3(x)))

    def extra_repr(self) -> str:
        return f"pooled={self.pooled}"


class SpikeDrivenProducts(nn.Module):
    """The spike-driven attention of Q, K, V spikes, per head: ``Q ⊙ SN(Σ_tokens K ⊙ V)``.

    Inputs ``q, k, v`` of shape ``[T, N, heads, L, d]`` (binary spikes); output of that shape. The
    operations are spike-driven, no multiplication: ``K ⊙ V`` is a *mask* (the Hadamard product of
    binary spikes, an AND), ``Σ_tokens`` an *add* (the column sum over the L tokens, ``[.., 1, d]``);
    ``talking_heads_lif`` (threshold 0.5) turns the sums into spikes, and ``Q ⊙`` that is a second
    *mask*. The synaptic-operation counter sees the operands here (``products``;
    :mod:`snn_lats.estimators.attention`).
    """

    products = "Q*SN(sum_tokens K*V)"

    def __init__(self, spiking_neuron: Callable[..., nn.Module]):
        super().__init__()
        self.talking_heads_lif = spiking_neuron(v_threshold=ATTENTION_THRESHOLD)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        kv = (k * v).sum(dim=-2, keepdim=True)  # mask, then add: [T, N, heads, 1, d]
        return q * self.talking_heads_lif(kv)  # mask


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[T, N, C, H, W]`` (channel c = head·d + j) to ``[T, N, heads, H·W, d]``."""
    T, N, C = x.shape[:3]
    return x.reshape(T, N, num_heads, C // num_heads, -1).transpose(-1, -2)


class SDSA(nn.Module):
    """Spike-driven self-attention with a membrane shortcut, on ``[T, N, D, H, W]``."""

    def __init__(self, dim: int, num_heads: int, spiking_neuron: Callable[..., nn.Module]):
        super().__init__()
        self.num_heads = num_heads
        self.shortcut_lif = spiking_neuron()
        self.q_conv = conv1x1(dim, dim)
        self.q_bn = norm(dim)
        self.q_lif = spiking_neuron()
        self.k_conv = conv1x1(dim, dim)
        self.k_bn = norm(dim)
        self.k_lif = spiking_neuron()
        self.v_conv = conv1x1(dim, dim)
        self.v_bn = norm(dim)
        self.v_lif = spiking_neuron()
        self.products = SpikeDrivenProducts(spiking_neuron)
        self.proj_conv = conv1x1_bias(dim, dim)
        self.proj_bn = norm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shortcut_lif(x)
        q = _split_heads(self.q_lif(self.q_bn(self.q_conv(s))), self.num_heads)
        k = _split_heads(self.k_lif(self.k_bn(self.k_conv(s))), self.num_heads)
        v = _split_heads(self.v_lif(self.v_bn(self.v_conv(s))), self.num_heads)
        out = self.products(q, k, v).transpose(-1, -2).reshape(x.shape)
        return x + self.proj_bn(self.proj_conv(out))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


class MembraneMLP(nn.Module):
    """``x + BN(conv(LIF(BN(conv(LIF(x))))))``, 1x1 convs D to ``hidden`` to D."""

    def __init__(self, dim: int, hidden: int, spiking_neuron: Callable[..., nn.Module]):
        super().__init__()
        self.fc1_lif = spiking_neuron()
        self.fc1_conv = conv1x1_bias(dim, hidden)
        self.fc1_bn = norm(hidden)
        self.fc2_lif = spiking_neuron()
        self.fc2_conv = conv1x1_bias(hidden, dim)
        self.fc2_bn = norm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc1_bn(self.fc1_conv(self.fc1_lif(x)))
        return x + self.fc2_bn(self.fc2_conv(self.fc2_lif(out)))


class SpikeDrivenBlock(nn.Module):
    """SDSA, then the MLP, each with its membrane shortcut."""

    def __init__(self, dim: int, num_heads: int, spiking_neuron: Callable[..., nn.Module], mlp_ratio: int = 4):
        super().__init__()
        self.attn = SDSA(dim, num_heads, spiking_neuron)
        self.mlp = MembraneMLP(dim, dim * mlp_ratio, spiking_neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class SpikeDrivenTransformer(nn.Module):
    """Spike-driven Transformer: SPS, ``depth`` SDSA/MLP blocks, the mean over tokens, a LIF and a
    linear head. Input ``[T, N, C, H, W]`` or a static ``[N, C, H, W]`` (repeated over T); logits
    ``[N, classes]``, the mean over time. Arguments: as :class:`~snn_lats.networks.Spikformer`
    (without ``qkv_bias``); ``stem="imagenet"`` is patch 16, ``"cifar"`` patch 4.
    """

    spiking = True

    def __init__(
        self,
        width: int = 384,
        depth: int = 8,
        num_heads: int = 8,
        num_classes: int = 1000,
        T: int = 4,
        stem: str = "imagenet",
        neuron: str = "lif",
        backend: str = "auto",
        in_channels: int = 3,
        neuron_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        check_transformer_arguments(num_classes, T, in_channels, width, depth, num_heads)
        check_choice("stem", stem, STEMS)
        self.T = T
        self.in_channels = in_channels
        spiking_neuron = transformer_neuron(neuron, backend, neuron_kwargs)
        self.patch_embed = MembraneSPS(in_channels, width, POOLED_STAGES[stem], spiking_neuron)
        self.block = nn.ModuleList(SpikeDrivenBlock(width, num_heads, spiking_neuron) for _ in range(depth))
        self.head_lif = spiking_neuron()
        self.head = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """The blocks' output ``[T, N, D, h, w]`` (membrane potentials) of a sequence ``[T, N, C, H, W]``
        (or of a static batch ``[1, N, C, H, W]`` encoded once and repeated over ``steps``), from
        the neurons' reset state."""
        reset_state(self)
        x = self.patch_embed(x, steps)
        for block in self.block:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, static = as_sequence(x, self.T, self.in_channels)
        x = self.head_lif(self.forward_features(x, self.T if static else None).flatten(3).mean(3))  # [T, N, D]
        return self.head(x.mean(0))


def _build(defaults: dict[str, Any], kwargs: dict[str, Any]) -> SpikeDrivenTransformer:
    return SpikeDrivenTransformer(**{**defaults, **kwargs})


@register()
def sdt_8_384(**kwargs: Any) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-8-384 (ImageNet, patch 16, 8 heads; 16.81 M parameters).
    Arguments: :class:`SpikeDrivenTransformer`."""
    return _build({"width": 384, "depth": 8}, kwargs)


@register()
def sdt_8_512(**kwargs: Any) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-8-512 (ImageNet, patch 16, 8 heads; 29.68 M parameters).
    Arguments: :class:`SpikeDrivenTransformer`."""
    return _build({"width": 512, "depth": 8}, kwargs)


@register()
def sdt_8_768(**kwargs: Any) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-8-768 (ImageNet, patch 16, 8 heads; 66.34 M parameters).
    Arguments: :class:`SpikeDrivenTransformer`."""
    return _build({"width": 768, "depth": 8}, kwargs)


@register()
def sdt_2_512_cifar(**kwargs: Any) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-2-512 (CIFAR: patch 4, 8 heads, 10 classes; 10.28 M parameters with
    the CIFAR-100 head, 10.23 M with CIFAR-10's). Arguments: :class:`SpikeDrivenTransformer`."""
    return _build({"width": 512, "depth": 2, "num_classes": 10, "stem": "cifar"}, kwargs)
