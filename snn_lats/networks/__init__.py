"""The networks: SEW ResNets on SpikingJelly multi-step neurons, and ANNs as the case T = 1.

Every network built here takes a static batch ``[N, C, H, W]`` or a sequence ``[T, N, C, H, W]``,
returns logits ``[N, num_classes]`` (the time-mean), resets its neuron state at the start of every
forward, and has the attributes ``T`` (int) and ``spiking`` (bool). The CLI and recipes build them
by name: ``create("sew_resnet18", num_classes=10, T=4, width=16, stem="cifar")``.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .mobilenet import MobileNetV1, mobilenet_v1
from .neurons import BACKENDS, NEURONS, cupy_usable, make_neuron, set_backend
from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152
from .sew_resnet import CNFS, SEWResNet, sew_resnet18, sew_resnet34, sew_resnet50, sew_resnet101, sew_resnet152

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    fn.__name__: fn
    for fn in (
        sew_resnet18,
        sew_resnet34,
        sew_resnet50,
        sew_resnet101,
        sew_resnet152,
        resnet18,
        resnet34,
        resnet50,
        resnet101,
        resnet152,
        mobilenet_v1,
    )
}


def names() -> list[str]:
    """Names accepted by :func:`create`."""
    return list(_REGISTRY)


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the network called ``name`` (one of :func:`names`) with the constructor's ``kwargs``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown network name {name!r}; accepted names: {', '.join(names())}")
    return _REGISTRY[name](**kwargs)


__all__ = [
    "create",
    "names",
    "SEWResNet",
    "sew_resnet18",
    "sew_resnet34",
    "sew_resnet50",
    "sew_resnet101",
    "sew_resnet152",
    "CNFS",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "MobileNetV1",
    "mobilenet_v1",
    "make_neuron",
    "set_backend",
    "cupy_usable",
    "NEURONS",
    "BACKENDS",
]
