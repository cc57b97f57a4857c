"""Data sets and loaders: ImageNet-style image folders, and the built-in offline digits set.

- ``dataset="imagefolder"``: ``data_path/train/<class>/*.jpg`` and ``data_path/val/<class>/*.jpg``
  (ImageNet's layout), decoded by PIL, with torchvision's standard augmentation: RandomResizedCrop
  + horizontal flip for training; resize, then centre crop, for validation.
- ``dataset="digits"``: scikit-learn's bundled ``load_digits()`` (1797 real 8x8 handwritten digits,
  10 classes), upsampled to a small RGB image and split deterministically: every fifth image of
  each class is in the validation set.

Batches are :class:`Batch` tuples ``(images, targets, skipped)``: ``skipped`` counts unreadable
images dropped from that batch (``bad_images="skip"``), so the count reaches the log even when
the images were decoded in worker processes.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torch.utils.data.distributed import DistributedSampler

from snn_lats._torchvision import datasets, transforms

__all__ = [
    "BAD_IMAGE_POLICIES",
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "Batch",
    "DataError",
    "DigitsDataset",
    "ImageFolderDataset",
    "Loader",
    "SeededSamples",
    "ShardSampler",
    "build_datasets",
    "build_loaders",
    "check_image_folder",
    "scan_image_folder",
    "collate",
    "digits_val_mask",
    "set_epoch",
    "train_transform",
    "val_transform",
]

DATASETS = ("imagefolder", "digits")
BAD_IMAGE_POLICIES = ("skip", "fail")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = datasets.folder.IMG_EXTENSIONS


class DataError(ValueError):
    """The data on disk cannot be used (missing folder, empty class, unreadable image)."""


class Batch(NamedTuple):
    images: torch.Tensor  # [N, C, H, W]
    targets: torch.Tensor  # [N] int64 class indices
    skipped: int  # unreadable images dropped from this batch


# ----------------------------------------------------------------------------------------------
# ImageNet-style folders


def train_transform(crop_size: int = 224) -> Any:
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(crop_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def val_transform(resize_size: int = 256, crop_size: int = 224) -> Any:
    return transforms.Compose(
        [
            transforms.Resize(resize_size),
            transforms.CenterCrop(crop_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def scan_image_folder(root: str | os.PathLike) -> tuple[list[str], list[tuple[str, int]]]:
    """``(classes, samples)`` of an ImageFolder root: the class folders (sorted) and every image
    file as ``(path, class index)``, in torchvision's ``ImageFolder`` order.

    Symbolic links are followed, so a class folder or a data set may live on another disk, but
    every folder is read once: a link to a folder already in the data set (a loop such as
    ``ln -s .. train/c0/loop``, or one class folder linked into another) would count its images
    again, some under the wrong label, and is refused with the link named. :class:`DataError`
    also if the root is missing, or if it or any class folder holds no image file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist or is not a directory")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise DataError(f"data folder {str(root)!r} has no class sub-folders (expected {root}/<class>/<image>)")
    status = os.stat(root)
    seen: dict[tuple[int, int], str] = {(status.st_dev, status.st_ino): str(root)}  # folders read -> path
    samples, empty = [], []
    for index, name in enumerate(classes):
        folders = []
        for folder, subfolders, files in os.walk(root / name, followlinks=True):
            status = os.stat(folder)
            key = (status.st_dev, status.st_ino)
            if key in seen:
                link = _first_link(root, Path(folder))
                raise DataError(
                    f"{str(link)!r} is a symbolic link to a folder already in the data set ({seen[key]!r}): its "
                    "images would count twice; remove the link"
                )
            seen[key] = folder
            subfolders.sort()
            folders.append((folder, files))
        found = [
            (os.path.join(folder, f), index)
            for folder, files in sorted(folders)
            for f in sorted(files)
            if f.lower().endswith(IMAGE_EXTENSIONS)
        ]
        if not found:
            empty.append(name)
        samples += found
    if empty:
        raise DataError(
            f"class folder(s) with no image file ({', '.join(IMAGE_EXTENSIONS)}) in {str(root)!r}: " + ", ".join(empty)
        )
    return classes, samples


def _first_link(root: Path, folder: Path) -> Path:
    """The outermost symbolic link on the way from ``root`` down to ``folder`` (``folder`` if none)."""
    path = root
    for part in folder.relative_to(root).parts:
        path = path / part
        if path.is_symlink():
            return path
    return folder


def check_image_folder(root: str | os.PathLike) -> list[str]:
    """Class names of an ImageFolder root, checked as :func:`scan_image_folder` does."""
    return scan_image_folder(root)[0]


class ImageFolderDataset(datasets.ImageFolder):
    """torchvision's ImageFolder (PIL decoding) over :func:`scan_image_folder`'s files, which drops,
    or fails on, unreadable images.

    With ``bad_images="skip"`` an image that PIL cannot decode yields ``None`` and a warning
    naming the file; :func:`collate` removes it from the batch and counts it.
    """

    def __init__(self, root: str | os.PathLike, transform: Any, bad_images: str = "skip"):
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
        self._scan = scan_image_folder(root)
        super().__init__(str(root), transform=transform)
        self.bad_images = bad_images

    def find_classes(self, directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
        classes = self._scan[0]
        return classes, {name: i for i, name in enumerate(classes)}

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        return list(self._scan[1])

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        try:
            image = self.loader(path)
        except (OSError, ValueError, SyntaxError) as error:  # PIL's errors for foreign/truncated files
            if self.bad_images == "fail":
                raise DataError(f"unreadable image {path!r}: {error}") from error
            warnings.warn(f"skipping unreadable image {path!r}: {error}", RuntimeWarning, stacklevel=2)
            return None
        return self.transform(image), target


# ----------------------------------------------------------------------------------------------
# The offline digits set


class DigitsDataset(Dataset):
    """scikit-learn's 8x8 handwritten digits as ``[3, image_size, image_size]`` float images.

    Pixel values 0..16 are scaled to [0, 1], upsampled bilinearly, repeated over 3 channels and
    normalised to mean 0.5, std 0.5. ``augment`` adds a random translation of up to
    ``image_size // 8`` pixels (zero padding, then a random crop); no flips, digits are not symmetric.
    """

    num_classes = 10

    def __init__(self, split: str, image_size: int = 32, augment: bool = False):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8 (the digits are 8x8), got {image_size}")
        from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # [1797, 8, 8]
        targets = torch.tensor(digits.target, dtype=torch.int64)
        in_val = digits_val_mask(digits.target)
        keep = torch.from_numpy(in_val if split == "val" else ~in_val)
        images = F.interpolate(
            images[keep][:, None], size=(image_size, image_size), mode="bilinear", align_corners=False
        )
        self.images = ((images - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
        self.targets = targets[keep]
        self.transform = transforms.RandomCrop(image_size, padding=image_size // 8, fill=-1.0) if augment else None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])


def digits_val_mask(targets: np.ndarray) -> np.ndarray:
    """Every fifth image of each class (its 0th, 5th, 10th, ... occurrence) is a validation image."""
    mask = np.zeros(len(targets), dtype=bool)
    for label in np.unique(targets):
        mask[np.flatnonzero(targets == label)[::5]] = True
    return mask


# ----------------------------------------------------------------------------------------------
# Public entry points


def build_datasets(config: Any, *, train: bool = True) -> tuple[Dataset | None, Dataset, int]:
    """``(train_set, val_set, num_classes)`` as the data fields of ``config`` say (a
    :class:`~snn_lats.engine.recipe.TrainConfig`, or anything with its ``dataset``, ``data_path``,
    ``image_size``, ``train_crop_size``, ``val_resize_size``, ``val_crop_size``, ``bad_images`` and
    ``augment`` attributes). With ``train=False`` only the validation set is built (evaluation) and
    ``train_set`` is None.

    ``imagefolder`` reads ``data_path/train`` and ``data_path/val`` and checks them before
    anything else happens: a missing or empty folder, a class folder without images, or
    different classes in train and val raise :class:`DataError`.
    ``image_size`` applies to ``digits`` only; the crop/resize sizes to ``imagefolder`` only.
    """
    dataset = config.dataset
    if dataset == "digits":
        val_set = DigitsDataset("val", config.image_size)
        train_set = DigitsDataset("train", config.image_size, config.augment) if train else None
        return train_set, val_set, DigitsDataset.num_classes
    if dataset != "imagefolder":
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if not config.data_path:
        raise DataError("--data-path is required for dataset 'imagefolder' (a folder with train/ and val/)")
    root = Path(config.data_path)
    if not root.is_dir():
        raise DataError(f"--data-path {str(root)!r} does not exist or is not a directory")
    train_classes = check_image_folder(root / "train") if train else None
    val_classes = check_image_folder(root / "val")
    if train and train_classes != val_classes:
        only = sorted(set(train_classes) ^ set(val_classes))
        raise DataError(f"train/ and val/ of {str(root)!r} have different class folders: {', '.join(only)}")
    evaluation = val_transform(config.val_resize_size, config.val_crop_size)
    val_set = ImageFolderDataset(root / "val", evaluation, config.bad_images)
    train_set = None
    if train:
        augmentation = train_transform(config.train_crop_size) if config.augment else evaluation
        train_set = ImageFolderDataset(root / "train", augmentation, config.bad_images)
    return train_set, val_set, len(val_classes)


def collate(samples: list) -> Batch:
    """Stack ``(image, target)`` samples into a :class:`Batch`, dropping (and counting) ``None``."""
    kept = [s for s in samples if s is not None]
    skipped = len(samples) - len(kept)
    if not kept:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.int64), skipped)
    images = torch.stack([s[0] for s in kept])
    targets = torch.tensor([s[1] for s in kept], dtype=torch.int64)
    return Batch(images, targets, skipped)


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
            sample_seed = (base_seed * 1_000_003 + int(index)) % 2**63
            torch.manual_seed(sample_seed)
            random.seed(sample_seed)
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
        loader.generator.manual_seed(seed * 100_003 + epoch)
