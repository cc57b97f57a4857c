"""``snn-lats train``: train (and prune) a network; flags named as in torchvision's reference train.py.

Single process::

    snn-lats train --recipe models/demo_digits.yaml --output-dir runs/demo

Several processes (DDP; NCCL on GPU, gloo on CPU), ``-b`` being the batch of each process::

    torchrun --nproc_per_node=8 -m snn_lats train --recipe models/sew_resnet18_imagenet_lats.yaml \\
        --data-path /data/imagenet --output-dir runs/sew18

A recipe supplies defaults; flags given explicitly override it. ``--resume CHECKPOINT`` alone
continues a run with the configuration saved in the checkpoint (flags given still override it).
"""

from __future__ import annotations

import argparse
import sys

from snn_lats.cli._args import add_training_arguments, explicit_flags

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train and prune a network (torchrun for several processes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snn_lats.cli.evaluate import print_evaluation
    from snn_lats.engine.checkpoint import load_checkpoint
    from snn_lats.engine.recipe import resolve_config
    from snn_lats.engine.trainer import NonFiniteLossError, TrainingInterrupted, train

    try:
        checkpoint = load_checkpoint(args.resume) if args.resume else None
        base = checkpoint["config"] if checkpoint is not None else None
        config = resolve_config(explicit_flags(args), args.recipe, base=base)
        summary = train(config, checkpoint=checkpoint)
    except TrainingInterrupted as error:
        print(f"snn-lats train: {error}", file=sys.stderr)
        return 128 + error.signum
    except NonFiniteLossError as error:
        print(f"snn-lats train: error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:  # bad flags, recipe, data or checkpoint: nothing was written
        print(f"snn-lats train: error: {error}", file=sys.stderr)
        return 2
    if config.test_only:
        print_evaluation(summary)
    return 0
