"""``CostMeter``: what each pruned weight costs per sample, measured on the training forwards.

A weight's cost is what it adds to the exact synaptic-operation count when it is nonzero: the
input events it multiplies, per sample (``"sops"``), or those events times the energy of one
AC or MAC (``"energy"``, pJ). :func:`snn_lats.estimators.fanout.weight_cost` computes it from the
column sums a :class:`~snn_lats.estimators.SynapticOpCounter` keeps, so that
``Σ_{w ≠ 0} cost_w`` is the counter's count of the measured forwards, exactly (linearity).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from snn_lats.estimators import SYNAPTIC_LAYERS, SynapticOpCounter, is_spiking
from snn_lats.estimators.energy import DEFAULT_PRESET, EnergyPreset, energy_preset
from snn_lats.estimators.fanout import InputEvents, weight_cost
from snn_lats.estimators.functional import RECURRENT

__all__ = ["CostMeter", "Measurement", "check_reachable"]


class Measurement(NamedTuple):
    """Per sample, over ``samples`` training samples: ``costs`` of every pruned weight (float64,
    shaped like the weight) and ``fixed``, the count of the synaptic layers left out of the
    pruning (their weights as they are) and of the spike-attention products (no weights)."""

    costs: dict[str, torch.Tensor]
    fixed: float
    samples: int

    @property
    def dense(self) -> float:
        """The network's cost with every pruned weight kept."""
        return self.fixed + sum(float(c.sum()) for c in self.costs.values())


class CostMeter:
    """Measures the costs of the pruned weights on the training forwards it is armed for.

    ``layers``: the pruned modules by name; ``cost``: ``"sops"`` or ``"energy"`` (pJ, by
    ``preset``: a name of :data:`~snn_lats.estimators.ENERGY_PRESETS` or an
    :class:`~snn_lats.estimators.EnergyPreset`). While :meth:`arm`-ed, a
    :class:`~snn_lats.estimators.SynapticOpCounter` (``training_only=True``: validation passes
    are skipped) is attached to the model; :meth:`take` turns what it counted into costs and
    starts afresh. Under ``torch.distributed`` the counts of every process are summed first, so
    that every process computes the same costs.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Mapping[str, nn.Module],
        cost: str,
        preset: str | EnergyPreset | None = None,
    ) -> None:
        self.cost = cost  # "sops" or "energy" (PruningSpec checks it, and that a preset prices energy)
        self.preset = energy_preset(DEFAULT_PRESET if preset is None else preset) if cost == "energy" else None
        unhandled = [f"{name} ({type(m).__name__})" for name, m in layers.items() if not isinstance(m, SYNAPTIC_LAYERS)]
        if unhandled:
            raise ValueError(
                f"the synaptic-operation counter does not count {', '.join(unhandled)}: their cost is unknown; "
                "exclude them from the pruning"
            )
        recurrent = [name or type(m).__name__ for name, m in model.named_modules() if isinstance(m, RECURRENT)]
        if recurrent:
            raise ValueError(
                f"{', '.join(recurrent)}: recurrent layers are counted by the counter but carry no weight a "
                "cost-weighted pruner can steer; their operations would be outside the budget"
            )
        spiking = is_spiking(model)
        if self.preset is not None:
            if self.preset.ac_pj == 0 and self.preset.mac_pj == 0:
                raise ValueError("the energy preset prices neither ACs nor MACs: every weight would cost 0 pJ")
            if not spiking and self.preset.mac_pj == 0:
                raise ValueError(
                    f"{type(model).__name__} is not spiking: every operation of it is a MAC, and the energy preset "
                    f"prices ACs only (mac_pj = 0); give a preset that prices MACs"
                )
        self.model = model
        self.layers = dict(layers)
        self._T = None if getattr(model, "T", None) is not None or not spiking else 1  # events need no T
        self._counter: SynapticOpCounter | None = self._new_counter()  # also checks the model has synapses
        self._armed = False
        self._carried: dict[str, dict[tuple, list[torch.Tensor]]] = {}  # a resumed window's events
        self._carried_samples = 0
        self._carried_attention = [0.0, 0.0]  # and its spike-attention (ACs, MACs)

    def _new_counter(self) -> SynapticOpCounter:
        return SynapticOpCounter(self.model, T=self._T, training_only=True, events_only=True)

    @property
    def armed(self) -> bool:
        return self._armed

    def arm(self, on: bool) -> None:
        """Count the training forwards from now on (``on``), or stop counting them."""
        if on and not self._armed:
            self._counter.__enter__()
        elif not on and self._armed:
            self._counter.__exit__(None, None, None)
        self._armed = on

    def close(self) -> None:
        self.arm(False)

    def _events(self) -> tuple[dict[str, dict[tuple, list[torch.Tensor]]], int]:
        """Everything counted in this window (a resumed window's events included), by layer and
        ``(sample shape, output padding)``: ``[spikes, nonzero]``."""
        events = {name: {key: [t.clone() for t in pair] for key, pair in shapes.items()}
                  for name, shapes in self._carried.items()}  # fmt: skip
        for name, items in self._counter.input_events().items():
            shapes = events.setdefault(name, {})
            for item in items:
                key = (item.sample_shape, item.output_padding)
                if key in shapes:
                    shapes[key][0] += item.spikes.to(shapes[key][0])
                    shapes[key][1] += item.nonzero.to(shapes[key][1])
                else:
                    shapes[key] = [item.spikes.clone(), item.nonzero.clone()]
        return events, self._counter.samples + self._carried_samples

    def _attention(self) -> list[float]:
        """``[ACs, MACs]`` of the spike-attention products counted in this window (a resumed one's included)."""
        return [a + b for a, b in zip(self._carried_attention, self._counter.attention_ops(), strict=True)]

    def take(self) -> Measurement | None:
        """The costs of the forwards counted since the last call (None if none was), and a fresh
        window (the meter stays armed or not)."""
        events, samples = self._events()
        attention = self._attention()
        armed = self._armed
        self.arm(False)
        self._counter = self._new_counter()
        self._carried, self._carried_samples, self._carried_attention = {}, 0, [0.0, 0.0]
        self.arm(armed)
        samples, attention = _all_reduce(events, samples, attention)
        if samples == 0:
            return None
        if not any(events.values()):
            raise RuntimeError(
                f"the cost meter saw {samples} training samples but no call of a pruned layer: the counter's hooks on "
                "them did not run (a forward that uses a layer's weight without calling the layer skips them; so does "
                "torch.compile, for hooks attached after it compiled: run the forwards that "
                "SoftThresholdPruner.measuring marks eagerly, as snn-lats train --compile does)"
            )
        ac, mac = (1.0, 1.0) if self.preset is None else (self.preset.ac_pj, self.preset.mac_pj)
        modules = dict(self.model.named_modules())
        costs, fixed = {}, (attention[0] * ac + attention[1] * mac) / samples
        for label, shapes in events.items():
            # The counter names the root module (named_modules()' "") by its type.
            name = label if label in modules else ""
            module = modules[name]
            total = None
            for (shape, output_padding), (spikes, nonzero) in shapes.items():
                cost = weight_cost(module, InputEvents(shape, output_padding, spikes, nonzero), ac, mac)
                total = cost if total is None else total + cost
            if total is None:  # attached, but no measured forward called it
                continue
            if name in self.layers:
                costs[name] = total / samples
            else:
                with torch.no_grad():
                    fixed += float((total * (module.weight != 0)).sum()) / samples
        for name, module in self.layers.items():  # a pruned layer no measured forward called costs 0
            if name not in costs:
                weight = module.parametrizations.weight.original
                costs[name] = torch.zeros(weight.shape, dtype=torch.float64, device=weight.device)
        return Measurement({name: costs[name] for name in self.layers}, fixed, samples)

    @torch.no_grad()
    def measure_copy(self, inputs: torch.Tensor) -> Measurement:
        """The costs of one training forward of ``inputs`` through a copy of the model, every
        weight as it is; the model, its buffers (BatchNorm statistics) and the RNG are untouched."""
        armed = self._armed
        self.arm(False)  # the copy must not carry this meter's hooks
        try:
            model = copy.deepcopy(self.model)
        finally:
            self.arm(armed)
        model.train().requires_grad_(False)
        modules = dict(model.named_modules())
        meter = CostMeter(model, {name: modules[name] for name in self.layers}, self.cost, self.preset)
        devices = [inputs.device] if inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():  # the meter counts training forwards
            meter.arm(True)
            try:
                model(inputs)
            finally:
                meter.close()
        return meter.take()

    # --- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The window in progress: samples, and per layer ``[shape, output padding, spikes, nonzero]``
        of every input shape (plain lists and tensors)."""
        events, samples = self._events()
        return {
            "samples": samples,
            "attention": self._attention(),
            "events": {
                name: [
                    [list(shape), None if pad is None else list(pad), s, n] for (shape, pad), (s, n) in shapes.items()
                ]
                for name, shapes in events.items()
            },  # fmt: skip
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        armed = self._armed
        self.arm(False)
        self._counter = self._new_counter()
        self._carried = {
            name: {(tuple(shape), None if pad is None else tuple(pad)): [s.clone(), n.clone()]
                   for shape, pad, s, n in items}
            for name, items in state["events"].items()
        }  # fmt: skip
        self._carried_samples = int(state["samples"])
        self._carried_attention = [float(v) for v in state.get("attention", (0.0, 0.0))]  # absent before 2026-12
        self.arm(armed)


def _all_reduce(
    events: dict[str, dict[tuple, list[torch.Tensor]]], samples: int, attention: list[float]
) -> tuple[int, list[float]]:
    """Sum ``events`` (in place), ``samples`` and ``attention`` over the processes of
    ``torch.distributed``, if it runs; every process must have seen the same layers and input shapes."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return samples, attention
    tensors = [t for name in sorted(events) for key in sorted(events[name]) for t in events[name][key]]
    device = tensors[0].device if tensors else torch.device("cpu")
    scalars = torch.tensor([*attention, float(samples)], dtype=torch.float64, device=device)
    flat = torch.cat([t.flatten() for t in tensors] + [scalars])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return int(flat[-1].item()), [float(v) for v in flat[-3:-1]]


def check_reachable(measurement: Measurement, controller, seen: str) -> None:
    """ValueError when ``controller``'s cost target is not below the network's cost unpruned, or not
    above what the synaptic layers left out of the pruning cost (``measurement``: the costs of
    every weight, ``seen``: on what they were measured)."""
    target = controller.target
    if target is None:
        return
    # one unit per message, the command line's: µJ for energy (the API's pJ are converted)
    energy = controller.measure == "energy"
    scale, unit = (1e-6, "µJ") if energy else (1.0, "SOPs")
    what = f"the {'energy' if energy else 'SOP'} target, {target * scale:.6g} {unit} per sample,"
    if target >= measurement.dense:
        raise ValueError(
            f"{what} is not below the unpruned network's {measurement.dense * scale:.6g} {unit} per sample {seen}: "
            "there is nothing to prune"
        )
    if target <= measurement.fixed:
        raise ValueError(
            f"{what} cannot be reached: the synaptic layers left out of the pruning already cost "
            f"{measurement.fixed * scale:.6g} {unit} per sample {seen}"
        )
