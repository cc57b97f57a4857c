"""``snn-lats compare``: runs side by side (an ANN against an SNN, or any runs).

    snn-lats compare runs/resnet18_lats runs/sew_resnet18_lats --out runs/compare

Reads each run's ``summary.json`` (written by ``snn-lats train`` at its end) and reports accuracy,
weight sparsity (global and per layer), activation sparsity (1 - firing rate), ACs and MACs per
sample, and energy. Writes ``compare.json``, ``compare_layers.json``, ``compare.csv`` and two plots:
per-layer weight sparsity bars, and accuracy against energy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


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
    from snn_lats.engine.compare import compare, plot_comparison

    try:
        names = [n.strip() for n in args.names.split(",")] if args.names else None
        report, layers = compare(args.runs, names, args.energy_preset)
    except ValueError as error:
        print(f"snn-lats compare: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    written = [out / "compare.json", out / "compare.csv", out / "compare_layers.json"]
    report.to_json(written[0])
    report.to_csv(written[1])
    layers.to_json(written[2])
    written += plot_comparison(report, layers, out)
    print(report.table())
    print()
    print(layers.table())
    print(f"\nwritten: {', '.join(str(p) for p in written)}")
    return 0
