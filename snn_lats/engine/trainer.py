"""The training loop: ``train(config)`` reads top to bottom, like torchvision's reference train.py.

data → network → optimizer → pruner → lr schedule → (resume) → DDP → epochs of
[train, evaluate, log, checkpoint] → summary.json.

Reliability:
- ``--resume`` continues exactly: the order of the training data and the RNG state at the
  start of every epoch are functions of ``(seed, epoch, rank)`` only, and the checkpoint holds
  every other piece of state (:class:`~snn_lats.engine.checkpoint.CheckpointSaver`). A checkpoint
  written mid-epoch (on SIGTERM/SIGINT) resumes at the next batch in the same order; the random
  augmentation of the rest of that epoch is the same only for a single process with ``workers=0``.
- SIGTERM/SIGINT: the step in progress is abandoned, a checkpoint of the last completed step is
  written, and :class:`TrainingInterrupted` is raised (exit code 128 + signal number).
- A non-finite loss stops the run (:class:`NonFiniteLossError`) before it reaches the weights;
  the last checkpoint written is kept as it is.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from snn_lats._io import atomic_write_text
from snn_lats.engine import distributed as dist_utils
from snn_lats.engine.checkpoint import CHECKPOINT_NAME, CheckpointSaver, check_architecture, load_checkpoint
from snn_lats.engine.data import build_datasets, build_loaders, set_epoch
from snn_lats.engine.evaluation import EvaluationStopped, amp_dtype, autocast, evaluate, evaluate_checkpoint
from snn_lats.engine.logger import RunLogger, plot_history
from snn_lats.engine.model import build_model, build_pruner, load_weights
from snn_lats.engine.optim import build_lr_scheduler, build_optimizer, planned_step_lrs
from snn_lats.engine.recipe import RecipeError, TrainConfig
from snn_lats.engine.rundir import RunDirectory, check_resume, find_checkpoint
from snn_lats.engine.summary import RunSummary
from snn_lats.estimators import SOPReport
from snn_lats.estimators.energy import DEFAULT_PRESET
from snn_lats.networks import convert_sync_batchnorm
from snn_lats.pruning import SoftThresholdPruner, sparsity_report

__all__ = ["NonFiniteLossError", "RunState", "TrainingInterrupted", "train", "train_one_epoch"]

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
    source = find_checkpoint(config)
    if checkpoint is None and source is not None:
        checkpoint = load_checkpoint(source)
    if config.test_only and checkpoint is None:
        raise RecipeError(f"--test-only: {config.output_dir!r} holds no checkpoint to evaluate")
    ctx = dist_utils.init_distributed(config.device, config.dist_timeout)
    try:
        if config.test_only:
            return evaluate_checkpoint(checkpoint, config, ctx=ctx)
        if checkpoint is not None:
            check_resume(config, checkpoint, ctx.world_size)
        with _StopOnSignal() as stop:
            return _train(config, ctx, build_model_fn or build_model, stop, checkpoint, source)
    except RuntimeError as error:
        if ctx.distributed and dist_utils.peer_failure(error):
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise dist_utils.PeerFailure(
                f"another process of the job stopped answering (for --dist-timeout {config.dist_timeout:g} s) or "
                f"died: {first[:300]}; the last checkpoint is intact (--resume auto continues it)"
            ) from error
        raise
    finally:
        dist_utils.cleanup_distributed()


def _train(
    config: TrainConfig,
    ctx: dist_utils.DistributedContext,
    build_model_fn: ModelBuilder,
    stop: _StopOnSignal,
    checkpoint: Mapping[str, Any] | None,
    source: Path | None,
) -> RunSummary:
    device = ctx.device
    output_dir = Path(config.output_dir)
    if config.sync_bn and ctx.distributed and device.type != "cuda":
        raise ValueError(
            f"--sync-bn synchronises BatchNorm between CUDA processes (NCCL); these {ctx.world_size} processes run "
            "on the CPU (gloo), where SyncBatchNorm cannot run. Drop --sync-bn: each process then normalises "
            "over its own batch"
        )

    # -- data, and the checkpoint to resume from: both checked before anything is written -------
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
    if checkpoint is not None:
        check_architecture(checkpoint, config.to_dict(), num_classes)

    # -- network, optimizer, pruner, lr schedule, AMP ----------------------------------------------
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = build_model_fn(config, num_classes)
    if config.weights and checkpoint is None:  # a starting point; a resumed run continues from its own
        loaded = load_weights(model, config)
        if ctx.is_main:
            print(loaded)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.sync_bn and ctx.distributed:
        model = convert_sync_batchnorm(model)  # multi-step BatchNorms keep T folded into the batch
    optimizer = build_optimizer(config, model)
    pruner = build_pruner(config, model, optimizer, steps_per_epoch, planned_step_lrs(config, steps_per_epoch))
    if pruner is not None and checkpoint is None and (pruner.target_sops or pruner.target_energy):
        images = _spread_batch(train_set, config.batch_size, device, config.channels_last)
        if images is not None:  # (else the first measurement in training checks it)
            pruner.check_target(images)
    lr_scheduler = build_lr_scheduler(config, optimizer)  # after the pruner: "learnable" adds a group
    mixed_precision = amp_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=mixed_precision == torch.float16)  # bfloat16 needs none
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    # -- resume --------------------------------------------------------------------------------------
    state = RunState()
    saver = CheckpointSaver(
        output_dir,
        model=model,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        pruner=pruner,
        scaler=scaler,
        run_state=state,
        config=config.to_dict(),
        num_classes=num_classes,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    if checkpoint is not None:
        saver.restore(checkpoint)

    # -- the run directory: one writer, no foreign checkpoint, no half-written leftovers --------------
    with (
        _claimed(RunDirectory(output_dir), ctx, source if checkpoint is not None else None),
        RunLogger(output_dir, enabled=ctx.is_main, print_freq=config.print_freq) as logger,
    ):
        # -- logging (rank 0), the run's configuration ---------------------------------------------
        console = RunLogger(None, enabled=ctx.is_main, tensorboard=False, print_freq=config.print_freq)
        if ctx.is_main:
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
        # --compile: the training steps (around DDP, so that dynamo splits the graph at DDP's buckets);
        # evaluation and the steps the cost meter measures stay eager: dynamo would trace the SOP
        # counter's hooks (a graph break per layer; inductor failed on them).
        step_model = torch.compile(train_model) if config.compile else train_model

        def validate(logger: RunLogger) -> tuple[dict[str, float], SOPReport | None]:
            # Firing rates and SOPs are counted on rank 0 only (hooks, no collective).
            return evaluate(
                train_model,
                val_loader,
                device,
                criterion=criterion,
                sops_batches=config.sops_batches if ctx.is_main else 0,
                channels_last=config.channels_last,
                amp_dtype=mixed_precision,
                logger=logger,
                should_stop=lambda: _any_rank(stop.signum is not None, device),
            )

        # -- the epochs --------------------------------------------------------------------------------
        metrics: dict[str, float] = state.history[-1]["val"] if state.history else {}
        sops: SOPReport | None = None
        start_epoch = state.epoch
        for epoch in range(start_epoch, config.epochs):
            started = time.time()
            _seed_epoch(config.seed, epoch, ctx.rank, state)
            set_epoch(train_loader, epoch, config.seed, skip_batches=state.epoch_step)
            train_metrics = train_one_epoch(
                step_model, criterion, optimizer, pruner, scaler, train_loader, ctx, config, epoch, state, logger,
                stop, saver, mixed_precision, eager_model=train_model,
            )  # fmt: skip
            try:
                metrics, sops = validate(logger)
            except EvaluationStopped:  # the epoch's steps are done: a resume validates, then goes on
                saver.save()
                raise TrainingInterrupted(stop.signum or signal.SIGTERM, str(saver.path)) from None
            epoch_lr = optimizer.param_groups[0]["lr"]  # the lr this epoch trained with
            lr_scheduler.step()
            state.epoch, state.epoch_step, state.partial = epoch + 1, 0, {}
            state.skipped_images += train_metrics["skipped_images"]
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
            saver.save(best=is_best)
            if _any_rank(stop.signum is not None, device):
                raise TrainingInterrupted(stop.signum or signal.SIGTERM, str(saver.path))

        if state.epoch == start_epoch:  # resumed after the last epoch: no evaluation yet
            metrics, sops = validate(console)
        summary = RunSummary(
            config=config.to_dict(),
            accuracy=metrics,
            sparsity=sparsity_report(model),
            sops=sops,
            history=state.history,
            epochs_completed=state.epoch,
            best=state.best,
            skipped_images=state.skipped_images,
        )
        if ctx.is_main:
            _write_outputs(summary, output_dir)
            _print_summary(summary, console, output_dir)
        return summary


def _spread_batch(dataset, size: int, device: torch.device, channels_last: bool) -> torch.Tensor | None:
    """``size`` training images spread evenly over ``dataset`` by index (every class of a sorted
    image folder), for checking a cost target before anything is written; the augmentation runs
    under a forked RNG, so the run's own random stream is untouched."""
    n = len(dataset)
    indices = sorted({round(i * (n - 1) / max(size - 1, 1)) for i in range(min(size, n))})
    with torch.random.fork_rng(devices=[]):
        images = [item[0] for item in (dataset[i] for i in indices) if item is not None]
    if not images:
        return None
    images = torch.stack(images).to(device)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


@contextlib.contextmanager
def _claimed(run_dir: RunDirectory, ctx: dist_utils.DistributedContext, source: Path | None) -> Iterator[None]:
    """Hold the run directory's lock (rank 0) while the block runs; refuse (on every rank) when
    another process holds it, or when it holds a checkpoint other than ``source`` (the one being
    resumed): a fresh run never replaces another run's files. Removes a killed writer's
    temporary files."""
    refusal = None
    if ctx.is_main:
        try:
            run_dir.lock()
            existing = run_dir.checkpoint
            if existing.exists() and not (source is not None and source.exists() and existing.samefile(source)):
                how = "--resume auto continues it" if source is None else f"it is not the one resumed ({source})"
                raise RecipeError(
                    f"{str(run_dir.path)!r} already holds a run's {CHECKPOINT_NAME}; {how}, or choose another "
                    "--output-dir"
                )
            run_dir.announce()
            run_dir.clean_temporaries()
        except ValueError as error:
            run_dir.release()
            refusal = error
    if _any_rank(refusal is not None, ctx.device):
        raise refusal or RecipeError(f"rank 0 could not claim the run directory {str(run_dir.path)!r}")
    try:
        yield
    finally:
        run_dir.release()


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

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
            "partial": dict(self.partial),
            "history": self.history,
            "best": self.best,
            "skipped_images": self.skipped_images,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.epoch_step = int(state.get("epoch_step", 0))
        partial = state.get("partial")  # per rank in a checkpoint: CheckpointSaver.restore picks this rank's
        self.partial = dict(partial) if isinstance(partial, Mapping) else {}
        self.history = list(state.get("history") or [])
        self.best = state.get("best")
        self.skipped_images = int(state.get("skipped_images", 0))


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
    stop: _StopOnSignal,
    saver: CheckpointSaver,
    mixed_precision: torch.dtype | None = None,
    eager_model: nn.Module | None = None,
) -> dict[str, float]:
    """One pass over this rank's shard; returns loss and top-1 accuracy averaged over all ranks.

    ``eager_model``: ``model`` before ``torch.compile``, for the forwards the pruner's cost meter
    measures (:attr:`SoftThresholdPruner.measuring`).
    """
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
        forward = eager_model if eager_model is not None and pruner is not None and pruner.measuring else model
        with autocast(device, mixed_precision):
            output = forward(images)
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
            saver.save()
            raise TrainingInterrupted(stop.signum or signal.SIGTERM, str(saver.path))
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


# ----------------------------------------------------------------------------------------------
# Pieces


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
    logger.scalars(epoch, sparsity.layer_sparsity(), prefix="sparsity/")
    if sops is not None:
        logger.scalars(epoch, {row["name"]: row["firing_rate"] for row in sops.neuron_rows()}, prefix="firing_rate/")
        logger.scalars(epoch, sops.per_sample_scalars(), prefix="sops/")  # ACs, MACs, energy_pj per sample
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


def _write_outputs(summary: RunSummary, output_dir: Path) -> None:
    """summary.json, and the reports and plots of the run beside it."""
    summary.write(output_dir / "summary.json")
    if summary.sops is not None:
        summary.sops.to_json(output_dir / "sops.json")
        summary.sops.plot(str(output_dir / "sops.png"))
    summary.sparsity.to_json(output_dir / "sparsity.json")
    if summary.history:
        plot_history(summary.history, output_dir / "training.png")


def _print_summary(summary: RunSummary, console: RunLogger, output_dir: Path) -> None:
    console.print()
    if summary.sops is not None:
        console.print(summary.sops.table())
        console.print()
        rates = ", ".join(f"{name} {rate:.3f}" for name, rate in summary.firing_rates.items())
        console.print(f"firing rates (spikes per neuron per time step): {rates}")
    energy = summary.energy_pj_per_sample()
    console.print(
        f"accuracy: top-1 {summary.accuracy['acc1']:.2f}%  top-5 {summary.accuracy['acc5']:.2f}%  |  "
        + summary.sparsity.describe()
        + (f"  |  energy {energy / 1e6:.4g} uJ per sample" if energy is not None else "")
    )
    if line := _target_line(summary):
        console.print(line)
    if warning := summary.sparsity.warning():
        console.print(warning)
    console.print(
        f"run directory: {output_dir} (checkpoint.pth, model_best.pth, summary.json, sops.png, "
        f"training.png, tensorboard/)"
    )


def _target_line(summary: RunSummary) -> str | None:
    """Target against reached, for --target-sops and --target-energy: the exact count on the
    validation samples counted (the pruner lands on the training data; held out, it is reported)."""
    config = summary.config
    if config.get("target_sops") is not None:
        target, unit, what = config["target_sops"], "M SOPs", "exact count"
        reached = None if summary.sops is None else summary.sops.acs_per_sample + summary.sops.macs_per_sample
    elif config.get("target_energy_uj") is not None:
        preset = config.get("energy_preset") or DEFAULT_PRESET
        target, unit, what = config["target_energy_uj"] * 1e6, "uJ", f"exact count, {preset}"
        reached = summary.energy_pj_per_sample(preset)
    else:
        return None
    line = f"target: {target / 1e6:.4g} {unit} per sample"
    if reached is None:
        return line + "; reached: not counted (--sops-batches 0)"
    samples = summary.sops.totals["samples"]
    return (
        f"{line}; reached: {reached / 1e6:.4g} {unit} ({100 * (reached / target - 1):+.2f} %) on {samples} "
        f"validation samples ({what})"
    )


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

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
