"""``snn-lats export``: the finalized plain model of a checkpoint.

    snn-lats export --checkpoint runs/demo/model_best.pth --out runs/demo/export

Writes ``model.safetensors`` and ``model.pth`` (pruned weights baked in; they load strictly into
the network built without pruning) and ``export.json`` (architecture, sparsity, accuracy).
"""

from __future__ import annotations

import argparse
import sys

__all__ = [
    "add_parser",
    "run",
]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the finalized pruned model (safetensors + .pth + export.json)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by snn-lats train")
    parser.add_argument("--out", required=True, help="output directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snn_lats.engine.export import export_checkpoint

    try:
        info = export_checkpoint(args.checkpoint, args.out)
    except ValueError as error:
        print(f"snn-lats export: error: {error}", file=sys.stderr)
        return 2
    accuracy = info["accuracy"]
    print(
        f"exported {info['architecture']['model']} (epoch {info['epoch']}) to {args.out}: "
        f"global weight sparsity {100 * info['sparsity']['global']:.2f}%"
        + (f", top-1 {accuracy['acc1']:.2f}%" if accuracy else "")
    )
    return 0
