"""``snn-lats compare``: ANN runs against SNN runs (or any runs), side by side.

    snn-lats compare runs/ann_* runs/snn_* --out runs/compare

Reads each run's ``summary.json`` (written by ``snn-lats train`` at its end). Refuses runs that
differ in data set, image size or SOP convention (``--force`` compares them anyway, with a warning
for each difference). Reports accuracy, weight sparsity, activity per inference (spikes per neuron
over all time steps for an SNN, the fraction of nonzero activations for an ANN; and per time step),
ACs, MACs and dense FLOPs per sample, and energy (compute only, and with memory traffic); and,
per synaptic layer, its sparsity, input activity and operations in every run. Writes
``compare.json``, ``compare.csv``, ``compare_layers.json`` and three plots: accuracy against
energy, accuracy against weight sparsity (ANN and SNN as two series on shared axes), and
per-layer weight sparsity.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from snn_lats.cli._args import plain
from snn_lats.cli.commands import SUBCOMMANDS

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    from snn_lats.estimators import CONVENTIONS

    parser = subparsers.add_parser(
        "compare",
        help=SUBCOMMANDS["compare"],
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", help="run directories (holding summary.json) or summary.json files")
    parser.add_argument("--names", help="comma-separated names of the runs (default: the directory names)")
    parser.add_argument("--energy-preset", help="energy figures per AC/MAC (default: 45nm-fp32)")
    parser.add_argument("--out", default="runs/compare", help="output directory (default: runs/compare)")
    parser.add_argument(
        "--convention",
        choices=tuple(CONVENTIONS),
        help="recount every run's model_best.pth under this SOP convention (default: the count each summary holds)",
    )
    parser.add_argument(
        "--batches",
        type=int,
        help="validation batches recounted with --convention (default: each run's --sops-batches)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="compare runs that differ in data, image size or SOP convention (each difference is a warning)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snn_lats._io import atomic_open, check_writable
    from snn_lats.workflows.compare import compare, render_comparison

    try:
        check_writable(args.out, "--out", directory=True)
        names = [n.strip() for n in args.names.split(",")] if args.names else None
        if args.batches is not None and args.batches < 1:
            raise ValueError(f"--batches must be >= 1, got {args.batches}")
        report, layers = compare(
            args.runs, names, args.energy_preset, force=args.force, convention=args.convention, batches=args.batches
        )
    except ValueError as error:
        print(f"snn-lats compare: error: {error}", file=sys.stderr)
        return 2
    # Everything rendered first, then written atomically: an error leaves no half of it behind.
    files = {"compare.json": report.to_json(), "compare.csv": report.to_csv(), "compare_layers.json": layers.to_json()}
    files |= render_comparison(report, layers)
    out = Path(args.out)
    written = []
    for name, content in files.items():
        with atomic_open(out / name, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        written.append(out / name)
    for note in report.notes:
        if note.startswith("NOT MEASURED ALIKE"):
            print(f"snn-lats compare: warning: {note}", file=sys.stderr)
    print(report.table())
    print()
    print(layers.table())
    print(f"\nwritten: {', '.join(str(p) for p in written)}")
    return 0
