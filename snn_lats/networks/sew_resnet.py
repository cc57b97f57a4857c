"""SEW ResNet: spike-element-wise residual networks (Fang et al., NeurIPS 2021, arXiv 2102.04159).

State-dict keys are those of ``spikingjelly.activation_based.model.sew_resnet`` (and, spiking
neurons aside, of torchvision's ResNet), so SpikingJelly checkpoints load strictly.

Time steps: every stateless layer is a SpikingJelly layer in ``step_mode="m"``, which folds the
sequence ``[T, N, ...]`` into ``[T*N, ...]`` and runs once (``functional.seq_to_ann_forward``).
A static image batch is encoded by the stem conv+BN once and then repeated over T; a
``[T, N, C, H, W]`` sequence (event data) goes through the stem as it is. The readout is the fc of
the time-mean of the pooled features, ``fc(mean_t x[t]) = mean_t fc(x[t])``.

Two deliberate differences from SpikingJelly's module:
- the stem runs once on a static batch (SpikingJelly runs it on T copies): same outputs and
  gradients, T times less stem work. Only the stem BN's *running* variance differs in training:
  its unbiased estimate divides by N*H*W - 1 instead of T*N*H*W - 1 (negligible at usual sizes).
- IAND is ``(1 - A) * S`` (A: residual branch, S: identity) in both blocks, as the SEW paper
  defines it; SpikingJelly's Bottleneck computes ``(1 - S) * A``. ADD and AND are symmetric.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from snn_lats._spikingjelly import layer

from ._common import STEMS, as_sequence, check_choice, check_positive_int, encode_once, init_weights
from .neurons import make_neuron, reset_state
from .registry import CNFS, register

__all__ = ["CNFS", "SEWResNet", "sew_resnet18", "sew_resnet34", "sew_resnet50", "sew_resnet101", "sew_resnet152"]


def sew_function(identity: torch.Tensor, out: torch.Tensor, cnf: str) -> torch.Tensor:
    """The spike-element-wise connection g(A, S), A = residual-branch spikes, S = identity spikes:
    ADD: A + S; AND: A * S; IAND: (1 - A) * S (SEW paper, Table 1). ValueError for another ``cnf``."""
    if cnf == "ADD":
        return out + identity
    if cnf == "AND":
        return out * identity
    if cnf == "IAND":
        return (1.0 - out) * identity
    raise ValueError(f"cnf must be one of {CNFS}, got {cnf!r}")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> layer.Conv2d:
    return layer.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False, step_mode="m")


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> layer.Conv2d:
    return layer.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False, step_mode="m")


def norm(planes: int) -> layer.BatchNorm2d:
    return layer.BatchNorm2d(planes, step_mode="m")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        cnf: str,
        spiking_neuron: Callable[[], nn.Module],
    ):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm(planes)
        self.sn1 = spiking_neuron()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm(planes)
        self.sn2 = spiking_neuron()
        self.downsample = downsample
        if downsample is not None:
            self.downsample_sn = spiking_neuron()
        self.cnf = cnf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.sn1(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.sn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)
            identity = self.downsample_sn(identity)

        return sew_function(identity, out, self.cnf)

    def extra_repr(self) -> str:
        return f"cnf={self.cnf}"


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        cnf: str,
        spiking_neuron: Callable[[], nn.Module],
    ):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm(planes)
        self.sn1 = spiking_neuron()
        self.conv2 = conv3x3(planes, planes, stride)  # stride on the 3x3 conv (ResNet V1.5)
        self.bn2 = norm(planes)
        self.sn2 = spiking_neuron()
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm(planes * self.expansion)
        self.sn3 = spiking_neuron()
        self.downsample = downsample
        if downsample is not None:
            self.downsample_sn = spiking_neuron()
        self.cnf = cnf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.sn1(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.sn2(out)

        out = self.conv3(out)
        out = self.bn3(out)
        out = self.sn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)
            identity = self.downsample_sn(identity)

        return sew_function(identity, out, self.cnf)

    def extra_repr(self) -> str:
        return f"cnf={self.cnf}"


class SEWResNet(nn.Module):
    """A SEW ResNet over T time steps; input ``[N, C, H, W]`` or ``[T, N, C, H, W]``, logits ``[N, classes]``.

    Args:
        block, layers: the block type and the number of blocks of each of the four stages.
        num_classes: outputs of the classifier ``fc``.
        T: number of time steps.
        cnf: connect function, one of :data:`CNFS`.
        neuron: "if", "lif" or "plif" (see :func:`snn_lats.networks.neurons.make_neuron`).
        backend: "auto", "torch", or what the installed SpikingJelly adds (see :mod:`snn_lats.networks.neurons`).
        width: channels of the stem and the first stage; stages have width * (1, 2, 4, 8)
            (times 4 after a Bottleneck). 64 is the published network.
        stem: "imagenet" (7x7/2 conv, 3x3/2 max-pool) or "cifar" (3x3/1 conv, no pooling).
        in_channels: channels of the input image (3 for RGB, 2 for DVS event polarities).
        zero_init_residual: start the last BN of every residual branch at zero.
        neuron_kwargs: extra arguments of every neuron (``v_threshold``, ``tau``, ``surrogate_function``, ...).
    """

    spiking = True

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        T: int = 4,
        cnf: str = "ADD",
        neuron: str = "if",
        backend: str = "auto",
        width: int = 64,
        stem: str = "imagenet",
        in_channels: int = 3,
        zero_init_residual: bool = False,
        neuron_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("T", T)
        check_positive_int("width", width)
        check_positive_int("in_channels", in_channels)
        check_choice("cnf", cnf, CNFS)
        check_choice("stem", stem, STEMS)
        self.T = T
        self.in_channels = in_channels
        spiking_neuron = functools.partial(make_neuron, neuron, backend, **(neuron_kwargs or {}))

        self.inplanes = width
        if stem == "imagenet":
            self.conv1 = layer.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False, step_mode="m")
        else:
            self.conv1 = conv3x3(in_channels, width)
        self.bn1 = norm(width)
        self.sn1 = spiking_neuron()
        self.maxpool = layer.MaxPool2d(3, stride=2, padding=1, step_mode="m") if stem == "imagenet" else nn.Identity()
        self.layer1 = self._make_layer(block, width, layers[0], 1, cnf, spiking_neuron)
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2, cnf, spiking_neuron)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2, cnf, spiking_neuron)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2, cnf, spiking_neuron)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

        init_weights(self, (BasicBlock, Bottleneck) if zero_init_residual else ())

    def _make_layer(
        self, block, planes: int, blocks: int, stride: int, cnf: str, spiking_neuron: Callable[[], nn.Module]
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), norm(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample, cnf, spiking_neuron)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, None, cnf, spiking_neuron) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        x, static = as_sequence(x, self.T, self.in_channels)
        reset_state(self)  # no membrane potential leaks from the previous batch

        x = encode_once(self.bn1(self.conv1(x)), self.T if static else None)
        x = self.sn1(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.avgpool(x)
        x = x.flatten(2)  # [T, N, features]
        x = x.mean(0)  # fc(mean_t x[t]) = mean_t fc(x[t]): one fc on the time-mean
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_impl(x)


@register()
def sew_resnet18(**kwargs: Any) -> SEWResNet:
    """SEW ResNet-18 (11.69 M parameters at 1000 classes with IF neurons). Arguments: :class:`SEWResNet`."""
    return SEWResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register()
def sew_resnet34(**kwargs: Any) -> SEWResNet:
    """SEW ResNet-34. Arguments: :class:`SEWResNet`."""
    return SEWResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register()
def sew_resnet50(**kwargs: Any) -> SEWResNet:
    """SEW ResNet-50. Arguments: :class:`SEWResNet`."""
    return SEWResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register()
def sew_resnet101(**kwargs: Any) -> SEWResNet:
    """SEW ResNet-101. Arguments: :class:`SEWResNet`."""
    return SEWResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register()
def sew_resnet152(**kwargs: Any) -> SEWResNet:
    """SEW ResNet-152. Arguments: :class:`SEWResNet`."""
    return SEWResNet(Bottleneck, [3, 8, 36, 3], **kwargs)
