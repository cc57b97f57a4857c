"""The method's protocol through the training engine: one window for every method, gradual
magnitude pruning from the command line, the fixed-mask tail, BatchNorm statistics recomputed
when the window ends, and the spec recorded with the export.

Oracles: the target's count of zeros written out (⌈s·N⌉ of N weights), BatchNorm's own counter of
the batches it averaged, the spec given on the command line, and the fields a checkpoint of
the previous version lacks.
"""

from __future__ import annotations

import json
import math

import pytest
from conftest import image_folder, signal_at

from snn_lats.cli import main
from snn_lats.engine.checkpoint import load_checkpoint, save_checkpoint
from snn_lats.engine.recipe import TrainConfig, resolve_config
from snn_lats.engine.trainer import TrainingInterrupted, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("data"))  # 16 training images: 4 steps of 4 per epoch


def config(data_root, output_dir, **overrides) -> TrainConfig:
    values = dict(
        dataset="imagefolder", data_path=str(data_root), model="sew_resnet18", T=2, width=4, stem="cifar",
        train_crop_size=8, val_resize_size=8, val_crop_size=8, batch_size=4, epochs=3, workers=0, lr=0.1,
        weight_decay=0.0, print_freq=100, sops_batches=1, output_dir=str(output_dir), device="cpu", seed=0,
    )  # fmt: skip
    return TrainConfig(**{**values, **overrides})


def zeros_and_weights(summary) -> tuple[int, int]:
    return summary.sparsity.totals["zeros"], summary.sparsity.totals["numel"]


def batchnorm_counts(checkpoint) -> set[int]:
    return {int(v) for k, v in checkpoint["model"].items() if k.endswith("num_batches_tracked")}


def test_gmp_from_the_command_line_ends_its_window_at_its_target_and_keeps_it(data_root, tmp_path, capsys):
    out = tmp_path / "gmp"
    argv = [
        "train", "--dataset", "imagefolder", "--data-path", str(data_root), "--model", "sew_resnet18", "--T", "2",
        "--width", "4", "--stem", "cifar", "--train-crop-size", "8", "--val-resize-size", "8", "--val-crop-size", "8",
        "-b", "4", "--epochs", "3", "-j", "0", "--wd", "0", "--print-freq", "100", "--sops-batches", "1",
        "--device", "cpu", "--prune", "gmp", "--target-sparsity", "0.9", "--prune-end-epoch", "2",
        "--output-dir", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    zeros, weights = summary["sparsity"]["totals"]["zeros"], summary["sparsity"]["totals"]["numel"]
    assert zeros == math.ceil(0.9 * weights)  # ⌈s·N⌉: the cubic schedule's last step is the target
    history = summary["history"]
    assert history[1]["sparsity"] == history[2]["sparsity"] == zeros / weights  # the tail keeps the mask
    assert history[0]["sparsity"] < history[1]["sparsity"]  # ... which grew over the window
    # the statistics were recomputed when the window ended (epoch 1), then trained on for one epoch
    assert summary["bn_recalibration"] == {"epoch": 1, "batches": 4}
    assert batchnorm_counts(load_checkpoint(out / "checkpoint.pth")) == {4 + 4}
    assert "BatchNorm statistics recomputed on 4 training batches" in capsys.readouterr().out

    export = tmp_path / "export"
    assert main(["export", "--checkpoint", str(out / "checkpoint.pth"), "--out", str(export)]) == 0
    pruning = json.loads((export / "export.json").read_text())["pruning"]
    assert (pruning["schedule"], pruning["target_sparsity"], pruning["start"], pruning["end"]) == ("gmp", 0.9, 0, 2)
    assert (pruning["unit"], pruning["freeze_mask"], pruning["recalibrate_bn"]) == ("epochs", True, True)


def test_a_target_sparsity_holds_through_the_tail_and_the_statistics_follow_the_flag(data_root, tmp_path):
    target = dict(prune="lats", target_sparsity=0.8, prune_end_epoch=2)
    frozen = train(config(data_root, tmp_path / "frozen", **target))
    zeros, weights = zeros_and_weights(frozen)
    assert zeros == math.ceil(0.8 * weights - 1e-9)  # exactly the target at the end of training
    assert frozen.history[1]["sparsity"] == frozen.history[2]["sparsity"]
    assert frozen.bn_recalibration == {"epoch": 1, "batches": 4}

    off = train(config(data_root, tmp_path / "off", **target, recalibrate_bn=False, freeze_mask=False))
    assert off.bn_recalibration is None
    assert batchnorm_counts(load_checkpoint(tmp_path / "off" / "checkpoint.pth")) == {12}  # 3 epochs of 4 steps
    # a recalibration that takes fewer batches than an epoch has
    few = train(config(data_root, tmp_path / "few", **target, recalibrate_bn_batches=2))
    assert few.bn_recalibration == {"epoch": 1, "batches": 2}
    assert batchnorm_counts(load_checkpoint(tmp_path / "few" / "checkpoint.pth")) == {2 + 4}


def test_a_checkpoint_from_before_the_method_fixes_resumes_as_it_was_trained(data_root, tmp_path):
    out = tmp_path / "old"
    run = config(data_root, out, prune="lats", final_threshold=0.05, epochs=2)  # window: both epochs
    with pytest.raises(TrainingInterrupted):
        train(run, build_model_fn=signal_at("train", 6))  # preempted during epoch 1, step 6 of 8
    checkpoint = load_checkpoint(out / "checkpoint.pth")
    old = {k: v for k, v in checkpoint.items() if k not in ("format", "version")}
    for key in ("freeze_mask", "recalibrate_bn", "recalibrate_bn_batches", "cost_weighting"):
        old["config"].pop(key)  # the fields it predates
    old.pop("bn_recalibration")
    save_checkpoint(out / "checkpoint.pth", old)
    upgraded = load_checkpoint(out / "checkpoint.pth")["config"]
    # what their absence meant: regrowth after the window, no recalibration, linear cost weighting
    assert (upgraded["freeze_mask"], upgraded["recalibrate_bn"], upgraded["cost_weighting"]) == (False, False, "linear")
    resumed = resolve_config({"epochs": None}, base=upgraded)
    assert (resumed.freeze_mask, resumed.recalibrate_bn) == (False, False)
    summary = train(resolve_config({"output_dir": str(out), "resume": str(out / "checkpoint.pth")}, base=upgraded))
    # the window ends with the run: today's default would recalibrate there, the old run did not
    assert summary.epochs_completed == 2 and summary.bn_recalibration is None
    assert batchnorm_counts(load_checkpoint(out / "checkpoint.pth")) == {8}  # 2 epochs of 4 steps, no more


def test_val_freq_validates_every_nth_epoch_the_last_and_the_window_end(data_root, tmp_path):
    summary = train(config(data_root, tmp_path / "run", epochs=5, val_freq=3, prune="lats", l1=0.5, prune_end_epoch=2))
    validated = [r["epoch"] for r in summary.history if r["val"] is not None]
    assert validated == [1, 2, 4]  # the window's last epoch (1), every third (2), the last (4)
    assert summary.best["epoch"] in validated and summary.accuracy == summary.history[-1]["val"]
    assert (tmp_path / "run" / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_resuming_a_finished_run_says_so_instead_of_evaluating_again(data_root, tmp_path, capsys):
    out = tmp_path / "done"
    train(config(data_root, out, epochs=1))
    stamp = (out / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    again = train(config(data_root, out, epochs=1, resume="auto"))
    printed = capsys.readouterr().out
    assert printed.startswith("snn-lats train: the run in") and "is complete (1 epochs): nothing to do" in printed
    assert len(printed.strip().splitlines()) == 1  # that line alone: no evaluation ran
    assert (out / "summary.json").stat().st_mtime_ns == stamp and again.epochs_completed == 1


def test_the_last_lines_speak_of_an_ann_and_of_an_unpruned_run_as_what_they_are(data_root, tmp_path, capsys):
    train(config(data_root, tmp_path / "ann", model="resnet18", T=None, epochs=1))
    printed = capsys.readouterr().out
    assert "activation density (the fraction of nonzero outputs of each activation): relu" in printed
    assert "spikes per neuron" not in printed and "pruned layers" not in printed
    assert "of the 21 layers' " in printed and " weights (no soft threshold)" in printed
    train(config(data_root, tmp_path / "snn", epochs=1, prune="lats", l1=0.5))
    printed = capsys.readouterr().out
    assert "firing rates (spikes per neuron per time step): sn1" in printed and "of the 21 pruned layers'" in printed
    assert "\nval [2/2]  acc1 " in printed  # validation's progress, as a line when the output is no terminal
