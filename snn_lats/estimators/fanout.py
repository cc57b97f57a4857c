"""Fan-outs and weight costs: what one input element, or one weight, adds to the exact count.

``fan_out[i]`` is the number of nonzero weights connecting input element ``i`` to a valid output:
the gradient of ``sum(layer(x; mask))`` with respect to ``x``. ``weight_cost`` is the gradient of
the same sum with respect to the weight: what each weight adds to the count of given inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["InputEvents", "fan_out", "flops_row", "layer_forward", "weight_cost", "weight_shape"]


def layer_forward(module: nn.Module, x: Tensor, weight: Tensor, output_padding: tuple | None) -> Tensor:
    """The layer's own operation on ``x`` with ``weight`` and no bias (stride, padding and its
    mode, dilation, groups, output padding)."""
    if isinstance(module, nn.Linear):
        return torch.nn.functional.linear(x, weight)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        op = (None, torch.nn.functional.conv_transpose1d, torch.nn.functional.conv_transpose2d)
        op = (*op, torch.nn.functional.conv_transpose3d)[len(module.kernel_size)]
        return op(x, weight, None, module.stride, module.padding, output_padding, module.groups, module.dilation)
    return module._conv_forward(x, weight, None)


def fan_out(
    module: nn.Module,
    mask: Tensor,
    sample_shape: tuple[int, ...],
    device: torch.device,
    output_padding: tuple | None = None,
) -> tuple[Tensor, int]:
    """``(fan_out, output elements)``: fan_out[i] = sum over outputs of ``mask`` weights touching
    input element i, as float64 [K], and the output elements of one row.

    The gradient of sum(layer(x; mask)) with respect to x: a transposed convolution of ones
    with the mask (a convolution, for a transposed layer), respecting stride, padding (and
    padding_mode), dilation, groups and output padding.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.ones((1, *sample_shape), dtype=torch.float64, device=device, requires_grad=True)
        w = mask.to(device=device, dtype=torch.float64)
        y = layer_forward(module, x, w, output_padding)
        (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    return grad.reshape(-1).round(), y[0].numel()


class InputEvents(NamedTuple):
    """The inputs one synaptic layer saw in one input shape, summed over every row (samples x
    steps), by the exact rule: ``spikes`` [K], the spike counts of its AC inputs, and ``nonzero``
    [K], the nonzero elements of its real-valued (MAC) inputs."""

    sample_shape: tuple[int, ...]
    output_padding: tuple | None
    spikes: Tensor
    nonzero: Tensor


def weight_shape(module: nn.Module) -> torch.Size:
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original.shape
    return module.weight.shape


def weight_cost(module: nn.Module, events: InputEvents, ac: float = 1.0, mac: float = 1.0) -> Tensor:
    """``cost[w] = d/dw sum(layer(ac*spikes + mac*nonzero; w))``, float64 shaped like the weight:
    what weight ``w`` adds to ``ac*ACs + mac*MACs`` of these inputs when it is nonzero.

    ``ac = mac = 1`` gives operations, the pJ of one AC and one MAC give energy. The layer is
    linear in ``w``, so ``sum_w 1[w != 0] * cost[w]`` equals the exact convention's
    ``ac*ACs + mac*MACs`` of these inputs under that mask. A conv weight ``w[o, c, ky, kx]`` is
    charged the events of its input channel ``c`` at offset ``(ky, kx)`` over every valid output
    position, whatever ``o`` (within its group).
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = (events.spikes * ac + events.nonzero * mac).reshape(1, *events.sample_shape)
        w = torch.zeros(weight_shape(module), dtype=torch.float64, device=x.device, requires_grad=True)
        y = layer_forward(module, x, w, events.output_padding)
        (grad,) = torch.autograd.grad(y.sum(), w)
    return grad


def flops_row(module: nn.Module, k: int, out_elements: int) -> int:
    """Conventional dense MACs of one row, bias excluded: ``out x C_in/groups x prod(kernel)``
    (a transposed layer: ``in x C_out/groups x prod(kernel)``), ``in x out`` for a Linear."""
    per_element = module.weight[0].numel()  # C_in/g x prod(k) (conv), C_out/g x prod(k) (transposed)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return k * per_element
    return out_elements * per_element
