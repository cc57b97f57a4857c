"""``snn-lats evaluate``: accuracy and sparsity of a checkpoint, with its own saved thresholds.

    snn-lats evaluate --checkpoint runs/demo/model_best.pth [--sops] [--json result.json]

Data and evaluation settings default to those the checkpoint was trained with; ``--data-path``,
``--dataset``, ``-b``, ``-j`` and ``--device`` override them. Same as ``snn-lats train --test-only``.
The ``--json`` file is a run summary (the layout of a run's ``summary.json``).
"""

from __future__ import annotations

import argparse
import os
import sys

from snn_lats.cli._args import add_config_flag, plain
from snn_lats.cli.commands import SUBCOMMANDS

__all__ = ["OVERRIDES", "add_parser", "print_evaluation", "run"]

#: Flags of this command that override the checkpoint's configuration (field names).
OVERRIDES = (
    "dataset",
    "data_path",
    "batch_size",
    "workers",
    "device",
    "val_resize_size",
    "val_crop_size",
    "bad_images",
    "threads",
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help=SUBCOMMANDS["evaluate"],
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by snn-lats train")
    for name in OVERRIDES:
        here = {"device": "default: auto", "threads": "default: $OMP_NUM_THREADS, else this machine's free cores"}
        add_config_flag(parser, name, here.get(name, "default: the checkpoint's"))
    parser.add_argument("--sops", action="store_true", help="also count synaptic operations and firing rates")
    parser.add_argument("--sops-batches", type=int, default=4, help="validation batches counted by --sops (default: 4)")
    parser.add_argument("--json", help="also write the result as JSON to this file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snn_lats._io import check_writable
    from snn_lats.engine.recipe import resolve_config

    if args.sops and args.sops_batches < 1:
        print("snn-lats evaluate: error: --sops-batches must be >= 1", file=sys.stderr)
        return 2
    try:
        if args.json:  # before the evaluation, not after it (and before torch is imported)
            check_writable(args.json, "--json")
        from snn_lats.engine.checkpoint import load_checkpoint
        from snn_lats.engine.evaluation import evaluate_checkpoint

        checkpoint = load_checkpoint(args.checkpoint)
        explicit = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
        explicit["sops_batches"] = args.sops_batches if args.sops else 0
        config = resolve_config(explicit, base=checkpoint["config"], resuming=False)
        summary = evaluate_checkpoint(checkpoint, config)
    except ValueError as error:
        print(f"snn-lats evaluate: error: {error}", file=sys.stderr)
        return 2
    summary.checkpoint = args.checkpoint
    print_evaluation(summary)
    if args.json:
        summary.write(args.json)
    return 0


def print_evaluation(summary) -> None:
    """The sparsity and SOP tables of an evaluation's :class:`~snn_lats.engine.summary.RunSummary`,
    then one line of figures (rank 0 only)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    accuracy, sparsity, sops = summary.accuracy, summary.sparsity, summary.sops
    print(sparsity.table())
    print()
    if sops is not None:
        print(sops.table())
        print()
    energy = summary.energy_pj_per_sample()
    print(
        f"{summary.checkpoint} (after {summary.epochs_completed} epochs): top-1 {accuracy['acc1']:.2f}%  "
        f"top-5 {accuracy['acc5']:.2f}%  loss {accuracy['loss']:.4f}  on {accuracy['samples']} images  |  "
        f"global {sparsity.describe()}"
        + (f"  |  energy {energy / 1e6:.4g} uJ per sample ({summary.energy_preset})" if energy is not None else "")
    )
    if warning := sparsity.warning():
        print(warning)
