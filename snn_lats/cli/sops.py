"""``snn-lats sops``: mask-aware synaptic operations, firing rates and energy of a network.

Of a trained (pruned) checkpoint, with its own saved thresholds::

    snn-lats sops --checkpoint runs/demo/model_best.pth --batches 8 --json sops.json --plot sops.png

Of a network built from flags (random weights: the architecture's cost at a given activity)::

    snn-lats sops --model sew_resnet18 --T 4 --width 16 --stem cifar --dataset digits --batches 4

``--convention`` chooses the counting rule (exact, neurobench, syops, sinabs, paper:
docs/concepts.md). Counts ``--batches`` batches of the validation images of ``--data-path``
(ImageNet layout: train/ and val/ class folders) or of the built-in offline digits. Data settings default to the
checkpoint's; without a checkpoint, to the digits unless ``--data-path`` is given. Output files
(``--json``, ``--csv``, ``--plot``) are written only once everything has been counted, and
atomically: an error leaves none of them behind.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from snn_lats.cli._args import add_config_flag, add_network_arguments, plain
from snn_lats.cli.commands import SUBCOMMANDS

__all__ = ["DATA_FLAGS", "add_parser", "count", "run"]

#: Data flags (TrainConfig field names) that override the checkpoint's or the defaults, with their help.
DATA_FLAGS = {
    "dataset": "where the images come from, as for snn-lats train (default without a checkpoint: "
    "imagefolder if --data-path is given, else the offline digits)",
    "data_path": "the data set's folder (imagefolder: train/<class>/* and val/<class>/*; event data: the "
    "publisher's files, extracted)",
    "image_size": "digits, MNIST, Fashion-MNIST, CIFAR: side of the images; event data: of the frames (default: "
    "the data set's own)",
    "split_by": "event data: frames of equal event counts (number) or durations (time) (default: number)",
    "val_resize_size": "image folders: resize before the centre crop (default: 256)",
    "val_crop_size": "image folders: centre crop (default: 224)",
    "bad_images": "an unreadable image: skip it or fail",
    "batch_size": "images per batch (default: 32)",
    "workers": "data loading processes (default: 4)",
    "device": "default: auto",
    "threads": "CPU threads (default: the cores free for this process, or $OMP_NUM_THREADS)",
}


def add_parser(subparsers) -> None:
    from snn_lats.estimators import CONVENTIONS, DEFAULT_CONVENTION, ENERGY_PRESETS
    from snn_lats.estimators.energy import DEFAULT_PRESET

    parser = subparsers.add_parser(
        "sops",
        help=SUBCOMMANDS["sops"],
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", help="a checkpoint written by snn-lats train")
    parser.add_argument(
        "--recipe", help="a YAML recipe (models/*.yaml) naming the network and data (without --checkpoint)"
    )
    parser.add_argument("--batches", type=int, default=4, help="validation batches to count (default: 4)")

    g = parser.add_argument_group("network (without --checkpoint)")
    add_network_arguments(g, model_help="a name of snn_lats.networks.names() (default: sew_resnet18)")

    g = parser.add_argument_group("data (default: the checkpoint's)")
    for name, help in DATA_FLAGS.items():
        add_config_flag(g, name, help)

    g = parser.add_argument_group("counting")
    g.add_argument(
        "--convention",
        default=DEFAULT_CONVENTION,
        choices=tuple(CONVENTIONS),
        help=f"how operations are counted: {'; '.join(f'{k}: {v}' for k, v in CONVENTIONS.items())} "
        f"(default: {DEFAULT_CONVENTION})",
    )
    g.add_argument(
        "--extras", action="store_true", help="also count bias adds, neuron updates, normalisation and pooling"
    )
    g.add_argument(
        "--functional",
        action="store_true",
        help="also count F.conv*/F.linear calls and matmul products outside modules (exact convention)",
    )

    g = parser.add_argument_group("output")
    g.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=tuple(ENERGY_PRESETS),
        help=f"energy per operation (Horowitz, ISSCC 2014, 45 nm) (default: {DEFAULT_PRESET})",
    )
    g.add_argument("--json", help="write the report as JSON to this file")
    g.add_argument("--csv", help="write the per-layer rows as CSV to this file")
    g.add_argument("--plot", help="write a figure of per-layer operations and firing rates (.png, .pdf, .svg)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        report, text = count(args)
    except ValueError as error:  # bad flags, recipe, data or checkpoint: no file written
        print(f"snn-lats sops: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an output file could not be written
        print(f"snn-lats sops: error: {error}", file=sys.stderr)
        return 1
    print(text)
    return 0


def count(args: argparse.Namespace):
    """Build the network and data, count ``args.batches`` batches, write the requested files.
    Returns ``(report, text to print)``; ValueError for any bad input, before any file is written."""
    from snn_lats._io import atomic_open, check_writable
    from snn_lats.engine.recipe import NETWORK_FIELDS, resolve_config
    from snn_lats.estimators.plot import plot_format, render_report

    if args.batches < 1:
        raise ValueError(f"--batches must be >= 1, got {args.batches}")
    for flag in ("json", "csv", "plot"):  # before the counting, not after it
        if getattr(args, flag):
            check_writable(getattr(args, flag), f"--{flag}")
    if args.functional and args.convention != "exact":
        raise ValueError("--functional counts by the exact rule only: drop --convention or give exact")
    plot_fmt = plot_format(args.plot) if args.plot else None
    given = {k: getattr(args, k) for k in (*NETWORK_FIELDS, *DATA_FLAGS) if getattr(args, k) is not None}
    if args.checkpoint and args.recipe:
        raise ValueError("--recipe cannot be combined with --checkpoint: the network is the checkpoint's")
    if not args.checkpoint:
        if "dataset" not in given and not args.recipe:
            given["dataset"] = "imagefolder" if args.data_path else "digits"
        config = resolve_config(given, args.recipe)
    from snn_lats.workflows import sops_of_checkpoint, sops_of_network  # torch: after the checks above

    options = dict(extras=args.extras, functional=args.functional)
    if args.checkpoint:
        report = sops_of_checkpoint(args.checkpoint, given, args.batches, args.convention, **options)
        source = args.checkpoint
    else:
        report = sops_of_network(config, args.batches, args.convention, **options)
        source = f"{config.model} (untrained)"

    # Render every file first, then write them all atomically: none is left behind by an error.
    outputs = []
    if args.json:
        outputs.append((args.json, "w", report.to_json()))
    if args.csv:
        outputs.append((args.csv, "w", report.to_csv()))
    if args.plot:
        outputs.append((args.plot, "wb", render_report(report, plot_fmt)))
    with contextlib.ExitStack() as stack:
        for path, mode, content in outputs:
            stack.enter_context(atomic_open(path, mode)).write(content)

    energy = report.energy_pj(args.preset)
    memory = report.memory_energy_pj(args.preset)["total"]
    summary = (
        f"{source}: {report.acs_per_sample:.4g} ACs + {report.macs_per_sample:.4g} MACs per sample "
        f"({report.convention} convention; dense FLOPs {report.flops_per_sample:.4g}; {report.samples} samples, "
        f"{report.totals['time_steps']} time steps); energy {energy / 1e6:.4g} uJ per sample ({args.preset}), "
        f"{memory / 1e6:.4g} uJ with memory traffic (Lemaire et al. 2022)"
    )
    return report, report.table() + "\n\n" + summary
