"""Loaders: resumable, DDP-sharded and safe against a scheduler's signals.

Batches are :class:`Batch` tuples ``(images, targets, skipped)``: ``skipped`` counts unreadable
images dropped from that batch (``bad_images="skip"``), so the count reaches the log even when
the images were decoded in worker processes.
"""

from __future__ import annotations

import random
import signal
import threading
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torch.utils.data.distributed import DistributedSampler

from snn_lats.data import seeding

__all__ = [
    "Batch",
    "Loader",
    "SeededSamples",
    "ShardSampler",
    "batch_mixing",
    "build_loaders",
    "collate",
    "set_epoch",
]


class Batch(NamedTuple):
    images: torch.Tensor  # [N, C, H, W]
    targets: torch.Tensor  # [N] int64 class indices
    skipped: int  # unreadable images dropped from this batch


def collate(samples: list) -> Batch:
    """Stack ``(image, target)`` samples into a :class:`Batch`, dropping (and counting) ``None``."""
    kept = [s for s in samples if s is not None]
    skipped = len(samples) - len(kept)
    if not kept:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.int64), skipped)
    images = torch.stack([s[0] for s in kept])
    if images.dim() == 5:  # event frames [N, T, C, H, W]: the networks take a sequence [T, N, C, H, W]
        images = images.transpose(0, 1).contiguous()
    targets = torch.tensor([s[1] for s in kept], dtype=torch.int64)
    return Batch(images, targets, skipped)


def batch_mixing(mixup_alpha: float, cutmix_alpha: float, num_classes: int):
    """torchvision's ``transforms.v2.MixUp``/``CutMix`` (one of the two per batch when both alphas
    are > 0), as its reference scripts apply them to training batches: ``(images [N, C, H, W],
    targets [N]) -> (mixed images, targets [N, num_classes] as probabilities)``. None when both
    alphas are 0. Applied in the main process, so its draws come from torch's RNG, which a
    checkpoint holds."""
    from snn_lats._torchvision import transforms_v2 as v2

    mixes = []
    if mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


def build_loaders(
    train_set: Dataset | None,
    val_set: Dataset,
    batch_size: int,
    workers: int = 0,
    *,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    pin_memory: bool = False,
) -> tuple[DataLoader | None, DataLoader]:
    """Train and validation loaders, both with a :class:`DistributedSampler` (also in one process);
    the train loader is None when ``train_set`` is (evaluation).

    ``batch_size`` is per process. The training order is a function of ``(seed, epoch)`` only:
    call :func:`set_epoch` before each epoch, so that a resumed run sees the same batches.
    Augmentation is drawn in the main process from torch's RNG (whose state the checkpoint holds)
    with ``workers=0``, and with ``workers >= 1`` per sample from a seed of ``(seed, epoch,
    index)`` (:class:`SeededSamples`): the same for any number of workers, any batch the sample
    falls in, and after a resume mid-epoch. Loader workers ignore SIGTERM and SIGINT (the main
    process owns a graceful stop, see :class:`Loader`).
    Validation is sharded without shuffling; the sampler pads the last shard by repeating a few
    images, so a multi-process evaluation of a set not divisible by ``world_size`` counts those
    few twice (as torchvision's reference does).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    common = dict(
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=False,
        worker_init_fn=_ignore_stop_signals if workers else None,
    )
    train_loader = None
    if train_set is not None:
        train_sampler = ShardSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        # The generator draws the workers' base seed at every epoch's start; set_epoch reseeds it.
        train_loader = Loader(
            SeededSamples(train_set),
            batch_size=batch_size,
            sampler=train_sampler,
            drop_last=False,
            generator=torch.Generator().manual_seed(seed),
            **common,
        )
    val_sampler = DistributedSampler(val_set, num_replicas=world_size, rank=rank, shuffle=False)
    val_loader = Loader(val_set, batch_size=batch_size, sampler=val_sampler, **common)
    return train_loader, val_loader


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Loader(DataLoader):
    """A DataLoader whose worker processes leave SIGTERM and SIGINT to the main process.

    A scheduler's stop (Slurm's ``scancel``, a requeue) signals the whole process group. A worker
    that died of it would make the main process fail mid-step ("DataLoader worker is killed by
    signal") instead of finishing the step and writing a checkpoint. So the workers ignore those
    signals (``worker_init_fn``), and the main thread blocks them while it forks the workers, so
    that none arrives before a worker has started ignoring it; a signal that arrived meanwhile is
    delivered to the main process once the workers run.
    """

    def __iter__(self):
        if not self.num_workers or threading.current_thread() is not threading.main_thread():
            return super().__iter__()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            return super().__iter__()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _ignore_stop_signals(worker_id: int) -> None:
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by Loader.__iter__ at the fork


class SeededSamples(Dataset):
    """The training set, with each sample's random augmentation seeded by the sample in a loader
    worker: ``seed = mix(base_seed, index)``, where the loader draws ``base_seed`` from its
    generator (a function of ``(seed, epoch)``, :func:`set_epoch`) when the epoch starts.

    So a sample is augmented the same way whichever worker loads it, in whichever batch, with any
    number of workers, and after a resume mid-epoch. In the main process (``workers=0``) the
    augmentation draws from torch's own RNG stream, whose state the checkpoint holds.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        info = get_worker_info()
        if info is not None:
            base_seed = info.seed - info.id  # torch seeds worker k with base_seed + k
            value = seeding.sample_seed(base_seed, index)
            torch.manual_seed(value)
            random.seed(value)
        return self.dataset[index]


class ShardSampler(DistributedSampler):
    """A :class:`DistributedSampler` that can start an epoch part-way (after a mid-epoch resume)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip = 0  # samples of this rank's shard already consumed in the current epoch

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip


def set_epoch(loader: DataLoader, epoch: int, seed: int = 0, skip_batches: int = 0) -> None:
    """Make the loader's order and worker seeds a function of ``(seed, epoch)`` only, and start
    after ``skip_batches`` batches (those of this epoch already trained before a resume)."""
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    if isinstance(sampler, ShardSampler):
        sampler.skip = min(skip_batches * loader.batch_size, sampler.num_samples)
    elif skip_batches:
        raise ValueError("skip_batches needs a loader built by build_loaders")
    if loader.generator is not None:
        loader.generator.manual_seed(seeding.loader_seed(seed, epoch))
