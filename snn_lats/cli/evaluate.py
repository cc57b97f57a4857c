"""``snn-lats evaluate``: accuracy and sparsity of a checkpoint, with its own saved thresholds.

    snn-lats evaluate --checkpoint runs/demo/model_best.pth [--sops] [--json result.json]

Data and evaluation settings default to those the checkpoint was trained with; ``--data-path``,
``--dataset``, ``-b``, ``-j`` and ``--device`` override them. Same as ``snn-lats train --test-only``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

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
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="accuracy, sparsity (and --sops) of a checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by snn-lats train")
    parser.add_argument("--dataset", choices=("imagefolder", "digits"), help="default: the checkpoint's")
    parser.add_argument("--data-path", help="default: the checkpoint's")
    parser.add_argument("-b", "--batch-size", type=int, help="default: the checkpoint's")
    parser.add_argument("-j", "--workers", type=int, help="default: the checkpoint's")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: auto")
    parser.add_argument("--val-resize-size", type=int, help="default: the checkpoint's")
    parser.add_argument("--val-crop-size", type=int, help="default: the checkpoint's")
    parser.add_argument("--bad-images", choices=("skip", "fail"), help="default: the checkpoint's")
    parser.add_argument("--sops", action="store_true", help="also count synaptic operations and firing rates")
    parser.add_argument("--sops-batches", type=int, default=4, help="validation batches counted by --sops (default: 4)")
    parser.add_argument("--json", help="also write the result as JSON to this file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snn_lats._io import atomic_write_text
    from snn_lats.engine.checkpoint import load_checkpoint
    from snn_lats.engine.recipe import resolve_config
    from snn_lats.engine.trainer import evaluate_checkpoint

    if args.sops and args.sops_batches < 1:
        print("snn-lats evaluate: error: --sops-batches must be >= 1", file=sys.stderr)
        return 2
    try:
        base = load_checkpoint(args.checkpoint)["config"]
        explicit = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
        explicit["sops_batches"] = args.sops_batches if args.sops else 0
        config = resolve_config({**explicit, "device": args.device or "auto"}, base=base)
        result = evaluate_checkpoint(args.checkpoint, config)
    except ValueError as error:
        print(f"snn-lats evaluate: error: {error}", file=sys.stderr)
        return 2
    print_evaluation(result)
    if args.json:
        atomic_write_text(args.json, json.dumps(evaluation_to_dict(result), indent=2) + "\n")
    return 0


def evaluation_to_dict(result: dict) -> dict:
    return {
        "checkpoint": result["checkpoint"],
        "epoch": result["epoch"],
        "accuracy": result["accuracy"],
        "sparsity": result["sparsity"].to_dict(),
        "sops": result["sops"].to_dict() if result["sops"] is not None else None,
        "energy_pj_per_sample": result["sops"].energy_pj() if result["sops"] is not None else None,
    }


def print_evaluation(result: dict) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    accuracy, sparsity, sops = result["accuracy"], result["sparsity"], result["sops"]
    print(sparsity.table())
    print()
    if sops is not None:
        print(sops.table())
        print()
    print(
        f"{result['checkpoint']} (after {result['epoch']} epochs): top-1 {accuracy['acc1']:.2f}%  "
        f"top-5 {accuracy['acc5']:.2f}%  loss {accuracy['loss']:.4f}  on {accuracy['samples']} images  |  "
        f"global weight sparsity {100 * sparsity.global_sparsity:.2f}%"
        + (f"  |  energy {sops.energy_pj() / 1e6:.4g} uJ per sample" if sops is not None else "")
    )
    if warning := sparsity.warning():
        print(warning)
