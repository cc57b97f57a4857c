"""The training loop: ``train(config)`` reads top to bottom, like torchvision's reference train.py.

data → network → optimizer → pruner → lr schedule → (resume) → DDP → epochs of
[train, evaluate, log, checkpoint] → summary.json.

Reliability:
- ``--resume`` continues exactly: the order of the training data and the RNG state at the
  start of every epoch are functions of ``(seed, epoch, rank)`` only, and the checkpoint holds
  every other piece of state. A checkpoint written mid-epoch (on SIGTERM/SIGINT) resumes at the
  next batch in the same order; the random augmentation of the rest of that epoch is the same
  only for a single process with ``workers=0``.
- SIGTERM/SIGINT: the step in progress is abandoned, a checkpoint of the last completed step is
  written, and :class:`TrainingInterrupted` is raised (exit code 128 + signal number).
- A non-finite loss stops the run (:class:`NonFiniteLossError`) before it reaches the weights;
  the last checkpoint written is kept as it is.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from snn_lats._io import atomic_write_text
from snn_lats.engine import distributed as dist_utils
from snn_lats.engine.checkpoint import (
    CheckpointError,
    check_architecture,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from snn_lats.engine.data import build_datasets, build_loaders, set_epoch
from snn_lats.engine.logger import RunLogger, plot_history
from snn_lats.engine.model import build_model, build_model_from_checkpoint, build_pruner
from snn_lats.engine.optim import build_lr_scheduler, build_optimizer, planned_step_lrs
from snn_lats.engine.recipe import TrainConfig
from snn_lats.estimators import SOPReport, SynapticOpCounter
from snn_lats.pruning import SoftThresholdPruner, sparsity_report

ModelBuilder = Callable[[TrainConfig, int], nn.Module]


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; a checkpoint of the last completed step was written."""

    def __init__(self, signum: int, checkpoint: str | None):
        self.signum = signum
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        where = f"; checkpoint of the last completed step: {checkpoint}" if checkpoint else ""
        super().__init__(f"training interrupted by {name}{where}")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the weights were not updated with it."""


# ----------------------------------------------------------------------------------------------
# The run


def train(config: TrainConfig, build_model_fn: ModelBuilder | None = None) -> dict[str, Any]:
    """Train (or, with ``config.test_only``, evaluate) as ``config`` says; return the summary.

    Launch under ``torchrun`` for several processes. ``build_model_fn(config, num_classes)``
    replaces :func:`~snn_lats.engine.model.build_model` (a network outside the registry).
    """
    config.validate()
    ctx = dist_utils.init_distributed(config.device)
    try:
        if config.test_only:
            return evaluate_checkpoint(config.resume, config, ctx=ctx)
        with _StopOnSignal() as stop:
            return _train(config, ctx, build_model_fn or build_model, stop)
    finally:
        dist_utils.cleanup_distributed()


def _train(
    config: TrainConfig, ctx: dist_utils.DistributedContext, build_model_fn: ModelBuilder, stop: "_StopOnSignal"
) -> dict[str, Any]:
    device = ctx.device
    output_dir = Path(config.output_dir)

    # -- data, and the checkpoint to resume from: both checked before anything is written -------
    train_set, val_set, num_classes = build_datasets(
        config.dataset,
        config.data_path,
        train_crop_size=config.train_crop_size,
        val_resize_size=config.val_resize_size,
        val_crop_size=config.val_crop_size,
        image_size=config.image_size,
        bad_images=config.bad_images,
        augment=config.augment,
    )
    train_loader, val_loader = build_loaders(
        train_set,
        val_set,
        config.batch_size,
        config.workers,
        rank=ctx.rank,
        world_size=ctx.world_size,
        seed=config.seed,
        pin_memory=device.type == "cuda",
    )
    steps_per_epoch = len(train_loader)
    checkpoint = None
    if config.resume:
        checkpoint = load_checkpoint(config.resume)
        check_architecture(checkpoint, config.to_dict(), num_classes)

    # -- network, optimizer, pruner, lr schedule, AMP ----------------------------------------------
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = build_model_fn(config, num_classes).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.sync_bn and ctx.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(config, model)
    pruner = build_pruner(config, model, optimizer, steps_per_epoch, planned_step_lrs(config, steps_per_epoch))
    lr_scheduler = build_lr_scheduler(config, optimizer)  # after the pruner: "learnable" adds a group
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    # -- resume --------------------------------------------------------------------------------------
    state = RunState()
    if checkpoint is not None:
        state = _restore(checkpoint, model, optimizer, lr_scheduler, pruner, scaler)

    # -- logging (rank 0), the run's configuration -----------------------------------------------
    logger = RunLogger(output_dir, enabled=ctx.is_main, print_freq=config.print_freq)
    console = RunLogger(None, enabled=ctx.is_main, tensorboard=False, print_freq=config.print_freq)
    if ctx.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / "config.yaml", config.to_yaml())
        atomic_write_text(output_dir / "config.json", config.to_json())
        console.print("Configuration:\n" + _indent(config.to_yaml()))
        console.print(
            f"{ctx.world_size} process(es) on {device}; {len(train_set)} training and "
            f"{len(val_set)} validation images, {num_classes} classes; {steps_per_epoch} steps per epoch"
        )

    # DDP after the pruner: the parametrizations are part of the module DDP wraps.
    train_model = model
    if ctx.distributed:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # -- the epochs ----------------------------------------------------------------------------------
    metrics: dict[str, float] = state.history[-1]["val"] if state.history else {}
    sops: SOPReport | None = None
    start_epoch = state.epoch
    for epoch in range(start_epoch, config.epochs):
        started = time.time()
        _seed_epoch(config.seed, epoch, ctx.rank, state)
        set_epoch(train_loader, epoch, config.seed, skip_batches=state.epoch_step)
        train_metrics = train_one_epoch(
            train_model,
            criterion,
            optimizer,
            pruner,
            scaler,
            train_loader,
            ctx,
            config,
            epoch,
            state,
            logger,
            stop,
            lambda: _save(
                output_dir / "checkpoint.pth",
                ctx,
                config,
                num_classes,
                model,
                optimizer,
                lr_scheduler,
                pruner,
                scaler,
                state,
            ),
        )
        epoch_lr = optimizer.param_groups[0]["lr"]  # the lr this epoch trained with
        lr_scheduler.step()
        # Firing rates and SOPs are counted on rank 0 only (hooks, no collective).
        metrics, sops = evaluate(
            train_model,
            val_loader,
            criterion,
            ctx,
            config,
            logger,
            count_model=model,
            count_batches=config.sops_batches if ctx.is_main else 0,
        )
        state.epoch, state.epoch_step = epoch + 1, 0
        sparsity = sparsity_report(model)
        record = {
            "epoch": epoch,
            "train": train_metrics,
            "val": metrics,
            "lr": epoch_lr,
            "threshold": pruner.threshold if pruner else 0.0,
            "sparsity": sparsity.global_sparsity,
            "epoch_time_s": time.time() - started,
        }
        state.history.append(record)

        # "Best" only among epochs at the final sparsity: once pruning has ended.
        at_final_sparsity = config.prune == "none" or epoch + 1 >= config.pruning_end_epoch
        is_best = at_final_sparsity and (state.best is None or metrics["acc1"] > state.best["acc1"])
        if is_best:
            state.best = {"epoch": epoch, "acc1": metrics["acc1"], "sparsity": sparsity.global_sparsity}
        _log_epoch(logger, record, sparsity, sops, pruner, is_best)
        _save(
            output_dir / "checkpoint.pth",
            ctx,
            config,
            num_classes,
            model,
            optimizer,
            lr_scheduler,
            pruner,
            scaler,
            state,
            best_copy=output_dir / "model_best.pth" if is_best else None,
        )
        if _any_rank(stop.signum is not None, device):
            raise TrainingInterrupted(stop.signum or signal.SIGTERM, str(output_dir / "checkpoint.pth"))

    if state.epoch == start_epoch:  # resumed after the last epoch: no evaluation yet
        metrics, sops = evaluate(
            train_model,
            val_loader,
            criterion,
            ctx,
            config,
            console,
            count_model=model,
            count_batches=config.sops_batches if ctx.is_main else 0,
        )
    logger.close()
    return _final_summary(config, ctx, model, metrics, sops, state, output_dir, console, write=True)


class RunState:
    """Progress of a run: what a checkpoint holds besides the modules' own state dicts."""

    def __init__(self) -> None:
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps completed in all
        self.epoch_step = 0  # steps completed in the epoch in progress
        self.partial: dict[str, float] = {}  # running sums of the epoch in progress
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.skipped_images = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
            "partial": dict(self.partial),
            "history": self.history,
            "best": self.best,
            "skipped_images": self.skipped_images,
        }


# ----------------------------------------------------------------------------------------------
# One epoch


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    pruner: SoftThresholdPruner | None,
    scaler: torch.amp.GradScaler,
    loader,
    ctx: dist_utils.DistributedContext,
    config: TrainConfig,
    epoch: int,
    state: RunState,
    logger: RunLogger,
    stop: "_StopOnSignal",
    save_checkpoint_fn: Callable[[], None],
) -> dict[str, float]:
    """One pass over this rank's shard; returns loss and top-1 accuracy averaged over all ranks."""
    model.train()
    device = ctx.device
    sums = {"loss": 0.0, "correct": 0.0, "samples": 0.0, "skipped": 0.0, **state.partial}
    progress = logger.progress(
        loader, total=state.epoch_step + len(loader), desc=f"epoch {epoch}", start=state.epoch_step
    )
    started, seen = time.time(), 0
    for images, targets, skipped in progress:
        sums["skipped"] += skipped
        if images.numel() == 0:
            raise RuntimeError("every image of a batch was unreadable; check the data set (see the warnings)")
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(config, device):
            output = model(images)
            loss = criterion(output, targets)
        loss_value = loss.item()
        if _any_rank(not math.isfinite(loss_value), device):  # every rank stops at the same step
            raise NonFiniteLossError(
                f"the loss is not finite at epoch {epoch}, step {state.epoch_step} of the epoch ({state.step} in "
                f"all; this rank's loss: {loss_value}); training stopped before updating the weights. The last "
                f"checkpoint in {config.output_dir} (if any) is kept. Try a lower --lr, or without --amp."
            )

        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if pruner is not None and pruner.has_pending_step:  # False when GradScaler skipped the step
            pruner.step()

        state.step += 1
        state.epoch_step += 1
        n = targets.numel()
        seen += n
        sums["loss"] += loss_value * n
        sums["correct"] += float((output.argmax(1) == targets).sum())
        sums["samples"] += n
        state.partial = dict(sums)
        if progress.count % config.print_freq == 0 or progress.count == progress.total:
            figures = {
                "loss": loss_value,
                "acc1": 100.0 * sums["correct"] / sums["samples"],
                "img/s": seen * ctx.world_size / max(time.time() - started, 1e-9),
                "lr": optimizer.param_groups[0]["lr"],
            }
            if pruner is not None:
                figures.update(threshold=pruner.threshold, sparsity=pruner.sparsity().global_sparsity)
            progress.update(figures)
            logger.scalars(
                state.step,
                {
                    "loss": loss_value,
                    "lr": optimizer.param_groups[0]["lr"],
                    "threshold": figures.get("threshold"),
                    "implied_l1": pruner.implied_l1() if pruner else None,
                },
                prefix="step/",
            )
        # Checked after a completed step and before the next batch is drawn, so that the
        # checkpoint's RNG state is the one the next batch starts from.
        if _any_rank(stop.signum is not None, device):
            save_checkpoint_fn()
            raise TrainingInterrupted(stop.signum or signal.SIGTERM, str(Path(config.output_dir) / "checkpoint.pth"))
    progress.close()
    loss_sum, correct, samples, skipped = dist_utils.all_reduce_sum(
        [sums["loss"], sums["correct"], sums["samples"], sums["skipped"]], device
    )
    state.partial = {}
    state.skipped_images += int(skipped)
    return {
        "loss": loss_sum / max(samples, 1),
        "acc1": 100.0 * correct / max(samples, 1),
        "skipped_images": int(skipped),
        "images_per_s": seen * ctx.world_size / max(time.time() - started, 1e-9),
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    criterion: nn.Module,
    ctx: dist_utils.DistributedContext,
    config: TrainConfig,
    logger: RunLogger,
    count_model: nn.Module | None = None,
    count_batches: int = 0,
) -> tuple[dict[str, float], SOPReport | None]:
    """Loss, top-1 and top-5 accuracy (%) over the whole validation set (all ranks), and the
    synaptic operations and firing rates of ``count_model`` over this rank's first ``count_batches``."""
    model.eval()
    device = ctx.device
    counter = SynapticOpCounter(count_model) if count_model is not None and count_batches > 0 else None
    loss_sum = correct1 = correct5 = samples = skipped = 0.0
    progress = logger.progress(loader, total=len(loader), desc="val")
    for i, (images, targets, n_skipped) in enumerate(progress):
        skipped += n_skipped
        if images.numel() == 0:
            continue
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        counting = counter if counter is not None and i < count_batches else contextlib.nullcontext()
        with _autocast(config, device), counting:
            output = model(images)
        loss_sum += float(criterion(output.float(), targets)) * targets.numel()
        top = output.topk(min(5, output.shape[1]), dim=1).indices
        correct1 += float((top[:, 0] == targets).sum())
        correct5 += float((top == targets[:, None]).any(dim=1).sum())
        samples += targets.numel()
    progress.close()
    loss_sum, correct1, correct5, samples, skipped = dist_utils.all_reduce_sum(
        [loss_sum, correct1, correct5, samples, skipped], device
    )
    if samples == 0:
        raise RuntimeError("no validation image could be read")
    metrics = {
        "loss": loss_sum / samples,
        "acc1": 100.0 * correct1 / samples,
        "acc5": 100.0 * correct5 / samples,
        "samples": int(samples),
        "skipped_images": int(skipped),
    }
    return metrics, (counter.report() if counter is not None and counter.samples else None)


def evaluate_checkpoint(
    path: str,
    config: TrainConfig | None = None,
    ctx: dist_utils.DistributedContext | None = None,
) -> dict[str, Any]:
    """Accuracy, sparsity and (``config.sops_batches`` > 0) synaptic operations of a checkpoint,
    evaluated with its own saved thresholds; also runs sharded under torchrun.

    ``config`` supplies the data and evaluation settings (default: the checkpoint's own); its
    architecture must be the checkpoint's. Returns ``{"checkpoint", "epoch", "accuracy",
    "sparsity": SparsityReport, "sops": SOPReport | None}``.
    """
    checkpoint = load_checkpoint(path)
    if config is None:
        config = TrainConfig.from_dict(checkpoint["config"])
    else:
        check_architecture(checkpoint, config.to_dict())
    if ctx is None:
        ctx = dist_utils.DistributedContext(device=dist_utils.resolve_device(config.device))
    _, val_set, num_classes = build_datasets(
        config.dataset,
        config.data_path,
        train_crop_size=config.train_crop_size,
        val_resize_size=config.val_resize_size,
        val_crop_size=config.val_crop_size,
        image_size=config.image_size,
        bad_images=config.bad_images,
        augment=False,
    )
    if num_classes != checkpoint["num_classes"]:
        raise CheckpointError(f"the checkpoint has {checkpoint['num_classes']} classes, the data {num_classes}")
    _, val_loader = build_loaders(
        val_set, val_set, config.batch_size, config.workers, rank=ctx.rank, world_size=ctx.world_size, seed=config.seed
    )
    model, _ = build_model_from_checkpoint(checkpoint, ctx.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    console = RunLogger(None, enabled=ctx.is_main, tensorboard=False, print_freq=config.print_freq)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    metrics, sops = evaluate(
        model,
        val_loader,
        criterion,
        ctx,
        config,
        console,
        count_model=model,
        count_batches=config.sops_batches if ctx.is_main else 0,
    )
    return {
        "checkpoint": str(path),
        "epoch": checkpoint["epoch"],
        "accuracy": metrics,
        "sparsity": sparsity_report(model),
        "sops": sops,
    }


# ----------------------------------------------------------------------------------------------
# Pieces


def _autocast(config: TrainConfig, device: torch.device):
    if not config.amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any (one small all-reduce under torchrun)."""
    return dist_utils.all_reduce_max(float(flag), device) > 0


def _seed_epoch(seed: int, epoch: int, rank: int, state: RunState) -> None:
    """Every RNG at the start of an epoch is a function of (seed, epoch, rank); a mid-epoch
    resume keeps the RNG state restored from the checkpoint instead."""
    if state.epoch_step:
        return
    value = (seed * 1_000_003 + epoch * 1_009 + rank) % 2**32
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


def _save(
    path: Path,
    ctx,
    config: TrainConfig,
    num_classes: int,
    model: nn.Module,
    optimizer,
    lr_scheduler,
    pruner: SoftThresholdPruner | None,
    scaler,
    state: RunState,
    best_copy: Path | None = None,
) -> None:
    if not ctx.is_main:
        return
    content = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "pruner": pruner.state_dict() if pruner is not None else None,
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "rng": rng_state(),
        "config": config.to_dict(),
        "num_classes": num_classes,
        **state.to_dict(),
    }
    save_checkpoint(path, content)
    if best_copy is not None:
        save_checkpoint(best_copy, content)


def _restore(checkpoint: Mapping[str, Any], model, optimizer, lr_scheduler, pruner, scaler) -> RunState:
    load_model_state(model, checkpoint["model"])
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
        lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
        if pruner is not None:
            if checkpoint.get("pruner") is None:
                raise ValueError("the checkpoint has no pruner state (it was trained with --prune none)")
            pruner.load_state_dict(checkpoint["pruner"])
        if scaler.is_enabled() and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"the checkpoint's training state does not fit this run: {error}") from None
    set_rng_state(checkpoint["rng"])
    state = RunState()
    state.epoch, state.step = int(checkpoint["epoch"]), int(checkpoint["step"])
    state.epoch_step = int(checkpoint.get("epoch_step", 0))
    state.partial = dict(checkpoint.get("partial") or {})
    state.history = list(checkpoint.get("history") or [])
    state.best = checkpoint.get("best")
    state.skipped_images = int(checkpoint.get("skipped_images", 0))
    return state


def _log_epoch(logger: RunLogger, record: dict, sparsity, sops: SOPReport | None, pruner, is_best: bool) -> None:
    epoch, train_m, val_m = record["epoch"], record["train"], record["val"]
    logger.scalars(epoch, {"loss": train_m["loss"], "acc1": train_m["acc1"]}, prefix="train/")
    logger.scalars(epoch, {"loss": val_m["loss"], "acc1": val_m["acc1"], "acc5": val_m["acc5"]}, prefix="val/")
    logger.scalars(
        epoch,
        {"lr": record["lr"], "epoch_time_s": record["epoch_time_s"], "images_per_s": train_m["images_per_s"]},
        prefix="epoch/",
    )
    if pruner is not None:
        logger.scalars(epoch, {"threshold": pruner.threshold, "implied_l1": pruner.implied_l1()}, prefix="pruning/")
    logger.scalars(epoch, {"global": sparsity.global_sparsity}, prefix="sparsity/")
    logger.scalars(epoch, {row["name"]: 1.0 - row["density"] for row in sparsity.rows}, prefix="sparsity/")
    if sops is not None:
        logger.scalars(epoch, {row["name"]: row["firing_rate"] for row in sops.neuron_rows()}, prefix="firing_rate/")
    logger.flush()
    threshold = f"  threshold {record['threshold']:.4g}" if pruner is not None else ""
    skipped = train_m["skipped_images"] + val_m["skipped_images"]
    logger.print(
        f"epoch {epoch}: train loss {train_m['loss']:.4f} acc1 {train_m['acc1']:.2f}  |  val loss "
        f"{val_m['loss']:.4f} acc1 {val_m['acc1']:.2f} acc5 {val_m['acc5']:.2f}  |  sparsity "
        f"{100 * record['sparsity']:.2f}%{threshold}  lr {record['lr']:.4g}  "
        f"{train_m['images_per_s']:.0f} img/s  {record['epoch_time_s']:.1f}s"
        + (f"  ({skipped} unreadable images skipped)" if skipped else "")
        + ("  *best*" if is_best else "")
    )


def _final_summary(
    config: TrainConfig,
    ctx,
    model: nn.Module,
    metrics: dict,
    sops: SOPReport | None,
    state: RunState,
    output_dir: Path,
    console: RunLogger,
    write: bool,
) -> dict[str, Any]:
    sparsity = sparsity_report(model)
    summary = {
        "config": config.to_dict(),
        "accuracy": {"acc1": metrics["acc1"], "acc5": metrics["acc5"], "loss": metrics["loss"]},
        "epochs_completed": state.epoch,
        "best": state.best,
        "skipped_images": state.skipped_images,
        "sparsity": sparsity.to_dict(),
        "sops": sops.to_dict() if sops is not None else None,
        "energy_pj_per_sample": sops.energy_pj() if sops is not None else None,
        "firing_rates": {r["name"]: r["firing_rate"] for r in sops.neuron_rows()} if sops is not None else {},
        "history": state.history,
    }
    if not ctx.is_main:
        return summary
    if write:
        atomic_write_text(output_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        if sops is not None:
            sops.to_json(output_dir / "sops.json")
            sops.plot(str(output_dir / "sops.png"))
        sparsity.to_json(output_dir / "sparsity.json")
        if state.history:
            plot_history(state.history, output_dir / "training.png")
    console.print()
    if sops is not None:
        console.print(sops.table())
        console.print()
        rates = ", ".join(f"{name} {rate:.3f}" for name, rate in summary["firing_rates"].items())
        console.print(f"firing rates (spikes per neuron per time step): {rates}")
    console.print(
        f"accuracy: top-1 {metrics['acc1']:.2f}%  top-5 {metrics['acc5']:.2f}%  |  global weight sparsity "
        f"{100 * sparsity.global_sparsity:.2f}%"
        + (f"  |  energy {summary['energy_pj_per_sample'] / 1e6:.4g} uJ per sample" if sops is not None else "")
    )
    if warning := sparsity.warning():
        console.print(warning)
    if write:
        console.print(
            f"run directory: {output_dir} (checkpoint.pth, model_best.pth, summary.json, sops.png, "
            f"training.png, tensorboard/)"
        )
    return summary


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip().splitlines())


class _StopOnSignal:
    """Record SIGTERM/SIGINT instead of dying mid-step; the loop checks ``signum`` between steps.
    Restores the previous handlers on exit. Only installable from the main thread."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.signum = signum

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
