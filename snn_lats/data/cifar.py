"""CIFAR-10 and CIFAR-100 from the official *binary* distribution (``cifar-10-binary.tar.gz``,
``cifar-100-binary.tar.gz``: raw bytes), as the archive or extracted. The python version is a
pickle, which this project never loads."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np

from snn_lats._torchvision import datasets, transforms
from snn_lats.data.errors import DataError

__all__ = ["CIFAR_FILES", "CIFAR100Binary", "CIFAR10Binary"]

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
