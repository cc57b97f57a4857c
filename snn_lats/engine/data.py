"""Data sets and loaders: ImageNet-style image folders, MNIST, Fashion-MNIST and CIFAR from their
original files, and the built-in offline digits set. Nothing is ever downloaded.

- ``dataset="imagefolder"``: ``data_path/train/<class>/*.jpg`` and ``data_path/val/<class>/*.jpg``
  (ImageNet's layout), decoded by PIL, with torchvision's standard augmentation: RandomResizedCrop
  + horizontal flip for training; resize, then centre crop, for validation.
- ``dataset="mnist"`` / ``"fashion-mnist"``: the four original IDX files (``.gz`` or not), flat in
  ``data_path`` (the layout of Debian's ``dataset-fashion-mnist``, whose folder
  ``/usr/share/datasets/fashion-mnist/`` is the default) or in ``data_path/<MNIST|FashionMNIST>/raw/``
  (torchvision's ``download=True`` layout). Train is the 60,000 training images, val the 10,000 test
  images.
- ``dataset="cifar10"`` / ``"cifar100"``: the official *binary* distribution
  (``cifar-10-binary.tar.gz``, ``cifar-100-binary.tar.gz``: raw bytes), as the archive or extracted.
  The python version is a pickle, which this project never loads.
- ``dataset="digits"``: scikit-learn's bundled ``load_digits()`` (1797 real 8x8 handwritten digits,
  10 classes), upsampled to a small RGB image and split deterministically: every fifth image of
  each class is in the validation set.

``train_subset`` keeps a class-balanced part of any training set (the validation set stays whole).

Batches are :class:`Batch` tuples ``(images, targets, skipped)``: ``skipped`` counts unreadable
images dropped from that batch (``bad_images="skip"``), so the count reaches the log even when
the images were decoded in worker processes.
"""

from __future__ import annotations

import gzip
import os
import random
import signal
import tarfile
import threading
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset, get_worker_info
from torch.utils.data.distributed import DistributedSampler

from snn_lats._torchvision import datasets, transforms

__all__ = [
    "BAD_IMAGE_POLICIES",
    "CIFAR_FILES",
    "DATASETS",
    "FASHION_MNIST_SYSTEM_PATH",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "MNIST_FILES",
    "Batch",
    "CIFAR10Binary",
    "CIFAR100Binary",
    "DataError",
    "DigitsDataset",
    "FashionMNISTFiles",
    "ImageFolderDataset",
    "Loader",
    "SeededSamples",
    "MNISTFiles",
    "ShardSampler",
    "balanced_subset",
    "build_datasets",
    "build_loaders",
    "check_image_folder",
    "scan_image_folder",
    "collate",
    "digits_val_mask",
    "read_idx",
    "set_epoch",
    "train_transform",
    "val_transform",
]

DATASETS = ("imagefolder", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100")
#: Where Debian's package ``dataset-fashion-mnist`` puts the four IDX files: the default ``data_path``.
FASHION_MNIST_SYSTEM_PATH = "/usr/share/datasets/fashion-mnist"
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
# MNIST and Fashion-MNIST from their IDX files

#: ``(images, labels)`` file names of each split, as distributed (each may also end in ``.gz``).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Mean and std of the training images' pixels in [0, 1] (the usual normalisation constants).
_GRAY_STATS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """The uint8 array of an IDX file (LeCun's format; gzip-compressed when the name ends in ``.gz``).

    Header: two zero bytes, the type byte (``0x08``: unsigned byte), the number of dimensions
    ``n``, then ``n`` big-endian uint32 sizes; the values follow in row-major order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read IDX file {str(path)!r}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise DataError(f"{str(path)!r} is not an IDX file of unsigned bytes (header {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise DataError(
            f"IDX file {str(path)!r} is truncated or padded: its header says {shape} "
            f"({int(np.prod(shape))} values), it holds {len(raw) - offset}"
        )
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape).copy())


def _find_idx(folders: list[Path], name: str) -> Path | None:
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


class _IDXFiles:
    """torchvision's MNIST-family data set read from local IDX files, with images prepared once.

    torchvision's own ``__init__`` wants the uncompressed files in ``root/<class name>/raw/`` and
    offers only a download otherwise; this one also reads the ``.gz`` files as distributed, flat
    in ``root``, and never downloads. ``data`` (uint8 ``[N, 28, 28]``), ``targets`` and ``classes``
    are torchvision's. Items are ``[3, image_size, image_size]`` float images: pixels scaled to
    [0, 1], resized (bilinear, antialiased) once at load, normalised with the training set's mean
    and std, the gray channel repeated 3 times (the networks, and torchvision's pretrained weights,
    take RGB). Preparing them once makes an epoch tensor indexing: torchvision's per-item PIL
    path took more time than the forward pass of the small networks here. ``augment``: a random
    translation of up to ``image_size // 8`` pixels (padding with the background), and for
    Fashion-MNIST a horizontal flip (clothes are mirror-symmetric; digits are not).
    """

    name = ""  # the ``dataset`` value
    torchvision_name = ""  # torchvision's class, whose name is the folder of its download layout

    def __init__(self, root: str | os.PathLike, split: str, image_size: int = 28, augment: bool = False):
        if split not in MNIST_FILES:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        root = Path(root)
        folders = [root, root / self.torchvision_name / "raw"]
        paths = [_find_idx(folders, name) for name in MNIST_FILES[split]]
        missing = [name for name, path in zip(MNIST_FILES[split], paths) if path is None]
        if missing:
            raise DataError(_missing_idx_message(self.name, self.torchvision_name, folders, missing))
        datasets.VisionDataset.__init__(self, str(root))
        self.train = split == "train"
        self.data, self.targets = read_idx(paths[0]), read_idx(paths[1]).long()
        if self.data.ndim != 3 or self.targets.ndim != 1 or len(self.data) != len(self.targets):
            raise DataError(
                f"{paths[0]} and {paths[1]} do not fit together: images {tuple(self.data.shape)}, "
                f"labels {tuple(self.targets.shape)} (expected [N, H, W] and [N])"
            )
        if len(self.targets) and int(self.targets.max()) >= len(self.classes):
            raise DataError(f"{paths[1]} has label {int(self.targets.max())}; {self.name} has {len(self.classes)}")
        mean, std = _GRAY_STATS[self.name]
        images = self.data.float().div(255.0)[:, None]
        if images.shape[-2:] != (image_size, image_size):
            images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", antialias=True)
        self.images = (images - mean) / std  # [N, 1, S, S]
        self.augmentation = None
        if augment:
            steps = [transforms.RandomCrop(image_size, padding=max(1, image_size // 8), fill=-mean / std)]
            if self.name == "fashion-mnist":
                steps.append(transforms.RandomHorizontalFlip())
            self.augmentation = transforms.Compose(steps)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.augmentation is not None:
            image = self.augmentation(image)
        return image.expand(3, -1, -1), int(self.targets[index])


def _missing_idx_message(dataset: str, torchvision_class: str, folders: list[Path], missing: list[str]) -> str:
    """What is missing where, and both ways to get the files."""
    files = ", ".join(f"{name}(.gz)" for name in missing)
    if folders:
        head = f"{dataset}: no {files} in " + " nor in ".join(repr(str(f)) for f in folders)
    else:
        head = f"{dataset} needs --data-path, a folder with its IDX files ({files}, ...)"
    ways = []
    if dataset == "fashion-mnist":
        ways.append(
            f"install the system package (apt-get install dataset-fashion-mnist, which puts them in "
            f"{FASHION_MNIST_SYSTEM_PATH}/, the default --data-path)"
        )
    ways.append(
        f'on a machine with internet, download them with torchvision (python -c "from torchvision.datasets '
        f"import {torchvision_class}; {torchvision_class}('DIR', download=True)\") and pass --data-path DIR"
    )
    return f"{head}. To get them, " + ", or ".join(ways)


class MNISTFiles(_IDXFiles, datasets.MNIST):
    """torchvision's :class:`~torchvision.datasets.MNIST`, read from local IDX files (see :class:`_IDXFiles`)."""

    name = "mnist"
    torchvision_name = "MNIST"


class FashionMNISTFiles(_IDXFiles, datasets.FashionMNIST):
    """torchvision's :class:`~torchvision.datasets.FashionMNIST`, read from local IDX files (see :class:`_IDXFiles`)."""

    name = "fashion-mnist"
    torchvision_name = "FashionMNIST"


# ----------------------------------------------------------------------------------------------
# CIFAR from the official binary distribution

#: Per data set: the archive, the folder it unpacks to, the train and test files, the class-name
#: file, the label byte used (CIFAR-100's records are ``coarse, fine, pixels``) and the label bytes.
CIFAR_FILES = {
    "cifar10": {
        "archive": "cifar-10-binary.tar.gz",
        "folder": "cifar-10-batches-bin",
        "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        "val": ("test_batch.bin",),
        "names": "batches.meta.txt",
        "label_bytes": 1,
        "label": 0,
    },
    "cifar100": {
        "archive": "cifar-100-binary.tar.gz",
        "folder": "cifar-100-binary",
        "train": ("train.bin",),
        "val": ("test.bin",),
        "names": "fine_label_names.txt",
        "label_bytes": 2,
        "label": 1,
    },
}
_CIFAR_STATS = {  # per-channel mean and std of the training images in [0, 1]
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _cifar_members(dataset: str, root: Path, names: tuple[str, ...]) -> list[bytes]:
    """The bytes of ``names`` from the extracted folder (``root`` or ``root/<folder>``) or from the
    archive (``root`` itself, or ``root/<archive>``); read, never extracted."""
    spec = CIFAR_FILES[dataset]
    for folder in (root, root / spec["folder"]):
        if folder.is_dir() and all((folder / n).is_file() for n in names):
            return [(folder / n).read_bytes() for n in names]
    archive = root if root.is_file() else root / spec["archive"]
    if archive.is_file():
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                missing = [n for n in names if n not in members]
                if not missing:
                    return [tar.extractfile(members[n]).read() for n in names]
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataError(f"cannot read the {dataset} archive {str(archive)!r}: {error}") from None
        raise DataError(f"the archive {str(archive)!r} has no {', '.join(missing)}: is it {spec['archive']}?")
    raise DataError(
        f"{dataset}: no {', '.join(names)} in {str(root)!r} nor in {str(root / spec['folder'])!r}, and no "
        f"{spec['archive']} there. --data-path takes the official binary distribution ({spec['archive']}, "
        f"from the CIFAR page of the University of Toronto), as the archive or extracted; the python "
        f"version (a pickle) is not read"
    )


class _CIFARBinary:
    """Reads torchvision's CIFAR data from the binary distribution into its ``data``/``targets``.

    torchvision's own ``__init__`` unpickles the python version, and this project never unpickles
    files it did not write. A record of the binary version is the label byte(s), then 3072 pixel
    bytes: the 32x32 red plane, then green, then blue, rows in order. ``data`` becomes
    ``[N, 32, 32, 3]`` uint8 as torchvision keeps it, and torchvision's ``__getitem__`` serves it.
    """

    name = ""

    def __init__(self, root: str | os.PathLike, split: str, image_size: int = 32, augment: bool = False):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        spec = CIFAR_FILES[self.name]
        root = Path(root)
        *chunks, names = _cifar_members(self.name, root, (*spec[split], spec["names"]))
        record = spec["label_bytes"] + 3072
        raw = b"".join(chunks)
        if len(raw) % record:
            raise DataError(f"{self.name} {split} files are not whole {record}-byte records: truncated?")
        records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
        mean, std = _CIFAR_STATS[self.name]
        steps = [] if image_size == 32 else [transforms.Resize(image_size, antialias=True)]
        if augment:
            steps += [
                transforms.RandomCrop(image_size, padding=max(1, image_size // 8)),
                transforms.RandomHorizontalFlip(),
            ]
        steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
        datasets.VisionDataset.__init__(self, str(root), transform=transforms.Compose(steps))
        self.train = split == "train"
        self.classes = [line.strip() for line in names.decode().splitlines() if line.strip()]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.data = records[:, spec["label_bytes"] :].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
        self.targets = records[:, spec["label"]].astype(np.int64).tolist()
        if self.targets and max(self.targets) >= len(self.classes):
            raise DataError(
                f"{self.name} {split}: label {max(self.targets)} but {spec['names']} names {len(self.classes)} classes"
            )


class CIFAR10Binary(_CIFARBinary, datasets.CIFAR10):
    """torchvision's :class:`~torchvision.datasets.CIFAR10`, read from ``cifar-10-binary.tar.gz``'s files."""

    name = "cifar10"


class CIFAR100Binary(_CIFARBinary, datasets.CIFAR100):
    """torchvision's :class:`~torchvision.datasets.CIFAR100` (fine labels), from ``cifar-100-binary.tar.gz``'s files."""

    name = "cifar100"


# ----------------------------------------------------------------------------------------------
# Subsets


def balanced_subset(targets: Any, size: int, num_classes: int) -> list[int]:
    """Indices of ``size`` samples: the first ``size // num_classes`` of every class in file order
    (one more for the first ``size % num_classes`` classes), in file order. :class:`DataError`
    when a class has too few."""
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


# ----------------------------------------------------------------------------------------------
# Public entry points


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
        size = config.image_size or 32
        val_set = DigitsDataset("val", size)
        train_set = DigitsDataset("train", size, config.augment) if train else None
        return train_set, val_set, DigitsDataset.num_classes
    if dataset in ("mnist", "fashion-mnist"):
        cls = FashionMNISTFiles if dataset == "fashion-mnist" else MNISTFiles
        root = config.data_path
        if not root:
            if dataset == "mnist" or not Path(FASHION_MNIST_SYSTEM_PATH).is_dir():
                raise DataError(_missing_idx_message(dataset, cls.torchvision_name, [], list(MNIST_FILES["train"])))
            root = FASHION_MNIST_SYSTEM_PATH
        size = config.image_size or 28
        val_set = cls(root, "val", size)
        train_set = cls(root, "train", size, config.augment) if train else None
        return train_set, val_set, len(val_set.classes)
    if dataset in CIFAR_FILES:
        cls = CIFAR10Binary if dataset == "cifar10" else CIFAR100Binary
        if not config.data_path:
            raise DataError(
                f"--data-path is required for dataset {dataset!r}: the official binary distribution "
                f"({CIFAR_FILES[dataset]['archive']}), as the archive or extracted"
            )
        size = config.image_size or 32
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
