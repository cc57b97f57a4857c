"""Synaptic operations that no ``nn.Conv*``/``nn.Linear`` module performs: functional calls
(``F.conv*``, ``F.conv_transpose*``, ``F.linear``), products of two activations (``torch.matmul``,
``@``, ``mm``, ``bmm``: attention's Q·Kᵀ) and recurrent layers and cells (``nn.RNN``/``LSTM``/
``GRU``, ``nn.RNNCell``/``LSTMCell``/``GRUCell``). Counted by the exact rule, per call, by brute
force or a closed form written here:

- a product ``A @ B`` ([..., n, k] x [..., k, m]): ``ops = sum_batch sum_k a_k b_k`` with
  ``a_k = sum_i w(A_ik)``, ``b_k = sum_j w(B_kj)``, where ``w(x)`` is x itself for spike counts
  and ``1[x != 0]`` for real values (a pair of nonzero operands is one operation, a spike count
  its multiplicity); ACs if either operand is spikes, else MACs (an ANN: always MACs);
- ``F.conv*(x, w)``: ``sum(conv(w(x), 1[w != 0]))``, the tests' brute force; ``F.linear``:
  ``sum_i w(x)_i nnz(w[:, i])``;
- a recurrent cell: the input product with ``weight_ih`` and the hidden-state product with
  ``weight_hh`` (mask-aware, the hidden state as it came in); a one-layer ``nn.RNN``/``LSTM``/
  ``GRU``: the same at every step, the hidden states read from its output sequence. Gates, bias
  and element-wise products are not synaptic operations.

Spikes: a spiking model's operand that is bool, or non-negative and integer-valued (tested
element by element: this path is exact first, fast second). ``dense_*`` use all-ones weights;
``flops`` the dense product. :class:`FunctionalCounter` is the ``TorchFunctionMode`` that sees
the calls; the counter turns each (enclosing module, function) into a report row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["FUNCTIONS", "RECURRENT", "FunctionalCounter", "FunctionalStats", "recurrent_ops"]

_CONVS = {F.conv1d: "conv1d", F.conv2d: "conv2d", F.conv3d: "conv3d"}
_TRANSPOSED = {F.conv_transpose1d: "conv_transpose1d", F.conv_transpose2d: "conv_transpose2d"}
_TRANSPOSED[F.conv_transpose3d] = "conv_transpose3d"
_PRODUCTS = {torch.matmul: "matmul", torch.Tensor.matmul: "matmul", torch.Tensor.__matmul__: "matmul"}
_PRODUCTS |= {torch.mm: "mm", torch.bmm: "bmm", torch.Tensor.mm: "mm", torch.Tensor.bmm: "bmm"}
FUNCTIONS: dict[Any, str] = {**_CONVS, **_TRANSPOSED, F.linear: "linear", **_PRODUCTS}
RECURRENT: tuple[type[nn.Module], ...] = (nn.RNNBase, nn.RNNCellBase)


@dataclass
class FunctionalStats:
    """One report row: a (enclosing module, function) pair, or a recurrent module."""

    kind: ClassVar[str] = "synaptic"
    type: str = ""
    acs: float = 0.0
    macs: float = 0.0
    dense_acs: float = 0.0
    dense_macs: float = 0.0
    events: float = 0.0
    elements: int = 0
    flops: int = 0
    outputs: int = 0
    params: int | None = None
    nonzero_params: int | None = None
    sample_shape: tuple | None = None

    def add(self, ops: float, dense: float, as_acs: bool) -> None:
        if as_acs:
            self.acs, self.dense_acs = self.acs + ops, self.dense_acs + dense
        else:
            self.macs, self.dense_macs = self.macs + ops, self.dense_macs + dense

    def figures(self) -> dict[str, Any]:
        as_int = lambda v: int(v) if float(v).is_integer() else v  # noqa: E731
        return {
            "params": self.params,
            "nonzero_params": self.nonzero_params,
            "input_event_rate": self.events / self.elements if self.elements else None,
            "input_events": as_int(self.events),
            "acs": as_int(self.acs),
            "macs": as_int(self.macs),
            "dense_acs": as_int(self.dense_acs),
            "dense_macs": as_int(self.dense_macs),
            "flops": int(self.flops),
            "output_elements": int(self.outputs),
            "firing_rate": None,
        }


def _spikes(x: Tensor, spiking: bool) -> bool:
    """Whether ``x`` counts as spikes: in a spiking model, bool or non-negative integer values."""
    if not spiking:
        return False
    if x.dtype == torch.bool:
        return True
    if x.numel() == 0 or bool(x.amin() < 0):
        return False
    return not x.dtype.is_floating_point or bool((x == x.round()).all())


def _weighted(x: Tensor, spikes: bool) -> Tensor:
    """``w(x)`` in float64: spike counts as they are, real values as 1[x != 0]."""
    x = x.detach()
    return x.double() if spikes else (x != 0).double()


def product_ops(a: Tensor, b: Tensor, spiking: bool) -> tuple[float, float, bool, float, int]:
    """``(ops, dense ops, as ACs, events of a, flops)`` of ``a @ b`` (see the module docstring)."""
    sa, sb = _spikes(a, spiking), _spikes(b, spiking)
    wa, wb = _weighted(a, sa), _weighted(b, sb)
    if wa.dim() == 1:
        wa = wa.unsqueeze(0)
    if wb.dim() == 1:
        wb = wb.unsqueeze(-1)
    ops = float((wa.sum(-2) * wb.sum(-1)).sum())  # broadcast over the batch dimensions
    batch = torch.broadcast_shapes(wa.shape[:-2], wb.shape[:-2])
    n, k, m = wa.shape[-2], wa.shape[-1], wb.shape[-1]
    flops = math.prod(batch) * n * k * m
    return ops, float(flops), sa or sb, float(wa.sum()), flops


def conv_ops(func, args: tuple, kwargs: dict, spiking: bool) -> tuple[float, float, bool, float, int, Tensor]:
    """``(ops, dense ops, as ACs, events, flops, weight)`` of ``F.conv*``/``F.conv_transpose*(x, w, ...)``
    by brute force: the same call on ``w(x)`` and ``1[w != 0]`` (and all-ones), bias dropped."""
    x, w = args[0], args[1]
    rest, kw = list(args[3:]), {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}
    spikes = _spikes(x, spiking)
    wx = _weighted(x, spikes)
    mask = (w.detach() != 0).double()
    with torch.no_grad():
        ops = float(func(wx, mask, None, *rest, **kw).sum())
        dense_y = func(wx, torch.ones_like(mask), None, *rest, **kw)
        ones_y = func(torch.ones_like(wx), torch.ones_like(mask), None, *rest, **kw)
    batched = x.dim() == w.dim()
    rows = x.shape[0] if batched else 1
    per_row_out = ones_y[0].numel() if batched else ones_y.numel()
    if func in _TRANSPOSED:
        flops = (x.numel() // rows) * w[0].numel() * rows
    else:
        flops = per_row_out * w[0].numel() * rows
    del ones_y
    return ops, float(dense_y.sum()), spikes, float(wx.sum()), flops, w


def linear_ops(args: tuple, kwargs: dict, spiking: bool) -> tuple[float, float, bool, float, int, Tensor]:
    """``(ops, dense ops, as ACs, events, flops, weight)`` of ``F.linear(x, w)``: ``sum_i w(x)_i nnz(w[:, i])``."""
    x = args[0] if args else kwargs["input"]
    w = args[1] if len(args) > 1 else kwargs["weight"]
    spikes = _spikes(x, spiking)
    wx = _weighted(x, spikes).reshape(-1, x.shape[-1])
    column = wx.sum(0)
    ops = float(torch.dot(column, (w.detach() != 0).double().sum(0)))
    return ops, float(column.sum()) * w.shape[0], spikes, float(column.sum()), wx.shape[0] * w.numel(), w


def _input_product(stats: FunctionalStats, x: Tensor, weight: Tensor, spiking: bool) -> None:
    """Add ``x [rows, in] @ weight.T``'s mask-aware operations to ``stats``."""
    spikes = _spikes(x, spiking)
    wx = _weighted(x, spikes).reshape(-1, x.shape[-1])
    column = wx.sum(0)
    ops = float(torch.dot(column, (weight.detach() != 0).double().sum(0)))
    stats.add(ops, float(column.sum()) * weight.shape[0], spikes)
    stats.events += float(column.sum())
    stats.elements += wx.numel()
    stats.flops += wx.shape[0] * weight.numel()
    stats.outputs += wx.shape[0] * weight.shape[0]


def recurrent_ops(module: nn.Module, args: tuple, output: Any, stats: FunctionalStats, spiking: bool) -> bool:
    """Add one call of a recurrent module to ``stats``; False (nothing counted) for what this does
    not handle: packed sequences, ``num_layers > 1`` and LSTM projections."""
    x = args[0]
    hx = args[1] if len(args) > 1 else None
    if isinstance(module, nn.RNNCellBase):
        h = hx[0] if isinstance(hx, tuple) else hx
        _input_product(stats, x, module.weight_ih, spiking)
        if h is not None:
            _input_product(stats, h, module.weight_hh, spiking)
        stats.sample_shape = stats.sample_shape or tuple(x.shape[-1:])
        return True
    if not isinstance(x, Tensor) or module.num_layers != 1 or getattr(module, "proj_size", 0):
        return False
    out = output[0]
    h0 = hx[0] if isinstance(hx, tuple) else hx
    if module.batch_first and x.dim() == 3:
        x, out = x.transpose(0, 1), out.transpose(0, 1)  # [T, N, ...]
    if x.dim() == 2:  # unbatched [T, features]
        x, out = x.unsqueeze(1), out.unsqueeze(1)
        h0 = None if h0 is None else h0.unsqueeze(1)
    hidden = module.hidden_size
    for d, suffix in enumerate(("", "_reverse")[: 2 if module.bidirectional else 1]):
        _input_product(stats, x, getattr(module, f"weight_ih_l0{suffix}"), spiking)
        seq = out[..., d * hidden : (d + 1) * hidden]  # h_t of this direction, t = 0 .. T-1
        previous = seq[:-1] if d == 0 else seq[1:]  # the h_{t-1} each step reads (reverse: h_{t+1})
        if h0 is not None:
            previous = torch.cat((h0[d : d + 1], previous) if d == 0 else (previous, h0[d : d + 1]))
        if previous.numel():
            _input_product(stats, previous, getattr(module, f"weight_hh_l0{suffix}"), spiking)
    stats.sample_shape = stats.sample_shape or tuple(x.shape[-1:])
    return True


class FunctionalCounter(TorchFunctionMode):
    """Sees every torch function call while active; hands the counted ones (:data:`FUNCTIONS`) made
    outside the counted modules to ``record(function name, call args, kwargs)``."""

    def __init__(self, record, active):
        super().__init__()
        self.record = record
        self.active = active  # () -> whether a call now is the model's own (not inside a hooked layer)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = FUNCTIONS.get(func)
        if name is not None and self.active():
            self.record(func, name, args, kwargs)
        return func(*args, **kwargs)
