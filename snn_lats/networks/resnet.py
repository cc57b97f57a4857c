"""ResNet (He et al., CVPR 2016; V1.5 Bottleneck) as the degenerate network: T = 1, ReLU activations.

State-dict keys are torchvision's (``torchvision.models.resnet``), so its checkpoints load
strictly. Added options: ``width`` (base channels, as in the SEW ResNets, so that the ANN matching
a small SEW ResNet has the same widths) and ``stem="cifar"`` for small images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._common import STEMS, check_choice, check_positive_int, init_weights, static_batch
from .registry import register

__all__ = ["ResNet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)  # stride on the 3x3 conv (ResNet V1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)
        out = self.bn3(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out = out + identity
        return self.relu(out)


class ResNet(nn.Module):
    """A ResNet; input ``[N, C, H, W]`` or ``[1, N, C, H, W]``, logits ``[N, classes]``.

    Args:
        block, layers: the block type and the number of blocks of each of the four stages.
        num_classes: outputs of the classifier ``fc``.
        width: channels of the stem and the first stage; stages have width * (1, 2, 4, 8)
            (times 4 after a Bottleneck). 64 is the published network.
        stem: "imagenet" (7x7/2 conv, 3x3/2 max-pool) or "cifar" (3x3/1 conv, no pooling).
        in_channels: channels of the input image.
        zero_init_residual: start the last BN of every residual branch at zero.
    """

    T = 1
    spiking = False

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        width: int = 64,
        stem: str = "imagenet",
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("width", width)
        check_positive_int("in_channels", in_channels)
        check_choice("stem", stem, STEMS)
        self.in_channels = in_channels

        self.inplanes = width
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        self.layer1 = self._make_layer(block, width, layers[0], 1)
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

        init_weights(self, (BasicBlock, Bottleneck) if zero_init_residual else ())

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        x = static_batch(x, self.in_channels)

        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_impl(x)


@register()
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (11.69 M parameters at 1000 classes). Arguments: :class:`ResNet`."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register()
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34. Arguments: :class:`ResNet`."""
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register()
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 (25.56 M parameters at 1000 classes). Arguments: :class:`ResNet`."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register()
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101. Arguments: :class:`ResNet`."""
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register()
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152. Arguments: :class:`ResNet`."""
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)
