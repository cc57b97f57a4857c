"""Every seed of a run, as a function of the run's ``seed`` and where the run is, in one place.

A resumed run draws exactly what the uninterrupted one drew: the RNGs at the start of an epoch,
the loader's shuffle and worker seeds, and each sample's augmentation depend on ``(seed, epoch,
rank, index)`` only, never on how the run got there.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["epoch_seed", "loader_seed", "sample_seed", "seed_everything"]


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of torch's, numpy's and Python's RNGs at the start of ``epoch`` on ``rank``."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**32


def loader_seed(seed: int, epoch: int) -> int:
    """The seed of the training loader's generator in ``epoch``: it draws the workers' base seed."""
    return seed * 100_003 + epoch


def sample_seed(base_seed: int, index: int) -> int:
    """The seed of one sample's augmentation in a loader worker (``base_seed``: the loader's, this epoch)."""
    return (base_seed * 1_000_003 + int(index)) % 2**63


def seed_everything(value: int) -> None:
    """Seed torch, numpy and Python's ``random`` with ``value``."""
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)
