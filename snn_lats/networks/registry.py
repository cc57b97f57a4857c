"""Networks by name, and the names their options take. Importable without torch, so that the
command line lists them in ``--help`` and refuses others before torch is imported.

As torchvision's ``@register_model()``: ``@register()`` on a constructor makes it buildable by
:func:`create` under its ``__name__``. The families' names are also listed in :data:`FAMILIES`,
so that :func:`names` answers without importing the families; :func:`create` imports a family
when one of its networks is first built. A test checks that each family registers exactly the
names listed for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ALL_BACKENDS", "CNFS", "FAMILIES", "NEURON_KINDS", "STEMS", "create", "names", "register"]

#: The module of each family (``snn_lats.networks.<module>``) and the networks it registers, in
#: the order :func:`names` lists them.
FAMILIES: dict[str, tuple[str, ...]] = {
    "sew_resnet": ("sew_resnet18", "sew_resnet34", "sew_resnet50", "sew_resnet101", "sew_resnet152"),
    "resnet": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
    "mobilenet": ("mobilenet_v1",),
    "sew_dvs": ("sew_7b_net", "sew_wide_7b_net"),
    "spikformer": ("spikformer_8_384", "spikformer_8_512", "spikformer_8_768", "spikformer_4_384_cifar"),
    "spike_driven": ("sdt_8_384", "sdt_8_512", "sdt_8_768", "sdt_2_512_cifar"),
    "qkformer": ("qkformer_10_384", "qkformer_10_512", "qkformer_10_768"),
}
#: Neuron kinds accepted by ``neuron=``: integrate-and-fire, leaky IF, parametric LIF (learned tau).
NEURON_KINDS: tuple[str, ...] = ("if", "lif", "plif")
#: Every neuron backend name a configuration may hold, whichever SpikingJelly release trained it
#: (:mod:`snn_lats.networks.neurons` says what each means on the release installed).
ALL_BACKENDS: tuple[str, ...] = ("auto", "cuda", "cupy", "torch", "triton")
#: Stems accepted by ``stem=``. "imagenet": 7x7 stride-2 conv then 3x3 stride-2 max-pool (ResNet;
#: MobileNet: 3x3 stride-2 conv). "cifar": 3x3 stride-1 conv and no pooling, for 32x32 images.
#: The transformers' patch splitting: patches of 16 and of 4 pixels.
STEMS: tuple[str, ...] = ("imagenet", "cifar")
#: SEW connect functions accepted by ``cnf=`` (:func:`~snn_lats.networks.sew_resnet.sew_function`).
CNFS: tuple[str, ...] = ("ADD", "AND", "IAND")

_Constructor = TypeVar("_Constructor", bound="Callable[..., nn.Module]")

_NETWORKS: dict[str, Callable[..., nn.Module]] = {}
_FAMILY_OF = {name: family for family, members in FAMILIES.items() for name in members}


def register(name: str | None = None) -> Callable[[_Constructor], _Constructor]:
    """Decorator: register a network constructor under ``name`` (default: the function's name).

    A name registered twice raises ValueError: the second constructor would silently shadow the
    first. A family's names (:data:`FAMILIES`) are taken, imported or not.
    """

    def wrapper(fn: _Constructor) -> _Constructor:
        key = fn.__name__ if name is None else name
        if key in _NETWORKS:
            first = _NETWORKS[key]
            raise ValueError(f"network name {key!r} is already registered (by {first.__module__}.{first.__qualname__})")
        family = _FAMILY_OF.get(key)
        if family is not None and fn.__module__ != f"{__package__}.{family}":
            raise ValueError(f"network name {key!r} is already registered (by {__package__}.{family}.{key})")
        _NETWORKS[key] = fn
        return fn

    return wrapper


def names() -> list[str]:
    """Names accepted by :func:`create`: the families' in :data:`FAMILIES` order, then any
    registered by other code, in registration order."""
    return [*_FAMILY_OF, *(name for name in _NETWORKS if name not in _FAMILY_OF)]


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the network called ``name`` (one of :func:`names`) with the constructor's ``kwargs``."""
    if name not in _NETWORKS and name in _FAMILY_OF:
        importlib.import_module(f"{__package__}.{_FAMILY_OF[name]}")
    if name not in _NETWORKS:
        raise ValueError(f"unknown network name {name!r}; accepted names: {', '.join(names())}")
    return _NETWORKS[name](**kwargs)
