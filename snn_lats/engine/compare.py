"""Runs side by side (an ANN against an SNN, or any runs), from their :class:`RunSummary`.

:func:`compare` reports accuracy, weight sparsity (global and per layer), activation sparsity
(1 - firing rate), ACs and MACs per sample and energy; :func:`plot_comparison` draws per-layer
weight sparsity and accuracy against energy. ``snn-lats compare`` parses and prints only.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from snn_lats._io import atomic_open
from snn_lats.engine.summary import RunSummary
from snn_lats.estimators import SOPReport
from snn_lats.estimators.energy import DEFAULT_PRESET
from snn_lats.report import Report

__all__ = ["compare", "firing_rate", "plot_comparison", "run_name"]


def run_name(path: str | os.PathLike) -> str:
    """A run's default name: its directory's name (that of the folder holding a summary.json given)."""
    path = Path(path)
    return path.name if path.is_dir() else path.parent.name


def firing_rate(sops: SOPReport | None) -> float | None:
    """Mean spikes per neuron per time step over all neuron layers, weighted by their neuron counts
    (ANN: the fraction of nonzero activations)."""
    if sops is None:
        return None
    rows = [r for r in sops.neuron_rows() if r.get("firing_rate") is not None]
    if not rows:
        return None
    sizes = [_numel(r.get("input_shape")) for r in rows]
    return sum(r["firing_rate"] * n for r, n in zip(rows, sizes, strict=True)) / sum(sizes)


def _numel(shape) -> int:
    n = 1
    for s in shape or ():
        n *= int(s)
    return n


def compare(
    paths: Sequence[str | os.PathLike], names: Sequence[str] | None = None, energy_preset: str | None = None
) -> tuple[Report, Report]:
    """``(runs, layers)``: the per-run comparison, and weight sparsity per layer (one column per run)."""
    preset = energy_preset or DEFAULT_PRESET
    summaries = [RunSummary.read(p) for p in paths]
    names = list(names) if names else [run_name(p) for p in paths]
    if len(names) != len(summaries):
        raise ValueError(f"--names gives {len(names)} names for {len(summaries)} runs")
    rows = []
    for name, s in zip(names, summaries, strict=True):
        rate = firing_rate(s.sops)
        rows.append(
            {
                "run": name,
                "model": s.config["model"],
                "spiking": None if s.sops is None else s.sops.spiking,
                "T": None if s.sops is None else s.sops.totals["time_steps"],
                "acc1": s.accuracy["acc1"],
                "acc5": s.accuracy["acc5"],
                "weight_sparsity": s.sparsity.global_sparsity,
                "firing_rate": rate,
                "activation_sparsity": None if rate is None else 1.0 - rate,
                "acs_per_sample": None if s.sops is None else s.sops.acs_per_sample,
                "macs_per_sample": None if s.sops is None else s.sops.macs_per_sample,
                "energy_pj_per_sample": s.energy_pj_per_sample(preset),
            }
        )
    reference = rows[0]["energy_pj_per_sample"]
    for row in rows:
        energy = row["energy_pj_per_sample"]
        row["energy_vs_first"] = energy / reference if energy is not None and reference else None
    report = Report(
        title=f"Runs compared (energy preset {preset})",
        rows=rows,
        totals={"runs": len(rows)},
        notes=[
            "weight_sparsity: exact zeros of the pruned weights",
            "firing_rate: spikes per neuron per time step (ANN: fraction of nonzero activations); "
            "activation_sparsity = 1 - firing_rate",
            "acs/macs per sample: mask-aware synaptic operations over all time steps (snn_lats.estimators)",
        ],
    )

    per_run = [s.sparsity.layer_sparsity() for s in summaries]
    layer_names: list[str] = []
    for layers in per_run:
        layer_names += [n for n in layers if n not in layer_names]
    layer_rows = [
        {"layer": n, **{name: layers.get(n) for name, layers in zip(names, per_run, strict=True)}} for n in layer_names
    ]
    layers_report = Report(
        title="Weight sparsity per layer",
        rows=layer_rows,
        totals={name: s.sparsity.global_sparsity for name, s in zip(names, summaries, strict=True)},
    )
    return report, layers_report


def plot_comparison(report: Report, layers: Report, out_dir: Path) -> list[Path]:
    """Per-layer sparsity bars and an accuracy-energy scatter, written atomically as PNG files."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = [r["run"] for r in report.rows]
    written = []

    fig = Figure(figsize=(max(6.0, 0.35 * len(layers.rows) * len(runs)), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        values = [row.get(run) if row.get(run) is not None else 0.0 for row in layers.rows]
        ax.bar([x + i * width for x in range(len(layers.rows))], values, width=width, label=run)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(layers.rows))])
    ax.set_xticklabels([row["layer"] for row in layers.rows], rotation=90, fontsize=7)
    ax.set_ylabel("weight sparsity")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Weight sparsity per layer")
    written.append(_save(fig, out_dir / "compare_sparsity.png"))

    fig = Figure(figsize=(5.5, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for row in report.rows:
        if row["energy_pj_per_sample"] is None:
            continue
        energy_uj = row["energy_pj_per_sample"] / 1e6
        ax.scatter(energy_uj, row["acc1"])
        ax.annotate(
            f"{row['run']} ({100 * row['weight_sparsity']:.0f}% sparse)",
            (energy_uj, row["acc1"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("energy per sample (uJ)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy against energy")
    written.append(_save(fig, out_dir / "compare_accuracy_energy.png"))
    return written


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=120)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())
    return path
