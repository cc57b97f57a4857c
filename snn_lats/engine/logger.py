"""What a run reports, on rank 0 only: progress bars, text lines, TensorBoard scalars.

A progress bar is drawn only on a terminal. Elsewhere (CI logs, files) it is replaced by one
text line every ``print_freq`` steps, so logs stay readable.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tqdm import tqdm

from snn_lats._io import atomic_open

__all__ = ["Progress", "RunLogger", "plot_history"]


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

            self.writer = SummaryWriter(log_dir=os.path.join(os.fspath(output_dir), "tensorboard"))

    def print(self, message: str = "") -> None:
        if self.enabled:
            print(message, flush=True)

    def scalars(self, step: int, values: Mapping[str, float | None], prefix: str = "") -> None:
        """``add_scalar(prefix + name, value, step)`` for every value that is a finite number."""
        if self.writer is None:
            return
        for name, value in values.items():
            if value is None:
                continue
            self.writer.add_scalar(prefix + name, float(value), step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()  # an interrupted or failed run keeps its TensorBoard events up to the failure

    def progress(self, iterable: Iterable, total: int, desc: str, start: int = 0) -> Progress:
        return Progress(self, iterable, total, desc, start)


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
    """Validation accuracy, weight sparsity and threshold per epoch, as a PNG written atomically.

    Drawn on matplotlib's Agg canvas without pyplot, so the caller's backend is left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9.0, 3.5))
    FigureCanvasAgg(fig)
    ax_acc, ax_sparsity = fig.subplots(1, 2)
    ax_acc.plot(epochs, [r["train"]["acc1"] for r in history], label="train")
    ax_acc.plot(epochs, [r["val"]["acc1"] for r in history], label="validation")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("top-1 accuracy (%)")
    ax_acc.legend()
    ax_sparsity.plot(epochs, [100 * r["sparsity"] for r in history], color="tab:red")
    ax_sparsity.set_xlabel("epoch")
    ax_sparsity.set_ylabel("weight sparsity (%)", color="tab:red")
    ax_threshold = ax_sparsity.twinx()
    ax_threshold.plot(epochs, [r["threshold"] for r in history], color="tab:gray", linestyle="--")
    ax_threshold.set_ylabel("threshold d (dashed)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())
