"""MNIST and Fashion-MNIST from their original IDX files (``.gz`` or not), never downloaded:
flat in ``data_path`` (the layout of Debian's ``dataset-fashion-mnist``, whose folder
``/usr/share/datasets/fashion-mnist/`` is the default) or in ``data_path/<MNIST|FashionMNIST>/raw/``
(torchvision's ``download=True`` layout). Train is the 60,000 training images, val the 10,000
test images."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from snn_lats._torchvision import datasets, transforms
from snn_lats.data.errors import DataError

__all__ = [
    "FASHION_MNIST_SYSTEM_PATH",
    "MNIST_FILES",
    "FashionMNISTFiles",
    "MNISTFiles",
    "missing_idx_message",
    "read_idx",
]

#: Where Debian's package ``dataset-fashion-mnist`` puts the four IDX files: the default ``data_path``.
FASHION_MNIST_SYSTEM_PATH = "/usr/share/datasets/fashion-mnist"
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
            raise DataError(missing_idx_message(self.name, self.torchvision_name, folders, missing))
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


def missing_idx_message(dataset: str, torchvision_class: str, folders: list[Path], missing: list[str]) -> str:
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
