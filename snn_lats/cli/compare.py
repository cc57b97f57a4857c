"""``snn-lats compare``: runs side by side (an ANN against an SNN, or any runs).

    snn-lats compare runs/resnet18_lats runs/sew_resnet18_lats --out runs/compare

Reads each run's ``summary.json`` (written by ``snn-lats train`` at its end) and reports accuracy,
weight sparsity (global and per layer), activation sparsity (1 - firing rate), ACs and MACs per
sample, and energy. Writes ``compare.json``, ``compare_layers.json``, ``compare.csv`` and two plots:
per-layer weight sparsity bars, and accuracy against energy.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from snn_lats.report import Report


class ComparisonReport(Report):
    """One row per run: accuracy, sparsity, operations, energy."""


def load_summary(path: str | os.PathLike) -> dict[str, Any]:
    """A run's ``summary.json``, given the run directory or the file itself."""
    path = Path(path)
    file = path / "summary.json" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(
            f"{str(path)!r} is not a run directory with a summary.json (written at the end of "
            "`snn-lats train`), nor such a file"
        )
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(file)!r} is not valid JSON: {error}") from None
    missing = [k for k in ("config", "accuracy", "sparsity", "sops") if k not in summary]
    if missing:
        raise ValueError(f"{str(file)!r} is not an snn-lats summary (lacks {', '.join(missing)})")
    return summary


def firing_rate(sops: dict[str, Any] | None) -> float | None:
    """Mean spikes per neuron per time step over all neuron layers, weighted by their neuron counts
    (ANN: the fraction of nonzero activations)."""
    if not sops:
        return None
    rows = [r for r in sops["rows"] if r.get("kind") == "neuron" and r.get("firing_rate") is not None]
    if not rows:
        return None
    sizes = [_numel(r.get("input_shape")) for r in rows]
    return sum(r["firing_rate"] * n for r, n in zip(rows, sizes)) / sum(sizes)


def _numel(shape) -> int:
    n = 1
    for s in shape or ():
        n *= int(s)
    return n


def compare(
    paths: Sequence[str | os.PathLike], names: Sequence[str] | None = None, energy_preset: str | None = None
) -> tuple[ComparisonReport, Report]:
    """``(runs, layers)``: the per-run comparison, and weight sparsity per layer (one column per run)."""
    from snn_lats.estimators import energy_pj
    from snn_lats.estimators.energy import DEFAULT_PRESET

    preset = energy_preset or DEFAULT_PRESET
    summaries = [load_summary(p) for p in paths]
    names = list(names) if names else [Path(p).name if Path(p).is_dir() else Path(p).parent.name for p in paths]
    if len(names) != len(summaries):
        raise ValueError(f"--names gives {len(names)} names for {len(summaries)} runs")
    rows = []
    for name, s in zip(names, summaries):
        sops = s.get("sops")
        totals = sops["totals"] if sops else {}
        rate = firing_rate(sops)
        acs, macs = totals.get("acs_per_sample"), totals.get("macs_per_sample")
        rows.append(
            {
                "run": name,
                "model": s["config"]["model"],
                "spiking": totals.get("spiking"),
                "T": totals.get("time_steps"),
                "acc1": s["accuracy"]["acc1"],
                "acc5": s["accuracy"]["acc5"],
                "weight_sparsity": s["sparsity"]["totals"]["sparsity"],
                "firing_rate": rate,
                "activation_sparsity": None if rate is None else 1.0 - rate,
                "acs_per_sample": acs,
                "macs_per_sample": macs,
                "energy_pj_per_sample": energy_pj(acs, macs, preset) if sops else None,
            }
        )
    reference = rows[0]["energy_pj_per_sample"]
    for row in rows:
        energy = row["energy_pj_per_sample"]
        row["energy_vs_first"] = energy / reference if energy is not None and reference else None
    report = ComparisonReport(
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

    layer_names: list[str] = []
    per_run = []
    for s in summaries:
        layers = {r["name"]: 1.0 - r["density"] for r in s["sparsity"]["rows"]}
        per_run.append(layers)
        layer_names += [n for n in layers if n not in layer_names]
    layer_rows = [{"layer": n, **{name: layers.get(n) for name, layers in zip(names, per_run)}} for n in layer_names]
    layers_report = Report(
        title="Weight sparsity per layer",
        rows=layer_rows,
        totals={name: s["sparsity"]["totals"]["sparsity"] for name, s in zip(names, summaries)},
    )
    return report, layers_report


def plot_comparison(report: ComparisonReport, layers: Report, out_dir: Path) -> list[Path]:
    """Per-layer sparsity bars and an accuracy-energy scatter, written atomically as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from snn_lats._io import atomic_open

    runs = [r["run"] for r in report.rows]
    written = []

    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(layers.rows) * len(runs)), 4.0))
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
    written.append(_save(fig, out_dir / "compare_sparsity.png", atomic_open, plt))

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
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
    written.append(_save(fig, out_dir / "compare_accuracy_energy.png", atomic_open, plt))
    return written


def _save(fig, path: Path, atomic_open, plt) -> Path:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare runs side by side (accuracy, sparsity, firing rates, ACs/MACs, energy)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", help="run directories (holding summary.json) or summary.json files")
    parser.add_argument("--names", help="comma-separated names of the runs (default: the directory names)")
    parser.add_argument("--energy-preset", help="energy figures per AC/MAC (default: 45nm-fp32)")
    parser.add_argument("--out", default="runs/compare", help="output directory (default: runs/compare)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        names = [n.strip() for n in args.names.split(",")] if args.names else None
        report, layers = compare(args.runs, names, args.energy_preset)
    except ValueError as error:
        print(f"snn-lats compare: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.to_json(out / "compare.json")
    report.to_csv(out / "compare.csv")
    layers.to_json(out / "compare_layers.json")
    plots = plot_comparison(report, layers, out)
    print(report.table())
    print()
    print(layers.table())
    print(
        f"\nwritten: {', '.join(str(p) for p in [out / 'compare.json', out / 'compare.csv', out / 'compare_layers.json', *plots])}"
    )
    return 0
