"""``snn-lats train``: train (and prune) a network; flags named as in torchvision's reference train.py.

Single process::

    snn-lats train --recipe models/demo_digits.yaml --output-dir runs/demo

Several processes (DDP; NCCL on GPU, gloo on CPU), ``-b`` being the batch of each process::

    torchrun --nproc_per_node=8 -m snn_lats train --recipe models/sew_resnet18_imagenet_lats.yaml \\
        --data-path /data/imagenet --output-dir runs/sew18

A recipe supplies defaults; flags given explicitly override it. ``--resume CHECKPOINT`` alone
continues a run with the configuration saved in the checkpoint, writing next to it;
``--resume auto`` continues the output directory's checkpoint if there is one (a torchrun
restart, a requeued job) and starts afresh otherwise. A flag that would change the resumed run
(lr, epochs, batch size, pruning, data, seed, ...) is refused.

Exit codes: 0 done; 2 bad input (nothing written); 1 a failure while running (the loss became
non-finite, the disk refused a write, a peer process died or stalled); 128 + N interrupted by
signal N (SIGTERM: 143, SIGINT: 130) after writing a checkpoint of the last completed step.
"""

from __future__ import annotations

import argparse
import os
import sys

from snn_lats.cli._args import add_training_arguments, explicit_flags, plain
from snn_lats.cli.commands import SUBCOMMANDS

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help=SUBCOMMANDS["train"],
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snn_lats.engine.rundir import resolve_run

    try:  # before torch is imported (unless a checkpoint is read): a bad configuration is refused at once
        config, checkpoint = resolve_run(explicit_flags(args), args.recipe)
    except (ValueError, OSError) as error:  # bad flags, an unusable or unreadable recipe or checkpoint
        print(f"snn-lats train: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("snn-lats train: interrupted before training started; nothing was written", file=sys.stderr)
        return 130

    from snn_lats.cli.evaluate import print_evaluation
    from snn_lats.engine.distributed import PeerFailure
    from snn_lats.engine.trainer import NonFiniteLossError, TrainingInterrupted, train

    try:
        summary = train(config, checkpoint=checkpoint)
    except TrainingInterrupted as error:
        print(f"snn-lats train: {error}", file=sys.stderr)
        return 128 + error.signum
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of the step in progress
        print("snn-lats train: aborted by a second Ctrl-C; the last checkpoint written is intact", file=sys.stderr)
        return 130
    except NonFiniteLossError as error:
        print(f"snn-lats train: error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:  # bad data, or a flag that needs the network or the data: nothing was written
        print(f"snn-lats train: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a write the disk refused (full, read-only); atomic writes keep the last files
        reason = error if error.filename is not None or not error.strerror else error.strerror
        print(f"snn-lats train: error: {reason}", file=sys.stderr)
        return 1
    except PeerFailure as error:  # a peer died or stalled past --dist-timeout; torchrun may restart the job
        print(f"snn-lats train: error: {error}", file=sys.stderr)
        # Exit without tearing down: freeing DDP's gloo group after a timed-out collective can
        # deadlock on the GIL (its destructor joins a gloo thread that waits for the GIL to free the
        # collective's tensors; pytorch/pytorch#56297), and torchrun waits for this process forever.
        # The checkpoint and the logs are already closed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    if config.test_only:
        print_evaluation(summary)
    return 0
