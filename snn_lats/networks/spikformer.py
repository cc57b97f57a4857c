"""Spikformer (Zhou et al., "Spikformer: When Spiking Neural Network Meets Transformer", ICLR 2023).

The layout is the authors' code (``imagenet/model.py`` and ``cifar10/model.py`` of ZK-Zhou/spikformer),
with its module names:

- **SPS**, spiking patch splitting (``patch_embed``): four 3x3 conv-BN-LIF stages of D/8, D/4, D/2
  and D channels, each followed by a 3x3 stride-2 max-pool of its *spikes* where the stem pools
  (``stem="imagenet"``: all four, patch 16; ``stem="cifar"``: the last two, patch 4); then the
  relative position embedding, a 3x3 conv-BN-LIF added to its input (``x + rpe(x)``).
- ``depth`` **blocks** (``block``): ``x = x + SSA(x)``, ``x = x + MLP(x)`` on the tokens
  ``[T, N, D, L]`` (L = H*W/patch²).
- **SSA**, spiking self-attention: Q, K, V each a 1x1 conv (a linear map of every token), BN and
  LIF; per head ``SN((Q Kᵀ) V · 0.125)`` with ``@`` in that association (the paper's equation and
  ``cifar10/model.py``; ``imagenet/model.py`` computes ``Q (Kᵀ V)``, the same values: products of
  binary spikes are integers), the attention LIF at ``v_threshold=0.5``; then the projection, 1x1
  conv-BN-LIF.
- **MLP**: 1x1 conv-BN-LIF to 4D, 1x1 conv-BN-LIF back to D.
- the readout: the mean over tokens, a linear ``head``, the mean over time.

Neurons: LIF, ``tau=2``, hard reset to 0, ``detach_reset=True`` and SpikingJelly's Sigmoid
surrogate (the authors' ``MultiStepLIFNode(tau=2.0, detach_reset=True)``; this project's other
networks default to ATan). ``neuron="plif"`` starts at ``init_tau=2``, ``"if"`` has no leak;
``neuron_kwargs`` override any of these for every neuron, except the attention neuron's threshold 0.5.

Biases as in the authors' code: none in the SPS convs; the ImageNet models (``imagenet/model.py``)
have none in Q, K, V, and a bias in the projection and in both MLP layers; the CIFAR model
(``cifar10/model.py``, nn.Linear layers) has biases in Q, K, V too (``qkv_bias=True``).
Initialisation as ``cifar10/model.py``: the token-wise layers and the head truncated-normal with
std 0.02 and zero biases; SPS convs PyTorch's default; BN weight 1, bias 0.

Parameter counts (all parameters, BN included), against the paper's tables:

=========================  =========  ==========
model                      here       paper
=========================  =========  ==========
spikformer_8_384           16.816 M   16.81 M
spikformer_8_512           29.689 M   29.68 M
spikformer_8_768           66.339 M   66.34 M
spikformer_4_384_cifar     9.325 M    9.32 M
=========================  =========  ==========

The authors' blocks also hold two LayerNorms (``norm1``, ``norm2``) that their forward never uses;
they are left out here (no gradient would reach them). With them the counts are 16.83 M, 29.70 M,
66.36 M and 9.33 M; without them the CIFAR model matches exactly and the ImageNet ones are within
0.04 % (the paper's 8-512 figure is 29.685 M truncated, its 10-512 figure, 36.01 M, matches
this layout exactly).

Differences of SpikingJelly 2.0.0's zoo (``activation_based.model.spikformer``) from the authors' code:

- its SPS max-pools the BN output, *before* the LIF (``Conv-BN-MaxPool-LIF``); the authors pool the
  spikes after the LIF (``Conv-BN-LIF-MaxPool``), as here. The two differ in value.
- Q, K and V are one fused ``qkv_conv_bn`` (a Conv1d of 3D outputs and one BN of 3D channels, one
  LIF): the same function as three conv-BN-LIF, with Q, K, V the three thirds of its rows.
- no bias anywhere but the head (the authors have biases in the projection and the MLP, and in the
  CIFAR model in Q, K, V too); all convs initialised truncated-normal (std 0.02).
- the attention is computed as ``(V Kᵀ) Q`` in the channel-first layout, i.e. ``Q (Kᵀ V)`` (as the
  authors' ImageNet code), not the paper's ``(Q Kᵀ) V``: equal values, other operation counts.
- the MLP and the projection are Conv1d of the tokens; the head runs on every time step and returns
  ``[T, N, classes]`` (the authors: the head of the time-mean; equal after the mean over T).
- its configurations ``spikformer_ti`` (4-256) and ``spikformer_s`` (6-384) are not models of the
  paper; ``spikformer_cifar10`` is the paper's 4-384 CIFAR model (but with the differences above).
- neurons without ``spiking_neuron``: LIF, ``tau=2``, ``detach_reset=True``, Sigmoid surrogate, as here.

Heads: the CIFAR model has 12 (``cifar10.yml``), the authors' ImageNet code registers 8-512 with 8;
8-384 and 8-768 get 12 here (head dims 32 and 64). Heads do not change the parameter count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from snn_lats._spikingjelly import layer, surrogate

from ._common import STEMS, as_sequence, check_choice, check_positive_int, encode_once
from .neurons import NEURONS, make_neuron, reset_state
from .registry import register
from .sew_resnet import conv3x3, norm

__all__ = ["Spikformer", "spikformer_8_384", "spikformer_8_512", "spikformer_8_768", "spikformer_4_384_cifar"]

#: The SPS stages that max-pool, per stem: "imagenet" patch 16 (all four), "cifar" patch 4 (last two).
POOLED_STAGES: dict[str, tuple[bool, bool, bool, bool]] = {
    "imagenet": (True, True, True, True),
    "cifar": (False, False, True, True),
}

#: The fixed scale of the spiking self-attention (both papers' code: 0.125 whatever the head size).
ATTENTION_SCALE = 0.125

#: The threshold of the attention neuron (SSA's attn_lif; SDSA's talking-heads LIF).
ATTENTION_THRESHOLD = 0.5


def transformer_neuron(neuron: str, backend: str, neuron_kwargs: dict[str, Any] | None) -> Callable[..., nn.Module]:
    """The neuron factory of the spiking transformers: ``factory(**fixed)`` builds one multi-step
    neuron of kind ``neuron`` with the authors' defaults (LIF ``tau=2``, PLIF ``init_tau=2``;
    Sigmoid surrogate, ``detach_reset=True``), then ``neuron_kwargs``, then ``fixed`` (the
    attention neuron's threshold) over them. Rejects an unknown kind at once."""
    check_choice("neuron", neuron, tuple(NEURONS))
    defaults: dict[str, Any] = {"surrogate_function": surrogate.Sigmoid()}
    if neuron == "lif":
        defaults["tau"] = 2.0
    elif neuron == "plif":
        defaults["init_tau"] = 2.0
    base = {**defaults, **(neuron_kwargs or {})}

    def factory(**fixed: Any) -> nn.Module:
        return make_neuron(neuron, backend, **{**base, **fixed})

    return factory


def check_transformer_arguments(num_classes: int, T: int, in_channels: int, width: int, depth: int, num_heads: int):
    for argument, value in (
        ("num_classes", num_classes),
        ("T", T),
        ("in_channels", in_channels),
        ("width", width),
        ("depth", depth),
        ("num_heads", num_heads),
    ):
        check_positive_int(argument, value)
    if width % 8:
        raise ValueError(f"width must be a multiple of 8 (the SPS stages have width/8, /4, /2 channels), got {width}")
    if width % num_heads:
        raise ValueError(f"width must be a multiple of num_heads, got width={width}, num_heads={num_heads}")


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[T, N, C, L]`` (channel c = head·d + j) to ``[T, N, heads, L, d]``."""
    T, N, C, L = x.shape
    return x.reshape(T, N, num_heads, C // num_heads, L).transpose(-1, -2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`split_heads`: ``[T, N, heads, L, d]`` to ``[T, N, heads·d, L]``."""
    T, N, heads, L, d = x.shape
    return x.transpose(-1, -2).reshape(T, N, heads * d, L)


def token_linear(in_features: int, out_features: int, bias: bool) -> layer.Conv1d:
    """A linear map of every token of ``[T, N, C, L]``: a multi-step 1x1 Conv1d."""
    return layer.Conv1d(in_features, out_features, 1, bias=bias, step_mode="m")


def token_norm(features: int) -> layer.BatchNorm1d:
    return layer.BatchNorm1d(features, step_mode="m")


def max_pool() -> layer.MaxPool2d:
    return layer.MaxPool2d(3, 2, 1, step_mode="m")


def stage_suffix(index: int) -> str:
    """The authors' names of the SPS stages: proj_conv, proj_conv1, proj_conv2, proj_conv3."""
    return str(index) if index else ""


class SPS(nn.Module):
    """Spiking patch splitting: ``[T, N, C, H, W]`` images to ``[T, N, D, H/p, W/p]`` spikes
    (sums of two spike maps: the embedding and its relative position term).

    Args:
        in_channels: channels of the input.
        dim: the embedding dimension D.
        pooled: for each of the four stages, whether it max-pools its spikes.
        spiking_neuron: builds one neuron (:func:`transformer_neuron`).
    """

    def __init__(self, in_channels: int, dim: int, pooled: Sequence[bool], spiking_neuron: Callable[..., nn.Module]):
        super().__init__()
        self.pooled = tuple(pooled)
        previous = in_channels
        for index, channels in enumerate((dim // 8, dim // 4, dim // 2, dim)):
            suffix = stage_suffix(index)
            self.add_module(f"proj_conv{suffix}", conv3x3(previous, channels))
            self.add_module(f"proj_bn{suffix}", norm(channels))
            self.add_module(f"proj_lif{suffix}", spiking_neuron())
            if self.pooled[index]:
                self.add_module(f"maxpool{suffix}", max_pool())
            previous = channels
        self.rpe_conv = conv3x3(dim, dim)
        self.rpe_bn = norm(dim)
        self.rpe_lif = spiking_neuron()

    def forward(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """``x``: a sequence, or a static batch as one step ``[1, N, C, H, W]`` with ``steps`` the
        steps to repeat its encoding over (:func:`encode_once`)."""
        for index in range(4):
            suffix = stage_suffix(index)
            x = getattr(self, f"proj_conv{suffix}")(x)
            x = getattr(self, f"proj_bn{suffix}")(x)
            if index == 0:
                x = encode_once(x, steps)
            x = getattr(self, f"proj_lif{suffix}")(x)
            if self.pooled[index]:
                x = getattr(self, f"maxpool{suffix}")(x)
        return x + self.rpe_lif(self.rpe_bn(self.rpe_conv(x)))

    def extra_repr(self) -> str:
        return f"pooled={self.pooled}"


class SpikeAttentionProducts(nn.Module):
    """The products of spiking self-attention, per head: ``(Q Kᵀ) V · scale`` (``kv_first``:
    ``Q (Kᵀ V) · scale``, the same values) of spike tensors ``[T, N, heads, L, d]``.

    No softmax: with binary Q, K, V every product is a sum of spikes, i.e. additions. A module of
    its own so that the synaptic-operation counter sees the operands: ``products`` names the
    association it counts (:mod:`snn_lats.estimators.attention`). The scale, a power of two, is
    applied last; the values equal those of the authors' ``(Q Kᵀ · scale) V``.
    """

    def __init__(self, scale: float = ATTENTION_SCALE, kv_first: bool = False):
        super().__init__()
        self.scale = scale
        self.kv_first = kv_first
        self.products = "Q(K^T V)" if kv_first else "(Q K^T)V"

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.kv_first:
            return (q @ (k.transpose(-2, -1) @ v)) * self.scale  # Kᵀ V: [T, N, heads, d, d]
        return ((q @ k.transpose(-2, -1)) @ v) * self.scale  # Q Kᵀ: [T, N, heads, L, L]

    def extra_repr(self) -> str:
        return f"{self.products} * {self.scale}"


class SSA(nn.Module):
    """Spiking self-attention on tokens ``[T, N, D, L]``: ``proj(SN((Q Kᵀ) V · 0.125))`` per head;
    ``kv_first``: ``Q (Kᵀ V)`` (the same values; QKFormer's code computes it so)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        spiking_neuron: Callable[..., nn.Module],
        qkv_bias: bool = False,
        kv_first: bool = False,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.q_conv = token_linear(dim, dim, qkv_bias)
        self.q_bn = token_norm(dim)
        self.q_lif = spiking_neuron()
        self.k_conv = token_linear(dim, dim, qkv_bias)
        self.k_bn = token_norm(dim)
        self.k_lif = spiking_neuron()
        self.v_conv = token_linear(dim, dim, qkv_bias)
        self.v_bn = token_norm(dim)
        self.v_lif = spiking_neuron()
        self.products = SpikeAttentionProducts(ATTENTION_SCALE, kv_first)
        self.attn_lif = spiking_neuron(v_threshold=ATTENTION_THRESHOLD)
        self.proj_conv = token_linear(dim, dim, True)
        self.proj_bn = token_norm(dim)
        self.proj_lif = spiking_neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q_lif(self.q_bn(self.q_conv(x))), self.num_heads)  # [T, N, heads, L, d]
        k = split_heads(self.k_lif(self.k_bn(self.k_conv(x))), self.num_heads)
        v = split_heads(self.v_lif(self.v_bn(self.v_conv(x))), self.num_heads)
        x = self.attn_lif(merge_heads(self.products(q, k, v)))
        return self.proj_lif(self.proj_bn(self.proj_conv(x)))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


class MLP(nn.Module):
    """Two token-wise conv-BN-LIF layers, D to ``hidden`` to D, on ``[T, N, D, L]``."""

    def __init__(self, dim: int, hidden: int, spiking_neuron: Callable[..., nn.Module]):
        super().__init__()
        self.fc1_conv = token_linear(dim, hidden, True)
        self.fc1_bn = token_norm(hidden)
        self.fc1_lif = spiking_neuron()
        self.fc2_conv = token_linear(hidden, dim, True)
        self.fc2_bn = token_norm(dim)
        self.fc2_lif = spiking_neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1_lif(self.fc1_bn(self.fc1_conv(x)))
        return self.fc2_lif(self.fc2_bn(self.fc2_conv(x)))


class Block(nn.Module):
    """``x + SSA(x)``, then ``x + MLP(x)``, on tokens ``[T, N, D, L]``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        spiking_neuron: Callable[..., nn.Module],
        qkv_bias: bool = False,
        kv_first: bool = False,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        self.attn = SSA(dim, num_heads, spiking_neuron, qkv_bias, kv_first)
        self.mlp = MLP(dim, dim * mlp_ratio, spiking_neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(nn.Module):
    """Spikformer: SPS, ``depth`` SSA/MLP blocks, the mean over tokens and a linear head. Input
    ``[T, N, C, H, W]`` or a static ``[N, C, H, W]`` (repeated over T); logits ``[N, classes]``,
    the mean over time.

    Args:
        width: the embedding dimension D (a multiple of 8 and of ``num_heads``).
        depth: number of blocks.
        num_heads: attention heads.
        num_classes: outputs of the head.
        T: number of time steps.
        stem: "imagenet" (patch 16: all four SPS stages pool) or "cifar" (patch 4: the last two).
        neuron: "lif" (the paper's), "plif" or "if".
        backend: the neurons' backend (:func:`~snn_lats.networks.make_neuron`).
        in_channels: channels of the input.
        neuron_kwargs: extra arguments of every neuron.
        qkv_bias: biases in the Q, K, V layers (the authors' CIFAR model has them, the ImageNet one not).
    """

    spiking = True

    def __init__(
        self,
        width: int = 384,
        depth: int = 8,
        num_heads: int = 12,
        num_classes: int = 1000,
        T: int = 4,
        stem: str = "imagenet",
        neuron: str = "lif",
        backend: str = "auto",
        in_channels: int = 3,
        neuron_kwargs: dict[str, Any] | None = None,
        qkv_bias: bool = False,
    ):
        super().__init__()
        check_transformer_arguments(num_classes, T, in_channels, width, depth, num_heads)
        check_choice("stem", stem, STEMS)
        self.T = T
        self.in_channels = in_channels
        spiking_neuron = transformer_neuron(neuron, backend, neuron_kwargs)
        self.patch_embed = SPS(in_channels, width, POOLED_STAGES[stem], spiking_neuron)
        self.block = nn.ModuleList(Block(width, num_heads, spiking_neuron, qkv_bias) for _ in range(depth))
        self.head = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """The blocks' output ``[T, N, D, L]`` of a sequence ``[T, N, C, H, W]`` (or of a static
        batch ``[1, N, C, H, W]`` encoded once and repeated over ``steps``), from the neurons'
        reset state."""
        reset_state(self)
        x = self.patch_embed(x, steps).flatten(3)
        for block in self.block:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, static = as_sequence(x, self.T, self.in_channels)
        return self.head(self.forward_features(x, self.T if static else None).mean(3).mean(0))


def _build(defaults: dict[str, Any], kwargs: dict[str, Any]) -> Spikformer:
    return Spikformer(**{**defaults, **kwargs})


@register()
def spikformer_8_384(**kwargs: Any) -> Spikformer:
    """Spikformer-8-384 (ImageNet, patch 16, 12 heads; 16.81 M parameters). Arguments: :class:`Spikformer`."""
    return _build({"width": 384, "depth": 8, "num_heads": 12}, kwargs)


@register()
def spikformer_8_512(**kwargs: Any) -> Spikformer:
    """Spikformer-8-512 (ImageNet, patch 16, 8 heads; 29.68 M parameters). Arguments: :class:`Spikformer`."""
    return _build({"width": 512, "depth": 8, "num_heads": 8}, kwargs)


@register()
def spikformer_8_768(**kwargs: Any) -> Spikformer:
    """Spikformer-8-768 (ImageNet, patch 16, 12 heads; 66.34 M parameters). Arguments: :class:`Spikformer`."""
    return _build({"width": 768, "depth": 8, "num_heads": 12}, kwargs)


@register()
def spikformer_4_384_cifar(**kwargs: Any) -> Spikformer:
    """Spikformer-4-384 (CIFAR-10: patch 4, 12 heads, Q/K/V biases, 10 classes; 9.32 M parameters).
    Arguments: :class:`Spikformer`."""
    defaults = {"width": 384, "depth": 4, "num_heads": 12, "num_classes": 10, "stem": "cifar", "qkv_bias": True}
    return _build(defaults, kwargs)
