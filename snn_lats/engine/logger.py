"""What a run reports, on rank 0 only: progress bars, text lines, TensorBoard scalars, the epoch
lines, the end-of-run summary and the files written beside it.

A progress bar is drawn only on a terminal. Elsewhere (CI logs, files) it is replaced by one
text line every ``print_freq`` steps, so logs stay readable.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from snn_lats._io import atomic_open
from snn_lats.engine.summary import RunSummary
from snn_lats.estimators import SOPReport
from snn_lats.estimators.energy import energy_pj

__all__ = ["Progress", "RunLogger", "log_epoch", "plot_history", "print_summary", "target_line", "write_outputs"]

#: How far (as a fraction) a cost target may be missed on the validation count before the summary says so.
TARGET_TOLERANCE = 0.10


class RunLogger:
    """Rank-0 output of a run. On other ranks (``enabled=False``) every method does nothing."""

    def __init__(
        self, output_dir: str | os.PathLike | None, enabled: bool = True, tensorboard: bool = True, print_freq: int = 10
    ):
        self.enabled = enabled
        self.print_freq = print_freq
        self.tty = enabled and sys.stderr.isatty()
        self.writer = None
        if enabled and tensorboard and output_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard_dir = os.path.join(os.fspath(output_dir), "tensorboard")
            self.writer = SummaryWriter(log_dir=self.tensorboard_dir)
            self._excepthook = threading.excepthook
            threading.excepthook = functools.partial(_quiet_tensorboard_thread, otherwise=threading.excepthook)

    def print(self, message: str = "") -> None:
        if self.enabled:
            print(message, flush=True)

    def scalars(self, step: int, values: Mapping[str, float | None], prefix: str = "") -> None:
        """``add_scalar(prefix + name, value, step)`` for every value that is a finite number."""
        if self.writer is None:
            return
        with self._writing():
            for name, value in values.items():
                if value is not None:
                    self.writer.add_scalar(prefix + name, float(value), step)

    def histograms(self, step: int, pruner) -> None:
        """The weights of every pruned layer, and the thresholds of the layers, as histograms."""
        if self.writer is None or pruner is None:
            return
        with self._writing():
            for name, module in pruner.layers.items():
                self.writer.add_histogram(f"weights/{name}", module.weight.detach().float().cpu(), step)
            thresholds = list(pruner.thresholds().values())
            self.writer.add_histogram("pruning/thresholds", torch.tensor(thresholds), step)

    def hparams(self, config: Mapping[str, Any], metrics: Mapping[str, float | None]) -> None:
        """The run's settings beside its final figures, in TensorBoard's HPARAMS tab (in this
        run's own event file: ``SummaryWriter.add_hparams`` would start another one)."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams

        values = {k: v for k, v in config.items() if isinstance(v, (bool, int, float, str))}
        figures = {f"final/{k}": float(v) for k, v in metrics.items() if v is not None}
        writer = self.writer._get_file_writer()
        with self._writing():
            for summary in hparams(values, figures):
                writer.add_summary(summary)
            for name, value in figures.items():
                self.writer.add_scalar(name, value)

    def flush(self) -> None:
        if self.writer is not None:
            with self._writing():
                self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            threading.excepthook = self._excepthook
            with self._writing():
                writer.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A write TensorBoard's thread failed (a full disk) as one line naming the folder."""
        try:
            yield
        except OSError as error:
            reason = f"cannot write the TensorBoard events in {self.tensorboard_dir!r}: {error.strerror or error}"
            raise OSError(error.errno, reason) from None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        # An interrupted or failed run keeps its TensorBoard events up to the failure; a failure
        # to write them then (the same full disk) must not hide the error that stopped the run.
        try:
            self.close()
        except OSError:
            if exc_type is None:
                raise

    def progress(self, iterable: Iterable, total: int, desc: str, start: int = 0) -> Progress:
        return Progress(self, iterable, total, desc, start)


def _quiet_tensorboard_thread(args, otherwise) -> None:
    """``threading.excepthook`` while a run writes TensorBoard events: the writer thread's error
    (a full disk) is raised again by the run's next call to the writer, as one line; its
    traceback from the thread would only duplicate it."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    if not isinstance(args.thread, _AsyncWriterThread):
        otherwise(args)


class Progress:
    """Iterate ``iterable`` with a tqdm bar (terminal) or a line every ``print_freq`` steps (no terminal)."""

    def __init__(self, logger: RunLogger, iterable: Iterable, total: int, desc: str, start: int = 0):
        self.logger = logger
        self.total = total
        self.desc = desc
        self.bar = tqdm(
            iterable,
            total=total,
            initial=start,
            desc=desc,
            disable=not logger.tty,
            leave=False,
            dynamic_ncols=True,
            mininterval=0.5,
            unit="batch",
        )
        self.count = start  # items done, including those of an interrupted run before a resume

    def __iter__(self) -> Iterator:
        for item in self.bar:
            self.count += 1
            yield item

    def update(self, values: Mapping[str, Any]) -> None:
        """Show the latest figures: on the bar, or as a line every ``print_freq`` steps."""
        if not self.logger.enabled:
            return
        text = {k: _short(v) for k, v in values.items()}
        if self.logger.tty:
            self.bar.set_postfix(text, refresh=False)
        elif self.count % self.logger.print_freq == 0 or self.count == self.total:
            fields = "  ".join(f"{k} {v}" for k, v in text.items())
            print(f"{self.desc} [{self.count}/{self.total}]  {fields}", flush=True)

    def close(self) -> None:
        self.bar.close()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot_history(history: list[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Accuracy, loss, weight sparsity and threshold per epoch, one panel each, as a PNG written
    atomically (the epochs not validated, ``--val-freq``, have no validation point).

    Drawn on matplotlib's Agg canvas without pyplot, so the caller's backend is left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    validated = [r for r in history if r["val"] is not None]
    fig = Figure(figsize=(12.0, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_acc, ax_loss, ax_sparsity, ax_threshold = fig.subplots(1, 4)
    for ax, key, label in ((ax_acc, "acc1", "top-1 accuracy (%)"), (ax_loss, "loss", "loss")):
        ax.plot(epochs, [r["train"][key] for r in history], marker=".", label="train")
        ax.plot([r["epoch"] for r in validated], [r["val"][key] for r in validated], marker=".", label="validation")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    ax_sparsity.plot(epochs, [100 * r["sparsity"] for r in history], marker=".", color="tab:red")
    ax_sparsity.set_ylabel("weight sparsity (%)")
    ax_sparsity.set_ylim(0, 100)
    ax_threshold.plot(epochs, [r["threshold"] for r in history], marker=".", color="tab:gray")
    ax_threshold.set_ylabel("threshold d")
    ax_threshold.set_ylim(bottom=0)
    for ax in (ax_acc, ax_loss, ax_sparsity, ax_threshold):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())


def log_epoch(
    logger: RunLogger, record: Mapping[str, Any], sparsity, sops: SOPReport | None, pruner, is_best: bool
) -> None:
    """An epoch's TensorBoard scalars and its one text line."""
    epoch, train_m, val_m = record["epoch"], record["train"], record["val"]
    logger.scalars(epoch, {"loss": train_m["loss"], "acc1": train_m["acc1"]}, prefix="train/")
    if val_m is not None:  # (not validated this epoch: --val-freq)
        logger.scalars(epoch, {"loss": val_m["loss"], "acc1": val_m["acc1"], "acc5": val_m["acc5"]}, prefix="val/")
    logger.scalars(
        epoch,
        {"lr": record["lr"], "epoch_time_s": record["epoch_time_s"], "images_per_s": train_m["images_per_s"]},
        prefix="epoch/",
    )
    if pruner is not None:
        logger.scalars(epoch, {"threshold": pruner.threshold, "implied_l1": pruner.implied_l1()}, prefix="pruning/")
        logger.scalars(epoch, _target_scalars(pruner, sparsity, sops), prefix="target/")
    logger.scalars(epoch, {"global": sparsity.global_sparsity}, prefix="sparsity/")
    logger.scalars(epoch, sparsity.layer_sparsity(), prefix="sparsity/")
    if sops is not None:
        logger.scalars(epoch, {row["name"]: row["firing_rate"] for row in sops.neuron_rows()}, prefix="firing_rate/")
        logger.scalars(epoch, sops.per_sample_scalars(), prefix="sops/")  # ACs, MACs, energy_pj per sample
    logger.flush()
    threshold = f"  threshold {record['threshold']:.4g}" if pruner is not None else ""
    skipped = train_m["skipped_images"] + (val_m["skipped_images"] if val_m is not None else 0)
    val = (
        "not validated"
        if val_m is None
        else f"val loss {val_m['loss']:.4f} acc1 {val_m['acc1']:.2f} acc5 {val_m['acc5']:.2f}"
    )
    logger.print(
        f"epoch {epoch}: train loss {train_m['loss']:.4f} acc1 {train_m['acc1']:.2f}  |  {val}  |  sparsity "
        f"{100 * record['sparsity']:.2f}%{threshold}  lr {record['lr']:.4g}  "
        f"{train_m['images_per_s']:.0f} img/s  {record['epoch_time_s']:.1f}s"
        + (f"  ({skipped} unreadable images skipped)" if skipped else "")
        + ("  *best*" if is_best else "")
    )


def _target_scalars(pruner, sparsity, sops: SOPReport | None) -> dict[str, float | None]:
    """A target run's target and what it measures, in the flag's unit (a fraction of the weights,
    SOPs or µJ per sample): on the validation count, and (a cost) on the last training measurement."""
    spec = pruner.spec
    if spec.target_sparsity is not None:
        return {"target": spec.target_sparsity, "validation": sparsity.global_sparsity}
    if spec.target_sops is None and spec.target_energy is None:
        return {}
    estimate = pruner.cost_estimate
    if spec.target_sops is not None:
        counted = None if sops is None else sops.acs_per_sample + sops.macs_per_sample
        return {"target": spec.target_sops, "validation": counted, "training": estimate and estimate["pruned"]}
    counted = None if sops is None else energy_pj(sops.acs_per_sample, sops.macs_per_sample, pruner.energy_preset)
    return {
        "target": spec.target_energy * 1e-6,
        "validation": None if counted is None else counted * 1e-6,
        "training": estimate and estimate["pruned"] * 1e-6,
    }


def write_outputs(summary: RunSummary, output_dir: Path) -> None:
    """summary.json, and the reports and plots of the run beside it."""
    summary.write(output_dir / "summary.json")
    if summary.sops is not None:
        summary.sops.to_json(output_dir / "sops.json")
        summary.sops.plot(str(output_dir / "sops.png"))
    summary.sparsity.to_json(output_dir / "sparsity.json")
    if summary.history:
        plot_history(summary.history, output_dir / "training.png")


def print_summary(summary: RunSummary, console: RunLogger, output_dir: Path) -> None:
    """The end of a run: the SOP table, firing rates, one line of figures, the target reached."""
    console.print()
    if summary.sops is not None:
        console.print(summary.sops.table())
        console.print()
        rates = ", ".join(f"{name} {rate:.3f}" for name, rate in summary.firing_rates.items())
        what = (
            "firing rates (spikes per neuron per time step)"
            if summary.sops.spiking
            else "activation density (the fraction of nonzero outputs of each activation)"
        )
        console.print(f"{what}: {rates}")
    energy = summary.energy_pj_per_sample()
    console.print(
        f"accuracy: top-1 {summary.accuracy['acc1']:.2f}%  top-5 {summary.accuracy['acc5']:.2f}%  |  "
        + summary.sparsity.describe()
        + (f"  |  energy {energy / 1e6:.4g} uJ per sample ({summary.energy_preset})" if energy is not None else "")
    )
    if summary.bn_recalibration is not None:
        r = summary.bn_recalibration
        console.print(
            f"BatchNorm statistics recomputed on {r['batches']} training batches per process after epoch "
            f"{r['epoch']} (where pruning ended)"
        )
    if line := target_line(summary):
        console.print(line)
    if warning := summary.sparsity.warning():
        console.print(warning)
    console.print(
        f"run directory: {output_dir} (checkpoint.pth, model_best.pth, summary.json, sops.png, "
        f"training.png, tensorboard/)"
    )


def target_line(summary: RunSummary) -> str | None:
    """Target against reached: for --target-sparsity the weight sparsity (a warning when the
    density of the pruned layers is more than :data:`TARGET_TOLERANCE` off the target's, which the
    controller's guards can cause); for --target-sops and --target-energy the exact count on the
    validation samples counted (the pruner lands on the training data; held out, it is reported),
    with a warning when it is more than :data:`TARGET_TOLERANCE` off."""
    config = summary.config
    if config.get("target_sparsity") is not None:
        target, reached = config["target_sparsity"], summary.sparsity.global_sparsity
        line = f"target: weight sparsity {100 * target:.2f} %; reached: {100 * reached:.2f} %"
        if abs((1 - reached) / (1 - target) - 1) > TARGET_TOLERANCE:
            line += (
                f"\nwarning: the run did not reach its target sparsity: {100 * (1 - reached):.3g} % of the pruned "
                f"layers' weights are left where {100 * (1 - target):.3g} % were asked for (see the controller's "
                "warnings above: a guard held the threshold)"
            )
        return line
    if config.get("target_sops") is not None:
        target, unit, what = config["target_sops"], "M SOPs", "exact count"
        reached = None if summary.sops is None else summary.sops.acs_per_sample + summary.sops.macs_per_sample
    elif config.get("target_energy_uj") is not None:
        target, unit, what = config["target_energy_uj"] * 1e6, "uJ", f"exact count, {summary.energy_preset}"
        reached = summary.energy_pj_per_sample()
    else:
        return None
    line = f"target: {target / 1e6:.4g} {unit} per sample"
    if reached is None:
        return line + "; reached: not counted (--sops-batches 0)"
    samples = summary.sops.totals["samples"]
    off = reached / target - 1
    line = f"{line}; reached: {reached / 1e6:.4g} {unit} ({100 * off:+.2f} %) on {samples} validation samples ({what})"
    if abs(off) > TARGET_TOLERANCE:
        side = "over" if off > 0 else "under"
        line += (
            f"\nwarning: the run landed {100 * abs(off):.0f} % {side} its target on the validation samples (more "
            f"than {100 * TARGET_TOLERANCE:.0f} %): the pruner aims at the training forwards' count, which held-out "
            "data, a capped last correction or regrown weights can move"
        )
    return line
