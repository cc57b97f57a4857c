"""The data sets' names and what the code knows of each, and the names of the data options.
Importable without torch, so that the command line lists them in ``--help``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AUTO_AUGMENT", "BAD_IMAGE_POLICIES", "DATASETS", "EVENT_DATASETS", "SPLIT_BY", "EventFormat"]

#: How the events of a sample are cut into its T frames: equal event counts, or equal durations.
SPLIT_BY = ("number", "time")


@dataclass(frozen=True)
class EventFormat:
    """What the code needs to know of one event data set."""

    sensor: tuple[int, int]  # (H, W) of its camera
    classes: tuple[str, ...]
    files: str  # what --data-path must hold, and where to get it: the one-line error's advice


EVENT_DATASETS: dict[str, EventFormat] = {
    "dvs128-gesture": EventFormat(
        (128, 128),
        (
            "hand_clapping",
            "right_hand_wave",
            "left_hand_wave",
            "right_arm_clockwise",
            "right_arm_counter_clockwise",
            "left_arm_clockwise",
            "left_arm_counter_clockwise",
            "arm_roll",
            "air_drums",
            "air_guitar",
            "other_gestures",
        ),
        "DvsGesture.tar.gz extracted (user*.aedat, user*_labels.csv, trials_to_train.txt, trials_to_test.txt), "
        "from https://research.ibm.com/interactive/dvsgesture/",
    ),
    "cifar10-dvs": EventFormat(
        (128, 128),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "the ten class archives (airplane.zip, ...) extracted into one folder each, "
        "from https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671",
    ),
    "n-mnist": EventFormat(
        (34, 34),
        tuple(str(d) for d in range(10)),
        "Train.zip and Test.zip extracted (Train/<digit>/*.bin, Test/<digit>/*.bin), "
        "from https://www.garrickorchard.com/datasets/n-mnist",
    ),
}

#: Every data set :func:`~snn_lats.data.build_datasets` reads (:mod:`snn_lats.data.datasets` says how).
DATASETS = ("imagefolder", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100", *EVENT_DATASETS)
#: What ``--bad-images`` does with an unreadable image of a folder: skip it (and say so), or stop.
BAD_IMAGE_POLICIES = ("skip", "fail")
#: ``--auto-augment`` policies (torchvision's reference flag): "ra", RandAugment.
AUTO_AUGMENT = ("ra",)
