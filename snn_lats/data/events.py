"""Event-camera data sets read from the files their publishers distribute, through SpikingJelly's
readers, as ``T`` frames of event counts with the two polarities as channels (``[T, 2, H, W]``),
integrated the way the SEW ResNet authors' code did (SpikingJelly's fixed-frame-number
integration, by equal event counts or equal durations).

- ``dvs128-gesture``: ``DvsGesture.tar.gz`` extracted: the AEDAT 3.1 recordings, their
  ``*_labels.csv`` (class, start and end time of each gesture) and ``trials_to_train.txt`` /
  ``trials_to_test.txt``. 11 classes, 128x128.
- ``cifar10-dvs``: the ten class archives extracted (``airplane/*.aedat``, ...: AEDAT 2.0).
  It has no official split: the first 90 % of each class's files, in file-name order, train, the
  rest validate, the 9:1 per-class split of the SEW ResNet authors' code (SpikingJelly's
  ``split_to_train_test_set(0.9, ..., random_split=False)``). 10 classes, 128x128.
- ``n-mnist``: ``Train.zip`` and ``Test.zip`` extracted (``Train/<digit>/*.bin``: ATIS events).
  10 classes, 34x34.

The frames of a split are computed once and cached beside the data, in
``<data-path>/.snn-lats-frames/<split>-T<T>-<split-by>-<H>x<W>/`` (``frames.npy``, read memory-mapped,
and ``labels.npy``). They are written into a temporary folder that is renamed into place once
complete, so an interrupted conversion is never read back: the next run starts it again.
Delete the folder to convert again (after the files changed, say).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from snn_lats import _spikingjelly
from snn_lats._io import fsync_directory
from snn_lats.data.catalog import EVENT_DATASETS, SPLIT_BY
from snn_lats.data.errors import DataError

__all__ = ["EventFrames"]

CACHE_FOLDER = ".snn-lats-frames"


# A source file and the samples it holds: (label, start, end) in the file's time stamps (µs),
# or (label, None, None) for a file that is one sample.
_Source = tuple[Path, list[tuple[int, int | None, int | None]]]


def _missing(dataset: str, root: Path, what: str) -> DataError:
    return DataError(f"{dataset}: {what} in {str(root)!r}; --data-path must hold {EVENT_DATASETS[dataset].files}")


def _gesture_sources(root: Path, split: str) -> list[_Source]:
    if not (root / "trials_to_train.txt").is_file() and (root / "DvsGesture").is_dir():
        root = root / "DvsGesture"  # the archive's own folder
    trials = root / f"trials_to_{'train' if split == 'train' else 'test'}.txt"
    if not trials.is_file():
        raise _missing("dvs128-gesture", root, f"no {trials.name}")
    sources = []
    for name in trials.read_text().split():
        aedat = root / name
        labels = aedat.with_name(aedat.stem + "_labels.csv")
        for needed in (aedat, labels):
            if not needed.is_file():
                raise _missing("dvs128-gesture", root, f"no {needed.name} (listed in {trials.name})")
        try:  # class (1-11), startTime_usec, endTime_usec
            rows = np.loadtxt(labels, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
        except ValueError as error:
            raise DataError(f"dvs128-gesture: {str(labels)!r} is not a label file ({error})") from None
        if rows.shape[1] != 3 or not ((rows[:, 0] >= 1) & (rows[:, 0] <= 11)).all():
            raise DataError(f"dvs128-gesture: {str(labels)!r} must hold rows of class (1-11), start, end")
        sources.append((aedat, [(int(c) - 1, int(start), int(end)) for c, start, end in rows]))
    return sources


def _cifar10_dvs_sources(root: Path, split: str) -> list[_Source]:
    sources = []
    for label, name in enumerate(EVENT_DATASETS["cifar10-dvs"].classes):
        files = sorted((root / name).glob("*.aedat"))
        if not files:
            raise _missing("cifar10-dvs", root, f"no {name}/*.aedat")
        cut = math.ceil(0.9 * len(files))  # the first 90 % of the class train
        sources += [(f, [(label, None, None)]) for f in (files[:cut] if split == "train" else files[cut:])]
    return sources


def _n_mnist_sources(root: Path, split: str) -> list[_Source]:
    folder = root / ("Train" if split == "train" else "Test")
    sources = []
    for label in range(10):
        files = sorted((folder / str(label)).glob("*.bin"))
        if not files:
            raise _missing("n-mnist", root, f"no {folder.name}/{label}/*.bin")
        sources += [(f, [(label, None, None)]) for f in files]
    return sources


_SOURCES = {"dvs128-gesture": _gesture_sources, "cifar10-dvs": _cifar10_dvs_sources, "n-mnist": _n_mnist_sources}


def _frames_of(dataset: str, path: Path, events: dict, T: int, split_by: str, factor: int) -> np.ndarray:
    """``[T, 2, H/factor, W/factor]`` event counts: SpikingJelly's integration on the sensor's
    grid, then summed over ``factor`` x ``factor`` blocks (a count stays a count)."""
    H, W = EVENT_DATASETS[dataset].sensor
    if events["t"].size == 0:
        raise DataError(f"{dataset}: {str(path)!r} has a sample without events")
    if events["x"].max() >= W or events["y"].max() >= H:
        raise DataError(f"{dataset}: {str(path)!r} has events outside the {W}x{H} sensor")
    try:
        frames = _spikingjelly.integrate_frames(events, split_by, T, H, W)
    except IndexError:  # SpikingJelly's "time" split finds a frame's interval empty
        raise DataError(
            f"{dataset}: a sample of {str(path)!r} has a stretch without events, so equal durations leave a "
            f"frame of its {T} empty; use --split-by number"
        ) from None
    if factor > 1:
        frames = frames.reshape(T, 2, H // factor, factor, W // factor, factor).sum(axis=(3, 5))
    if frames.max() > np.iinfo(np.uint16).max:
        raise DataError(f"{dataset}: a frame of {str(path)!r} holds more than 65535 events at one pixel")
    return frames.astype(np.uint16)


def _convert(dataset: str, sources: list[_Source], cache: Path, T: int, split_by: str, factor: int) -> None:
    """Write the frames and labels of ``sources`` into ``cache`` (see the module's docstring)."""
    try:
        reader = _spikingjelly.event_reader(dataset)
    except ImportError as error:
        raise DataError(f"{dataset}: {error}") from None
    H, W = EVENT_DATASETS[dataset].sensor
    n = sum(len(cuts) for _, cuts in sources)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=cache.parent, prefix=f".{cache.name}."))
    except OSError as error:
        raise DataError(f"{dataset}: cannot write the frame cache in {str(cache.parent)!r}: {error.strerror}") from None
    print(f"{dataset}: integrating the events of {len(sources)} file(s) into {T} frames each, once (cached in {cache})")
    try:
        frames = np.lib.format.open_memmap(
            work / "frames.npy", mode="w+", dtype=np.uint16, shape=(n, T, 2, H // factor, W // factor)
        )
        labels = np.empty(n, dtype=np.int64)
        i = 0
        for path, cuts in tqdm(sources, desc=f"{dataset} to frames", unit="file", disable=None, file=sys.stderr):
            try:
                events = reader(str(path))
            except Exception as error:  # a truncated or foreign file, in whatever way the reader fails
                raise DataError(
                    f"{dataset}: {str(path)!r} cannot be read as its events ({type(error).__name__}: {error})"
                ) from None
            for label, start, end in cuts:
                sample = events
                if start is not None:  # one gesture of a recording: start <= t < end
                    keep = (events["t"] >= start) & (events["t"] < end)
                    sample = {k: np.asarray(v)[keep] for k, v in events.items()}
                frames[i] = _frames_of(dataset, path, sample, T, split_by, factor)
                labels[i] = label
                i += 1
        frames.flush()
        del frames
        np.save(work / "labels.npy", labels)
        (work / "meta.json").write_text(
            json.dumps({"dataset": dataset, "files": len(sources), "samples": n, "spikingjelly": _spikingjelly.VERSION})
        )
        for name in ("frames.npy", "labels.npy", "meta.json"):
            with open(work / name, "rb") as f:
                os.fsync(f.fileno())
        try:
            work.rename(cache)  # atomic; another process (a DDP rank) that finished first keeps its own
        except OSError:
            if not (cache / "meta.json").is_file():
                raise
        fsync_directory(cache.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class EventFrames(Dataset):
    """One split (``"train"`` or ``"val"``) of an event data set, as ``([T, 2, H, W] float32
    event counts, label)`` samples. ``image_size``: the frames' side, a divisor of the sensor's
    (default: the sensor's own); frames are summed over blocks."""

    def __init__(
        self, dataset: str, root: str | os.PathLike, split: str, T: int, split_by: str = "number", image_size=None
    ):
        if dataset not in EVENT_DATASETS:
            raise ValueError(f"dataset must be one of {tuple(EVENT_DATASETS)}, got {dataset!r}")
        if split_by not in SPLIT_BY:
            raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
        H, W = EVENT_DATASETS[dataset].sensor
        side = image_size or H
        if H % side or W % side or H // side != W // side:
            raise DataError(f"{dataset}: --image-size {side} must divide its {W}x{H} frames (summed in blocks)")
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"--data-path {str(root)!r} does not exist or is not a directory")
        factor = H // side
        self.cache = root / CACHE_FOLDER / f"{split}-T{T}-{split_by}-{H // factor}x{W // factor}"
        if not (self.cache / "meta.json").is_file():  # meta.json is written last: its folder is complete
            _convert(dataset, _SOURCES[dataset](root, split), self.cache, T, split_by, factor)
        self.classes = list(EVENT_DATASETS[dataset].classes)
        self.targets = torch.from_numpy(np.load(self.cache / "labels.npy", allow_pickle=False))
        self._frames = None  # memory-mapped on first use, in each loader process

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        if self._frames is None:
            self._frames = np.load(self.cache / "frames.npy", mmap_mode="r", allow_pickle=False)
        return torch.from_numpy(self._frames[index].astype(np.float32)), int(self.targets[index])
