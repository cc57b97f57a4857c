"""The data sets by name: ``build_datasets(config)`` reads the one a configuration names from its
files, and the built-in offline digits. Nothing is ever downloaded.

- ``"imagefolder"``: ``data_path/train/<class>/*`` and ``data_path/val/<class>/*`` (:mod:`.imagefolder`);
- ``"mnist"``, ``"fashion-mnist"``: the four IDX files (:mod:`.idx`);
- ``"cifar10"``, ``"cifar100"``: the official binary version (:mod:`.cifar`);
- ``"dvs128-gesture"``, ``"cifar10-dvs"``, ``"n-mnist"``: event-camera recordings, as ``T``
  frames of event counts ``[T, 2, H, W]`` (:mod:`.events`);
- ``"digits"``: scikit-learn's bundled ``load_digits()`` (1797 real 8x8 handwritten digits, 10
  classes), upsampled to a small RGB image and split deterministically: every fifth image of
  each class is in the validation set.

``train_subset`` keeps a class-balanced part of any training set (the validation set stays whole).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from snn_lats._torchvision import transforms
from snn_lats.data.catalog import DATASETS, EVENT_DATASETS
from snn_lats.data.cifar import CIFAR_FILES, CIFAR10Binary, CIFAR100Binary
from snn_lats.data.errors import DataError
from snn_lats.data.events import EventFrames
from snn_lats.data.idx import FASHION_MNIST_SYSTEM_PATH, MNIST_FILES, FashionMNISTFiles, MNISTFiles, missing_idx_message
from snn_lats.data.imagefolder import ImageFolderDataset, check_image_folder, train_transform, val_transform

__all__ = ["DigitsDataset", "balanced_subset", "build_datasets", "digits_val_mask"]

#: The side of the built-in data sets' images when ``image_size`` is not given.
DEFAULT_IMAGE_SIZE = {
    "digits": 32,
    "mnist": 28,
    "fashion-mnist": 28,
    "cifar10": 32,
    "cifar100": 32,
    **{name: event.sensor[0] for name, event in EVENT_DATASETS.items()},
}


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


def balanced_subset(targets: Any, size: int, num_classes: int) -> list[int]:
    """Indices of ``size`` samples: the first ``size // num_classes`` of every class in file order
    (one more for the first ``size % num_classes`` classes), in file order. :class:`DataError`
    when a class has too few."""
    if size < num_classes:
        raise DataError(
            f"train_subset={size} is fewer than the {num_classes} classes: some classes would have no training "
            f"image; give at least {num_classes}"
        )
    targets = torch.as_tensor(targets)
    quota = [size // num_classes + (c < size % num_classes) for c in range(num_classes)]
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(targets == c).flatten()
        if len(members) < quota[c]:
            raise DataError(
                f"train_subset={size} needs {quota[c]} training images of class {c}; the set has {len(members)}"
            )
        chosen.append(members[: quota[c]])
    return sorted(torch.cat(chosen).tolist())


def validation_images(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration fields (a run's config dict) that decide its validation images, each as
    it applies: an image folder's path and resize/crop sizes; a built-in data set's image size,
    its default filled in (its files are the same wherever they lie)."""
    dataset = config.get("dataset")
    if dataset == "imagefolder":
        return {k: config.get(k) for k in ("dataset", "data_path", "val_resize_size", "val_crop_size")}
    if dataset in EVENT_DATASETS:  # the frames: how many, and how the events were cut into them
        size = config.get("image_size") or DEFAULT_IMAGE_SIZE[dataset]
        return {"dataset": dataset, "image_size": size, "T": config.get("T"), "split_by": config.get("split_by")}
    return {"dataset": dataset, "image_size": config.get("image_size") or DEFAULT_IMAGE_SIZE.get(dataset)}


def build_datasets(config: Any, *, train: bool = True) -> tuple[Dataset | None, Dataset, int]:
    """``(train_set, val_set, num_classes)`` as the data fields of ``config`` say (a
    :class:`~snn_lats.engine.recipe.TrainConfig`, or anything with its ``dataset``, ``data_path``,
    ``image_size``, ``train_crop_size``, ``val_resize_size``, ``val_crop_size``, ``bad_images`` and
    ``augment`` attributes, and optionally ``train_subset`` and ``num_classes``). With
    ``train=False`` only the validation set is built (evaluation) and ``train_set`` is None.

    ``imagefolder`` reads ``data_path/train`` and ``data_path/val`` and checks them before
    anything else happens: a missing or empty folder, a class folder without images, or
    different classes in train and val raise :class:`DataError`. So does a missing or malformed
    file of the other data sets. ``image_size`` applies to ``digits`` (default 32), ``mnist``,
    ``fashion-mnist`` (default 28) and ``cifar10``/``cifar100`` (default 32), which are resized
    when it differs from their own size; the crop/resize sizes apply to ``imagefolder`` only.
    ``train_subset`` keeps that many training images (:func:`balanced_subset`); ``num_classes``,
    when set, must be the data set's number of classes.
    """
    dataset = config.dataset
    train_set, val_set, num_classes = _read_datasets(config, dataset, train)
    subset = getattr(config, "train_subset", None)
    if train_set is not None and subset is not None:
        if subset > len(train_set):
            raise DataError(f"train_subset={subset} exceeds the {len(train_set)} training images of {dataset}")
        train_set = Subset(train_set, balanced_subset(_targets(train_set), subset, num_classes))
    wanted = getattr(config, "num_classes", None)
    if wanted is not None and wanted != num_classes:
        raise DataError(f"--num-classes {wanted} does not match the {num_classes} classes of the data set ({dataset})")
    return train_set, val_set, num_classes


def _targets(dataset: Dataset) -> Any:
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = [target for _, target in dataset.samples]
    return targets


def _read_datasets(config: Any, dataset: str, train: bool) -> tuple[Dataset | None, Dataset, int]:
    if dataset == "digits":
        size = config.image_size or DEFAULT_IMAGE_SIZE[dataset]
        val_set = DigitsDataset("val", size)
        train_set = DigitsDataset("train", size, config.augment) if train else None
        return train_set, val_set, DigitsDataset.num_classes
    if dataset in ("mnist", "fashion-mnist"):
        cls = FashionMNISTFiles if dataset == "fashion-mnist" else MNISTFiles
        root = config.data_path
        if not root:
            if dataset == "mnist" or not Path(FASHION_MNIST_SYSTEM_PATH).is_dir():
                raise DataError(missing_idx_message(dataset, cls.torchvision_name, [], list(MNIST_FILES["train"])))
            root = FASHION_MNIST_SYSTEM_PATH
        size = config.image_size or DEFAULT_IMAGE_SIZE[dataset]
        val_set = cls(root, "val", size)
        train_set = cls(root, "train", size, config.augment) if train else None
        return train_set, val_set, len(val_set.classes)
    if dataset in EVENT_DATASETS:
        if not config.data_path:
            raise DataError(f"--data-path is required for dataset {dataset!r}: {EVENT_DATASETS[dataset].files}")
        if config.T is None:
            raise DataError(f"dataset {dataset!r} needs --T: the frames each recording is integrated into")
        frames = (config.data_path, config.T, config.split_by, config.image_size)
        val_set = EventFrames(dataset, frames[0], "val", *frames[1:])
        train_set = EventFrames(dataset, frames[0], "train", *frames[1:]) if train else None
        return train_set, val_set, len(val_set.classes)
    if dataset in CIFAR_FILES:
        cls = CIFAR10Binary if dataset == "cifar10" else CIFAR100Binary
        if not config.data_path:
            raise DataError(
                f"--data-path is required for dataset {dataset!r}: the official binary distribution "
                f"({CIFAR_FILES[dataset]['archive']}), as the archive or extracted"
            )
        size = config.image_size or DEFAULT_IMAGE_SIZE[dataset]
        val_set = cls(config.data_path, "val", size)
        train_set = cls(config.data_path, "train", size, config.augment) if train else None
        return train_set, val_set, len(val_set.classes)
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
        augmentation = train_transform(config.train_crop_size, config.auto_augment) if config.augment else evaluation
        train_set = ImageFolderDataset(root / "train", augmentation, config.bad_images)
    return train_set, val_set, len(val_classes)
