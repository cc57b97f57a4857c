"""One run per directory, and which checkpoint a run continues.

- :class:`RunDirectory` holds an exclusive lock on the run directory for as long as a run writes
  there (``flock``: released by the kernel when the process dies, so a crash leaves no stale
  lock), and removes the temporary files a killed writer left behind; :func:`claimed` holds it
  for a (distributed) run.
- :func:`resolve_run` turns ``snn-lats train``'s flags into the configuration and the checkpoint
  to resume: ``--resume PATH``, or ``--resume auto`` (the output directory's checkpoint when
  there is one, else a fresh run, which is what a torchrun restart needs).
- :func:`check_resume` refuses a resume that would silently change the run.

Importing it imports no torch, and a fresh run's configuration is resolved without it: a bad
flag or recipe is refused at once (torch is imported when a checkpoint is read or a lock shared).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snn_lats.engine.recipe import ARCHITECTURE_FIELDS, RecipeError, TrainConfig, load_recipe, resolve_config

if TYPE_CHECKING:
    from snn_lats.engine.distributed import DistributedContext

__all__ = [
    "AUTO",
    "BEST_NAME",
    "CHECKPOINT_NAME",
    "LOCK_NAME",
    "RunDirectory",
    "RunDirectoryBusy",
    "check_resume",
    "claimed",
    "find_checkpoint",
    "resolve_run",
]

#: ``--resume auto``: the output directory's checkpoint if it has one, else a fresh run.
AUTO = "auto"
LOCK_NAME = ".snn-lats.lock"
#: The checkpoints of a run directory, which :class:`~snn_lats.engine.checkpoint.CheckpointSaver`
#: writes: the latest, and the one of the best validation accuracy.
CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "model_best.pth"


class RunDirectoryBusy(ValueError):
    """Another process is writing into the run directory."""


class RunDirectory:
    """The output directory of one run: ``lock()`` it before writing anything into it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_file: Any = None

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    def lock(self) -> None:
        """Take the directory's exclusive lock (creating the directory); :class:`RunDirectoryBusy`
        naming the holder when another process has it. :meth:`announce` then names this one."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise RunDirectoryBusy(
                f"{str(self.path)!r} is in use by {holder}: one run per directory; choose another --output-dir"
            ) from None
        self._lock_file = handle

    def announce(self) -> None:
        """Write this process into the lock file, for the message another writer gets."""
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"snn-lats train, pid {os.getpid()} on {socket.gethostname()}\n")
        self._lock_file.flush()

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file drops the flock
            self._lock_file = None

    def clean_temporaries(self) -> list[Path]:
        """Remove the half-written ``.NAME.XXXXXXXX.tmp`` files of atomic writes that a killed
        writer left (only while holding the lock: no live writer owns them)."""
        removed = []
        for path in self.path.glob(".*.tmp"):
            if path.is_file():
                path.unlink()
                removed.append(path)
        return removed


@contextlib.contextmanager
def claimed(run_dir: RunDirectory, ctx: DistributedContext, source: Path | None) -> Iterator[None]:
    """Hold the run directory's lock (rank 0) while the block runs; refuse (on every rank) when
    another process holds it, or when it holds a checkpoint other than ``source`` (the one being
    resumed): a fresh run never replaces another run's files. Removes a killed writer's
    temporary files."""
    from snn_lats.engine.distributed import any_rank

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
        except Exception as error:  # an OSError too (no lock on this filesystem): every rank must hear of it
            run_dir.release()
            refusal = error
    if any_rank(refusal is not None, ctx.device):
        raise refusal or RecipeError(f"rank 0 could not claim the run directory {str(run_dir.path)!r}")
    try:
        yield
    finally:
        run_dir.release()


def _checkpoint_path(resume: str | None, output_dir: str) -> Path | None:
    """The checkpoint ``--resume`` names: the path itself, or with ``auto`` the output directory's
    checkpoint when it exists (None: start afresh)."""
    if not resume:
        return None
    if resume == AUTO:
        candidate = Path(output_dir) / CHECKPOINT_NAME
        return candidate if candidate.is_file() else None
    return Path(resume)


def find_checkpoint(config: TrainConfig) -> Path | None:
    """The checkpoint ``config.resume`` names (see :func:`resolve_run`)."""
    return _checkpoint_path(config.resume, config.output_dir)


def resolve_run(
    explicit: Mapping[str, Any], recipe: str | os.PathLike | None = None
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """``(config, checkpoint)`` of ``snn-lats train``: the flags given, over the recipe, over the
    configuration of the checkpoint resumed (None for a fresh run).

    ``--resume PATH`` writes next to PATH unless ``--output-dir`` is given; ``--resume auto``
    continues the output directory's checkpoint when there is one.
    """
    given = dict(explicit)
    output_dir = given.get("output_dir")
    if output_dir is None and given.get("resume") == AUTO and recipe is not None:
        output_dir = load_recipe(recipe).get("output_dir")
    path = _checkpoint_path(given.get("resume"), output_dir or _DEFAULT_OUTPUT_DIR)
    checkpoint = None
    if path is not None:
        from snn_lats.engine.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(path)
    if checkpoint is not None and given.get("output_dir") is None:
        given["output_dir"] = str(path.parent)
    base = checkpoint["config"] if checkpoint is not None else None
    return resolve_config(given, recipe, base=base), checkpoint


_DEFAULT_OUTPUT_DIR = TrainConfig().output_dir


def check_resume(config: TrainConfig, checkpoint: Mapping[str, Any], world_size: int) -> None:
    """:class:`RecipeError` when resuming ``checkpoint`` with ``config`` would change the run.

    Refused: any field that changes what the run computes (``option(trajectory=True)``: the lr
    and its schedule, epochs, batch size, pruning schedule and strength, data, seed, ...), and
    another number of processes (the global batch and the steps per epoch would change). Fields
    that only change how or where it runs (workers, print frequency, output directory, device)
    are accepted.
    """
    saved = {**TrainConfig().to_dict(), **checkpoint["config"]}
    changed = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in ARCHITECTURE_FIELDS:  # checked with the network (check_architecture)
            continue
        if f.metadata["trajectory"] and getattr(config, f.name) != saved.get(f.name):
            flag = (f.metadata["flags"] or ("--" + f.name.replace("_", "-"),))[-1]
            changed.append(f"{flag} {getattr(config, f.name)!r} (the checkpoint's: {saved.get(f.name)!r})")
    if changed:
        raise RecipeError(
            "resuming would change the run: "
            + ", ".join(changed)
            + ". A resumed run continues the checkpoint's trajectory exactly; drop these flags, or start a new "
            "run in another --output-dir (--weights CHECKPOINT starts it from the checkpoint's weights)"
        )
    saved_world = int(checkpoint.get("world_size", world_size))
    if saved_world != world_size:
        raise RecipeError(
            f"the checkpoint was written by {saved_world} process(es), this run has {world_size}: resume with "
            f"{saved_world} (the global batch and the steps per epoch depend on it)"
        )
