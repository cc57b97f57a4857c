"""The one evaluation path: accuracy over a loader, with the synaptic operations and firing rates
of its first batches counted on the way, and the one way from a checkpoint to its validation data.

:func:`evaluate` serves every epoch of training, ``snn-lats evaluate`` (and ``train --test-only``)
through :func:`evaluate_checkpoint`, and ``snn-lats sops`` through :func:`count_sops`, like the
one ``evaluate`` of torchvision's reference script. :func:`checkpoint_loader` (with
:func:`~snn_lats.engine.model.build_model_from_checkpoint`) serves evaluation, export,
``compare --convention`` and ``snn-lats sops --checkpoint``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from snn_lats.data import DataError, build_datasets, build_loaders
from snn_lats.engine import distributed as dist_utils
from snn_lats.engine.checkpoint import CheckpointError, check_architecture, load_checkpoint
from snn_lats.engine.logger import RunLogger
from snn_lats.engine.model import build_model_from_checkpoint, checkpoint_config
from snn_lats.engine.recipe import TrainConfig
from snn_lats.engine.summary import RunSummary
from snn_lats.estimators import SOPReport, SynapticOpCounter
from snn_lats.pruning import sparsity_report

__all__ = [
    "Evaluation",
    "EvaluationStopped",
    "autocast",
    "autocast_dtype",
    "checkpoint_loader",
    "count_sops",
    "evaluate",
    "evaluate_checkpoint",
]


class EvaluationStopped(RuntimeError):
    """``should_stop()`` said so between two batches: the evaluation was abandoned."""


class Evaluation(NamedTuple):
    metrics: dict[str, float]  # loss, acc1, acc5 (%), samples, skipped_images
    sops: SOPReport | None  # of the counted batches (this rank's), None when none was counted


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``; no mixed precision when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    *,
    criterion: nn.Module | None = None,
    sops_batches: int = 0,
    batches: int | None = None,
    channels_last: bool = False,
    amp_dtype: torch.dtype | None = None,
    logger: RunLogger | None = None,
    should_stop: Callable[[], bool] | None = None,
    sops_convention: str = "exact",
    sops_extras: bool = False,
    sops_functional: bool = False,
) -> Evaluation:
    """Loss, top-1 and top-5 accuracy (%) over ``loader`` (summed over all ranks), and the
    synaptic operations and firing rates of this rank's first ``sops_batches`` batches.

    ``batches`` stops after that many batches (default: the whole loader). ``model`` may be
    wrapped in DistributedDataParallel: the counter hooks the network inside. ``should_stop`` is
    asked before every batch (on every rank: it may be a collective); True raises
    :class:`EvaluationStopped`, so that a preempted run need not finish a long validation first.
    """
    model.eval()
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    network = model.module if isinstance(model, DistributedDataParallel) else model
    counter = (
        SynapticOpCounter(network, convention=sops_convention, extras=sops_extras, functional=sops_functional)
        if sops_batches > 0
        else None
    )
    total = len(loader) if batches is None else min(batches, len(loader))
    logger = logger if logger is not None else RunLogger(None, tensorboard=False)
    loss_sum = correct1 = correct5 = samples = skipped = 0.0
    progress = logger.progress(loader, total=total, desc="val")
    for i, (images, targets, n_skipped) in enumerate(progress):
        if i == total:
            break
        if should_stop is not None and should_stop():
            raise EvaluationStopped("evaluation stopped between two batches")
        skipped += n_skipped
        if images.numel() == 0:
            continue
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        counting = counter if counter is not None and i < sops_batches else contextlib.nullcontext()
        with autocast(device, amp_dtype), counting:
            output = model(images)
        loss_sum += float(criterion(output.float(), targets)) * targets.numel()
        top = output.topk(min(5, output.shape[1]), dim=1).indices
        correct1 += float((top[:, 0] == targets).sum())
        correct5 += float((top == targets[:, None]).any(dim=1).sum())
        samples += targets.numel()
        progress.update({"acc1": 100.0 * correct1 / samples})  # a bar, or a line every --print-freq batches
    progress.close()
    loss_sum, correct1, correct5, samples, skipped = dist_utils.all_reduce_sum(
        [loss_sum, correct1, correct5, samples, skipped], device
    )
    if samples == 0:
        raise DataError(f"nothing was counted or evaluated: no readable image in the {total} validation batches read")
    metrics = {
        "loss": loss_sum / samples,
        "acc1": 100.0 * correct1 / samples,
        "acc5": 100.0 * correct5 / samples,
        "samples": int(samples),
        "skipped_images": int(skipped),
    }
    return Evaluation(metrics, counter.report() if counter is not None and counter.samples else None)


def count_sops(
    model: nn.Module,
    loader,
    batches: int,
    device: torch.device | str = "cpu",
    convention: str = "exact",
    *,
    extras: bool = False,
    functional: bool = False,
) -> SOPReport:
    """The :class:`~snn_lats.estimators.SOPReport` of ``model`` over the first ``batches`` batches of
    ``loader``, counted by ``convention``; :class:`~snn_lats.data.DataError` when none of them held
    a readable image."""
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    result = evaluate(
        model,
        loader,
        torch.device(device),
        sops_batches=batches,
        batches=batches,
        sops_convention=convention,
        sops_extras=extras,
        sops_functional=functional,
    )
    return result.sops


def checkpoint_loader(
    checkpoint: Mapping[str, Any], config: TrainConfig, ctx: dist_utils.DistributedContext | None = None
):
    """The validation loader of ``config``'s data (this rank's shard), refusing data of another
    number of classes than the checkpoint's."""
    ctx = ctx or dist_utils.DistributedContext()
    _, val_set, num_classes = build_datasets(config, train=False)
    if num_classes != checkpoint["num_classes"]:
        raise CheckpointError(f"the checkpoint has {checkpoint['num_classes']} classes, the data {num_classes}")
    return build_loaders(
        None, val_set, config.batch_size, config.workers, rank=ctx.rank, world_size=ctx.world_size, seed=config.seed
    )[1]


def evaluate_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, Any],
    config: TrainConfig | None = None,
    ctx: dist_utils.DistributedContext | None = None,
) -> RunSummary:
    """Accuracy, sparsity and (``config.sops_batches`` > 0) synaptic operations of a checkpoint,
    evaluated with its own saved thresholds; also runs sharded under torchrun.

    ``checkpoint`` is a path or an already loaded checkpoint (not read again). ``config`` supplies
    the data and evaluation settings (default: the checkpoint's own); its architecture must be the
    checkpoint's.
    """
    path = None
    if not isinstance(checkpoint, Mapping):
        path, checkpoint = str(checkpoint), load_checkpoint(checkpoint)
    if config is None:
        config = checkpoint_config(checkpoint)
    else:
        check_architecture(checkpoint, config.to_dict())
    if ctx is None:
        ctx = dist_utils.DistributedContext(device=dist_utils.resolve_device(config.device))
    dist_utils.configure_threads(config.threads, config.workers)
    val_loader = checkpoint_loader(checkpoint, config, ctx)
    model, _ = build_model_from_checkpoint(checkpoint, ctx.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    logger = RunLogger(None, enabled=ctx.is_main, tensorboard=False, print_freq=config.print_freq)
    metrics, sops = evaluate(
        model,
        val_loader,
        ctx.device,
        criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        sops_batches=config.sops_batches if ctx.is_main else 0,
        channels_last=config.channels_last,
        amp_dtype=autocast_dtype(config, ctx.device),
        logger=logger,
    )
    return RunSummary(
        config=config.to_dict(),
        accuracy=metrics,
        sparsity=sparsity_report(model),
        sops=sops,
        history=list(checkpoint.get("history") or []),
        epochs_completed=int(checkpoint["epoch"]),
        best=checkpoint.get("best"),
        skipped_images=metrics["skipped_images"],
        checkpoint=path or config.resume,
        bn_recalibration=checkpoint.get("bn_recalibration"),
    )


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``config.amp`` on ``device``; None without ``--amp``.

    ``config.amp_dtype`` when given; otherwise bfloat16 where the device computes it natively (the
    CPU; CUDA GPUs from Ampere on), float16 elsewhere. bfloat16 has float32's exponent range and
    needs no loss scaling; float16 trains with a ``GradScaler``. ValueError for bfloat16 on a GPU
    without it (which would emulate it slowly).
    """
    if not config.amp:
        return None
    native_bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported(including_emulation=False)
    if config.amp_dtype is None:
        return torch.bfloat16 if native_bf16 else torch.float16
    if config.amp_dtype == "bfloat16" and not native_bf16:
        raise ValueError(
            f"--amp-dtype bfloat16: {torch.cuda.get_device_name(device)} has no native bfloat16; "
            "use --amp-dtype float16"
        )
    return getattr(torch, config.amp_dtype)
