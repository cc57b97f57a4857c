"""syops-counter 0.0.5's rule (``convention="syops"``), beside the other conventions.

The other conventions are functions of the column sums the counter keeps
(:mod:`~snn_lats.estimators.conventions`). syops' cannot be: it decides spike or not, and takes its
firing rate, per call (a batch is spikes iff it holds at most two distinct values, all in [0, 1];
the rate is then the batch mean). So a :class:`SyopsTally` rides along the counter's hooks and
keeps syops' own figures per module: a synaptic layer's ``(FL + bias adds) x rate`` ACs for
spikes, else ``FL + bias adds`` MACs; BatchNorm (input elements, x2 if affine), pooling (input
elements) and activations (output elements) by the same rule; every neuron update as an AC.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from snn_lats.estimators import conventions as cv

__all__ = ["SyopsTally", "spike_rate"]


def spike_rate(x: Tensor) -> tuple[bool, float]:
    """syops 0.0.5's ``spike_rate``: spikes iff at most two distinct values, all in [0, 1]; the
    rate is then the mean, else 1."""
    mn, mx = (float(v) for v in torch.aminmax(x.detach()))
    if mn >= 0 and mx <= 1 and x.detach().unique().numel() <= 2:
        return True, float(x.detach().sum(dtype=torch.float64)) / x.numel()
    return False, 1.0


class SyopsTally:
    """syops' ACs and MACs per module (by ``id``), added call by call."""

    def __init__(self) -> None:
        self._ops: dict[int, list[float]] = {}

    def _add(self, module: nn.Module, acs: float, macs: float) -> None:
        ops = self._ops.setdefault(id(module), [0.0, 0.0])
        ops[0] += acs
        ops[1] += macs

    def figures(self, module: nn.Module) -> tuple[float, float]:
        """``(ACs, MACs)`` of ``module`` so far."""
        acs, macs = self._ops.get(id(module), (0.0, 0.0))
        return acs, macs

    def synapse(self, module: nn.Module, x: Tensor, columns, rows: int, flops_row: int, out_elements: int) -> None:
        """One call of a synaptic layer: ``(FL + bias adds) x rate`` ACs for spikes, else MACs."""
        kinds = [row for row, _ in columns]
        if kinds == [cv.BINARY]:  # 0/1: at most two values in [0, 1]; the rate is the mean
            spike, rate = True, float(columns[0][1].sum()) / x.numel()
        elif cv.MULTI in kinds:
            spike, rate = False, 1.0
        else:
            spike, rate = spike_rate(x)
        if module.bias is None:
            bias_ops = 0
        elif isinstance(module, nn.Linear):  # syops adds a Linear's bias once per call, not per row
            bias_ops = module.out_features
        else:
            bias_ops = out_elements * rows
        ops = flops_row * rows + bias_ops
        self._add(module, ops * rate if spike else 0.0, 0.0 if spike else ops)

    def neuron(self, module: nn.Module, args: tuple, y: Tensor, spiking: bool) -> None:
        """One call of a neuron (an update per input element, as ACs) or an ANN activation
        (output elements, charged by the rate of its first sample)."""
        if spiking:
            self._add(module, args[0].numel() if args and isinstance(args[0], Tensor) else y.numel(), 0.0)
            return
        spike, rate = spike_rate(y[0])
        self._add(module, y.numel() * rate if spike else 0.0, 0.0 if spike else y.numel())

    def other(self, module: nn.Module, x: Tensor, ops: int) -> None:
        """One call of a normalisation or pooling layer of ``ops`` operations."""
        spike, rate = spike_rate(x)
        self._add(module, ops * rate if spike else 0.0, 0.0 if spike else ops)
