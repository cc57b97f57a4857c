"""The training loop: ``train(config)`` reads top to bottom, like torchvision's reference train.py.
(~540 lines, on purpose: the loop is read in one place, as torchvision's is; its collaborators,
the run state, signals, logging and the run directory, are modules of their own.)

data → network → optimizer → pruner → lr schedule → (resume) → DDP → epochs of
[train, (BatchNorm recalibration when the pruning window ends), evaluate, log, checkpoint] →
summary.json.

Reliability:
- ``--resume`` continues exactly: the order of the training data and the RNG state at the
  start of every epoch are functions of ``(seed, epoch, rank)`` only (:mod:`snn_lats.data.seeding`),
  and the checkpoint holds every other piece of state
  (:class:`~snn_lats.engine.checkpoint.CheckpointSaver`). A checkpoint written mid-epoch (on
  SIGTERM/SIGINT) resumes at the next batch in the same order; the random augmentation of the
  rest of that epoch is the same only for a single process with ``workers=0``.
- SIGTERM/SIGINT: the step in progress is abandoned, a checkpoint of the last completed step is
  written, and :class:`~snn_lats.engine.signals.TrainingInterrupted` is raised (exit code 128 +
  signal number).
- A non-finite loss stops the run (:class:`NonFiniteLossError`) before it reaches the weights;
  the last checkpoint written is kept as it is.
"""

from __future__ import annotations

import itertools
import math
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from snn_lats._io import atomic_write_text, check_writable
from snn_lats.data import batch_mixing, build_datasets, build_loaders, collate, seeding, set_epoch
from snn_lats.engine import distributed as dist_utils
from snn_lats.engine.checkpoint import CheckpointSaver, check_architecture, load_checkpoint
from snn_lats.engine.distributed import any_rank
from snn_lats.engine.evaluation import EvaluationStopped, autocast, autocast_dtype, evaluate, evaluate_checkpoint
from snn_lats.engine.logger import RunLogger, log_epoch, print_summary, write_outputs
from snn_lats.engine.model import build_model, build_pruner, load_weights
from snn_lats.engine.optim import build_lr_scheduler, build_optimizer, planned_step_lrs
from snn_lats.engine.recipe import RecipeError, TrainConfig
from snn_lats.engine.rundir import RunDirectory, check_resume, claimed, find_checkpoint
from snn_lats.engine.signals import StopOnSignal, TrainingInterrupted
from snn_lats.engine.state import RunState
from snn_lats.engine.summary import RunSummary
from snn_lats.estimators import SOPReport
from snn_lats.networks import convert_sync_batchnorm
from snn_lats.pruning import SoftThresholdPruner, recalibrate_batchnorm, sparsity_report
from snn_lats.pruning.batchnorm import batchnorm_layers

__all__ = ["NonFiniteLossError", "RunState", "Training", "TrainingInterrupted", "train", "train_one_epoch"]

ModelBuilder = Callable[[TrainConfig, int], nn.Module]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the weights were not updated with it."""


# ----------------------------------------------------------------------------------------------
# The run


def train(
    config: TrainConfig,
    build_model_fn: ModelBuilder | None = None,
    *,
    checkpoint: Mapping[str, Any] | None = None,
) -> RunSummary:
    """Train (or, with ``config.test_only``, evaluate) as ``config`` says; return the summary.

    Launch under ``torchrun`` for several processes. ``build_model_fn(config, num_classes)``
    replaces :func:`~snn_lats.engine.model.build_model` (a network outside the registry).
    ``checkpoint`` is the one ``config.resume`` names, already loaded (it is then not read
    again); ``config.resume == "auto"`` continues the output directory's checkpoint if it has one.
    """
    config.validate()
    if not config.test_only:
        check_writable(config.output_dir, "--output-dir", directory=True)  # before any work
    source = find_checkpoint(config)
    if checkpoint is None and source is not None:
        checkpoint = load_checkpoint(source)
    if config.test_only and checkpoint is None:
        raise RecipeError(f"--test-only: {config.output_dir!r} holds no checkpoint to evaluate")
    ctx = dist_utils.init_distributed(config.device, config.dist_timeout)
    completed = False
    try:
        summary = _train_in(ctx, config, checkpoint, source, build_model_fn or build_model)
        completed = True
        return summary
    except RuntimeError as error:
        if ctx.distributed and dist_utils.peer_failure(error):
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise dist_utils.PeerFailure(
                f"another process of the job stopped answering (for --dist-timeout {config.dist_timeout:g} s) or "
                f"died: {first[:300]}; the last checkpoint is intact (--resume auto continues it)"
            ) from error
        raise
    finally:
        dist_utils.cleanup_distributed(synchronize=completed)


def _train_in(ctx, config: TrainConfig, checkpoint, source, build_model_fn: ModelBuilder) -> RunSummary:
    """:func:`train` once the process group is up: evaluate, finish, or run the epochs."""
    if config.test_only:
        return evaluate_checkpoint(checkpoint, config, ctx=ctx)
    if checkpoint is not None:
        check_resume(config, checkpoint, ctx.world_size)
        finished = _finished(config, checkpoint, ctx)
        if finished is not None:
            return finished
    with StopOnSignal() as stop:
        run = _prepare(config, ctx, build_model_fn, stop, checkpoint)
        with (
            claimed(RunDirectory(config.output_dir), ctx, source if checkpoint is not None else None),
            RunLogger(config.output_dir, enabled=ctx.is_main, print_freq=config.print_freq) as run.logger,
        ):
            return _run_epochs(run)


def _finished(config: TrainConfig, checkpoint: Mapping[str, Any], ctx) -> RunSummary | None:
    """The summary of a run that is complete (all its epochs and its summary.json written), said
    in one line instead of evaluated again; None when there is something left to do."""
    summary = Path(config.output_dir) / "summary.json"
    if int(checkpoint["epoch"]) < config.epochs or not summary.is_file():
        return None
    if ctx.is_main:
        print(
            f"snn-lats train: the run in {config.output_dir!r} is complete ({config.epochs} epochs): nothing to do; "
            "--test-only evaluates its checkpoint again, and --weights CHECKPOINT starts a new run from it"
        )
    return RunSummary.read(summary)


@dataclass
class Training:
    """What the steps and epochs of one run share, built once by :func:`_prepare`.

    ``model`` is the network itself; ``train_model`` the same wrapped in DDP (several processes);
    ``step_model`` that one compiled (``--compile``), which the measured steps of a cost target
    skip (:attr:`SoftThresholdPruner.measuring`). ``logger`` is set when the run directory is claimed.
    """

    config: TrainConfig
    ctx: dist_utils.DistributedContext
    stop: StopOnSignal
    train_set: Any
    train_loader: Any
    val_loader: Any
    num_classes: int
    model: nn.Module
    train_model: nn.Module
    step_model: nn.Module
    criterion: nn.Module
    mixing: Any  # MixUp/CutMix of training batches (None: off)
    optimizer: torch.optim.Optimizer
    pruner: SoftThresholdPruner | None
    lr_scheduler: Any
    scaler: torch.amp.GradScaler
    mixed_precision: torch.dtype | None
    state: RunState
    saver: CheckpointSaver
    threads: str = ""  # how the CPU threads were chosen, for the run's first lines
    logger: RunLogger | None = None

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    def stopping(self) -> bool:
        """Whether a stop signal arrived on any rank (a collective: every rank asks together)."""
        return any_rank(self.stop.signum is not None, self.device)

    def interrupt(self) -> TrainingInterrupted:
        """Write a checkpoint of the last completed step; the exception to raise."""
        self.saver.save()
        return TrainingInterrupted(self.stop.signum or signal.SIGTERM, str(self.saver.path))


# Long (~90 lines): the run's set-up in torchvision's order, data to DDP, each step a call.
def _prepare(
    config: TrainConfig,
    ctx: dist_utils.DistributedContext,
    build_model_fn: ModelBuilder,
    stop: StopOnSignal,
    checkpoint: Mapping[str, Any] | None,
) -> Training:
    """Data, network, optimizer, pruner, lr schedule and AMP, and the resumed state: everything
    checked before anything is written."""
    device = ctx.device
    threads = dist_utils.configure_threads(config.threads, config.workers)
    if config.sync_bn and not (ctx.distributed and device.type == "cuda"):
        where = "this run has one process"
        if ctx.distributed:
            where = f"these {ctx.world_size} processes run on the CPU (gloo)"
        raise ValueError(
            f"--sync-bn synchronises BatchNorm between CUDA processes (NCCL); {where}, where it cannot run or does "
            "nothing. Drop --sync-bn: each process then normalises over its own batch"
        )
    train_set, val_set, num_classes = build_datasets(config)
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
    record = config.to_dict()  # the configuration as a checkpoint and summary.json keep it
    if checkpoint is not None:
        check_architecture(checkpoint, record, num_classes)

    model = _network(config, ctx, build_model_fn, num_classes, resumed=checkpoint is not None)
    optimizer = build_optimizer(config, model)
    pruner = build_pruner(config, model, optimizer, steps_per_epoch, planned_step_lrs(config, steps_per_epoch))
    if pruner is not None and checkpoint is None and (pruner.target_sops or pruner.target_energy):
        images = _spread_batch(train_set, config.batch_size, device, config.channels_last)
        if images is not None:  # (else the first measurement in training checks it)
            pruner.check_target(images)
    lr_scheduler = build_lr_scheduler(config, optimizer)  # after the pruner: "learnable" adds a group
    mixed_precision = autocast_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=mixed_precision == torch.float16)  # bfloat16 needs none

    state = RunState()
    saver = CheckpointSaver(
        config.output_dir,
        model=model,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        pruner=pruner,
        scaler=scaler,
        run_state=state,
        config=record,
        num_classes=num_classes,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    if checkpoint is not None:
        saver.restore(checkpoint)
    # DDP after the pruner: the parametrizations are part of the module DDP wraps.
    train_model = model
    if ctx.distributed:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # --compile: the training steps (around DDP, so that dynamo splits the graph at DDP's buckets);
    # evaluation and the steps the cost meter measures stay eager: dynamo would trace the SOP
    # counter's hooks (a graph break per layer; inductor failed on them).
    step_model = torch.compile(train_model) if config.compile else train_model
    return Training(
        config=config,
        ctx=ctx,
        stop=stop,
        train_set=train_set,
        train_loader=train_loader,
        val_loader=val_loader,
        num_classes=num_classes,
        model=model,
        train_model=train_model,
        step_model=step_model,
        criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        mixing=batch_mixing(config.mixup_alpha, config.cutmix_alpha, num_classes),
        optimizer=optimizer,
        pruner=pruner,
        lr_scheduler=lr_scheduler,
        scaler=scaler,
        mixed_precision=mixed_precision,
        state=state,
        saver=saver,
        threads=threads,
    )


def _network(
    config: TrainConfig,
    ctx: dist_utils.DistributedContext,
    build_model_fn: ModelBuilder,
    num_classes: int,
    resumed: bool,
) -> nn.Module:
    """The network on its device: the same initial weights on every rank, or ``--weights`` (a
    resumed run continues from its own), channels-last and SyncBatchNorm as asked."""
    torch.manual_seed(config.seed)
    model = build_model_fn(config, num_classes)
    if config.weights and not resumed:
        loaded = load_weights(model, config)
        if ctx.is_main:
            print(loaded)
    model = model.to(ctx.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.sync_bn and ctx.distributed:
        model = convert_sync_batchnorm(model)  # multi-step BatchNorms keep T folded into the batch
    return model


# Long (~85 lines): the epoch loop itself, read in one place.
def _run_epochs(run: Training) -> RunSummary:
    """The epochs, in the claimed run directory: train, recalibrate, validate, log, checkpoint."""
    config, ctx, state, logger = run.config, run.ctx, run.state, run.logger
    output_dir = Path(config.output_dir)
    console = RunLogger(None, enabled=ctx.is_main, tensorboard=False, print_freq=config.print_freq)
    if ctx.is_main:
        atomic_write_text(output_dir / "config.yaml", config.to_yaml())
        atomic_write_text(output_dir / "config.json", config.to_json())
        console.print("Configuration:\n" + _indent(config.to_yaml()))
        console.print(
            f"{ctx.world_size} process(es) on {run.device}; {len(run.train_set)} training and "
            f"{len(run.val_loader.dataset)} validation images, {run.num_classes} classes; "
            f"{len(run.train_loader)} steps per epoch"
        )
        console.print(run.threads)

    validated_records = [r for r in state.history if r.get("val") is not None]
    metrics: dict[str, float] = validated_records[-1]["val"] if validated_records else {}
    sops: SOPReport | None = None
    start_epoch = state.epoch
    for epoch in range(start_epoch, config.epochs):
        started = time.time()
        if not state.epoch_step:  # a mid-epoch resume keeps the RNG state of its checkpoint
            seeding.seed_everything(seeding.epoch_seed(config.seed, epoch, ctx.rank))
        set_epoch(run.train_loader, epoch, config.seed, skip_batches=state.epoch_step)
        train_metrics = train_one_epoch(run, epoch)
        if _recalibrates(run, epoch):
            state.bn_recalibration = {"epoch": epoch, "batches": _recalibrate_batchnorm(run, epoch)}
            logger.print(
                f"epoch {epoch}: pruning ended: BatchNorm statistics recomputed on "
                f"{state.bn_recalibration['batches']} training batches"
            )
        validated = _validates(config, epoch)
        try:
            metrics, sops = _validate(run, logger) if validated else (metrics, sops)
        except EvaluationStopped:  # the epoch's steps are done: a resume validates, then goes on
            raise run.interrupt() from None
        epoch_lr = run.optimizer.param_groups[0]["lr"]  # the lr this epoch trained with
        run.lr_scheduler.step()
        state.epoch, state.epoch_step, state.partial = epoch + 1, 0, {}
        state.skipped_images += train_metrics["skipped_images"]
        sparsity = sparsity_report(run.model)
        record = {
            "epoch": epoch,
            "train": train_metrics,
            "val": metrics if validated else None,
            "lr": epoch_lr,
            "threshold": run.pruner.threshold if run.pruner else 0.0,
            "sparsity": sparsity.global_sparsity,
            "epoch_time_s": time.time() - started,
        }
        state.history.append(record)

        # "Best" only among epochs at the final sparsity: once pruning has ended.
        at_final_sparsity = config.prune == "none" or epoch + 1 >= config.pruning_end_epoch
        is_best = validated and at_final_sparsity and (state.best is None or metrics["acc1"] > state.best["acc1"])
        if is_best:
            state.best = {"epoch": epoch, "acc1": metrics["acc1"], "sparsity": sparsity.global_sparsity}
        log_epoch(logger, record, sparsity, sops, run.pruner, is_best)
        logger.histograms(epoch, run.pruner)
        run.saver.save(best=is_best)
        if run.stopping():
            raise TrainingInterrupted(run.stop.signum or signal.SIGTERM, str(run.saver.path))

    if state.epoch == start_epoch:  # resumed after the last epoch: no evaluation yet
        metrics, sops = _validate(run, console)
    summary = RunSummary(
        config=run.saver.config,
        accuracy=metrics,
        sparsity=sparsity_report(run.model),
        sops=sops,
        history=state.history,
        epochs_completed=state.epoch,
        best=state.best,
        skipped_images=state.skipped_images,
        bn_recalibration=state.bn_recalibration,
    )
    energy = summary.energy_pj_per_sample()
    figures = {"acc1": metrics.get("acc1"), "sparsity": summary.sparsity.global_sparsity}
    logger.hparams(run.saver.config, figures | {"energy_uj": None if energy is None else energy * 1e-6})
    if ctx.is_main:
        write_outputs(summary, output_dir)
        print_summary(summary, console, output_dir)
    return summary


def _validate(run: Training, logger: RunLogger) -> tuple[dict[str, float], SOPReport | None]:
    # Firing rates and SOPs are counted on rank 0 only (hooks, no collective).
    return evaluate(
        run.train_model,
        run.val_loader,
        run.device,
        criterion=run.criterion,
        sops_batches=run.config.sops_batches if run.ctx.is_main else 0,
        channels_last=run.config.channels_last,
        amp_dtype=run.mixed_precision,
        logger=logger,
        should_stop=run.stopping,
    )


def _validates(config: TrainConfig, epoch: int) -> bool:
    """Whether ``epoch`` is validated: every ``--val-freq`` epochs, the last, and the window's last."""
    last = epoch + 1 == config.epochs or (config.prune != "none" and epoch + 1 == config.pruning_end_epoch)
    return last or (epoch + 1) % config.val_freq == 0


def _recalibrates(run: Training, epoch: int) -> bool:
    """Whether the BatchNorm statistics are recomputed after ``epoch``: the last of the pruning
    window, in a network that has BatchNorms."""
    pruner = run.pruner
    at_the_end = pruner is not None and pruner.spec.recalibrate_bn and epoch + 1 == run.config.pruning_end_epoch
    return at_the_end and bool(batchnorm_layers(run.model))


def _recalibrate_batchnorm(run: Training, epoch: int) -> int:
    """:func:`~snn_lats.pruning.recalibrate_batchnorm` on the first ``--recalibrate-bn-batches``
    training batches of this epoch's order, their augmentation drawn from a fixed seed under a
    forked RNG: the same statistics when a resume redoes it, and the run's own random stream
    untouched."""
    config, device = run.config, run.device
    set_epoch(run.train_loader, epoch, config.seed)

    def images():
        for batch in itertools.islice(run.train_loader, config.recalibrate_bn_batches):
            if batch.images.numel():
                x = batch.images.to(device, non_blocking=True)
                yield x.contiguous(memory_format=torch.channels_last) if config.channels_last else x

    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), autocast(device, run.mixed_precision):
        torch.manual_seed(seeding.epoch_seed(config.seed, epoch, run.ctx.rank))
        return recalibrate_batchnorm(run.model, images())


def _spread_batch(dataset, size: int, device: torch.device, channels_last: bool) -> torch.Tensor | None:
    """``size`` training images spread evenly over ``dataset`` by index (every class of a sorted
    image folder), for checking a cost target before anything is written; the augmentation runs
    under a forked RNG, so the run's own random stream is untouched."""
    n = len(dataset)
    indices = sorted({round(i * (n - 1) / max(size - 1, 1)) for i in range(min(size, n))})
    with torch.random.fork_rng(devices=[]):
        images = collate([dataset[i] for i in indices]).images  # as the loader gives them
    if not images.numel():
        return None
    images = images.to(device)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


# ----------------------------------------------------------------------------------------------
# One epoch


def train_one_epoch(run: Training, epoch: int) -> dict[str, float]:
    """One pass over this rank's shard of ``run.train_loader``; returns loss and top-1 accuracy
    averaged over all ranks, the images skipped and the throughput."""
    config, ctx, state, pruner, optimizer = run.config, run.ctx, run.state, run.pruner, run.optimizer
    device = ctx.device
    run.step_model.train()
    sums = {"loss": 0.0, "correct": 0.0, "samples": 0.0, "skipped": 0.0, **state.partial}
    progress = run.logger.progress(
        run.train_loader, total=state.epoch_step + len(run.train_loader), desc=f"epoch {epoch}", start=state.epoch_step
    )
    started, seen = time.time(), 0
    for images, targets, skipped in progress:
        sums["skipped"] += skipped
        if images.numel() == 0:
            raise RuntimeError("every image of a batch was unreadable; check the data set (see the warnings)")
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        labels = targets  # the classes the training accuracy counts
        if run.mixing is not None:  # targets become class probabilities; the larger share is the label
            images, targets = run.mixing(images, targets)
            labels = targets.argmax(1)
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        forward = run.train_model if pruner is not None and pruner.measuring else run.step_model
        with autocast(device, run.mixed_precision):
            output = forward(images)
            loss = run.criterion(output, targets)
        loss_value = loss.item()
        if any_rank(not math.isfinite(loss_value), device):  # every rank stops at the same step
            raise NonFiniteLossError(
                f"the loss is not finite at epoch {epoch}, step {state.epoch_step} of the epoch ({state.step} in "
                f"all; this rank's loss: {loss_value}); training stopped before updating the weights. The last "
                f"checkpoint in {config.output_dir} (if any) is kept. Try a lower --lr, or without --amp."
            )

        optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(optimizer)
        run.scaler.update()
        if pruner is not None and pruner.has_pending_step:  # False when GradScaler skipped the step
            pruner.step()

        state.step += 1
        state.epoch_step += 1
        n = labels.numel()
        seen += n
        sums["loss"] += loss_value * n
        sums["correct"] += float((output.argmax(1) == labels).sum())
        sums["samples"] += n
        state.partial = dict(sums)
        if progress.count % config.print_freq == 0 or progress.count == progress.total:
            _log_step(run, progress, loss_value, sums, seen, started)
        # Checked after a completed step and before the next batch is drawn, so that the
        # checkpoint's RNG state is the one the next batch starts from.
        if run.stopping():
            raise run.interrupt()
    progress.close()
    # The sums stay in state.partial until the epoch's validation is done: a stop during it
    # resumes with the training half of the epoch complete.
    loss_sum, correct, samples, skipped = dist_utils.all_reduce_sum(
        [sums["loss"], sums["correct"], sums["samples"], sums["skipped"]], device
    )
    return {
        "loss": loss_sum / max(samples, 1),
        "acc1": 100.0 * correct / max(samples, 1),
        "skipped_images": int(skipped),
        "images_per_s": seen * ctx.world_size / max(time.time() - started, 1e-9),
    }


def _log_step(run: Training, progress, loss_value: float, sums: Mapping[str, float], seen: int, started: float) -> None:
    pruner, lr = run.pruner, run.optimizer.param_groups[0]["lr"]
    figures = {
        "loss": loss_value,
        "acc1": 100.0 * sums["correct"] / sums["samples"],
        "img/s": seen * run.ctx.world_size / max(time.time() - started, 1e-9),
        "lr": lr,
    }
    if pruner is not None:
        figures.update(threshold=pruner.threshold, sparsity=pruner.sparsity().global_sparsity)
    progress.update(figures)
    run.logger.scalars(
        run.state.step,
        {
            "loss": loss_value,
            "lr": lr,
            "threshold": figures.get("threshold"),
            "implied_l1": pruner.implied_l1() if pruner else None,
        },
        prefix="step/",
    )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip().splitlines())
