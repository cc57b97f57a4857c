"""The synaptic-operation counter: mask-aware ACs and MACs, and firing rates, of any network.

Counting rule (docs/concepts.md, "Counting synaptic operations"). For a synaptic layer
(``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d``, ``nn.Linear``) with weight mask
``M = 1[w != 0]`` and input ``x`` (one row: input elements ``i``):

    fan_out[i] = number of NONZERO weights that connect input element i to an output
               = (d / dx_i) sum(layer(x; M))                 (a transposed conv of ones with M)
    ACs  = sum_i x_i * fan_out[i]          x_i = number of spikes (integer counts, multiplicity)
    MACs = sum_i [x_i != 0] * fan_out[i]   x real-valued

which equals the brute force ``sum(conv(x, M))`` (resp. ``sum(conv(1[x != 0], M))``) by
linearity. Pruned synapses never count; ``dense_acs``/``dense_macs`` use the all-ones mask.
Other tools' rules (NeuroBench, syops, sinabs, the SNN papers' formula) are computed from the
same sums: :mod:`snn_lats.estimators.conventions`.

AC or MAC: in a spiking model, an input that is non-negative and integer-valued is spikes (or
SEW-ADD spike counts) and counts ACs; any other input (the encoding layer's image, average-pooled
features) counts MACs. In an ANN (``model.spiking`` False) every input counts MACs.
Non-negativity is tested element by element on every call; integrality element by element on
a layer's first batch of each input shape (and until its inputs of that shape are integers),
then through the column sums over the batch, which are integers whenever the inputs are. An
input that is the untouched output of one of SpikingJelly's spiking neurons (IF, LIF, PLIF,
QIF, EIF, Izhikevich, with a spiking surrogate) is 0/1 by construction (a Heaviside of the
membrane potential) and is not tested again.

``fan_out`` depends only on the mask and the input shape: it is computed once per (shape, weight
version) and cached. A forward adds one column sum per synaptic layer to running [K] sums,
split by what the batch held (:data:`~snn_lats.estimators.conventions.ROWS` of them); the ops
are their dot products with the cached fan-outs, taken when the weight changes or a report is
asked for. The per-layer ``acs + macs`` of the exact convention are therefore also "input events
x fan-out" of every synaptic layer, the measure a pruning budget needs.

The counter's parts: :mod:`.layers` (which modules are synaptic, neurons, normalisation, pooling),
:mod:`.fanout` (fan-outs and weight costs), :mod:`.accumulators` (what one layer keeps, and a
batch's column sums), :mod:`.conventions` and :mod:`.syops` (the other tools' rules), :mod:`.report`.
This module is the driver: the hooks, and the report assembled from the accumulators (~610
lines, half of them this docstring and the counter's; the hot path is one hook per layer).
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from snn_lats.estimators import conventions as cv
from snn_lats.estimators import functional as fn
from snn_lats.estimators.accumulators import (
    F32_EXACT,
    FanOutCache,
    NeuronStats,
    OtherStats,
    SynapseStats,
    input_columns,
)
from snn_lats.estimators.attention import attention_ops, is_attention
from snn_lats.estimators.energy import EnergyPreset, energy_preset
from snn_lats.estimators.fanout import InputEvents, fan_out, weight_cost, weight_shape
from snn_lats.estimators.layers import (
    ANN_ACTIVATIONS,
    BINARY_NEURONS,
    NEURONS,
    NORM_LAYERS,
    POOL_LAYERS,
    SYNAPTIC_LAYERS,
    is_spiking,
    sample_ndim,
)
from snn_lats.estimators.report import SOPReport
from snn_lats.estimators.syops import SyopsTally

__all__ = [
    "ANN_ACTIVATIONS",
    "InputEvents",
    "NORM_LAYERS",
    "POOL_LAYERS",
    "SYNAPTIC_LAYERS",
    "SynapticOpCounter",
    "fan_out",
    "is_spiking",
    "weight_cost",
]


class SynapticOpCounter:
    """Count synaptic operations and firing rates while a model runs.

    ::

        with SynapticOpCounter(model) as counter:
            for x, _ in loader:
                model(x)
        report = counter.report()

    Hooks every synaptic layer (:data:`SYNAPTIC_LAYERS`), every neuron layer (SpikingJelly
    neurons in a spiking model; the activation modules :data:`ANN_ACTIVATIONS` in an ANN) and
    the model itself (to count samples), and accumulates over any number of batches. It keeps
    running sums only (per layer and input shape: column sums the size of one row's input),
    never activations.

    ``convention``: how the operations are counted, one of
    :data:`~snn_lats.estimators.conventions.CONVENTIONS` (default ``"exact"``, mask-aware; the
    others reproduce NeuroBench, syops, sinabs and the SNN papers' formula).
    ``T``: time steps per sample for a static input (default: ``model.T``). A spiking model with
    neither is counted with the time steps unknown (a warning says so): per-step figures are then
    None and the paper convention refuses it. A sequence input ``[T, N, ...]`` (one dimension
    more than the first synaptic layer takes) gives its own length.
    ``extras``: also count bias adds, neuron updates, normalisation and pooling (extra columns;
    on with ``convention="syops"``, which charges them).
    ``training_only``: count only the forwards run in training mode with grad enabled, so that a
    counter left attached through a training loop skips the validation passes in between.
    ``events_only``: keep the column sums alone (:meth:`input_events`, :meth:`weight_costs`),
    without fan-outs, masks or :meth:`report`: the cheap way to measure a layer's input events
    while its weights change every step.

    :meth:`input_events` and :meth:`weight_costs` give the column sums behind the exact count,
    and what each weight adds to it (a pruning budget's costs).

    A module that holds a weight but is none of the kinds above is named in a warning: its
    operations are not counted.
    """

    # Long (~100 lines): the docstring of its six options, their checks, and the hooks attached.
    def __init__(
        self,
        model: nn.Module,
        *,
        convention: str = cv.DEFAULT_CONVENTION,
        T: int | None = None,
        extras: bool = False,
        functional: bool = False,
        training_only: bool = False,
        events_only: bool = False,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.convention = cv.check_convention(convention)
        if functional and convention != "exact":
            raise ValueError("functional=True counts by the exact rule only: use convention='exact'")
        self.functional = bool(functional)
        self.training_only = bool(training_only)
        self.events_only = bool(events_only)
        if events_only and (convention != "exact" or extras or functional):
            raise ValueError("events_only keeps the exact rule's column sums: no convention, extras or functional")
        self._active = True  # False during a forward that training_only skips
        self.spiking = is_spiking(model)
        self.extras = bool(extras) or convention == "syops"
        self._syops = SyopsTally() if convention == "syops" else None  # syops' per-call figures
        self.T, self.T_source = self._time_steps(model, T)
        neuron_types = NEURONS if self.spiking else ANN_ACTIVATIONS
        self._layers: list[tuple[str, nn.Module, Any]] = []
        self._caches: dict[int, FanOutCache] = {}
        self._neurons: dict[int, NeuronStats] = {}
        self._others: dict[int, OtherStats] = {}
        self._recurrent: dict[int, fn.FunctionalStats] = {}
        self._functional: dict[str, tuple[str, fn.FunctionalStats]] = {}  # row name -> (enclosing module, stats)
        self._attention: dict[int, fn.FunctionalStats] = {}  # spike-attention products (estimators.attention)
        unhandled = []
        for name, module in model.named_modules():
            label = name or type(module).__name__
            if is_attention(module):
                self._attention[id(module)] = fn.FunctionalStats(type=module.products)
                self._layers.append((label, module, self._attention[id(module)]))
            elif isinstance(module, SYNAPTIC_LAYERS):
                stats = SynapseStats(params=module.weight.numel())
                self._caches[id(module)] = FanOutCache(module, stats, self.events_only)
                self._layers.append((label, module, stats))
            elif isinstance(module, neuron_types):
                binary = type(module) in BINARY_NEURONS and getattr(module.surrogate_function, "spiking", False)
                self._neurons[id(module)] = NeuronStats(binary=bool(binary))
                self._layers.append((label, module, self._neurons[id(module)]))
            elif isinstance(module, fn.RECURRENT) and convention == "exact":
                stats = fn.FunctionalStats(type=type(module).__name__)
                self._recurrent[id(module)] = stats
                self._layers.append((label, module, stats))
            elif isinstance(module, NORM_LAYERS + POOL_LAYERS):
                if self.extras:
                    kind = "norm" if isinstance(module, NORM_LAYERS) else "pool"
                    self._others[id(module)] = OtherStats(kind)
                    self._layers.append((label, module, self._others[id(module)]))
            elif not isinstance(module, parametrize.ParametrizationList) and any(
                p.dim() >= 2 for p in module.parameters(recurse=False)
            ):
                unhandled.append(f"{label} ({type(module).__name__})")
        synaptic = [m for _, m, s in self._layers if isinstance(s, (SynapseStats, fn.FunctionalStats))]
        if not synaptic and not functional:
            raise ValueError(
                f"model has no synaptic layer ({', '.join(t.__name__ for t in SYNAPTIC_LAYERS)}, "
                "or a recurrent one); nothing to count"
            )
        if unhandled:
            inside = (
                "; only the F.conv*/F.linear/matmul calls in their forward are counted"
                if functional
                else " (functional=True counts the F.conv*/F.linear/matmul calls in their forward)"
            )
            warnings.warn(
                f"SynapticOpCounter does not count the operations of {', '.join(unhandled)}: "
                f"modules holding a weight of a kind it does not handle{inside}",
                stacklevel=2,
            )
        self._names = {id(m): name for name, m in model.named_modules()}
        self._stack: list[str] = []  # names of the model's modules running now (functional=True)
        self._inside = 0  # depth inside counted layers, whose own F.conv*/F.linear are not counted again
        self._mode: fn.FunctionalCounter | None = None
        # One dimension more than this is a [T, N, ...] sequence. A recurrent first layer takes
        # sequences of its own: [N, L, ...] (batch_first) or [L, N, ...], samples N, one step.
        first = synaptic[0] if synaptic else None
        self._recurrent_first = first if isinstance(first, nn.RNNBase) else None
        self._static_ndim = 2 if first is None or isinstance(first, fn.RECURRENT) else sample_ndim(first) + 1
        self.samples = 0
        self.sample_steps = 0  # sum over samples of their time steps (static inputs with T unknown: 0)
        self.static_samples = 0  # samples given as a static batch (the encoding layer runs once)
        self.sequence_samples = 0
        self._unknown_steps = 0  # static samples counted while T is unknown
        self._handles: list[Any] = []
        self._last_input: tuple | None = None
        # id(tensor) -> (weakref, version, neuron stats or None): 0/1 outputs of a neuron this forward.
        # With stats: the neuron left its spike count to the synaptic layer that reads the tensor
        # (its column sums hold it); ``_awaiting`` keeps such a tensor until then.
        self._binary_outputs: dict[int, tuple] = {}
        self._awaiting: dict[int, tuple[Tensor, NeuronStats, int]] = {}
        self._first_call = False

    @staticmethod
    def _time_steps(model: nn.Module, T: int | None) -> tuple[int | None, str]:
        source = "T="
        if T is None:
            T, source = getattr(model, "T", None), "model.T"
        if T is None:
            if is_spiking(model):
                warnings.warn(
                    f"{type(model).__name__} has no attribute T and no T= was given: the time steps of a "
                    "static input are unknown, and per-step figures will be None (pass T=)",
                    stacklevel=3,
                )
                return None, "unknown"
            return 1, "ANN"
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"{'T' if source == 'T=' else 'model.T'} must be a positive int, got {T!r}")
        return T, source

    # -- hooks ---------------------------------------------------------------------------------

    def __enter__(self) -> SynapticOpCounter:
        if self._handles:
            raise RuntimeError("this SynapticOpCounter is already attached (nested `with`)")
        if self.convention == "paper" and self.spiking and self.T is None:
            raise ValueError("the paper convention charges every layer per time step: pass T= (the model has no T)")
        self._handles.append(self.model.register_forward_pre_hook(self._count_samples, with_kwargs=True))
        self._handles.append(self.model.register_forward_hook(lambda *_: self._settle_awaiting()))
        for _, module, stats in self._layers:
            if isinstance(stats, SynapseStats):
                self._handles.append(module.register_forward_pre_hook(self._count_synapses, with_kwargs=True))
            elif id(module) in self._attention:
                self._handles.append(module.register_forward_hook(self._count_attention))
            elif isinstance(stats, fn.FunctionalStats):
                self._handles.append(module.register_forward_hook(self._count_recurrent))
            elif isinstance(stats, NeuronStats):
                self._handles.append(module.register_forward_hook(self._count_spikes))
            else:
                self._handles.append(module.register_forward_hook(self._count_other))
        if self.functional:
            from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

            self._handles.append(register_module_forward_pre_hook(self._enter_module))
            self._handles.append(register_module_forward_hook(self._leave_module))
            self._mode = fn.FunctionalCounter(self._count_functional, lambda: bool(self._stack) and not self._inside)
            self._mode.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()
        self._inside = 0
        self._last_input = None
        self._settle_awaiting()

    def _settle_awaiting(self) -> None:
        """Count the spikes of neuron outputs that no synaptic layer read (the neuron sums itself
        from now on), and forget this forward's outputs."""
        for y, stats, version in self._awaiting.values():
            if y._version != version:  # edited in place since the neuron emitted it
                warnings.warn(
                    "a spiking neuron's output was edited in place before any synaptic layer read it: "
                    "its firing rate counts the edited values",
                    stacklevel=2,
                )
            stats.totals.append(y.detach().sum(dtype=torch.float64))
            stats.consumed = False
        self._awaiting.clear()
        self._binary_outputs.clear()

    def _count_samples(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        x = next((a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)), None)
        if x is None or x.dim() == 0:
            raise TypeError("the model's first tensor argument must be a batch [N, ...] or [T, N, ...]")
        self._active = not self.training_only or (model.training and torch.is_grad_enabled())
        if not self._active:
            return
        recurrent = self._recurrent_first
        if recurrent is not None and x.dim() == 3:  # a batch of sequences: N of them, one step each
            n = x.shape[0] if recurrent.batch_first else x.shape[1]
            self.static_samples += n
            self.sample_steps += n * (self.T or 1)
        elif x.dim() == self._static_ndim + 1:
            n = x.shape[1]
            self.sample_steps += n * x.shape[0]
            self.sequence_samples += n
        else:
            n = x.shape[0]
            self.static_samples += n
            if self.T is None:
                self._unknown_steps += n
            else:
                self.sample_steps += n * self.T
        self.samples += n
        self._first_call = True
        self._settle_awaiting()

    def _count_synapses(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        # The hot path of the counter: kept to a few tensor ops and little Python per call.
        if not self._active:
            return
        x = args[0] if args else next(iter(kwargs.values()))
        cache = self._caches[id(module)]
        stats = cache.stats
        if self._first_call:
            self._first_call = False
            # A real-valued input (an image) makes the first layer an encoding layer; spike counts
            # (event-camera frames) are events already, and the layer is counted as the others are.
            if bool(((x < 0) | (x != torch.round(x))).any()):
                stats.encoding = True
            else:
                stats.event_input = True
        numel = x.numel()
        if not numel:
            return
        shape = x.shape[-cache.sample_ndim :]
        output_padding = self._output_padding(module, x, args, kwargs) if cache.transposed else None
        entry = cache.shape(shape, x.device, output_padding)
        k = entry.k
        if not k:
            return
        # Inference-mode tensors have no version counter: an in-place edit would go unseen.
        version = None if x.is_inference() else x._version
        last = self._last_input
        if last is not None and last[0]() is x and version is not None and last[1] == version and last[2] == k:
            columns, spiking_nb = last[3], last[4]  # the same tensor again (a shortcut conv): the same sums
        else:
            xv = (x.detach() if x.requires_grad else x).reshape(-1, k)
            known = self._binary_outputs.get(id(x))
            if known is not None and version is not None and known[1] == version and known[0]() is x:
                col = xv.sum(0, dtype=torch.float32 if xv.shape[0] < F32_EXACT else torch.float64)
                columns, spiking_nb = [(cv.BINARY, col)], True  # 0/1 by construction
                neuron = known[2]
                neuron.consumed = True
                if self._awaiting.pop(id(x), None) is not None:  # the neuron left its count to us
                    neuron.columns.append(col)
            else:
                columns, spiking_nb = input_columns(cache, shape, xv, self.convention, self.spiking)
            self._last_input = (weakref.ref(x), version, k, columns, spiking_nb)  # weak: keeps no activation
        rows = numel // k
        recent = entry.recent
        for item in columns:
            recent.append(item)
        if len(recent) >= 32:
            entry.gather()
        entry.rows += rows
        if spiking_nb:
            entry.rows_neurobench_spiking += rows
        stats.elements += numel
        if stats.sample_shape is None:
            stats.sample_shape = tuple(shape)
        if self.extras and module.bias is not None:
            stats.extra_ops += rows * entry.out_elements
        if self._syops is not None:
            self._syops.synapse(module, x, columns, rows, entry.flops_row, entry.out_elements)

    @staticmethod
    def _output_padding(module: nn.Module, x: Tensor, args: tuple, kwargs: dict) -> tuple:
        """A transposed layer's output padding for this call (``output_size=`` may set it)."""
        size = args[1] if len(args) > 1 else kwargs.get("output_size")
        nd = len(module.kernel_size)
        return tuple(
            module._output_padding(x, size, module.stride, module.padding, module.kernel_size, nd, module.dilation)
        )

    def _count_spikes(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not self._active:
            return
        if not isinstance(output, Tensor):
            return
        numel = output.numel()
        if not numel:
            return
        y = output.detach() if output.requires_grad else output
        stats = self._neurons[id(module)]
        if stats.sample_shape is None:
            # A multi-step neuron sees [T, N, ...]; a single-step one and an activation [N, ...].
            lead = 2 if getattr(module, "step_mode", "s") == "m" or y.dim() > self._static_ndim else 1
            stats.sample_shape = tuple(y.shape[lead:])
        if len(stats.totals) >= 256 or len(stats.columns) >= 256:
            stats.fold()
        if self.spiking:
            if stats.binary and not output.is_inference():
                self._binary_outputs[id(output)] = (weakref.ref(output), output._version, stats)
                if stats.consumed:  # a synaptic layer read it last time: it will sum it again
                    self._awaiting[id(output)] = (output, stats, output._version)
                else:  # 0/1: a float32 sum is exact below 2**24
                    stats.totals.append(y.sum(dtype=torch.float32 if numel < F32_EXACT else torch.float64))
            else:
                stats.totals.append(y.sum(dtype=torch.float64))
        else:
            stats.totals.append(torch.count_nonzero(y))
        stats.elements += numel
        if self.extras and self.spiking:
            stats.extra_ops += numel  # one membrane update per neuron and step
        if self._syops is not None:
            self._syops.neuron(module, args, y, self.spiking)

    def _enter_module(self, module: nn.Module, args: tuple) -> None:
        name = self._names.get(id(module))
        if name is not None:
            self._stack.append(name)
            if id(module) in self._caches or id(module) in self._recurrent or id(module) in self._attention:
                self._inside += 1

    def _leave_module(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._names.get(id(module)) is not None and self._stack:
            self._stack.pop()
            if id(module) in self._caches or id(module) in self._recurrent or id(module) in self._attention:
                self._inside -= 1

    def _count_functional(self, func, name: str, args: tuple, kwargs: dict) -> None:
        """One functional call made in the model's forward (:mod:`~snn_lats.estimators.functional`)."""
        if not self._active:
            return
        enclosing = self._stack[-1]
        key = f"{enclosing}.{name}" if enclosing else name
        if key not in self._functional:
            self._functional[key] = (enclosing, fn.FunctionalStats(type=name))
        stats = self._functional[key][1]
        first = args[0] if args else kwargs.get("input")
        if name in ("matmul", "mm", "bmm"):
            ops, dense, as_acs, events, flops = fn.product_ops(args[0], args[1], self.spiking)
            weight = None
        elif name == "linear":
            ops, dense, as_acs, events, flops, weight = fn.linear_ops(args, kwargs, self.spiking)
        else:
            ops, dense, as_acs, events, flops, weight = fn.conv_ops(func, args, kwargs, self.spiking)
        stats.add(ops, dense, as_acs)
        stats.events += events
        stats.elements += first.numel()
        stats.flops += flops
        if weight is not None:
            stats.params = weight.numel()
            stats.nonzero_params = int((weight != 0).sum())
        stats.sample_shape = stats.sample_shape or tuple(first.shape[1:])

    def _count_recurrent(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not self._active:
            return
        stats = self._recurrent[id(module)]
        if not fn.recurrent_ops(module, args, output, stats, self.spiking):
            warnings.warn(
                f"SynapticOpCounter does not count {self._names.get(id(module)) or type(module).__name__} "
                f"({type(module).__name__}): packed sequences, num_layers > 1 and LSTM projections are not handled",
                stacklevel=2,
            )
        weights = [p for n, p in module.named_parameters() if n.startswith("weight")]
        stats.params = sum(w.numel() for w in weights)
        stats.nonzero_params = sum(int((w != 0).sum()) for w in weights)

    def _count_attention(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not self._active:
            return
        stats = self._attention[id(module)]
        ops = attention_ops(module.products, args, self.spiking)
        stats.add(ops.ops, ops.dense, ops.as_acs)
        stats.events += ops.events
        stats.elements += ops.elements
        stats.flops += ops.flops
        stats.outputs += output.numel()
        stats.sample_shape = stats.sample_shape or tuple(args[0].shape[1:])

    def attention_ops(self) -> tuple[float, float]:
        """``(ACs, MACs)`` of the spike-attention products counted so far, by the exact rule
        (totals over all samples): what pruning moves only through the spikes it changes."""
        return (sum(s.acs for s in self._attention.values()), sum(s.macs for s in self._attention.values()))

    def _count_other(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not self._active:
            return
        x = args[0] if args else None
        if not isinstance(x, Tensor) or x.numel() == 0:
            return
        stats = self._others[id(module)]
        if stats.sample_shape is None:
            stats.sample_shape = tuple(x.shape[1:])
        affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
        ops = x.numel() * (2 if stats.kind == "norm" and affine else 1)
        stats.elements += x.numel()
        stats.extra_ops += ops
        if self._syops is not None:
            self._syops.other(module, x, ops)

    # -- report --------------------------------------------------------------------------------

    def input_events(self) -> dict[str, list[InputEvents]]:
        """The column sums behind the exact count of every synaptic layer module (by the names of
        :meth:`report`'s rows), one :class:`InputEvents` per input shape, totals so far."""
        return {name: self._caches[id(module)].input_events() for name, module, stats in self._layers
                if isinstance(stats, SynapseStats)}  # fmt: skip

    def weight_costs(self, preset: str | EnergyPreset | None = None) -> dict[str, Tensor]:
        """What every weight adds per sample to the exact count when it is nonzero (:func:`weight_cost`
        over every input shape, divided by the samples counted): operations (``preset`` None) or
        energy in pJ (``ac_pj``, ``mac_pj`` of an :data:`ENERGY_PRESETS` name or an
        :class:`EnergyPreset`). For the weights in force while counting,
        ``sum_w 1[w != 0] * cost[w]`` is the report's ``acs + macs`` per sample (or its energy)."""
        if self.samples == 0:
            raise ValueError("nothing was counted yet: weight_costs() needs at least one forward")
        ac, mac = (1.0, 1.0) if preset is None else energy_preset(preset)[:2]
        costs = {}
        for name, module, stats in self._layers:
            if not isinstance(stats, SynapseStats):
                continue
            total = torch.zeros(weight_shape(module), dtype=torch.float64)  # a layer never called costs 0
            for item in self._caches[id(module)].input_events():
                total = weight_cost(module, item, ac, mac) + total.to(item.spikes.device)
            costs[name] = total / self.samples
        return costs

    def report(self) -> SOPReport:
        """The counts so far, as a :class:`SOPReport` (one row per layer, in network order)."""
        if self.events_only:
            raise ValueError("this counter keeps input events only (events_only=True): use input_events()")
        if self.samples == 0:
            raise ValueError(
                "nothing was counted: run the model inside `with SynapticOpCounter(model):` "
                "on at least one batch before calling report()"
            )
        for cache in self._caches.values():
            cache.flush()
        steps = self.T if self.T is not None else 1
        sample_steps_all = self.sample_steps + self._unknown_steps * steps
        rows = []
        for name, module, stats in self._layers:
            row = {"name": name, "type": type(module).__name__, "kind": stats.kind, "input_shape": stats.sample_shape}
            if id(module) in self._attention:
                row |= self._attention_figures(stats)
            elif isinstance(stats, fn.FunctionalStats):
                row |= self._functional_figures(stats)
            else:
                row |= self._figures(module, self._caches.get(id(module)), stats, sample_steps_all)
            rows.append(row)
        for key, (enclosing, stats) in self._functional.items():
            # After the enclosing module's own rows (and those of the modules inside it).
            inside = [i for i, r in enumerate(rows) if not enclosing or r["name"] == enclosing or
                      r["name"].startswith(enclosing + ".")]  # fmt: skip
            row = {"name": key, "type": stats.type, "kind": "synaptic", "input_shape": stats.sample_shape}
            rows.insert((inside[-1] + 1) if inside else len(rows), row | self._functional_figures(stats))
        encoding = next((name for name, _, s in self._layers if getattr(s, "encoding", False)), None)
        event_input = next((name for name, _, s in self._layers if getattr(s, "event_input", False)), None)
        return SOPReport.build(
            rows,
            self.samples,
            self.sample_steps if self.T is not None or not self._unknown_steps else None,
            self.spiking,
            type(self.model).__name__,
            convention=self.convention,
            counted={
                "time_steps_from": self.T_source if self.static_samples else "sequence length",
                "static_samples": self.static_samples,
                "sequence_samples": self.sequence_samples,
                "encoding_layer": encoding,
                "event_input_layer": event_input if encoding is None else None,
                "attention_modules": len(self._attention),
                "extras": self.extras,
            },
        )

    def _functional_figures(self, stats: fn.FunctionalStats) -> dict[str, Any]:
        figures = stats.figures()
        if self.extras:
            figures["extra_ops"] = 0
        return figures

    def _attention_figures(self, stats: fn.FunctionalStats) -> dict[str, Any]:
        """A spike-attention row under the convention: the exact count; the papers' ``fr × FL``;
        none for the tools that hook weighted layers only (NeuroBench, syops, sinabs)."""
        figures = self._functional_figures(stats)
        if self.convention == "paper":
            rate = stats.events / stats.elements if stats.elements else 0.0
            key = "acs" if stats.dense_acs else "macs"
            value = rate * stats.flops if key == "acs" else float(stats.flops)
            figures |= {"acs": 0, "macs": 0, "dense_acs": 0, "dense_macs": 0}
            figures[key] = figures[f"dense_{key}"] = _number(value)
        elif self.convention != "exact":
            figures |= {"acs": 0, "macs": 0, "dense_acs": 0, "dense_macs": 0}
        return figures

    def _figures(self, module: nn.Module, cache: FanOutCache | None, stats: Any, sample_steps: int) -> dict[str, Any]:
        figures: dict[str, Any] = dict.fromkeys(
            ("params", "nonzero_params", "input_event_rate", "acs", "macs", "dense_acs", "dense_macs", "flops")
        )
        figures["output_elements"] = figures["input_events"] = None
        figures["firing_rate"] = None
        if self.extras:
            figures["extra_ops"] = _number(stats.extra_ops)
        if cache is not None:
            acs = macs = dense_acs = dense_macs = events = flops = outputs = 0.0
            layer_rows = sum(s.rows for s in cache.shapes.values())
            convention = "exact" if self.convention == "syops" else self.convention  # (events; syops below)
            for key, entry in cache.shapes.items():
                ops = cv.layer_ops(convention, cache.accumulated(key), sample_steps / layer_rows, self.spiking)
                acs, macs = acs + ops.acs, macs + ops.macs
                dense_acs, dense_macs = dense_acs + ops.dense_acs, dense_macs + ops.dense_macs
                events += ops.events
                flops += entry.flops_row * entry.rows
                outputs += entry.out_elements * entry.rows
            if self._syops is not None:
                acs, macs = dense_acs, dense_macs = self._syops.figures(module)
            figures |= {
                "params": stats.params,
                "nonzero_params": stats.nonzero_params,
                "input_event_rate": events / stats.elements if stats.elements else None,
                "input_events": _number(events),
                "acs": _number(acs),
                "macs": _number(macs),
                "dense_acs": _number(dense_acs),
                "dense_macs": _number(dense_macs),
                "flops": int(flops),
                "output_elements": int(outputs),
            }
            return figures
        if isinstance(stats, NeuronStats):
            stats.fold()
            figures["firing_rate"] = stats.spikes / stats.elements if stats.elements else None
            figures["output_elements"] = stats.elements
        if self._syops is not None:
            figures["acs"], figures["macs"] = (_number(v) for v in self._syops.figures(module))
        return figures


def _number(value: float) -> int | float:
    """An integral count as an int (exact conventions), a fractional one (rate-based) as a float."""
    return int(value) if float(value).is_integer() else value
