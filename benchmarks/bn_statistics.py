"""A checkpoint's validation accuracy with its BatchNorm running statistics, and with them
recomputed on the training data: how much of an accuracy loss is stale statistics.

The running statistics are an average over the training steps, while the weights move under
them; a layer pruned fast and late (SOP-aware LATS empties the first stage, a target's final
snap moves every threshold at the last step) leaves them describing weights it no longer has.
Recomputing them (one pass over the training set in train mode, no gradient, the plain average
over the batches) is the test::

    python benchmarks/bn_statistics.py runs/x/checkpoint.pth [--batches N]
"""

from __future__ import annotations

import argparse

import torch
from spikingjelly.activation_based import functional as sj_functional

from snn_lats.data import build_datasets, build_loaders
from snn_lats.engine.checkpoint import load_checkpoint
from snn_lats.engine.model import build_model_from_checkpoint
from snn_lats.engine.recipe import TrainConfig


@torch.no_grad()
def top1(model: torch.nn.Module, loader) -> float:
    model.eval()
    correct = total = 0
    for images, targets, *_ in loader:
        sj_functional.reset_net(model)
        correct += int((model(images).argmax(1) == targets).sum())
        total += len(targets)
    return 100.0 * correct / total


@torch.no_grad()
def recompute_statistics(model: torch.nn.Module, loader, batches: int | None) -> None:
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # the plain average over the batches seen
    model.train()
    for i, (images, *_) in enumerate(loader):
        if batches is not None and i == batches:
            break
        sj_functional.reset_net(model)
        model(images)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint written by snn-lats train")
    parser.add_argument("--batches", type=int, help="training batches to recompute on (default: all)")
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint(args.checkpoint)
    model, _ = build_model_from_checkpoint(checkpoint)
    config = TrainConfig.from_dict(checkpoint["config"])
    train_set, val_set, _ = build_datasets(config)
    train_loader, val_loader = build_loaders(train_set, val_set, config.batch_size, 0, seed=config.seed)
    before = top1(model, val_loader)
    torch.manual_seed(config.seed)  # the training set's augmentation
    recompute_statistics(model, train_loader, args.batches)
    after = top1(model, val_loader)
    print(f"validation top-1: {before:.2f} % with the running statistics, {after:.2f} % recomputed on the training set")


if __name__ == "__main__":
    main()
