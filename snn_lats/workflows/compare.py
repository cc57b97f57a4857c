"""Runs side by side, made for the ANN-against-SNN question, from their :class:`RunSummary`.

:func:`compare` refuses runs that were measured differently (data set, image size, counting
convention), or with ``force=True`` reports the differences as warnings; it reports accuracy,
weight sparsity, activity per inference on both sides (spikes per neuron per inference for an
SNN, the fraction of nonzero activations for an ANN, and per time step where T > 1), ACs, MACs,
dense FLOPs and energy (compute only, and with memory traffic), and lines the layers up by the
synaptic layer they feed. :func:`plot_comparison` draws accuracy against energy and against weight
sparsity, ANN and SNN on shared axes, and per-layer weight sparsity. ``snn-lats compare`` parses
and prints only.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snn_lats._io import atomic_open
from snn_lats.data import validation_images
from snn_lats.engine.summary import RunSummary
from snn_lats.estimators import SOPReport
from snn_lats.estimators.energy import DEFAULT_PRESET
from snn_lats.estimators.energy import energy_preset as check_preset
from snn_lats.report import Report

__all__ = [
    "activity",
    "compare",
    "firing_rate",
    "mismatches",
    "plot_comparison",
    "recount",
    "render_comparison",
    "run_name",
]


def run_name(path: str | os.PathLike) -> str:
    """A run's default name: its directory's name (that of the folder holding a summary.json given)."""
    path = Path(path)
    return path.name if path.is_dir() else path.parent.name


def _numel(shape) -> int:
    return math.prod(int(s) for s in shape or ())


def firing_rate(sops: SOPReport | None) -> float | None:
    """Mean spikes per neuron per time step over all neuron layers, weighted by the outputs they
    produced (ANN: the fraction of nonzero activations; a shared nn.ReLU counts every call)."""
    if sops is None:
        return None
    rows = [r for r in sops.neuron_rows() if r.get("firing_rate") is not None]
    if not rows:
        return None
    # output_elements: every output of every call; reports written before it existed: one sample's neurons
    sizes = [r.get("output_elements") or _numel(r.get("input_shape")) for r in rows]
    return sum(r["firing_rate"] * n for r, n in zip(rows, sizes, strict=True)) / sum(sizes)


def activity(sops: SOPReport | None) -> float | None:
    """Events per neuron per inference: spikes per neuron over all T steps (SNN), the fraction of
    nonzero activations (ANN, T = 1). The figure that compares across the two."""
    rate = firing_rate(sops)
    if rate is None:
        return None
    steps = sops.totals.get("time_steps") if sops.spiking else 1
    return None if steps is None else rate * steps


def mismatches(summaries: Sequence[RunSummary], names: Sequence[str]) -> list[str]:
    """What the runs do not share (their validation images: :func:`~snn_lats.data.validation_images`;
    the SOP convention), one line each; empty if alike. Runs on different data sets differ in
    that alone."""
    lines = []
    first, first_name = summaries[0], names[0]
    for name, s in zip(names[1:], summaries[1:], strict=True):
        a, b = validation_images(first.config), validation_images(s.config)
        for key in a if a["dataset"] == b["dataset"] else ("dataset",):
            if a[key] != b[key]:
                lines.append(f"{key}: {first_name} has {a[key]!r}, {name} has {b[key]!r}")
        ca = None if first.sops is None else first.sops.convention
        cb = None if s.sops is None else s.sops.convention
        if ca != cb:
            lines.append(f"SOP convention: {first_name} was counted with {ca!r}, {name} with {cb!r}")
    return lines


def compare(
    paths: Sequence[str | os.PathLike],
    names: Sequence[str] | None = None,
    energy_preset: str | None = None,
    *,
    force: bool = False,
    convention: str | None = None,
    batches: int | None = None,
) -> tuple[Report, Report]:
    """``(runs, layers)``: one row per run, and one row per synaptic layer (its weight sparsity,
    input activity per inference and operations per sample in every run).

    ValueError when the runs differ in data, image size or SOP convention, unless ``force``: then
    each difference is a note of the runs report (and the CLI prints them as warnings).
    ``convention``: recount every run's checkpoint (``model_best.pth``) under it, on the first
    ``batches`` validation batches (default: the run's ``sops_batches``), instead of reading the
    count its summary holds (``"exact"`` for every run that ``snn-lats train`` wrote).
    """
    preset = energy_preset or DEFAULT_PRESET
    check_preset(preset)  # before any recount: a bad flag fails at once
    summaries = [RunSummary.read(p) for p in paths]
    names = list(names) if names else [run_name(p) for p in paths]
    if len(names) != len(summaries):
        raise ValueError(f"--names gives {len(names)} names for {len(summaries)} runs")
    if len(set(names)) != len(names):
        raise ValueError(f"run names must differ, got {', '.join(names)} (give --names)")
    if convention is not None:
        for path, s in zip(paths, summaries, strict=True):
            s.sops = recount(path, s, convention, batches)
    differences = mismatches(summaries, names)
    if differences and not force:
        raise ValueError(
            "the runs were not measured alike, so their figures do not compare: "
            + "; ".join(differences)
            + " (--force compares them anyway)"
        )
    rows = [_run_row(name, s, preset) for name, s in zip(names, summaries, strict=True)]
    reference = next((r["energy_pj_per_sample"] for r in rows if r["spiking"] is False), None)
    reference = reference if reference is not None else rows[0]["energy_pj_per_sample"]
    for row in rows:
        energy = row["energy_pj_per_sample"]
        row["energy_vs_ann"] = energy / reference if energy is not None and reference else None
    notes = [f"NOT MEASURED ALIKE (--force): {d}" for d in differences] + [
        "weight_sparsity: exact zeros of the pruned weights",
        "activity_per_inference: spikes per neuron over all time steps (SNN); fraction of nonzero activations "
        "(ANN); firing_rate: the same per time step",
        "acs/macs per sample: synaptic operations under the runs' convention; flops: dense MACs of the same layers",
        f"energy_pj_per_sample: ACs x E_AC + MACs x E_MAC ({preset}); energy_memory_pj_per_sample adds weight, "
        "potential and activation traffic (Lemaire et al., ICONIP 2022)",
        "energy_vs_ann: energy over that of the first ANN run (the first run if there is none)",
    ]
    report = Report(title=f"Runs compared (energy preset {preset})", rows=rows, totals={"runs": len(rows)}, notes=notes)
    return report, _layers_report(names, summaries)


def recount(path: str | os.PathLike, summary: RunSummary, convention: str, batches: int | None = None) -> SOPReport:
    """The SOP report of a run's best checkpoint under ``convention``, on the first ``batches``
    validation batches of its own data (default: its ``sops_batches``, at least 1)."""
    from snn_lats.engine.checkpoint import load_checkpoint
    from snn_lats.engine.distributed import configure_threads
    from snn_lats.engine.evaluation import checkpoint_loader, count_sops
    from snn_lats.engine.model import build_model_from_checkpoint, checkpoint_config
    from snn_lats.estimators.conventions import check_convention

    check_convention(convention)
    run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    file = Path(summary.checkpoint) if summary.checkpoint else run_dir / "model_best.pth"
    if not file.is_file():
        raise ValueError(f"cannot recount {str(run_dir)!r} under {convention!r}: no checkpoint {str(file)!r}")
    checkpoint = load_checkpoint(file)
    config = dataclasses.replace(checkpoint_config(checkpoint), workers=0)
    configure_threads(None)  # this machine's default, not torch's every core
    loader = checkpoint_loader(checkpoint, config)
    model, _ = build_model_from_checkpoint(checkpoint, "cpu")
    return count_sops(model, loader, batches or max(config.sops_batches, 1), "cpu", convention)


def _run_row(name: str, s: RunSummary, preset: str) -> dict[str, Any]:
    sops = s.sops
    steps = None if sops is None else sops.totals.get("time_steps")
    images = validation_images(s.config)
    memory = None if sops is None else sops.memory_energy_pj(preset)["total"]
    return {
        "run": name,
        "model": s.config["model"],
        "spiking": None if sops is None else sops.spiking,
        "T": steps,
        "dataset": s.config.get("dataset"),
        "image_size": images.get("image_size", images.get("val_crop_size")),
        "convention": None if sops is None else sops.convention,
        "acc1": s.accuracy["acc1"],
        "acc5": s.accuracy["acc5"],
        "weight_sparsity": s.sparsity.global_sparsity,
        "activity_per_inference": activity(sops),
        "firing_rate": firing_rate(sops) if sops is not None and sops.spiking else None,
        "acs_per_sample": None if sops is None else sops.acs_per_sample,
        "macs_per_sample": None if sops is None else sops.macs_per_sample,
        "flops_per_sample": None if sops is None else sops.flops_per_sample,
        "energy_pj_per_sample": s.energy_pj_per_sample(preset),
        "energy_memory_pj_per_sample": memory,
    }


def _layers_report(names: Sequence[str], summaries: Sequence[RunSummary]) -> Report:
    """One row per synaptic layer (the union over the runs, in the first run's order): per run, its
    weight sparsity, the activity of its input (events per input element per inference) and its
    operations per sample. The ANN's shared activations and the SNN's neurons line up through the
    layers they feed, whose names the two network families share."""
    layer_names: list[str] = []
    per_run = []
    for s in summaries:
        sparsity = s.sparsity.layer_sparsity()
        sops_rows = {r["name"]: r for r in s.sops.synaptic_rows()} if s.sops is not None else {}
        per_run.append((sparsity, sops_rows, s.sops))
        for layer in [*sops_rows, *sparsity]:  # each layer once, in the first run's order
            if layer not in layer_names:
                layer_names.append(layer)
    rows = []
    for layer in layer_names:
        row: dict[str, Any] = {"layer": layer}
        for name, (sparsity, sops_rows, sops) in zip(names, per_run, strict=True):
            r = sops_rows.get(layer)
            row[f"{name}:sparsity"] = sparsity.get(layer)
            row[f"{name}:input_activity"] = _input_activity(r, sops)
            row[f"{name}:ops_per_sample"] = None if r is None else ((r["acs"] or 0) + (r["macs"] or 0)) / sops.samples
        rows.append(row)
    return Report(
        title="Layers compared, by the synaptic layer their activity feeds",
        rows=rows,
        totals={f"weight sparsity of {n}": s.sparsity.global_sparsity for n, s in zip(names, summaries, strict=True)},
        notes=[
            "sparsity: weight sparsity of the layer; input_activity: events (spikes, or nonzero values) per "
            "input element per inference, over all time steps; ops_per_sample: its ACs + MACs"
        ],
    )


def _input_activity(row: dict[str, Any] | None, sops: SOPReport | None) -> float | None:
    """Events (spikes, or nonzero inputs) per input element per inference: all time steps together,
    whether the layer ran once per sample (a static stem) or at every step."""
    if row is None or row.get("input_events") is None or not row.get("input_shape"):
        return None
    return row["input_events"] / (sops.samples * _numel(row["input_shape"]))


def plot_comparison(report: Report, layers: Report, out_dir: Path) -> list[Path]:
    """:func:`render_comparison`'s figures, written atomically into ``out_dir``."""
    written = []
    for name, data in render_comparison(report, layers).items():
        with atomic_open(out_dir / name, "wb") as f:
            f.write(data)
        written.append(out_dir / name)
    return written


def render_comparison(report: Report, layers: Report) -> dict[str, bytes]:
    """PNG bytes by file name: accuracy against energy and against weight sparsity (ANN and SNN
    runs as two series on shared axes), and per-layer weight sparsity bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figures = {}
    runs = [r["run"] for r in report.rows]

    fig = Figure(figsize=(max(6.0, 0.3 * len(layers.rows) * min(len(runs), 4)), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / len(runs)
    colours = _run_colours(report.rows)
    for i, run in enumerate(runs):
        values = [row.get(f"{run}:sparsity") or 0.0 for row in layers.rows]
        ax.bar([x + i * width for x in range(len(layers.rows))], values, width=width, label=run, color=colours[run])
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(layers.rows))])
    ax.set_xticklabels([row["layer"] for row in layers.rows], rotation=90, fontsize=7)
    ax.set_ylabel("weight sparsity")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=min(len(runs), 4))
    ax.set_title("Weight sparsity per layer")
    figures["compare_sparsity.png"] = _png(fig)

    for x_key, x_label, filename, log in (
        ("energy_pj_per_sample", "energy per sample (uJ, compute)", "compare_accuracy_energy.png", True),
        ("weight_sparsity", "weight sparsity (%)", "compare_accuracy_sparsity.png", False),
    ):
        figures[filename] = _scatter(report.rows, x_key, x_label, log)
    return figures


#: One colour family per side, the same in every figure: ANN orange, SNN blue.
_SIDE_COLOURS = {
    "ANN": ("#ff7f0e", "#c85a00", "#ffb36b"),
    "SNN": ("#1f77b4", "#0d4c7a", "#6baed6"),
    "unknown": ("0.4",),
}


def _run_colours(rows: list[dict[str, Any]]) -> dict[str, str]:
    """A colour per run from its side's family (shades for several runs of one side)."""
    seen: dict[str, int] = {}
    colours = {}
    for row in rows:
        side = _side(row)
        family = _SIDE_COLOURS[side]
        colours[row["run"]] = family[seen.get(side, 0) % len(family)]
        seen[side] = seen.get(side, 0) + 1
    return colours


def _side(row: dict[str, Any]) -> str:
    return "SNN" if row["spiking"] else "ANN" if row["spiking"] is False else "unknown"


def _scatter(rows: list[dict[str, Any]], x_key: str, x_label: str, log: bool) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    scale = 1e-6 if x_key.startswith("energy") else 100.0
    points = [r for r in rows if r.get(x_key) is not None]
    for side, marker in (("ANN", "s"), ("SNN", "o"), ("unknown", "^")):
        color = _SIDE_COLOURS[side][0]
        series = sorted((r for r in points if _side(r) == side), key=lambda r: r[x_key])
        if not series:
            continue
        xs, ys = [r[x_key] * scale for r in series], [r["acc1"] for r in series]
        ax.plot(xs, ys, marker=marker, color=color, label=side, linewidth=1.2, markersize=6)
        for r, x, y in zip(series, xs, ys, strict=True):
            ax.annotate(r["run"], (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points", clip_on=False)
    accs = [r["acc1"] for r in points] or [0.0, 100.0]
    # Readable ranges: at least 10 points of accuracy, never an auto-zoom onto one point's noise.
    low, high = min(accs), max(accs)
    pad = max(10.0 - (high - low), 0.0) / 2 + 2.0
    ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
    xs_all = [r[x_key] * scale for r in points]
    if log and xs_all and min(xs_all) > 0:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.set_xlim(min(xs_all) / 2, max(xs_all) * 2)
        # labels at 1, 2 and 5 of each decade only (every minor tick labelled ran them together)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 2, 0.5: not 2x10^0
        ax.xaxis.set_minor_formatter(NullFormatter())
    elif xs_all:  # at least 5 points of sparsity wide, centred on the runs
        middle, half = (max(xs_all) + min(xs_all)) / 2, 0.6 * max(max(xs_all) - min(xs_all), 5.0)
        ax.set_xlim(max(0.0, middle - half), min(100.0, middle + half))
    ax.set_xlabel(x_label)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy against " + ("energy" if x_key.startswith("energy") else "weight sparsity"))
    return _png(fig)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()
