"""Argument and input checks, and the weight initialisation, shared by every network family."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import STEMS

__all__ = [
    "STEMS",
    "check_choice",
    "check_positive_int",
    "as_sequence",
    "encode_once",
    "static_batch",
    "init_weights",
]


def check_choice(argument: str, value: object, accepted: Sequence[str]) -> None:
    if value not in accepted:
        raise ValueError(f"{argument} must be one of {tuple(accepted)}, got {value!r}")


def check_positive_int(argument: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument} must be an integer >= 1, got {value!r}")


def as_sequence(x: torch.Tensor, T: int, in_channels: int) -> tuple[torch.Tensor, bool]:
    """Check a network input and view it as a sequence ``[T', N, C, H, W]``.

    Returns ``(x_seq, static)``: a static batch ``[N, C, H, W]`` becomes ``[1, N, C, H, W]`` with
    ``static=True`` (the caller repeats it over T once it is encoded); a sequence must hold T steps.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 4:
        x, static = x.unsqueeze(0), True
    elif x.dim() == 5:
        static = False
        if x.shape[0] != T:
            raise ValueError(
                f"x of shape [T, N, C, H, W] must have T={T} time steps (the network's T), got shape {tuple(x.shape)}"
            )
    else:
        raise ValueError(
            f"x must have shape [N, C, H, W] (static images) or [T, N, C, H, W] "
            f"(a sequence of T={T} steps), got shape {tuple(x.shape)}"
        )
    if x.shape[2] != in_channels:
        raise ValueError(
            f"x must have in_channels={in_channels} channels (dimension C), "
            f"got shape {tuple(x.shape[1:] if static else x.shape)}"
        )
    return x, static


def encode_once(x: torch.Tensor, steps: int | None) -> torch.Tensor:
    """The first conv-BN's output of a static batch (``[1, N, ...]``, from :func:`as_sequence`)
    repeated over ``steps``: the encoding of a static image is the same at every step, so it is
    computed once (the transformers' authors repeat the image first: the same values, T times the
    encoding's multiplications). A sequence (``steps`` None) as it is."""
    return x if steps is None else x.repeat(steps, *([1] * (x.dim() - 1)))


def static_batch(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Check the input of a T = 1 network (an ANN) and return its single step ``[N, C, H, W]``.

    Takes ``[N, C, H, W]`` or a one-step sequence ``[1, N, C, H, W]``; rejects anything else
    with the errors of :func:`as_sequence`.
    """
    x_seq, _ = as_sequence(x, 1, in_channels)
    return x_seq[0]


def init_weights(model: nn.Module, zero_init_residual_of: tuple[type, ...] = ()) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal (fan-out) convolutions, BatchNorm at
    weight 1 and bias 0; the last BN of every block of the types ``zero_init_residual_of``
    (``bn3`` of a bottleneck, else ``bn2``) at weight 0, so each residual branch starts as identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, zero_init_residual_of):
            nn.init.zeros_((m.bn3 if hasattr(m, "bn3") else m.bn2).weight)
