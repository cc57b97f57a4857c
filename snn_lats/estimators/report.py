"""The report of a :class:`~snn_lats.estimators.sops.SynapticOpCounter`: rows, totals, energy, figure.

One row per synaptic and neuron layer, in network order; the totals add the synaptic rows up
and give the energy per sample ``E = ACs * E_AC + MACs * E_MAC`` (:mod:`snn_lats.estimators.energy`).
The JSON layout (:meth:`SOPReport.to_dict`: title, rows, totals, notes) is read by other code:
its keys are fixed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from snn_lats.estimators.conventions import CONVENTIONS, DEFAULT_CONVENTION
from snn_lats.estimators.energy import DEFAULT_MEMORY_PJ, DEFAULT_PRESET, energy_preset, memory_energy_pj
from snn_lats.estimators.energy import energy_pj as _energy_pj
from snn_lats.estimators.plot import plot_report
from snn_lats.report import Report

__all__ = ["SOPReport"]

_COLUMNS = (
    "name",
    "type",
    "input_shape",
    "params",
    "nonzero_params",
    "input_event_rate",
    "acs",
    "macs",
    "dense_acs",
    "dense_macs",
    "flops",
    "firing_rate",
)


@dataclass
class SOPReport(Report):
    """Per-layer synaptic operations and firing rates; totals and energy.

    Rows (``synaptic`` layers and ``neuron`` layers, in network order): ``acs``/``macs`` and
    their unpruned ``dense_acs``/``dense_macs`` are totals over every counted sample and time
    step; ``input_event_rate`` is input events per input element per time step; ``firing_rate``
    is mean spikes per neuron per time step (ANN: fraction of nonzero activations).
    """

    # Long (~100 lines): the report's totals are one table of named sums, written out once here.
    @classmethod
    def build(
        cls,
        rows: list[dict[str, Any]],
        samples: int,
        sample_steps: int | None,
        spiking: bool,
        model_name: str,
        *,
        convention: str = DEFAULT_CONVENTION,
        counted: dict[str, Any] | None = None,
    ) -> SOPReport:
        """Totals and notes over ``rows``. ``sample_steps`` None: the time steps of a static input
        were unknown (per-step figures are None). ``counted`` says what was counted (time steps'
        source, static and sequence samples, encoding layer, extras)."""
        counted = dict(counted or {})
        counting = [r for r in rows if r.get("acs") is not None]  # synaptic rows (syops: all it charges)
        total = {k: sum(r.get(k) or 0 for r in counting) for k in ("acs", "macs", "dense_acs", "dense_macs")}
        synaptic = [r for r in rows if r["kind"] == "synaptic"]
        flops = sum(r["flops"] or 0 for r in synaptic)
        params = sum(r["params"] or 0 for r in synaptic)
        nonzero = sum(r["nonzero_params"] or 0 for r in synaptic)
        steps = None if sample_steps is None else sample_steps / samples
        per_step = (lambda v: None) if sample_steps is None else (lambda v: v / sample_steps)
        totals: dict[str, Any] = {
            "convention": convention,
            "spiking": spiking,
            "samples": samples,
            "time_steps": steps if steps is None or steps != int(steps) else int(steps),
            "sample_steps": sample_steps,
            "params": params,
            "nonzero_params": nonzero,
            "acs": total["acs"],
            "macs": total["macs"],
            "dense_acs": total["dense_acs"],
            "dense_macs": total["dense_macs"],
            "flops": flops,
            "acs_per_sample": total["acs"] / samples,
            "macs_per_sample": total["macs"] / samples,
            "flops_per_sample": flops / samples,
            "acs_per_step": per_step(total["acs"]),
            "macs_per_step": per_step(total["macs"]),
            f"energy_pj_per_sample ({DEFAULT_PRESET})": _energy_pj(
                total["acs"] / samples, total["macs"] / samples, DEFAULT_PRESET
            ),
        }
        if counted.get("extras"):
            names = {"synaptic": "bias_adds", "neuron": "neuron_updates", "norm": "norm_ops", "pool": "pool_ops"}
            for kind, key in names.items():
                ops = sum(r.get("extra_ops") or 0 for r in rows if r["kind"] == kind)
                totals[f"{key}_per_sample"] = ops / samples
        totals |= {f"counted_{k}": v for k, v in counted.items() if k != "extras"}
        kind = "spiking" if spiking else "ANN"
        notes = [f"convention {convention!r}: {CONVENTIONS[convention]}"]
        if convention == "exact":
            notes.append("pruned synapses (zero weights) are not counted; dense_acs/dense_macs count every synapse")
        notes += [
            "acs, macs and dense_* are totals over all samples and time steps; a module called several "
            "times per forward (a shared nn.ReLU) is one row over all its calls",
            "flops: conventional dense MACs (output elements x C_in/groups x kernel, padded taps included), "
            "whatever the activity and the weights",
        ]
        encoding = counted.get("encoding_layer")
        if spiking and encoding:
            static, sequence = counted.get("static_samples", 0), counted.get("sequence_samples", 0)
            how = (
                "once per sample (static input [N, ...])"
                if not sequence
                else "at every time step (sequence input [T, N, ...])"
                if not static
                else f"once per sample for {static} static samples, per step for {sequence} sequence samples"
            )
            if convention == "paper":
                how = "as T x its dense FLOPs per sample, however the input came"
            notes.append(f"encoding layer {encoding!r} counted {how}")
        event_input = counted.get("event_input_layer")
        if spiking and event_input:
            rule = {
                "neurobench": "counts of 0/1 as ACs and larger counts as MACs, NeuroBench's rule for non-binary inputs",
                "syops": "as syops counts it",
            }.get(convention, "a count of k at one input as k ACs")
            notes.append(f"first layer {event_input!r} takes spike counts (event data), so no encoding layer: {rule}")
        if counted.get("attention_modules"):
            notes.append(
                {
                    "exact": "spike attention (rows of products modules): the products of two spike tensors, one AC "
                    "per pair of spikes in the association the row names ((Q K^T)V counts Q K^T as spike counts), "
                    "masks (Hadamard products of spikes) none, sums one AC per spike added",
                    "paper": "spike attention (rows of products modules): fr x FL of the products, as the "
                    "transformer papers' energy formulas",
                }.get(
                    convention,
                    f"spike attention (rows of products modules): not counted, as {convention} hooks "
                    "layers with weights only",
                )  # fmt: skip
            )
        if spiking:
            source = counted.get("time_steps_from")
            if sample_steps is None:
                notes.append("time steps unknown (no model.T, no T=): per-step figures are None")
            elif source:
                notes.append(f"time steps from {source}")
            notes += [
                "ACs: inputs that are non-negative integers (spikes); a SEW-ADD input of k counts as "
                "k spikes. MACs: real-valued inputs (encoding layer, average-pooled features), nonzero only"
                if convention == "exact"
                else f"ACs and MACs as {convention} counts them (docs/concepts.md)",
                "firing_rate: mean spikes per neuron per time step (SpikingJelly neurons)",
            ]
        else:
            notes += [
                "ANN: MACs of nonzero activation x nonzero weight pairs only; flops is the conventional dense figure"
                if convention == "exact"
                else f"ANN: MACs as {convention} counts them",
                "firing_rate: fraction of nonzero outputs of activation modules (nn.ReLU etc.)",
            ]
        steps_text = "unknown" if steps is None else totals["time_steps"]
        title = (
            f"Synaptic operations ({convention}): {model_name} ({kind}, {samples} samples x {steps_text} time steps)"
        )
        return cls(title=title, rows=rows, totals=totals, columns=_COLUMNS, notes=notes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SOPReport:
        """The report of :meth:`to_dict` / JSON, with its table columns."""
        report = super().from_dict(data)
        report.columns = _COLUMNS
        return report

    @property
    def convention(self) -> str:
        """The counting convention (reports written before conventions existed: ``"exact"``)."""
        return self.totals.get("convention", DEFAULT_CONVENTION)

    @property
    def flops_per_sample(self) -> float | None:
        """Conventional dense MACs per sample (None in reports written before it existed)."""
        return self.totals.get("flops_per_sample")

    def per_sample_scalars(self, preset: str = DEFAULT_PRESET) -> dict[str, float]:
        """ACs, MACs, dense FLOPs and energy (pJ) per sample: what TensorBoard logs after each evaluation."""
        scalars = {"acs_per_sample": self.acs_per_sample, "macs_per_sample": self.macs_per_sample}
        if self.flops_per_sample is not None:
            scalars["flops_per_sample"] = self.flops_per_sample
        return scalars | {"energy_pj_per_sample": self.energy_pj(preset)}

    @property
    def total_acs(self) -> int:
        return self.totals["acs"]

    @property
    def total_macs(self) -> int:
        return self.totals["macs"]

    @property
    def total_dense_acs(self) -> int:
        return self.totals["dense_acs"]

    @property
    def total_dense_macs(self) -> int:
        return self.totals["dense_macs"]

    @property
    def spiking(self) -> bool:
        return self.totals["spiking"]

    @property
    def samples(self) -> int:
        return self.totals["samples"]

    @property
    def acs_per_sample(self) -> float:
        return self.totals["acs_per_sample"]

    @property
    def macs_per_sample(self) -> float:
        return self.totals["macs_per_sample"]

    @property
    def acs_per_step(self) -> float | None:
        """ACs per sample per time step."""
        return self.totals["acs_per_step"]

    @property
    def macs_per_step(self) -> float | None:
        """MACs per sample per time step."""
        return self.totals["macs_per_step"]

    def energy_pj(self, preset: str = DEFAULT_PRESET) -> float:
        """Energy per sample (one inference over all its time steps), in picojoules:
        ``acs_per_sample * E_AC + macs_per_sample * E_MAC`` with E from :data:`ENERGY_PRESETS`."""
        energy_preset(preset)  # ValueError naming the presets
        return _energy_pj(self.acs_per_sample, self.macs_per_sample, preset)

    def memory_energy_pj(self, preset: str = DEFAULT_PRESET, memory_pj: float = DEFAULT_MEMORY_PJ) -> dict[str, float]:
        """Energy per sample (pJ) with memory traffic, by part (:func:`~snn_lats.estimators.energy.memory_energy_pj`:
        Lemaire et al., ICONIP 2022); ``total`` is their sum."""
        return memory_energy_pj(self.rows, self.totals, preset, memory_pj)

    def synaptic_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["kind"] == "synaptic"]

    def neuron_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["kind"] == "neuron"]

    def plot(self, path: str | os.PathLike) -> None:
        """Per-layer bars of ACs/MACs per sample and firing rates; written atomically to ``path``."""
        plot_report(self, path)
