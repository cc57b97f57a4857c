"""What the counter accumulates per layer, and how one batch's inputs become column sums.

A synaptic layer keeps, per input shape, running column sums ``[K]`` of its inputs split by what
each batch held (:data:`~snn_lats.estimators.conventions.ROWS`), and the fan-outs they are folded
with when the weight changes or a report is asked for (:class:`FanOutCache`). Neurons keep their
output sums, normalisation and pooling layers their element counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from snn_lats.estimators import conventions as cv
from snn_lats.estimators.fanout import InputEvents, fan_out, flops_row
from snn_lats.estimators.layers import sample_ndim

__all__ = [
    "F32_EXACT",
    "FanOutCache",
    "NeuronStats",
    "OtherStats",
    "Shape",
    "SynapseStats",
    "input_columns",
    "nonzero_columns",
]

F32_EXACT = 2**24  # float32 represents every integer below this exactly


def _all_counts(x: Tensor) -> bool:
    """Whether every element of ``x`` (float, no negative element) is an integer, exactly.

    For x >= 0, frac(x) >= 0, and a float sum of non-negative terms is 0 only if every term is.
    frac(inf) and frac(NaN) are NaN: not counts.
    """
    return x.frac().sum().item() == 0


def _weight_state(module: nn.Module) -> tuple:
    """What ``module.weight`` derives from, to tell cheaply whether it may have changed.

    ``(class, parametrization list or None, its length, entries)``, with one entry
    ``(dict, key, tensor, version, storage pointer)`` per tensor: the weight Parameter, or θ and
    every parameter and buffer (thresholds) of the weight's parametrizations.
    """
    holders: list[nn.Module] = [module]
    plist = None
    if parametrize.is_parametrized(module, "weight"):
        plist = module.parametrizations["weight"]
        holders = list(plist.modules())
    entries = []
    for holder in holders:
        for table in (holder._parameters, holder._buffers):
            for key, t in table.items():
                if t is not None and (plist is not None or key == "weight"):
                    entries.append((table, key, t, t._version, t.data_ptr()))
    return type(module), plist, len(plist) if plist is not None else 0, tuple(entries)


def _same_weight_state(module: nn.Module, state: tuple) -> bool:
    cls, plist, length, entries = state
    if type(module) is not cls or (plist is not None and len(plist) != length):
        return False  # a parametrization was attached, removed or stacked
    for table, key, t, version, ptr in entries:
        if table.get(key) is not t or t._version != version or t.data_ptr() != ptr:
            return False
    return True


@dataclass
class SynapseStats:
    kind: ClassVar[str] = "synaptic"
    sample_shape: tuple[int, ...] | None = None
    params: int | None = None
    nonzero_params: int | None = None
    elements: int = 0  # input elements seen
    encoding: bool = False  # the first synaptic layer a forward called, on a real-valued input (an image)
    event_input: bool = False  # that layer, on spike counts (event-camera frames): no encoding layer
    extra_ops: float = 0.0  # bias adds


@dataclass
class Shape:
    """What one synaptic layer accumulated for one input shape and device."""

    k: int
    flops_row: int
    out_elements: int
    dense: Tensor  # unpruned fan-out [K], float64
    pending: list[Tensor]  # ROWS column sums [K] since the weight last changed
    events: Tensor  # [2, K]: every spike count (row 0) and nonzero real input (row 1) so far (exact rule)
    recent: list[tuple[int, Tensor]] = field(default_factory=list)  # (row, column sums), added 32 at a time
    pruned_dots: list[float] = field(default_factory=lambda: [0.0] * cv.ROWS)  # folded pending . f
    dense_dots: list[float] = field(default_factory=lambda: [0.0] * cv.ROWS)  # folded pending . g
    sums: list[float] = field(default_factory=lambda: [0.0] * cv.ROWS)  # folded sum(pending)
    rows: int = 0
    rows_neurobench_spiking: int = 0

    def gather(self) -> None:
        """Add the queued column sums into the pending accumulators: one stack and sum per row and dtype."""
        groups: dict[tuple, list[Tensor]] = {}
        for row, col in self.recent:
            groups.setdefault((row, col.dtype), []).append(col)
        for (row, _), cols in groups.items():
            self.pending[row].add_(torch.stack(cols).sum(0, dtype=torch.float64))
        self.recent.clear()

    def fold(self, pruned: Tensor | None) -> None:
        """Apply the fan-outs to the pending column sums (``pruned``: the mask they were taken
        under) and clear them. float64 is exact below 2**53; past it the dot is redone in int64."""
        self.gather()
        p = self.pending
        self.events[0].add_(p[cv.BINARY]).add_(p[cv.MULTI])
        self.events[1].add_(p[cv.REAL_NONZERO]).add_(p[cv.TERNARY_NONZERO])
        for row, col in enumerate(self.pending):
            for dots, f in ((self.pruned_dots, pruned), (self.dense_dots, self.dense)):
                if f is None:
                    continue
                dot = float(torch.dot(col, f))
                dots[row] += dot if dot < 2**53 else float((col.long() * f.long()).sum())
            self.sums[row] += float(col.sum())
            col.zero_()


class FanOutCache:
    """The fan-outs of one synaptic layer per input shape, and its pending column sums.

    Per (input shape, device): the unpruned fan-out, and ROWS accumulators [K] (column sums of
    spike counts, nonzero inputs, ... by what the batch held). Ops are linear in them, so the
    pruned fan-out is applied (a dot product per accumulator) only when the weight changes or a
    report is asked for: a forward adds its column sums.

    The weight counts as unchanged while every tensor it derives from (the weight, or θ and the
    thresholds of a parametrization) is still in place with the same version and storage:
    PyTorch bumps ``Tensor._version`` on every in-place edit (optimiser steps,
    ``load_state_dict``, ``w[...] = 0`` under no_grad, ``threshold.fill_``), and reassigning a
    parameter or buffer, or attaching a parametrization, is seen too. In-place edits through
    ``.data`` bypass the version counter and are not seen.
    """

    def __init__(self, module: nn.Module, stats: SynapseStats, events_only: bool = False):
        self.module = module
        self.stats = stats
        self.events_only = events_only  # column sums only: no fan-out, no mask
        self.sample_ndim = sample_ndim(module)
        self.transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
        self.state: tuple | None = None
        self.mask: Tensor | None = None
        self.pruned: dict[tuple, Tensor] = {}  # fan-out under the current mask
        self.shapes: dict[tuple, Shape] = {}
        self.integer_inputs: dict[tuple, bool] = {}  # per input shape: were its inputs integers
        self.last: tuple | None = None  # (shape, device, output padding, entry) of the last call

    def _refresh(self) -> None:
        self.flush()
        self.last = None
        self.state = _weight_state(self.module)
        with torch.no_grad():
            self.mask = self.module.weight.detach() != 0
        self.pruned.clear()
        self.stats.params = self.mask.numel()
        self.stats.nonzero_params = int(self.mask.sum())

    def flush(self) -> None:
        """Fold every shape's pending column sums (under the mask they were taken with)."""
        for key, entry in self.shapes.items():
            entry.fold(self.pruned.get(key))

    def shape(self, shape: tuple[int, ...], device: torch.device, output_padding: tuple | None) -> Shape:
        """The accumulators of ``shape`` (created, with its fan-outs, on first use)."""
        if self.events_only:
            return self._events_shape(shape, device, output_padding)
        if self.state is None or not _same_weight_state(self.module, self.state):
            self._refresh()
        last = self.last
        if last is not None and last[0] == shape and last[1] == device and last[2] == output_padding:
            return last[3]  # the same shape as last time, the fan-outs still in force
        key = (shape, device, output_padding)
        entry = self.shapes.get(key)
        if entry is None:
            dense, out_elements = fan_out(self.module, torch.ones_like(self.mask), shape, device, output_padding)
            k = dense.numel()
            with torch.inference_mode(False):  # normal tensors: updated in and out of inference mode
                pending = [torch.zeros(k, dtype=torch.float64, device=device) for _ in range(cv.ROWS)]
                events = torch.zeros(2, k, dtype=torch.float64, device=device)
            entry = self.shapes[key] = Shape(
                k, flops_row(self.module, k, out_elements), out_elements, dense, pending, events
            )
        if key not in self.pruned:
            self.pruned[key] = fan_out(self.module, self.mask, shape, device, output_padding)[0]
        self.last = (shape, device, output_padding, entry)
        return entry

    def _events_shape(self, shape: tuple[int, ...], device: torch.device, output_padding: tuple | None) -> Shape:
        """The accumulators of ``shape`` for the column sums alone (the weight never matters)."""
        key = (shape, device, output_padding)
        entry = self.shapes.get(key)
        if entry is None:
            k = 1
            for n in shape:
                k *= n
            with torch.inference_mode(False):
                pending = [torch.zeros(k, dtype=torch.float64, device=device) for _ in range(cv.ROWS)]
                events = torch.zeros(2, k, dtype=torch.float64, device=device)
            entry = self.shapes[key] = Shape(k, 0, 0, None, pending, events)
        return entry

    def input_events(self) -> list[InputEvents]:
        """What every input shape accumulated so far, pending column sums included."""
        out = []
        for (shape, _, output_padding), entry in self.shapes.items():
            entry.gather()
            p = entry.pending
            spikes = entry.events[0] + p[cv.BINARY] + p[cv.MULTI]
            nonzero = entry.events[1] + p[cv.REAL_NONZERO] + p[cv.TERNARY_NONZERO]
            out.append(InputEvents(tuple(shape), output_padding, spikes, nonzero))
        return out

    def accumulated(self, key: tuple) -> cv.Accumulated:
        entry = self.shapes[key]
        return cv.Accumulated(
            pruned=list(entry.pruned_dots),
            dense=list(entry.dense_dots),
            sums=list(entry.sums),
            k=entry.k,
            flops_row=entry.flops_row,
            dense_row=float(entry.dense.sum()),
            rows=entry.rows,
            rows_neurobench_spiking=entry.rows_neurobench_spiking,
            encoding=self.stats.encoding,
        )


@dataclass
class NeuronStats:
    kind: ClassVar[str] = "neuron"
    totals: list[Tensor] = field(default_factory=list)  # y.sum() per call, added up at report
    columns: list[Tensor] = field(default_factory=list)  # column sums a synaptic layer took of its output
    spikes: float = 0.0  # spikes (SNN) or nonzero activations (ANN)
    elements: int = 0
    sample_shape: tuple[int, ...] | None = None
    binary: bool = False  # outputs are 0/1 by construction
    consumed: bool = False  # its output went straight into a synaptic layer last time
    extra_ops: float = 0.0  # neuron updates (SNN)

    def fold(self) -> None:
        if self.totals:
            self.spikes += float(torch.stack(self.totals).sum(dtype=torch.float64))
            self.totals.clear()
        for col in self.columns:
            self.spikes += float(col.sum(dtype=torch.float64))
        self.columns.clear()


@dataclass
class OtherStats:
    """A normalisation or pooling layer (counted with ``extras``)."""

    kind: str
    elements: int = 0
    extra_ops: float = 0.0
    sample_shape: tuple[int, ...] | None = None


def nonzero_columns(xv: Tensor) -> Tensor:
    """Nonzero elements of ``xv`` [B, K] per column (``|sign(x)|`` summed: faster than count_nonzero)."""
    return xv.sign().abs_().sum(0, dtype=torch.float32 if xv.shape[0] < F32_EXACT else torch.float64)


def input_columns(cache: FanOutCache, shape: tuple, xv: Tensor, convention: str, spiking: bool) -> tuple:
    """``([(accumulator row, column sums [K]), ...], NeuroBench takes it for spikes)`` of one
    batch ``xv`` [B, K] of unknown provenance (see :mod:`~snn_lats.estimators.conventions`)."""
    if xv.dtype == torch.bool:
        return [(cv.BINARY, xv.sum(0, dtype=torch.float64))], True
    neurobench = convention == "neurobench"
    if not spiking and not neurobench:  # an ANN: every input counts MACs
        out = [(cv.REAL_NONZERO, nonzero_columns(xv))]
        if convention == "sinabs":  # sinabs multiplies whatever values come
            out.append((cv.REAL_SUM, xv.sum(0, dtype=torch.float64)))
        return out, False
    mn, mx = torch.aminmax(xv)
    mn, mx = mn.item(), mx.item()
    col = _integral(cache, shape, xv, mx) if spiking and mn >= 0 else None
    if col is not None:
        if mx <= 1:
            return [(cv.BINARY, col)], True
        # SEW-ADD counts: NeuroBench binarises them (its convention only needs the nonzeros)
        return [(cv.MULTI, col)] + ([(cv.MULTI_NONZERO, nonzero_columns(xv))] if neurobench else []), False
    # Real-valued (MACs). NeuroBench takes {-1, 0, 1} for spikes: tested only for its convention.
    ternary = neurobench and mn >= -1 and mx <= 1 and (not xv.dtype.is_floating_point or bool((xv == xv.round()).all()))
    out = [(cv.TERNARY_NONZERO if ternary else cv.REAL_NONZERO, nonzero_columns(xv))]
    if convention in ("sinabs", "paper"):
        out.append((cv.REAL_SUM, xv.sum(0, dtype=torch.float64)))
    return out, ternary


def _integral(cache: FanOutCache, shape: tuple, xv: Tensor, mx: float) -> Tensor | None:
    """The exact column sums of ``xv`` [B, K] (no negative element) if it holds counts, else None.

    Integrality is tested element by element on the layer's first batch of this input shape
    (and until its inputs of this shape were integers); after that, through the column sums:
    a fractional one proves a fractional input, and integral ones are taken for counts.
    A float32 sum of non-negative integers below 2**24 is exact; past it, float64 (2**53).
    """
    if not xv.dtype.is_floating_point:
        return xv.sum(0, dtype=torch.float64)
    exact32 = xv.dtype != torch.float64 and xv.shape[0] * mx < F32_EXACT
    col = xv.sum(0, dtype=torch.float32 if exact32 else torch.float64)
    if col.frac().sum().item() != 0:
        return None
    if not cache.integer_inputs.get(shape, False):
        cache.integer_inputs[shape] = _all_counts(xv)
    return col if cache.integer_inputs[shape] else None
