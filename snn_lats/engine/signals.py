"""A graceful stop: SIGTERM/SIGINT are recorded, and the loop stops between two steps.

A scheduler's stop (Slurm's ``scancel``, a requeue, a preemption) signals the whole process
group; the run finishes the step in progress' bookkeeping, writes a checkpoint of the last
completed step and raises :class:`TrainingInterrupted` (exit code 128 + signal number).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

__all__ = ["StopOnSignal", "TrainingInterrupted"]


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; a checkpoint of the last completed step was written."""

    def __init__(self, signum: int, checkpoint: str | None):
        self.signum = signum
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        where = f"; checkpoint of the last completed step: {checkpoint}" if checkpoint else ""
        super().__init__(f"training interrupted by {name}{where}")


class StopOnSignal:
    """Record SIGTERM/SIGINT instead of dying mid-step; the loop checks ``signum`` between steps.
    A second Ctrl-C stops at once. Restores the previous handlers on exit. Only installable from
    the main thread (elsewhere it records nothing)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.signum = signum
        if os.environ.get("RANK", "0") == "0":  # said at once: a step can take long
            again = " (Ctrl-C again to abort without a checkpoint)" if signum == signal.SIGINT else ""
            print(
                f"snn-lats train: {signal.Signals(signum).name} received: stopping after this step, with a "
                f"checkpoint{again}",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
