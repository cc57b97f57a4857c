"""Small data sets in the event cameras' original file formats, written from the formats'
specifications (not from the readers under test), with the events each sample holds, so that a
test can count the frames by brute force.

- AEDAT 3.1 (DVS128 Gesture; iniVation's format): an ASCII header ending in ``#!END-HEADER\\r\\n``,
  then packets of a 28-byte little-endian header (type, source, event size, time-stamp offset,
  time-stamp overflow, capacity, number, valid) and 8-byte polarity events (type 1): a 32-bit word
  ``valid | p << 1 | y << 2 | x << 17`` and a 32-bit time stamp. A special-event packet (type 0),
  as the real recordings hold, comes first.
- AEDAT 2.0 (CIFAR10-DVS, recorded through jAER): ``#``-header lines, then big-endian pairs of a
  32-bit address and a 32-bit time stamp; the address holds ``p`` in bit 0, the sensor's column
  in bits 1-7 and its row in bits 8-14. CIFAR10-DVS's frames are the sensor transposed and
  mirrored (column = 127 - row bits, row = 127 - column bits) with the polarity inverted, as the
  data set's own MATLAB reader gives them.
- N-MNIST's ATIS binary: 5 bytes per event: x, y, then ``p << 23 | t`` in 24 big-endian bits.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

GESTURE_CLASSES = 11


def events(rng: np.random.Generator, n: int, side: int, t0: int = 0) -> dict[str, np.ndarray]:
    """``n`` events at increasing times on a ``side`` x ``side`` sensor, as frame coordinates."""
    return {
        "t": t0 + np.sort(rng.choice(np.arange(1, 50 * n), size=n, replace=False)).astype(np.int64),
        "x": rng.integers(0, side, n),
        "y": rng.integers(0, side, n),
        "p": rng.integers(0, 2, n),
    }


def frames_by_count(sample: dict[str, np.ndarray], T: int, side: int) -> np.ndarray:
    """The oracle: ``[T, 2, side, side]`` counts, frame i holding events ``[i*d, (i+1)*d)`` with
    ``d = n // T`` (the last frame up to the end), channel = polarity."""
    n = len(sample["t"])
    d = n // T
    out = np.zeros((T, 2, side, side))
    for i in range(T):
        for j in range(i * d, n if i == T - 1 else (i + 1) * d):
            out[i, sample["p"][j], sample["y"][j], sample["x"][j]] += 1
    return out


def write_aedat3(path: Path, sample: dict[str, np.ndarray]) -> None:
    header = (
        b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#Start-Time: 2017-01-01 00:00:00\r\n#!END-HEADER\r\n"
    )
    special = struct.pack("<HHIIIIII", 0, 1, 8, 4, 0, 1, 1, 1) + struct.pack("<II", 0, 0)
    n = len(sample["t"])
    packet = struct.pack("<HHIIIIII", 1, 1, 8, 4, 0, n, n, n)
    for t, x, y, p in zip(sample["t"], sample["x"], sample["y"], sample["p"]):
        packet += struct.pack("<II", 1 | int(p) << 1 | int(y) << 2 | int(x) << 17, int(t))
    path.write_bytes(header + special + packet)


def write_aedat2_cifar10_dvs(path: Path, sample: dict[str, np.ndarray]) -> None:
    header = (
        b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
        b"# Data format is int32 address, int32 timestamp (8 bytes total)\r\n"
    )
    words = []
    for t, x, y, p in zip(sample["t"], sample["x"], sample["y"], sample["p"]):
        column_bits, row_bits = 127 - int(y), 127 - int(x)  # the data set's frames: transposed, mirrored
        words += [(1 - int(p)) | column_bits << 1 | row_bits << 8, int(t)]
    path.write_bytes(header + struct.pack(f">{len(words)}I", *words))


def write_atis(path: Path, sample: dict[str, np.ndarray]) -> None:
    out = bytearray()
    for t, x, y, p in zip(sample["t"], sample["x"], sample["y"], sample["p"]):
        word = int(p) << 23 | int(t)
        out += bytes([int(x), int(y), word >> 16 & 0xFF, word >> 8 & 0xFF, word & 0xFF])
    path.write_bytes(bytes(out))


def n_mnist(root: Path, per_class: int = 2, n: int = 40, seed: int = 0) -> dict:
    """``Train/<d>/*.bin`` and ``Test/<d>/*.bin``; returns ``{split: [(sample, label), ...]}`` in file order."""
    rng = np.random.default_rng(seed)
    written = {"train": [], "val": []}
    for split, folder in (("train", "Train"), ("val", "Test")):
        for label in range(10):
            (root / folder / str(label)).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                sample = events(rng, n, 34)
                write_atis(root / folder / str(label) / f"{k:05d}.bin", sample)
                written[split].append((sample, label))
    return written


def cifar10_dvs(root: Path, classes: list[str], per_class: int = 10, n: int = 40, seed: int = 0) -> dict:
    """``<class>/cifar10_<class>_<k>.aedat``; returns ``{file name: (sample, label)}``."""
    rng = np.random.default_rng(seed)
    written = {}
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            sample = events(rng, n, 128)
            path = root / name / f"cifar10_{name}_{k}.aedat"
            write_aedat2_cifar10_dvs(path, sample)
            written[path.name] = (sample, label)
    return written


def dvs128_gesture(root: Path, users: dict[str, str], n: int = 30, seed: int = 0) -> dict:
    """One recording per ``user -> "train"|"test"`` holding every class once (in shuffled order),
    its labels CSV, and the two trial lists; returns ``{split: [(sample, label), ...]}`` in the
    order of the lists and the CSV rows."""
    rng = np.random.default_rng(seed)
    written = {"train": [], "val": []}
    lists = {"train": [], "test": []}
    root.mkdir(parents=True, exist_ok=True)
    for user, split in users.items():
        name = f"{user}_fluorescent"
        rows, parts, t0 = [], [], 1000
        for label in rng.permutation(GESTURE_CLASSES):
            sample = events(rng, n, 128, t0)
            start, end = t0, int(sample["t"][-1]) + 1
            rows.append(f"{label + 1},{start},{end}")
            parts.append(sample)
            written["train" if split == "train" else "val"].append((sample, int(label)))
            t0 = end + 500  # a gap without events between gestures, and events outside every gesture:
            parts.append(events(rng, 3, 128, end + 10))  # noise the labels leave out
        whole = {k: np.concatenate([p[k] for p in parts]) for k in ("t", "x", "y", "p")}
        write_aedat3(root / f"{name}.aedat", whole)
        (root / f"{name}_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + "\n".join(rows) + "\n")
        lists[split].append(f"{name}.aedat")
    for split, names in lists.items():
        (root / f"trials_to_{split}.txt").write_text("\n".join(names) + "\n")
    return written
