"""MobileNet-V1 (Howard et al., 2017, arXiv 1704.04861, Table 1) as an ANN: T = 1, ReLU activations.

4.23 M parameters at 1000 classes and ``width_mult=1`` (BatchNorm after every conv).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._common import STEMS, check_choice, check_positive_int, init_weights, static_batch
from .registry import register

__all__ = ["MobileNetV1", "mobilenet_v1"]

# (output channels, stride) of the 13 depthwise-separable blocks, after a 32-channel 3x3/2 stem conv.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU."""

    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, inplanes, 3, stride=stride, padding=1, groups=inplanes, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv2 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)

        x = self.conv2(x)
        x = self.bn2(x)
        return self.relu(x)


class MobileNetV1(nn.Module):
    """MobileNet-V1; input ``[N, C, H, W]`` or ``[1, N, C, H, W]``, logits ``[N, classes]``.

    Args:
        num_classes: outputs of the classifier ``fc``.
        width_mult: multiplies every layer's channels (the paper's alpha: 1, 0.75, 0.5, 0.25).
        stem: "imagenet" (first conv stride 2) or "cifar" (stride 1, for 32x32 images).
        in_channels: channels of the input image.
    """

    T = 1
    spiking = False

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, stem: str = "imagenet", in_channels: int = 3):
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        check_choice("stem", stem, STEMS)
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or width_mult <= 0:
            raise ValueError(f"width_mult must be a number > 0, got {width_mult!r}")
        self.in_channels = in_channels

        def channels(c: int) -> int:
            return max(1, int(c * width_mult))

        inplanes = channels(32)
        self.conv1 = nn.Conv2d(in_channels, inplanes, 3, stride=2 if stem == "imagenet" else 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        blocks = []
        for planes, stride in BLOCKS:
            blocks.append(DepthwiseSeparable(inplanes, channels(planes), stride))
            inplanes = channels(planes)
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)

        init_weights(self)

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        x = static_batch(x, self.in_channels)

        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)

        x = self.layers(x)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_impl(x)


@register()
def mobilenet_v1(**kwargs: Any) -> MobileNetV1:
    """MobileNet-V1 (4.23 M parameters at 1000 classes, width_mult=1). Arguments: :class:`MobileNetV1`."""
    return MobileNetV1(**kwargs)
