"""A checkpoint's validation accuracy with its BatchNorm running statistics, and with them
recomputed on the training data: how much of an accuracy loss is stale statistics.

The running statistics are an average over the training steps, while the weights move under
them; a layer pruned fast and late (a target's final correction moves every threshold at the
last step) leaves them describing weights it no longer has. ``snn-lats train`` recomputes them
when the pruning window ends (``--recalibrate-bn``, on by default); this command measures what
that does to a checkpoint trained without it (``snn_lats.pruning.recalibrate_batchnorm``, one
pass over the training set in train mode, no gradient, the plain average over the batches)::

    python benchmarks/bn_statistics.py runs/x/checkpoint.pth [--batches N]
"""

from __future__ import annotations

import argparse
import itertools

import torch

from snn_lats.data import build_datasets, build_loaders
from snn_lats.engine.evaluation import evaluate
from snn_lats.engine.model import build_model_from_checkpoint, checkpoint_config
from snn_lats.pruning import recalibrate_batchnorm


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint written by snn-lats train")
    parser.add_argument("--batches", type=int, help="training batches to recompute on (default: all)")
    args = parser.parse_args(argv)
    model, checkpoint = build_model_from_checkpoint(args.checkpoint)
    config = checkpoint_config(checkpoint)
    train_set, val_set, _ = build_datasets(config)
    train_loader, val_loader = build_loaders(train_set, val_set, config.batch_size, 0, seed=config.seed)
    device = torch.device("cpu")
    before = evaluate(model, val_loader, device).metrics["acc1"]
    torch.manual_seed(config.seed)  # the training set's augmentation
    batches = itertools.islice(train_loader, args.batches)
    recalibrate_batchnorm(model, (batch.images for batch in batches))
    after = evaluate(model, val_loader, device).metrics["acc1"]
    print(f"validation top-1: {before:.2f} % with the running statistics, {after:.2f} % recomputed on the training set")


if __name__ == "__main__":
    main()
