"""The training loop end to end on tiny real data: outputs, best checkpoint, exact resume,
signals, non-finite loss, and a 2-process torchrun (gloo) run against a 1-process run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import free_port, image_folder, signal_at
from PIL import Image

from snn_lats.data import IMAGENET_MEAN, IMAGENET_STD
from snn_lats.engine.checkpoint import CheckpointError, load_checkpoint
from snn_lats.engine.model import build_model, build_model_from_checkpoint
from snn_lats.engine.recipe import RecipeError, TrainConfig
from snn_lats.engine.trainer import NonFiniteLossError, TrainingInterrupted, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("data"))


def tiny(data_root, output_dir, **overrides) -> TrainConfig:
    values = dict(
        dataset="imagefolder",
        data_path=str(data_root),
        model="sew_resnet18",
        T=2,
        width=4,
        stem="cifar",
        train_crop_size=8,
        val_resize_size=8,
        val_crop_size=8,
        batch_size=4,
        epochs=3,
        workers=0,
        lr=0.1,
        weight_decay=1e-4,
        prune="lats",
        final_threshold=0.05,
        print_freq=2,
        sops_batches=1,
        output_dir=str(output_dir),
        device="cpu",
        seed=3,
    )
    values.update(overrides)
    return TrainConfig(**values)


def without_times(history):
    """Per-epoch records without wall-clock figures."""
    out = []
    for record in history:
        record = json.loads(json.dumps(record))
        record.pop("epoch_time_s")
        record["train"].pop("images_per_s")
        out.append(record)
    return out


def assert_same_state(a: dict, b: dict):
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["pruner"] == b["pruner"]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert (a["epoch"], a["step"], a["best"]) == (b["epoch"], b["step"], b["best"])
    assert without_times(a["history"]) == without_times(b["history"])


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory):
    """An uninterrupted run: 3 epochs of 4 steps."""
    out = tmp_path_factory.mktemp("reference")
    summary = train(tiny(data_root, out))
    return out, summary


# ------------------------------------------------------------------------------------------ outputs


def test_run_writes_its_outputs_and_the_summary_matches_a_fresh_evaluation(reference, data_root):
    out, summary = reference
    for name in (
        "config.yaml",
        "config.json",
        "checkpoint.pth",
        "model_best.pth",
        "summary.json",
        "sops.json",
        "sops.png",
        "sparsity.json",
        "training.png",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["accuracy"] == summary.accuracy
    assert TrainConfig.from_dict(json.loads((out / "config.json").read_text())) == tiny(data_root, out)

    # Oracle: rebuild the net from the checkpoint and classify the val PNGs by hand
    # (PIL -> resize 8 -> normalise), without the engine's data code.
    model, checkpoint = build_model_from_checkpoint(out / "checkpoint.pth")
    assert checkpoint["epoch"] == 3 and checkpoint["step"] == 12
    correct = total = 0
    for label, name in enumerate(("blue", "red")):
        for path in sorted((data_root / "val" / name).glob("*.png")):
            pil = Image.open(path).convert("RGB").resize((8, 8), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255).permute(2, 0, 1)
            x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
            with torch.no_grad():
                correct += int(model(x[None]).argmax(1).item() == label)
            total += 1
    assert summary.accuracy["acc1"] == pytest.approx(100.0 * correct / total)

    # Each epoch's recorded lr is the one it trained with: per-epoch cosine, lr 0.1, 3 epochs.
    assert [r["lr"] for r in summary.history] == pytest.approx(
        [0.1 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]
    )
    # LATS with a final threshold reaches exactly D at the end of the window.
    thresholds = [v for k, v in checkpoint["model"].items() if k.endswith("threshold")]
    assert thresholds and all(float(t) == pytest.approx(0.05, rel=1e-6) for t in thresholds)
    # Sparsity: exact zeros of the pruned weights, counted by brute force.
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert summary.sparsity.global_sparsity == pytest.approx(zeros / sum(w.numel() for w in weights))
    assert summary.sops.samples == 4  # sops_batches=1 batch of 4
    assert set(summary.firing_rates) == {n for n, m in model.named_modules() if type(m).__name__ == "IFNode"}


def test_tensorboard_has_the_promised_scalars(reference):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, summary = reference
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/acc1",
        "val/acc1",
        "val/acc5",
        "epoch/lr",
        "epoch/epoch_time_s",
        "pruning/threshold",
        "pruning/implied_l1",
        "sparsity/global",
        "sparsity/fc",
        "firing_rate/sn1",
        "step/loss",
        "step/threshold",
    ):
        assert tag in tags, tag
    acc = [e.value for e in accumulator.Scalars("val/acc1")]
    assert acc == pytest.approx([r["val"]["acc1"] for r in summary.history])


def test_best_checkpoint_is_chosen_at_the_final_sparsity(data_root, tmp_path):
    summary = train(tiny(data_root, tmp_path, epochs=4, prune_end_epoch=2))
    history = summary.history
    eligible = [r for r in history if r["epoch"] + 1 >= 2]
    best = max(eligible, key=lambda r: r["val"]["acc1"])  # first maximum
    assert summary.best["epoch"] == best["epoch"]
    saved = load_checkpoint(tmp_path / "model_best.pth")
    assert saved["epoch"] == best["epoch"] + 1
    assert saved["best"]["sparsity"] == pytest.approx(history[-1]["sparsity"], abs=0.05)
    assert history[0]["sparsity"] < history[1]["sparsity"]


@pytest.mark.parametrize(
    "mode, extra",
    [
        ("slats", {}),
        ("stds-sine", {}),
        ("stds-linear", {}),
        ("constant", {}),
        ("pgh", {"beta": 0.3}),
        ("learnable", {"final_threshold": None}),
    ],
)
def test_every_pruning_mode_trains_to_its_final_threshold(data_root, tmp_path, mode, extra):
    summary = train(tiny(data_root, tmp_path, epochs=2, prune=mode, sops_batches=0, **extra))
    thresholds = [
        float(v) for k, v in load_checkpoint(tmp_path / "checkpoint.pth")["model"].items() if k.endswith("threshold")
    ]
    assert thresholds
    if mode == "learnable":  # STR: d = sigmoid(s), s learned from s_init = -10
        assert all(0 < t < 1e-3 for t in thresholds)
    else:  # every scheduled mode ends its window exactly at D (d(x = 1) = D)
        assert thresholds == pytest.approx([0.05] * len(thresholds), rel=1e-6)
        assert summary.history[-1]["threshold"] == pytest.approx(0.05, rel=1e-6)


@pytest.mark.parametrize("target", [0.9, 0.99])
def test_target_sparsity_run_ends_at_the_target(data_root, tmp_path, target):
    summary = train(tiny(data_root, tmp_path, epochs=3, final_threshold=None, target_sparsity=target, sops_batches=0))
    # Oracle: count the zeros of the pruned weights of the saved model, layer by layer.
    model, _ = build_model_from_checkpoint(tmp_path / "checkpoint.pth")
    pruned = [m.weight for m in model.modules() if hasattr(m, "parametrizations")]
    zeros = sum(int((w == 0).sum()) for w in pruned)
    total = sum(w.numel() for w in pruned)
    assert abs(zeros / total - target) <= 0.005
    assert summary.history[-1]["sparsity"] == pytest.approx(zeros / total)
    # λ was re-estimated inside every epoch, never negative: the threshold never shrank.
    thresholds = [r["threshold"] for r in summary.history]
    assert thresholds == sorted(thresholds) and thresholds[0] > 0


# ------------------------------------------------------------------------------------------ resume


def test_sigterm_during_validation_resumes_with_the_epochs_steps_done(reference, data_root, tmp_path):
    ref_out, _ = reference
    config = tiny(data_root, tmp_path)
    with pytest.raises(TrainingInterrupted) as info:
        train(config, build_model_fn=signal_at("eval", 1))  # SIGTERM while evaluating epoch 0
    assert info.value.signum == signal.SIGTERM
    # The validation was abandoned, not finished: the checkpoint has epoch 0's 4 steps, not epoch 1.
    interrupted = load_checkpoint(tmp_path / "checkpoint.pth")
    assert (interrupted["epoch"], interrupted["epoch_step"], interrupted["step"]) == (0, 4, 4)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored

    train(tiny(data_root, tmp_path, resume=str(tmp_path / "checkpoint.pth")))
    assert_same_state(load_checkpoint(tmp_path / "checkpoint.pth"), load_checkpoint(ref_out / "checkpoint.pth"))


def test_sigterm_mid_epoch_checkpoints_the_last_step_and_resumes_exactly(reference, data_root, tmp_path):
    ref_out, _ = reference
    with pytest.raises(TrainingInterrupted):
        train(tiny(data_root, tmp_path), build_model_fn=signal_at("train", 6))  # during step 6 (epoch 1)
    interrupted = load_checkpoint(tmp_path / "checkpoint.pth")
    assert (interrupted["epoch"], interrupted["epoch_step"], interrupted["step"]) == (1, 2, 6)

    train(tiny(data_root, tmp_path, resume=str(tmp_path / "checkpoint.pth")))
    assert_same_state(load_checkpoint(tmp_path / "checkpoint.pth"), load_checkpoint(ref_out / "checkpoint.pth"))


def test_resume_into_another_architecture_is_refused_before_writing(reference, data_root, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "new"
    with pytest.raises(CheckpointError, match="another architecture.*width: 4 in the checkpoint, 8 here"):
        train(tiny(data_root, out, width=8, resume=str(ref_out / "checkpoint.pth")))
    # Resuming without the pruning would change the run: refused, naming the flags.
    with pytest.raises(RecipeError, match="would change the run: --prune 'none'.*--final-threshold None"):
        train(tiny(data_root, out, prune="none", final_threshold=None, resume=str(ref_out / "checkpoint.pth")))
    assert not out.exists()


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(data_root, tmp_path):
    calls = {"n": 0}

    def builder(config, num_classes):
        model = build_model(config, num_classes)

        def poison(module, args, output):
            if module.training:
                calls["n"] += 1
                if calls["n"] == 6:  # epoch 1, after epoch 0's checkpoint
                    return output * float("nan")
            return output

        model.register_forward_hook(poison)
        return model

    with pytest.raises(NonFiniteLossError, match="not finite at epoch 1"):
        train(tiny(data_root, tmp_path), build_model_fn=builder)
    kept = load_checkpoint(tmp_path / "checkpoint.pth")
    assert kept["epoch"] == 1 and kept["step"] == 4
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


# ------------------------------------------------------------------------------------------ torchrun

DDP_SCRIPT = """
import json, sys, torch
from torch import nn
from snn_lats.engine.recipe import TrainConfig
from snn_lats.engine.trainer import train

class Net(nn.Module):
    # No BatchNorm: each sample's gradient is independent of the others in its batch.
    T, spiking = 1, False

    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

train(TrainConfig(**json.loads(sys.argv[1])), build_model_fn=lambda config, n: Net(n))
"""


@pytest.mark.slow
def test_two_process_torchrun_matches_one_process_with_the_same_global_batch(data_root, tmp_path):
    """2 processes x 4 images vs 1 process x 8 images, same seed.

    Why these match: DistributedSampler gives rank r the positions r, r+2, ... of the same
    permutation, so global batch i is the same 8 images in both runs; DDP averages the two ranks'
    mean-loss gradients, which is the 8-image mean gradient. The network has no BatchNorm, whose
    batch statistics would differ between 4- and 8-image batches (SyncBatchNorm is CUDA-only), and
    no random augmentation. The thresholds follow the same lrs. What remains is floating-point
    summation order, hence a tolerance.
    """
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    common = dict(
        augment=False, epochs=2, prune="lats", final_threshold=0.05, weight_decay=1e-3, sops_batches=1, lr=0.2
    )
    two = tiny(data_root, tmp_path / "two", batch_size=4, **common).to_dict()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master-port={free_port()}",
            str(script),
            json.dumps(two),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("epoch 1: train loss") == 1  # rank 0 alone logs
    assert "BatchNorm statistics" not in result.stdout  # the window ended, but Net has none to recompute
    assert len(list((tmp_path / "two" / "tensorboard").iterdir())) == 1  # and writes

    one = tiny(data_root, tmp_path / "one", batch_size=8, **common)
    subprocess.run(
        [sys.executable, str(script), json.dumps(one.to_dict())], check=True, capture_output=True, timeout=300, env=env
    )
    a, b = load_checkpoint(tmp_path / "two" / "checkpoint.pth"), load_checkpoint(tmp_path / "one" / "checkpoint.pth")
    assert a["step"] == b["step"] == 4
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-6, msg=key)
    assert any(key.endswith("threshold") for key in b["model"])
    # Metrics are reduced over both ranks: the same figures as the single process.
    for ra, rb in zip(a["history"], b["history"]):
        assert ra["val"]["acc1"] == rb["val"]["acc1"] and ra["val"]["samples"] == rb["val"]["samples"] == 8
        assert ra["train"]["loss"] == pytest.approx(rb["train"]["loss"], rel=1e-4)


def test_threads_follow_the_flag_then_the_scheduler_then_the_free_cores(monkeypatch):
    from snn_lats.engine.distributed import configure_threads

    before = torch.get_num_threads()
    try:
        assert configure_threads(3).startswith("CPU threads: 3 per process (--threads")
        assert torch.get_num_threads() == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert configure_threads(None).startswith("CPU threads: 2 per process ($OMP_NUM_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS")
        # the cores this process may use, less the busy ones, shared by 2 processes of 1 + 1 workers
        cores = len(os.sched_getaffinity(0))
        monkeypatch.setattr(os, "getloadavg", lambda: (1.4, 0.0, 0.0))  # one core busy with other work
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        line = configure_threads(None, workers=1)
        expected = max(1, (cores - min(cores - 1, 1)) // 4)
        assert line.startswith(f"CPU threads: {expected} per process ({cores} core(s)") and "shared by 4" in line
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
