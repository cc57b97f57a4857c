"""ImageNet-style image folders: ``root/<class>/<image>``, decoded by PIL, with torchvision's
standard augmentation (RandomResizedCrop + horizontal flip for training; resize, then centre
crop, for validation). Unreadable images are dropped and counted, or fail the run."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from snn_lats._torchvision import datasets, transforms, transforms_v2
from snn_lats.data.catalog import AUTO_AUGMENT, BAD_IMAGE_POLICIES
from snn_lats.data.errors import DataError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "check_image_folder",
    "scan_image_folder",
    "train_transform",
    "val_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = datasets.folder.IMG_EXTENSIONS


def train_transform(crop_size: int = 224, auto_augment: str | None = None) -> Any:
    """torchvision's reference training transform: random resized crop and flip, then
    ``auto_augment`` ("ra": ``transforms.v2.RandAugment``, on the PIL image) where given."""
    steps = [transforms.RandomResizedCrop(crop_size), transforms.RandomHorizontalFlip()]
    if auto_augment == "ra":
        steps.append(transforms_v2.RandAugment(interpolation=transforms.InterpolationMode.BILINEAR))
    elif auto_augment is not None:
        raise ValueError(f"auto_augment must be one of {AUTO_AUGMENT}, got {auto_augment!r}")
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


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
