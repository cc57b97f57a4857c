"""Event-camera data: DVS128 Gesture, CIFAR10-DVS and N-MNIST written in their original file
formats (tests/event_files.py, from the formats' specifications), read back through
SpikingJelly's readers, and checked against frames counted by brute force; the frame cache; and
a pruned event network that trains, resumes exactly, evaluates, counts and exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import event_files
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import free_port, signal_at
from test_engine_train import assert_same_state

from snn_lats.data import EVENT_DATASETS, DataError, EventFrames, build_loaders
from snn_lats.engine.checkpoint import load_checkpoint
from snn_lats.engine.model import build_model_from_checkpoint
from snn_lats.engine.recipe import RecipeError, TrainConfig, resolve_config
from snn_lats.engine.trainer import TrainingInterrupted, train

REPO = Path(__file__).resolve().parents[1]
CIFAR_CLASSES = list(EVENT_DATASETS["cifar10-dvs"].classes)


def check_frames(dataset: EventFrames, expected: list, T: int, side: int, factor: int = 1) -> None:
    assert len(dataset) == len(expected)
    for i, (sample, label) in enumerate(expected):
        frames, target = dataset[i]
        oracle = event_files.frames_by_count(sample, T, side)
        if factor > 1:
            oracle = oracle.reshape(T, 2, side // factor, factor, side // factor, factor).sum(axis=(3, 5))
        assert target == label, i
        assert frames.dtype == torch.float32 and np.array_equal(frames.numpy(), oracle), i


def test_n_mnist_reads_back_as_the_events_written(tmp_path):
    written = event_files.n_mnist(tmp_path)
    for split in ("train", "val"):
        check_frames(EventFrames("n-mnist", tmp_path, split, 4), written[split], 4, 34)
    # Summed over 2x2 blocks at --image-size 17: a count stays a count.
    check_frames(EventFrames("n-mnist", tmp_path, "val", 3, image_size=17), written["val"], 3, 34, factor=2)


def test_dvs128_gesture_cuts_each_recording_by_its_labels(tmp_path):
    # The archive's own folder is found below --data-path; noise between the gestures is left out.
    users = {"user01": "train", "user02": "train", "user03": "test"}
    written = event_files.dvs128_gesture(tmp_path / "DvsGesture", users)
    train_set = EventFrames("dvs128-gesture", tmp_path, "train", 5)
    check_frames(train_set, written["train"], 5, 128)
    check_frames(EventFrames("dvs128-gesture", tmp_path, "val", 5), written["val"], 5, 128)
    assert len(train_set) == 2 * 11 and train_set.classes[0] == "hand_clapping"


def test_cifar10_dvs_splits_9_to_1_per_class_in_file_name_order(tmp_path):
    written = event_files.cifar10_dvs(tmp_path, CIFAR_CLASSES, per_class=11)
    # ceil(0.9 x 11) = 10 files of each class train; in name order ..._0, _1, _10, _2, ..., _8 train, _9 validates.
    train_names = [f"cifar10_{c}_{k}.aedat" for c in CIFAR_CLASSES for k in (0, 1, 10, 2, 3, 4, 5, 6, 7, 8)]
    val_names = [f"cifar10_{c}_9.aedat" for c in CIFAR_CLASSES]
    check_frames(EventFrames("cifar10-dvs", tmp_path, "train", 2), [written[n] for n in train_names], 2, 128)
    check_frames(EventFrames("cifar10-dvs", tmp_path, "val", 2), [written[n] for n in val_names], 2, 128, factor=1)


def test_the_cache_is_read_back_and_a_failed_conversion_leaves_nothing(tmp_path):
    written = event_files.cifar10_dvs(tmp_path, CIFAR_CLASSES, per_class=2)
    broken = tmp_path / "truck" / "cifar10_truck_1.aedat"
    good = broken.read_bytes()
    broken.write_bytes(good[:-4])  # a truncated file: an address without its time stamp
    with pytest.raises(DataError, match=r"cifar10_truck_1.aedat' cannot be read as its events \(ValueError: "):
        EventFrames("cifar10-dvs", tmp_path, "train", 2)
    assert list((tmp_path / ".snn-lats-frames").iterdir()) == []  # no cache, no half-written folder
    broken.write_bytes(good)
    EventFrames("cifar10-dvs", tmp_path, "train", 2)
    for name in CIFAR_CLASSES:  # the second reading comes from the cache alone
        for f in (tmp_path / name).iterdir():
            f.unlink()
    names = [f"cifar10_{c}_{k}.aedat" for c in CIFAR_CLASSES for k in (0, 1)]
    check_frames(EventFrames("cifar10-dvs", tmp_path, "train", 2), [written[n] for n in names], 2, 128)


@pytest.mark.parametrize(
    "dataset, message",
    [
        ("n-mnist", r"n-mnist: no Train/0/\*.bin in .*; --data-path must hold Train.zip and Test.zip extracted"),
        ("cifar10-dvs", r"cifar10-dvs: no airplane/\*.aedat in .*ten class archives"),
        ("dvs128-gesture", r"dvs128-gesture: no trials_to_train.txt in .*DvsGesture.tar.gz extracted"),
    ],
)
def test_a_missing_data_set_is_named_in_one_line(tmp_path, dataset, message):
    with pytest.raises(DataError, match=message) as info:
        EventFrames(dataset, tmp_path, "train", 4)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="must divide its 128x128 frames"):
        EventFrames("cifar10-dvs", tmp_path, "train", 4, image_size=48)


def test_a_gesture_list_naming_a_missing_recording_is_refused(tmp_path):
    event_files.dvs128_gesture(tmp_path, {"user01": "train"})
    (tmp_path / "user01_fluorescent_labels.csv").unlink()
    with pytest.raises(DataError, match="no user01_fluorescent_labels.csv \\(listed in trials_to_train.txt\\)"):
        EventFrames("dvs128-gesture", tmp_path, "train", 4)


def test_loaders_give_a_sequence_in_the_networks_layout(tmp_path):
    event_files.n_mnist(tmp_path, per_class=1)
    val_set = EventFrames("n-mnist", tmp_path, "val", 3)
    _, loader = build_loaders(None, val_set, batch_size=4)
    images, targets, _ = next(iter(loader))
    assert images.shape == (3, 4, 2, 34, 34) and targets.shape == (4,)  # [T, N, C, H, W]
    assert torch.equal(images[:, 1], val_set[1][0])


# ---------------------------------------------------------------------------------------------
# A pruned event network end to end


def event_config(data_path, output_dir, **overrides) -> TrainConfig:
    values = dict(dataset="n-mnist", data_path=str(data_path), T=3, image_size=17, model="sew_resnet18", width=4,
                  stem="cifar", batch_size=5, epochs=2, workers=0, lr=0.1, prune="lats", final_threshold=0.05,
                  print_freq=2, sops_batches=1, output_dir=str(output_dir), device="cpu", seed=1)  # fmt: skip
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def n_mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("n-mnist")
    event_files.n_mnist(root, per_class=2)
    return root


def test_an_event_network_trains_resumes_exactly_and_counts_its_input_as_acs(n_mnist_root, tmp_path):
    reference = tmp_path / "reference"
    train(event_config(n_mnist_root, reference))
    with pytest.raises(TrainingInterrupted):
        train(event_config(n_mnist_root, tmp_path / "run"), build_model_fn=signal_at("train", 5))  # in epoch 1
    train(event_config(n_mnist_root, tmp_path / "run", resume=str(tmp_path / "run" / "checkpoint.pth")))
    resumed = load_checkpoint(tmp_path / "run" / "checkpoint.pth")
    assert_same_state(resumed, load_checkpoint(reference / "checkpoint.pth"))

    # The first layer's input is event counts: ACs, k events at one input being k ACs, with the
    # pruned synapses absent. Brute force: sum of conv(x, 1[w != 0]) over every frame of the validation set.
    checkpoint = str(reference / "model_best.pth")
    report = tmp_path / "sops.json"
    for convention in ("exact", "paper"):
        done = subprocess.run(
            [sys.executable, "-m", "snn_lats", "sops", "--checkpoint", checkpoint, "--batches", "100",
             "--convention", convention, "--json", str(report)],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "first layer 'conv1' takes spike counts (event data), so no encoding layer" in done.stdout
        rows = {r["name"]: r for r in json.loads(report.read_text())["rows"]}
        model, _ = build_model_from_checkpoint(checkpoint)
        frames = torch.stack([x for x, _ in EventFrames("n-mnist", n_mnist_root, "val", 3, image_size=17)])
        conv1 = model.conv1
        mask = (conv1.weight != 0).float()
        fan_out = F.conv2d(frames.flatten(0, 1), mask, stride=conv1.stride, padding=conv1.padding).sum()
        if convention == "exact":
            assert rows["conv1"]["acs"] == pytest.approx(float(fan_out), rel=1e-6) and rows["conv1"]["macs"] == 0
        else:  # paper: fr x T x dense FLOPs as ACs, as for every spiking layer; no T x FLOPs of MACs
            assert rows["conv1"]["macs"] == 0 and rows["conv1"]["acs"] > 0

    out = tmp_path / "export"
    done = subprocess.run(
        [sys.executable, "-m", "snn_lats", "export", "--checkpoint", checkpoint, "--out", str(out), "--format", "nir"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "export.json").read_text())["nir"]["input_shape"] == [2, 17, 17]


def test_event_data_needs_T_a_spiking_network_and_no_channels_last(n_mnist_root, tmp_path):
    with pytest.raises(RecipeError, match="dataset 'n-mnist' needs --T"):
        event_config(n_mnist_root, tmp_path, T=None).validate()
    with pytest.raises(RecipeError, match="channels_last .* applies to images, not to 'n-mnist' frames"):
        event_config(n_mnist_root, tmp_path, channels_last=True).validate()
    with pytest.raises(RecipeError, match="'n-mnist' is event data, .* needs a spiking network, and 'resnet18' has no"):
        train(event_config(n_mnist_root, tmp_path / "ann", model="resnet18", prune="none", final_threshold=None))
    assert not (tmp_path / "ann").exists()


@pytest.mark.parametrize(
    "recipe, classes",
    [("sew_7b_net_dvs128_gesture_lats.yaml", 11), ("sew_wide_7b_net_cifar10_dvs_lats.yaml", 10)],
)
def test_each_event_recipe_trains_its_network_on_generated_files(tmp_path, recipe, classes):
    if classes == 11:
        event_files.dvs128_gesture(tmp_path / "data", {"user01": "train", "user02": "test"})
    else:  # 11 files per class: 10 train, 1 validates
        event_files.cifar10_dvs(tmp_path / "data", CIFAR_CLASSES, per_class=11, n=20)
    overrides = dict(data_path=str(tmp_path / "data"), T=2, width=4, epochs=2, batch_size=8, amp=False, workers=0,
                     lr=0.1, print_freq=5, sops_batches=1, output_dir=str(tmp_path / "run"), device="cpu")  # fmt: skip
    summary = train(resolve_config(overrides, REPO / "models" / recipe))
    assert summary.sparsity.global_sparsity == pytest.approx(0.9, abs=0.005)  # the recipe's target
    model, _ = build_model_from_checkpoint(str(tmp_path / "run" / "model_best.pth"))
    assert type(model).__name__ == "SEWEventNet" and model.fc.out_features == classes and model.in_channels == 2


@pytest.mark.slow
def test_two_torchrun_processes_convert_once_and_shard_the_frames(tmp_path):
    # Both ranks find no cache and convert at once: the first complete folder wins, the other's is
    # dropped, and no half-written folder is left. Validation is reduced over both ranks.
    event_files.n_mnist(tmp_path / "data", per_class=2)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={free_port()}",
         "-m", "snn_lats", "train", "--dataset", "n-mnist", "--data-path", str(tmp_path / "data"), "--T", "2",
         "--image-size", "17", "--model", "sew_resnet18", "--width", "4", "--stem", "cifar", "--epochs", "1",
         "-b", "5", "-j", "0", "--prune", "lats", "--final-threshold", "0.05", "--sops-batches", "1",
         "--device", "cpu", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cache = sorted(p.name for p in (tmp_path / "data" / ".snn-lats-frames").iterdir())
    assert cache == ["train-T2-number-17x17", "val-T2-number-17x17"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["history"][-1]["val"]["samples"] == 20
