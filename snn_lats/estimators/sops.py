"""The synaptic-operation counter: mask-aware ACs and MACs, and firing rates, of any network.

Counting rule (docs/concepts.md, "Counting synaptic operations"). For a synaptic layer
(``nn.Conv1d/2d/3d``, ``nn.Linear``) with weight mask ``M = 1[w != 0]`` and input ``x`` (one
sample: input elements ``i``):

    fan_out[i] = number of NONZERO weights that connect input element i to an output
               = (d / dx_i) sum(layer(x; M))                 (a transposed conv of ones with M)
    ACs  = sum_i x_i * fan_out[i]          x_i = number of spikes (integer counts, multiplicity)
    MACs = sum_i [x_i != 0] * fan_out[i]   x real-valued

which equals the brute force ``sum(conv(x, M))`` (resp. ``sum(conv(1[x != 0], M))``) by
linearity. Pruned synapses (zero weights) never count; ``dense_acs``/``dense_macs`` use the
all-ones mask instead, to show what pruning saved.

AC or MAC: in a spiking model, an input that is non-negative and integer-valued is spikes (or
SEW-ADD spike counts) and counts ACs; any other input (the encoding layer's image, average-pooled
features) counts MACs. In an ANN (``model.spiking`` False) every input counts MACs.
Non-negativity is tested element by element on every call; integrality element by element on
a layer's first batch of each input shape (and until its inputs of that shape are integers),
then through the column sums over the batch, which are integers whenever the inputs are. So a
batch can be taken for spikes wrongly only if it follows spike batches and its fractional
values add up to integers in every column: never for spikes, images or pooled features.

``fan_out`` depends only on the mask and the input shape: it is computed once per (shape, weight
version) and cached. A forward costs one column sum over each synaptic layer's input, added to a
running [K] sum; the ops are the dot products of those sums with the cached pruned and dense
fan-outs, taken when a report is asked for or the weight changes. The counts become a
:class:`~snn_lats.estimators.report.SOPReport`.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from spikingjelly.activation_based.neuron import BaseNode
from torch import Tensor, nn
from torch.nn.utils import parametrize

from snn_lats.estimators.report import SOPReport

__all__ = ["SYNAPTIC_LAYERS", "ANN_ACTIVATIONS", "SynapticOpCounter", "fan_out", "is_spiking"]

SYNAPTIC_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

# The neuron layers of an ANN: element-wise activation modules. Their "firing rate" is the
# fraction of nonzero outputs (activation sparsity); functional activations (F.relu) are not seen.
ANN_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)

_F32_EXACT = 2**24  # float32 represents every integer below this exactly
_F64_EXACT = 2**53  # and float64 every integer below this


def is_spiking(model: nn.Module) -> bool:
    """``model.spiking`` when present, else whether the model holds a SpikingJelly neuron."""
    spiking = getattr(model, "spiking", None)
    if spiking is not None:
        return bool(spiking)
    return any(isinstance(m, BaseNode) for m in model.modules())


def _sample_ndim(module: nn.Module) -> int:
    """Dimensions of one sample's input to a synaptic layer: (C, *spatial) or (features,)."""
    return 1 if isinstance(module, nn.Linear) else len(module.kernel_size) + 1


def _all_counts(x: Tensor) -> bool:
    """Whether every element of ``x`` is an integer (a spike count), exactly.

    ``x`` is a float tensor with no negative element: :meth:`SynapticOpCounter._classify` settles
    bool, integer and negative inputs before it asks. For x >= 0, frac(x) >= 0, and a float sum
    of non-negative terms is 0 only if every term is, so ``sum(frac(x)) == 0`` is exact.
    frac(inf) and frac(NaN) are NaN: not counts.
    """
    return x.frac().sum().item() == 0


def _exact_total(y: Tensor) -> float:
    """sum(y) for non-negative ``y``: float32, redone in float64 past float32's exact range."""
    total = float(y.sum(dtype=torch.float32))
    return float(y.sum(dtype=torch.float64)) if total >= _F32_EXACT else total


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


def fan_out(module: nn.Module, mask: Tensor, sample_shape: tuple[int, ...], device: torch.device) -> Tensor:
    """fan_out[i] = sum over outputs of ``mask`` weights touching input element i, as int64 [K].

    The gradient of sum(layer(x; mask)) with respect to x: a transposed convolution of ones
    with the mask, respecting stride, padding (and padding_mode), dilation and groups.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.ones((1, *sample_shape), dtype=torch.float64, device=device, requires_grad=True)
        w = mask.to(device=device, dtype=torch.float64)
        if isinstance(module, nn.Linear):
            y = torch.nn.functional.linear(x, w)
        else:
            y = module._conv_forward(x, w, None)
        (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    return grad.reshape(-1).round().to(torch.int64)


@dataclass
class _SynapseStats:
    kind: ClassVar[str] = "synaptic"
    acs: int = 0
    macs: int = 0
    dense_acs: int = 0
    dense_macs: int = 0
    events: int = 0  # spikes (AC inputs) or nonzero inputs (MAC inputs)
    elements: int = 0
    sample_shape: tuple[int, ...] | None = None
    params: int | None = None
    nonzero_params: int | None = None

    def figures(self) -> dict[str, Any]:
        """The figures of this layer's report row; ``input_event_rate`` = events / input elements."""
        return {
            "params": self.params,
            "nonzero_params": self.nonzero_params,
            "input_event_rate": self.events / self.elements if self.elements else None,
            "acs": self.acs,
            "macs": self.macs,
            "dense_acs": self.dense_acs,
            "dense_macs": self.dense_macs,
            "firing_rate": None,
        }


@dataclass
class _NeuronStats:
    kind: ClassVar[str] = "neuron"
    spikes: float = 0.0  # spikes (SNN) or nonzero activations (ANN)
    elements: int = 0
    sample_shape: tuple[int, ...] | None = None

    def figures(self) -> dict[str, Any]:
        """The figures of this layer's report row; ``firing_rate`` = spikes / output elements."""
        return {
            "params": None,
            "nonzero_params": None,
            "input_event_rate": None,
            "acs": None,
            "macs": None,
            "dense_acs": None,
            "dense_macs": None,
            "firing_rate": self.spikes / self.elements if self.elements else None,
        }


class _FanOutCache:
    """The fan-outs of one synaptic layer per input shape, and its pending column sums.

    Per (input shape, device): a float64 matrix [3, K] (pruned fan_out, dense fan_out, ones)
    and two float64 accumulators [K]: the column sums over every batch since the weight last
    changed, of spike counts (AC inputs) and of nonzero inputs (MAC inputs). ACs and MACs are
    linear in them, so one matrix-vector product per accumulator turns them into ops, dense ops
    and events, when the weight changes or a report is asked for: a forward only adds its
    column sums.

    The weight counts as unchanged while every tensor it derives from (the weight, or θ and the
    thresholds of a parametrization) is still in place with the same version and storage:
    PyTorch bumps ``Tensor._version`` on every in-place edit (optimiser steps,
    ``load_state_dict``, ``w[...] = 0`` under no_grad, ``threshold.fill_``), and reassigning a
    parameter or buffer, or attaching a parametrization, is seen too. In-place edits through
    ``.data`` bypass the version counter and are not seen.
    """

    def __init__(self, module: nn.Module, stats: _SynapseStats):
        self.module = module
        self.stats = stats
        self.sample_ndim = _sample_ndim(module)
        self.state: tuple | None = None
        self.mask: Tensor | None = None
        self.matrices: dict[tuple, Tensor] = {}
        self.dense: dict[tuple, Tensor] = {}  # depends on the shape only
        self.pending: dict[tuple, tuple[Tensor, Tensor]] = {}  # (AC, MAC) column sums
        self.integer_inputs: dict[tuple, bool] = {}  # per input shape: were its inputs integers

    def _refresh(self) -> None:
        self.flush()
        self.state = _weight_state(self.module)
        with torch.no_grad():
            self.mask = self.module.weight.detach() != 0
        self.matrices.clear()
        self.stats.params = self.mask.numel()
        self.stats.nonzero_params = int(self.mask.sum())

    def flush(self) -> None:
        """Turn the pending column sums into counts (with the fan-outs they were taken under)."""
        for key, (acs_col, macs_col) in self.pending.items():
            matrix = self.matrices[key]
            for col, as_acs in ((acs_col, True), (macs_col, False)):
                ops, dense_ops, events = torch.mv(matrix, col).tolist()
                if dense_ops >= _F64_EXACT:  # past float64's exact integers: redo in int64
                    ops, dense_ops, events = (matrix.long() * col.long()).sum(1).tolist()
                if as_acs:
                    self.stats.acs += int(ops)
                    self.stats.dense_acs += int(dense_ops)
                else:
                    self.stats.macs += int(ops)
                    self.stats.dense_macs += int(dense_ops)
                self.stats.events += int(events)
        self.pending.clear()

    def add(self, shape: tuple[int, ...], col: Tensor, as_acs: bool) -> None:
        """Add the column sums ``col`` [K] of one batch (spike counts, or nonzero inputs)."""
        if self.state is None or not _same_weight_state(self.module, self.state):
            self._refresh()
        key = (shape, col.device)
        pending = self.pending.get(key)
        if pending is None:
            if key not in self.matrices:
                if key not in self.dense:
                    self.dense[key] = fan_out(self.module, torch.ones_like(self.mask), shape, col.device)
                pruned = fan_out(self.module, self.mask, shape, col.device)
                self.matrices[key] = torch.stack((pruned, self.dense[key], torch.ones_like(pruned))).double()
            k = self.matrices[key].shape[1]
            pending = self.pending[key] = (
                torch.zeros(k, dtype=torch.float64, device=col.device),
                torch.zeros(k, dtype=torch.float64, device=col.device),
            )
        pending[0 if as_acs else 1].add_(col)


class SynapticOpCounter:
    """Count mask-aware synaptic operations and firing rates while a model runs.

    ::

        with SynapticOpCounter(model) as counter:
            for x, _ in loader:
                model(x)
        report = counter.report()

    Hooks every synaptic layer (``nn.Conv1d/2d/3d``, ``nn.Linear``), every neuron layer
    (SpikingJelly ``BaseNode`` in a spiking model; the activation modules ``ANN_ACTIVATIONS`` in
    an ANN) and the model itself (to count samples), and accumulates over any number of
    batches. It keeps running sums only (per layer and input shape: column sums the size of one
    sample's input), never activations.

    Samples: the model's input is ``[N, ...]`` or a sequence ``[T, N, ...]``, told apart by
    having one dimension more than the first synaptic layer takes (``[N, C, H, W]`` for a
    Conv2d). Time steps per sample: the sequence length, else ``model.T`` (default 1).
    """

    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.spiking = is_spiking(model)
        T = getattr(model, "T", 1)
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"model.T must be a positive int, got {T!r}")
        self.T = T
        neuron_types = (BaseNode,) if self.spiking else ANN_ACTIVATIONS
        self._layers: list[tuple[str, nn.Module, _SynapseStats | _NeuronStats]] = []
        self._caches: dict[int, _FanOutCache] = {}
        self._neurons: dict[int, _NeuronStats] = {}
        for name, module in model.named_modules():
            if isinstance(module, SYNAPTIC_LAYERS):
                stats = _SynapseStats(params=module.weight.numel())
                self._caches[id(module)] = _FanOutCache(module, stats)
                self._layers.append((name or type(module).__name__, module, stats))
            elif isinstance(module, neuron_types):
                self._neurons[id(module)] = _NeuronStats()
                self._layers.append((name or type(module).__name__, module, self._neurons[id(module)]))
        synaptic = [m for _, m, s in self._layers if isinstance(s, _SynapseStats)]
        if not synaptic:
            raise ValueError(
                f"model has no synaptic layer ({', '.join(t.__name__ for t in SYNAPTIC_LAYERS)}); nothing to count"
            )
        # One dimension more than this is a [T, N, ...] sequence.
        self._static_ndim = _sample_ndim(synaptic[0]) + 1
        self.samples = 0
        self.sample_steps = 0  # sum over samples of their time steps
        self._handles: list[Any] = []
        self._last_input: tuple | None = None

    # -- hooks ---------------------------------------------------------------------------------

    def __enter__(self) -> SynapticOpCounter:
        if self._handles:
            raise RuntimeError("this SynapticOpCounter is already attached (nested `with`)")
        self._handles.append(self.model.register_forward_pre_hook(self._count_samples, with_kwargs=True))
        for _, module, stats in self._layers:
            if isinstance(stats, _SynapseStats):
                self._handles.append(module.register_forward_pre_hook(self._count_synapses, with_kwargs=True))
            else:
                self._handles.append(module.register_forward_hook(self._count_spikes))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._last_input = None

    def _count_samples(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        x = next((a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)), None)
        if x is None or x.dim() == 0:
            raise TypeError("the model's first tensor argument must be a batch [N, ...] or [T, N, ...]")
        if x.dim() == self._static_ndim + 1:
            steps, n = x.shape[0], x.shape[1]
        else:
            steps, n = self.T, x.shape[0]
        self.samples += n
        self.sample_steps += n * steps

    def _count_synapses(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else next(iter(kwargs.values()))
        cache = self._caches[id(module)]
        shape = tuple(x.shape[-cache.sample_ndim :])
        k = math.prod(shape)
        if x.numel() == 0 or k == 0:
            return
        stats = cache.stats
        if stats.sample_shape is None:
            stats.sample_shape = shape
        # Inference-mode tensors have no version counter: an in-place edit would go unseen.
        version = None if x.is_inference() else x._version
        last = self._last_input
        if last is not None and last[0]() is x and version is not None and last[1] == version and last[2] == k:
            as_acs, col = last[3], last[4]  # the same tensor again (a shortcut conv): same counts
        else:
            xv = x.detach().reshape(-1, k)
            as_acs, col = self._classify(cache, shape, xv) if self.spiking else (False, None)
            if not as_acs:  # nonzero inputs per element, summed over the batch
                col = torch.count_nonzero(xv, dim=0)
            self._last_input = (weakref.ref(x), version, k, as_acs, col)  # weak: keeps no activation
        cache.add(shape, col, as_acs)
        stats.elements += x.numel()

    @staticmethod
    def _classify(cache: _FanOutCache, shape: tuple[int, ...], xv: Tensor) -> tuple[bool, Tensor | None]:
        """(counts, column sums): whether ``xv`` [B, K] is spikes, and then its exact sums over B.

        Non-negativity is tested element by element on every call. Integrality too on the
        layer's first batch of this input shape (and until its inputs of this shape were
        integers); after that, through the column sums: a fractional one proves a fractional
        input, and integral ones are taken for counts.

        A float32 sum of non-negative integers is exact if the computed total is below 2**24
        (below it every partial sum was exact; past it, rounding only moves up); otherwise the
        columns are summed again in float64 (exact to 2**53).
        """
        if xv.dtype == torch.bool:
            return True, xv.sum(0, dtype=torch.int64)
        if torch.amin(xv).item() < 0:
            return False, None
        if not xv.dtype.is_floating_point:
            return True, xv.sum(0, dtype=torch.int64)
        col = xv.sum(0, dtype=torch.float32) if xv.dtype != torch.float64 else None
        if col is None or col.max().item() >= _F32_EXACT:
            col = xv.sum(0, dtype=torch.float64)
        if col.frac().sum().item() != 0:
            return False, None
        if not cache.integer_inputs.get(shape, False):
            cache.integer_inputs[shape] = _all_counts(xv)
        return cache.integer_inputs[shape], col

    def _count_spikes(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not isinstance(output, Tensor) or output.numel() == 0:
            return
        y = output.detach()
        stats = self._neurons[id(module)]
        if stats.sample_shape is None:
            # A multi-step neuron sees [T, N, ...]; a single-step one and an activation [N, ...].
            lead = 2 if getattr(module, "step_mode", "s") == "m" else 1
            stats.sample_shape = tuple(y.shape[lead:])
        stats.spikes += _exact_total(y) if self.spiking else int(torch.count_nonzero(y))
        stats.elements += y.numel()

    # -- report --------------------------------------------------------------------------------

    def report(self) -> SOPReport:
        """The counts so far, as a :class:`SOPReport` (one row per layer, in network order)."""
        if self.samples == 0:
            raise ValueError(
                "nothing was counted: run the model inside `with SynapticOpCounter(model):` "
                "on at least one batch before calling report()"
            )
        for cache in self._caches.values():
            cache.flush()
        rows = [
            {"name": name, "type": type(module).__name__, "kind": stats.kind, "input_shape": stats.sample_shape}
            | stats.figures()
            for name, module, stats in self._layers
        ]
        return SOPReport.build(rows, self.samples, self.sample_steps, self.spiking, type(self.model).__name__)
