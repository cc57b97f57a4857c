"""A figure of an :class:`~snn_lats.estimators.report.SOPReport`: per-layer operations and firing rates.

Reads only the report's ``rows`` and ``totals`` (the layout of ``SOPReport.to_dict()``), so it
draws a report loaded from JSON as well, and needs neither the report nor the counter module.
Drawn on matplotlib's Agg canvas without pyplot, so it neither needs a display nor changes the
caller's backend; written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from snn_lats._io import atomic_open

__all__ = ["plot_format", "plot_report", "render_report"]

_FORMATS = ("png", "pdf", "svg")


class _RowsAndTotals(Protocol):
    """What a figure reads of an ``SOPReport``."""

    rows: list[dict[str, Any]]
    totals: dict[str, Any]


def plot_format(path: str | os.PathLike) -> str:
    """The figure format named by the suffix of ``path`` (png, pdf or svg); ValueError otherwise."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in _FORMATS:
        raise ValueError(f"plot path must end in one of {', '.join('.' + f for f in _FORMATS)}, got {str(path)!r}")
    return fmt


def plot_report(report: _RowsAndTotals, path: str | os.PathLike) -> None:
    """Write :func:`render_report` atomically to ``path``, in the format of its suffix."""
    data = render_report(report, plot_format(path))
    with atomic_open(path, "wb") as f:
        f.write(data)


def render_report(report: _RowsAndTotals, fmt: str = "png") -> bytes:
    """Two panels: ACs and MACs per sample of each synaptic layer (log scale; the unpruned count
    as an outline), and the firing rate of each neuron layer. Returns the figure as ``fmt`` bytes."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(_FORMATS)}, got {fmt!r}")
    totals = report.totals
    synaptic = [r for r in report.rows if r["kind"] == "synaptic"]
    neurons = [r for r in report.rows if r["kind"] == "neuron" and r["firing_rate"] is not None]
    n = totals["samples"]
    spiking = totals["spiking"]

    width = max(7.0, 0.32 * max(len(synaptic), len(neurons)) + 2.0)
    fig = Figure(figsize=(width, 7.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax_ops, ax_rate = fig.subplots(2, 1, height_ratios=(3, 2))

    xs = range(len(synaptic))
    acs = [r["acs"] / n for r in synaptic]
    macs = [r["macs"] / n for r in synaptic]
    dense = [(r["dense_acs"] + r["dense_macs"]) / n for r in synaptic]
    if spiking:  # an ANN has MACs only
        ax_ops.bar(xs, acs, width=0.8, color="#1f77b4", label="ACs (spike inputs)")
    ax_ops.bar(xs, macs, width=0.8, bottom=acs, color="#ff7f0e", label="MACs (real-valued inputs)")
    # The unpruned count on top, as an outline: the gap above a bar is what pruning saved.
    ax_ops.bar(
        xs,
        dense,
        width=0.8,
        facecolor="none",
        edgecolor="0.2",
        linewidth=0.8,
        linestyle="--",
        label="unpruned weights",
        zorder=3,
    )
    if any(v > 0 for v in dense):
        ax_ops.set_yscale("log")
    ax_ops.set_ylabel("operations per sample")
    ax_ops.set_xticks(list(xs), [r["name"] for r in synaptic], rotation=90, fontsize=7)
    ax_ops.set_xlim(-0.6, len(synaptic) - 0.4)
    ax_ops.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, frameon=False)
    fig.suptitle(
        f"{totals['acs_per_sample']:.4g} ACs + {totals['macs_per_sample']:.4g} MACs per sample "
        f"(unpruned: {totals['dense_acs'] / n:.4g} + {totals['dense_macs'] / n:.4g}); "
        f"{n} samples x {totals['time_steps']} time steps",
        fontsize=9,
    )

    rates = [r["firing_rate"] for r in neurons]
    ax_rate.bar(range(len(neurons)), rates, width=0.8, color="#2ca02c")
    ax_rate.set_ylabel("firing rate\n(spikes / neuron / step)" if spiking else "fraction of nonzero activations")
    ax_rate.set_xticks(list(range(len(neurons))), [r["name"] for r in neurons], rotation=90, fontsize=7)
    ax_rate.set_xlim(-0.6, max(len(neurons), 1) - 0.4)
    ax_rate.set_ylim(0, max([1.0, *rates]))
    for ax in (ax_ops, ax_rate):
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(axis="y", labelsize=8)

    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=200)
    return buffer.getvalue()
