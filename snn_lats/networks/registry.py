"""Networks by name: every family registers its public constructors where it defines them.

As torchvision's ``@register_model()``: ``@register()`` on a constructor makes it buildable by
:func:`create` under its ``__name__``. :func:`names` lists the registered names in registration
order, which is the import order of the families in :mod:`snn_lats.networks`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["register", "names", "create"]

_Constructor = TypeVar("_Constructor", bound=Callable[..., nn.Module])

_NETWORKS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str | None = None) -> Callable[[_Constructor], _Constructor]:
    """Decorator: register a network constructor under ``name`` (default: the function's name).

    A name registered twice raises ValueError: the second constructor would silently shadow the first.
    """

    def wrapper(fn: _Constructor) -> _Constructor:
        key = fn.__name__ if name is None else name
        if key in _NETWORKS:
            first = _NETWORKS[key]
            raise ValueError(f"network name {key!r} is already registered (by {first.__module__}.{first.__qualname__})")
        _NETWORKS[key] = fn
        return fn

    return wrapper


def names() -> list[str]:
    """Names accepted by :func:`create`, in registration order."""
    return list(_NETWORKS)


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the network called ``name`` (one of :func:`names`) with the constructor's ``kwargs``."""
    if name not in _NETWORKS:
        raise ValueError(f"unknown network name {name!r}; accepted names: {', '.join(names())}")
    return _NETWORKS[name](**kwargs)
