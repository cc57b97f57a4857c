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

from snn_lats.estimators.energy import DEFAULT_PRESET, energy_preset
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

    @classmethod
    def build(
        cls, rows: list[dict[str, Any]], samples: int, sample_steps: int, spiking: bool, model_name: str
    ) -> SOPReport:
        synaptic = [r for r in rows if r["kind"] == "synaptic"]
        total = {k: sum(r[k] for r in synaptic) for k in ("acs", "macs", "dense_acs", "dense_macs")}
        params = sum(r["params"] for r in synaptic)
        nonzero = sum(r["nonzero_params"] or 0 for r in synaptic)
        steps = sample_steps / samples
        totals: dict[str, Any] = {
            "spiking": spiking,
            "samples": samples,
            "time_steps": int(steps) if steps == int(steps) else steps,
            "sample_steps": sample_steps,
            "params": params,
            "nonzero_params": nonzero,
            "acs": total["acs"],
            "macs": total["macs"],
            "dense_acs": total["dense_acs"],
            "dense_macs": total["dense_macs"],
            "acs_per_sample": total["acs"] / samples,
            "macs_per_sample": total["macs"] / samples,
            "acs_per_step": total["acs"] / sample_steps,
            "macs_per_step": total["macs"] / sample_steps,
            f"energy_pj_per_sample ({DEFAULT_PRESET})": _energy_pj(
                total["acs"] / samples, total["macs"] / samples, DEFAULT_PRESET
            ),
        }
        kind = "spiking" if spiking else "ANN"
        notes = [
            "pruned synapses (zero weights) are not counted; dense_acs/dense_macs count every synapse",
            "acs, macs and dense_* are totals over all samples and time steps; a module called several "
            "times per forward (a shared nn.ReLU) is one row over all its calls",
        ]
        if spiking:
            notes += [
                "ACs: inputs that are non-negative integers (spikes); a SEW-ADD input of k counts as "
                "k spikes. MACs: real-valued inputs (encoding layer, average-pooled features), nonzero only",
                "firing_rate: mean spikes per neuron per time step (SpikingJelly neurons)",
            ]
        else:
            notes += [
                "ANN: MACs of nonzero activation x nonzero weight pairs only",
                "firing_rate: fraction of nonzero outputs of activation modules (nn.ReLU etc.)",
            ]
        title = f"Synaptic operations: {model_name} ({kind}, {samples} samples x {totals['time_steps']} time steps)"
        return cls(title=title, rows=rows, totals=totals, columns=_COLUMNS, notes=notes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SOPReport:
        """The report of :meth:`to_dict` / JSON, with its table columns."""
        report = super().from_dict(data)
        report.columns = _COLUMNS
        return report

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
    def acs_per_step(self) -> float:
        """ACs per sample per time step."""
        return self.totals["acs_per_step"]

    @property
    def macs_per_step(self) -> float:
        """MACs per sample per time step."""
        return self.totals["macs_per_step"]

    def energy_pj(self, preset: str = DEFAULT_PRESET) -> float:
        """Energy per sample (one inference over all its time steps), in picojoules:
        ``acs_per_sample * E_AC + macs_per_sample * E_MAC`` with E from :data:`ENERGY_PRESETS`."""
        energy_preset(preset)  # ValueError naming the presets
        return _energy_pj(self.acs_per_sample, self.macs_per_sample, preset)

    def synaptic_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["kind"] == "synaptic"]

    def neuron_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["kind"] == "neuron"]

    def plot(self, path: str | os.PathLike) -> None:
        """Per-layer bars of ACs/MACs per sample and firing rates; written atomically to ``path``."""
        plot_report(self, path)
