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
from typing import Any

from snn_lats.engine.recipe import FIELD_NAMES, GRADIENTS, LR_SCHEDULERS, PRUNE_MODES, TrainConfig

_DEFAULTS = TrainConfig()


def _default(name: str) -> str:
    return f" (default: {getattr(_DEFAULTS, name)})"


def add_network_arguments(group, model_help: str) -> None:
    """The flags that choose and shape a network (shared by ``train`` and ``sops``)."""
    group.add_argument("--model", help=model_help)
    group.add_argument("--T", type=int, dest="T", help="time steps of a spiking network (default: the network's)")
    group.add_argument("--neuron", help="spiking neuron: if, lif, plif (default: the network's)")
    group.add_argument("--cnf", help="SEW connect function: ADD, AND, IAND (default: the network's)")
    group.add_argument("--backend", help="neuron backend: auto, cupy, torch (default: the network's)")
    group.add_argument("--width", type=int, help="ResNets: channels of the first stage (default: the network's, 64)")
    group.add_argument("--width-mult", type=float, help="MobileNet-V1: width multiplier alpha (default: 1)")
    group.add_argument("--stem", choices=("imagenet", "cifar"), help="imagenet, or cifar for small images")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Every :class:`~snn_lats.engine.recipe.TrainConfig` field as a flag whose default is None,
    so that the flags actually given can be told from the recipe's and the built-in defaults."""
    opt = parser.add_argument
    flag = argparse.BooleanOptionalAction
    opt("--recipe", help="a YAML recipe (models/*.yaml) supplying defaults for every flag below")

    g = parser.add_argument_group("data")
    g.add_argument(
        "--dataset",
        choices=("imagefolder", "digits"),
        help="imagefolder: --data-path with train/ and val/ class folders (ImageNet layout); digits: "
        "scikit-learn's offline handwritten digits" + _default("dataset"),
    )
    g.add_argument("--data-path", help="root holding train/<class>/* and val/<class>/*")
    g.add_argument("--image-size", type=int, help="digits only: side of the upsampled images" + _default("image_size"))
    g.add_argument("--train-crop-size", type=int, help=_default("train_crop_size").strip())
    g.add_argument("--val-resize-size", type=int, help=_default("val_resize_size").strip())
    g.add_argument("--val-crop-size", type=int, help=_default("val_crop_size").strip())
    g.add_argument(
        "--augment", action=flag, help="random crops (and flips for image folders) in training (default: on)"
    )
    g.add_argument(
        "--bad-images",
        choices=("skip", "fail"),
        help="an unreadable image: skip it (warn, count in the log) or fail" + _default("bad_images"),
    )
    g.add_argument("-j", "--workers", type=int, help="data loading processes per rank" + _default("workers"))

    g = parser.add_argument_group("network")
    add_network_arguments(g, model_help="a name of snn_lats.networks.names()" + _default("model"))

    g = parser.add_argument_group("optimisation")
    g.add_argument("-b", "--batch-size", type=int, help="images per process and step" + _default("batch_size"))
    g.add_argument("--epochs", type=int, help=_default("epochs").strip())
    g.add_argument("--lr", type=float, help="initial learning rate" + _default("lr"))
    g.add_argument("--momentum", type=float, help=_default("momentum").strip())
    g.add_argument(
        "--wd",
        "--weight-decay",
        type=float,
        dest="weight_decay",
        help="weight decay of theta and every non-norm parameter" + _default("weight_decay"),
    )
    g.add_argument("--norm-weight-decay", type=float, help="weight decay of normalisation layers (default: --wd)")
    g.add_argument("--label-smoothing", type=float, help=_default("label_smoothing").strip())
    g.add_argument("--lr-scheduler", choices=LR_SCHEDULERS, help="per-epoch schedule" + _default("lr_scheduler"))
    g.add_argument("--lr-warmup-epochs", type=int, help=_default("lr_warmup_epochs").strip())
    g.add_argument("--lr-warmup-decay", type=float, help="warm-up starts at lr * decay" + _default("lr_warmup_decay"))
    g.add_argument("--lr-step-size", type=int, help="step schedule: epochs per decay" + _default("lr_step_size"))
    g.add_argument("--lr-gamma", type=float, help="step schedule: decay factor" + _default("lr_gamma"))
    g.add_argument("--lr-min", type=float, help="cosine schedule: final lr" + _default("lr_min"))
    g.add_argument("--amp", action=flag, help="mixed precision (float16 + GradScaler on CUDA, bfloat16 on CPU)")
    g.add_argument("--channels-last", action=flag, help="channels-last memory format")
    g.add_argument("--sync-bn", action=flag, help="synchronised BatchNorm across processes (CUDA only)")

    g = parser.add_argument_group("pruning (soft threshold w = S_d(theta))")
    g.add_argument("--prune", choices=PRUNE_MODES, help="threshold schedule" + _default("prune"))
    g.add_argument("--l1", type=float, help="lats/pgh: the constant L1 coefficient lambda; d grows by lambda * lr")
    g.add_argument("--final-threshold", type=float, help="the final threshold D (instead of --l1)")
    g.add_argument(
        "--target-sparsity",
        type=float,
        help="lats: the global weight sparsity to end the pruning window at, e.g. 0.95 (instead of "
        "--l1/--final-threshold); lambda is re-estimated 32 times over the window",
    )
    g.add_argument(
        "--beta", type=float, help="pgh: lambda is scaled by beta**x over the window, > 0 (< 1 prunes early, 1 is LATS)"
    )
    g.add_argument(
        "--prune-start-epoch", type=int, help="dense training before this epoch" + _default("prune_start_epoch")
    )
    g.add_argument("--prune-end-epoch", type=int, help="the threshold stops growing here (default: --epochs)")
    g.add_argument("--dense-first-last", action=flag, help="keep the first conv and the classifier dense")
    g.add_argument("--gradient", choices=GRADIENTS, help="d w/d theta" + _default("gradient"))

    g = parser.add_argument_group("run")
    g.add_argument("--output-dir", help="run directory: checkpoints, TensorBoard, summary" + _default("output_dir"))
    g.add_argument("--resume", help="checkpoint to continue from (its configuration is the base)")
    g.add_argument("--test-only", action=flag, help="only evaluate the --resume checkpoint")
    g.add_argument("--print-freq", type=int, help="steps between log lines" + _default("print_freq"))
    g.add_argument("--seed", type=int, help=_default("seed").strip())
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), help=_default("device").strip())
    g.add_argument(
        "--sops-batches",
        type=int,
        help="validation batches (rank 0) counted for firing rates and synaptic operations" + _default("sops_batches"),
    )


def explicit_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration fields the user set on the command line."""
    return {k: v for k, v in vars(args).items() if k in FIELD_NAMES and k != "recipe" and v is not None}


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
    from snn_lats.engine.checkpoint import load_checkpoint
    from snn_lats.engine.recipe import resolve_config
    from snn_lats.engine.trainer import NonFiniteLossError, TrainingInterrupted, train

    try:
        base = load_checkpoint(args.resume)["config"] if args.resume else None
        config = resolve_config(explicit_flags(args), args.recipe, base=base)
        summary = train(config)
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
        _print_evaluation(summary)
    return 0


def _print_evaluation(result: dict) -> None:
    from snn_lats.cli.evaluate import print_evaluation

    print_evaluation(result)
