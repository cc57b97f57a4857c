"""``snn-lats export``: the finalized plain model of a checkpoint, in deployment formats.

    snn-lats export --checkpoint runs/demo/model_best.pth --out runs/demo/export
    snn-lats export --checkpoint runs/demo/model_best.pth --out runs/demo/export --format dense sparse nir

``--format`` (one or more):
  dense   model.safetensors and model.pth (pruned weights baked in; they load strictly into the
          network built without pruning)
  sparse  model.sparse.safetensors: each pruned weight as a bitmask plus its nonzero values
          (snn_lats.deploy.load_sparse reads it back into a dense state dict)
  nir     model.nir: the NIR graph of a SEW ResNet, BatchNorm folded into the convolutions
          (needs the nir package: pip install 'snn-lats[nir]')

Writes export.json (architecture, sparsity, nonzeros per layer, file sizes, the SOP report of the
source model on --sops-batches validation batches) and prints the same.
"""

from __future__ import annotations

import argparse
import sys

from snn_lats.cli._args import plain
from snn_lats.cli.commands import SUBCOMMANDS
from snn_lats.deploy.formats import DEFAULT_DT, FORMATS

__all__ = [
    "add_parser",
    "run",
]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help=SUBCOMMANDS["export"],
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by snn-lats train")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--format",
        nargs="+",
        choices=tuple(FORMATS),
        default=["dense"],
        help="one or more of: %(choices)s (default: dense)",
    )
    parser.add_argument(
        "--input-shape",
        nargs=3,
        type=int,
        metavar=("C", "H", "W"),
        help="input of the NIR graph (default: that of the checkpoint's validation images)",
    )
    parser.add_argument("--dt", type=float, help=f"seconds per time step in the NIR graph (default: {DEFAULT_DT})")
    parser.add_argument(
        "--sops-batches",
        type=int,
        default=4,
        help="validation batches counted for the SOP report of the source model; 0: none (default: 4)",
    )
    parser.add_argument("--data-path", help="the validation data's folder (default: the checkpoint's)")
    parser.add_argument(
        "--threads", type=int, help="CPU threads (default: the cores free for this process, or $OMP_NUM_THREADS)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snn_lats._io import check_writable

    if args.sops_batches < 0:
        print("snn-lats export: error: --sops-batches must be >= 0", file=sys.stderr)
        return 2
    nir_only = [flag for flag, value in (("--input-shape", args.input_shape), ("--dt", args.dt)) if value is not None]
    if nir_only and "nir" not in args.format:
        print(f"snn-lats export: error: {' and '.join(nir_only)}: for --format nir only", file=sys.stderr)
        return 2
    if args.dt is not None and not args.dt > 0:
        print(f"snn-lats export: error: --dt must be > 0 seconds, got {args.dt}", file=sys.stderr)
        return 2
    try:
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        check_writable(args.out, "--out", directory=True)  # before torch is imported
    except ValueError as error:
        print(f"snn-lats export: error: {error}", file=sys.stderr)
        return 2
    from snn_lats.engine.distributed import configure_threads
    from snn_lats.workflows.export import export_checkpoint

    try:
        configure_threads(args.threads)
        info = export_checkpoint(
            args.checkpoint,
            args.out,
            args.format,
            input_shape=args.input_shape,
            dt=DEFAULT_DT if args.dt is None else args.dt,
            sops_batches=args.sops_batches,
            data_path=args.data_path,
        )
    except (ValueError, ImportError) as error:
        print(f"snn-lats export: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an output file could not be written
        print(f"snn-lats export: error: {error}", file=sys.stderr)
        return 1
    from snn_lats.estimators import SOPReport
    from snn_lats.report import Report

    print(Report.from_dict(info["nonzeros"]).table())
    if info["sops"] is not None:
        print()
        print(SOPReport.from_dict(info["sops"]).table())
    accuracy = info["accuracy"]
    print(
        f"\nexported {info['architecture']['model']} (epoch {info['epoch']}) to {args.out}: "
        f"global weight sparsity {100 * info['sparsity']['global']:.2f}%"
        + (f", top-1 {accuracy['acc1']:.2f}%" if accuracy else "")
    )
    sizes = info["sizes"]
    for name, size in sizes["bytes"].items():
        print(f"  {name}: {size:,} bytes")
    if "sparse_vs_dense" in sizes:
        print(
            f"  sparse file {sizes['bytes']['model.sparse.safetensors']:,} bytes, dense safetensors "
            f"{sizes['dense_safetensors_bytes']:,} bytes: {sizes['sparse_vs_dense']:.2f}x smaller"
        )
    if info["nir"]:
        n = info["nir"]
        print(
            f"  NIR graph: {n['nodes']} nodes, {n['edges']} edges, input {'x'.join(map(str, n['input_shape']))}, "
            f"dt {n['dt']:g} s, T {n['T']} ({n['readout']})"
        )
    return 0
