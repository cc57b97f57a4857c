"""The SEW ResNet paper's event-camera networks (Fang et al., NeurIPS 2021): 7B-Net for DVS128
Gesture (97.92 %) and Wide-7B-Net for CIFAR10-DVS (74.4 %), with PLIF neurons.

The layout is the authors' code (``dvsgesture/smodels.py``, ``cifar10dvs/smodels.py`` of
fangwei123456/Spike-Element-Wise-ResNet): seven stages, each a SEW block (two 3x3 conv-BN-PLIF,
then the connect function with the stage's input) and a 2x2 max-pool; a 1x1 conv-BN-PLIF widens
the channels where a stage has more than its input (from the 2 polarities into the first stage;
Wide-7B-Net also from 64 to 128 before its fifth stage); the readout is a linear layer on the
time-mean of the flattened features, which are 1x1 after seven pools of 128x128 frames.

- 7B-Net: 32 channels in every stage.
- Wide-7B-Net: 64 channels in the first four stages, 128 in the last three.

``width`` scales the channels (the published networks: 32 and 64), so a small one trains on a CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from snn_lats._spikingjelly import layer

from ._common import as_sequence, check_choice, check_positive_int, init_weights
from .neurons import make_neuron, reset_state
from .registry import CNFS, register
from .sew_resnet import conv1x1, conv3x3, norm, sew_function

__all__ = ["SEWEventNet", "sew_7b_net", "sew_wide_7b_net"]

#: The side of the frames: seven 2x2 pools bring 128x128 to the 1x1 the readout takes.
FRAME_SIDE = 128


class ConvBNNeuron(nn.Sequential):
    def __init__(self, conv: nn.Module, channels: int, spiking_neuron: Callable[[], nn.Module]):
        super().__init__()
        self.conv = conv
        self.bn = norm(channels)
        self.sn = spiking_neuron()


class SEWEventBlock(nn.Module):
    """Two 3x3 conv-BN-neuron layers, then the connect function with the block's input."""

    def __init__(self, channels: int, cnf: str, spiking_neuron: Callable[[], nn.Module]):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.bn1 = norm(channels)
        self.sn1 = spiking_neuron()
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = norm(channels)
        self.sn2 = spiking_neuron()
        self.cnf = cnf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sn1(self.bn1(self.conv1(x)))
        out = self.sn2(self.bn2(self.conv2(out)))
        return sew_function(x, out, self.cnf)

    def extra_repr(self) -> str:
        return f"cnf={self.cnf}"


class SEWEventNet(nn.Module):
    """Seven SEW stages with max-pools on 128x128 frames; input ``[T, N, C, 128, 128]`` (or a
    static ``[N, C, 128, 128]``, repeated over T), logits ``[N, classes]``.

    Args:
        stage_channels: the channels of each of the seven stages.
        num_classes: outputs of the readout ``fc``.
        T: number of time steps.
        cnf: connect function, one of :data:`~snn_lats.networks.sew_resnet.CNFS`.
        neuron: "plif" (the paper's), "lif" or "if".
        backend: as for :class:`~snn_lats.networks.SEWResNet`.
        in_channels: 2, the polarities.
        zero_init_residual: start the last BN of every SEW block at zero.
        neuron_kwargs: extra arguments of every neuron.
    """

    spiking = True

    def __init__(
        self,
        stage_channels: Sequence[int],
        num_classes: int = 11,
        T: int = 16,
        cnf: str = "ADD",
        neuron: str = "plif",
        backend: str = "auto",
        in_channels: int = 2,
        zero_init_residual: bool = False,
        neuron_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("T", T)
        check_positive_int("in_channels", in_channels)
        check_choice("cnf", cnf, CNFS)
        self.T = T
        self.in_channels = in_channels
        spiking_neuron = functools.partial(make_neuron, neuron, backend, **(neuron_kwargs or {}))
        stages = []
        previous = in_channels
        for channels in stage_channels:
            stage = nn.Sequential()
            if channels != previous:
                stage.add_module("widen", ConvBNNeuron(conv1x1(previous, channels), channels, spiking_neuron))
            stage.add_module("block", SEWEventBlock(channels, cnf, spiking_neuron))
            stage.add_module("pool", layer.MaxPool2d(2, 2, step_mode="m"))
            stages.append(stage)
            previous = channels
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(previous, num_classes)
        init_weights(self, (SEWEventBlock,) if zero_init_residual else ())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, static = as_sequence(x, self.T, self.in_channels)
        if x.shape[-2:] != (FRAME_SIDE, FRAME_SIDE):
            raise ValueError(
                f"{type(self).__name__} takes {FRAME_SIDE}x{FRAME_SIDE} frames (seven 2x2 pools to 1x1), "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )
        reset_state(self)
        if static:
            x = x.repeat(self.T, 1, 1, 1, 1)
        x = self.stages(x).flatten(2)  # [T, N, channels]
        return self.fc(x.mean(0))


def _scaled(channels: Sequence[int], width: int | None, published: int) -> list[int]:
    if width is None:
        return list(channels)
    check_positive_int("width", width)
    return [c * width // published for c in channels]


@register()
def sew_7b_net(width: int | None = None, **kwargs: Any) -> SEWEventNet:
    """7B-Net (SEW ResNet paper, DVS128 Gesture): 32 channels in all seven stages; ``width``
    replaces 32. Arguments: :class:`SEWEventNet`."""
    return SEWEventNet(_scaled([32] * 7, width, 32), **kwargs)


@register()
def sew_wide_7b_net(width: int | None = None, **kwargs: Any) -> SEWEventNet:
    """Wide-7B-Net (SEW ResNet paper, CIFAR10-DVS): 64 channels in the first four stages, 128 in
    the last three; ``width`` replaces 64 (and 128 becomes twice it). Arguments: :class:`SEWEventNet`."""
    return SEWEventNet(_scaled([64] * 4 + [128] * 3, width, 64), **{"num_classes": 10, **kwargs})
