"""The train / evaluate / export / compare commands: flags, bad input, and end to end on digits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import free_port
from PIL import Image

from snn_lats import networks
from snn_lats.cli import build_parser, main
from snn_lats.cli.train import explicit_flags
from snn_lats.engine.checkpoint import FORMAT, load_checkpoint
from snn_lats.engine.model import build_model_from_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "-j",
    "0",
    "--image-size",
    "8",
    "--stem",
    "cifar",
    "--width",
    "4",
    "--T",
    "2",
    "-b",
    "64",
    "--epochs",
    "1",
    "--sops-batches",
    "1",
    "--print-freq",
    "100",
    "--device",
    "cpu",
]


def run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as stop:  # argparse's own refusals (an unknown choice, a missing value)
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def write_folder(root: Path, classes=("a", "b"), per_class=2):
    for split in ("train", "val"):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(np.full((6, 6, 3), 40 * i, np.uint8)).save(root / split / name / f"{i}.png")
    return root


# ------------------------------------------------------------------------------------------- flags


def test_every_torchvision_style_flag_maps_to_its_field():
    args = build_parser().parse_args(
        [
            "train",
            "--data-path",
            "/d",
            "--model",
            "resnet18",
            "-b",
            "7",
            "--epochs",
            "3",
            "-j",
            "2",
            "--lr",
            "0.3",
            "--momentum",
            "0.8",
            "--wd",
            "0.01",
            "--norm-weight-decay",
            "0.0",
            "--label-smoothing",
            "0.1",
            "--lr-warmup-epochs",
            "1",
            "--lr-warmup-decay",
            "0.5",
            "--lr-scheduler",
            "step",
            "--lr-step-size",
            "2",
            "--lr-gamma",
            "0.2",
            "--lr-min",
            "0.001",
            "--amp",
            "--resume",
            "c.pth",
            "--output-dir",
            "o",
            "--print-freq",
            "5",
            "--seed",
            "9",
            "--channels-last",
            "--sync-bn",
            "--test-only",
            "--train-crop-size",
            "96",
            "--val-resize-size",
            "110",
            "--val-crop-size",
            "96",
            "--T",
            "4",
            "--neuron",
            "lif",
            "--cnf",
            "IAND",
            "--backend",
            "torch",
            "--prune",
            "pgh",
            "--l1",
            "0.002",
            "--beta",
            "0.5",
            "--prune-start-epoch",
            "1",
            "--prune-end-epoch",
            "2",
            "--dense-first-last",
            "--gradient",
            "exact",
        ]
    )
    assert explicit_flags(args) == {
        "data_path": "/d",
        "model": "resnet18",
        "batch_size": 7,
        "epochs": 3,
        "workers": 2,
        "lr": 0.3,
        "momentum": 0.8,
        "weight_decay": 0.01,
        "norm_weight_decay": 0.0,
        "label_smoothing": 0.1,
        "lr_warmup_epochs": 1,
        "lr_warmup_decay": 0.5,
        "lr_scheduler": "step",
        "lr_step_size": 2,
        "lr_gamma": 0.2,
        "lr_min": 0.001,
        "amp": True,
        "resume": "c.pth",
        "output_dir": "o",
        "print_freq": 5,
        "seed": 9,
        "channels_last": True,
        "sync_bn": True,
        "test_only": True,
        "train_crop_size": 96,
        "val_resize_size": 110,
        "val_crop_size": 96,
        "T": 4,
        "neuron": "lif",
        "cnf": "IAND",
        "backend": "torch",
        "prune": "pgh",
        "l1": 0.002,
        "beta": 0.5,
        "prune_start_epoch": 1,
        "prune_end_epoch": 2,
        "dense_first_last": True,
        "gradient": "exact",
    }
    # Flags not given stay None, so that a recipe's values survive.
    assert explicit_flags(build_parser().parse_args(["train", "--no-amp"])) == {"amp": False}


# ------------------------------------------------------------------------------------------- bad input


def _malicious(path: Path, marker: Path):
    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save(
        {"format": FORMAT, "version": 1, "model": Payload(), "config": {}, "epoch": 0, "step": 0, "num_classes": 2},
        path,
    )


@pytest.mark.parametrize(
    "case",
    [
        "missing_data_path",
        "empty_data_path",
        "class_without_images",
        "l1_and_final_threshold",
        "beta_zero",
        "unknown_recipe_key",
        "truncated_checkpoint",
        "foreign_checkpoint",
        "malicious_checkpoint",
        "unknown_model",
        "T_for_an_ann",
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(case, tmp_path, capsys):
    out = tmp_path / "run"
    data = tmp_path / "data"
    args = ["train", "--data-path", str(data), "--output-dir", str(out), "--epochs", "1", "--device", "cpu"]
    expected = {
        "missing_data_path": "does not exist",
        "empty_data_path": "does not exist",
        "class_without_images": "class folder(s) with no image",
        "l1_and_final_threshold": "not l1 and final_threshold",
        "beta_zero": "beta must be a finite number > 0",
        "unknown_recipe_key": "unknown key(s)",
        "truncated_checkpoint": "truncated",
        "foreign_checkpoint": "not an snn-lats checkpoint",
        "malicious_checkpoint": "refusing to unpickle",
        "unknown_model": "invalid choice: 'resnet_9000'",
        "T_for_an_ann": "does not accept",
    }[case]
    marker = tmp_path / "pwned"
    if case == "empty_data_path":
        data.mkdir()
    if case == "class_without_images":
        write_folder(data)
        (data / "train" / "c").mkdir()
        (data / "val" / "c").mkdir()
    if case == "l1_and_final_threshold":
        args += ["--prune", "lats", "--l1", "0.01", "--final-threshold", "0.1"]
    if case == "beta_zero":
        args += ["--prune", "pgh", "--final-threshold", "0.1", "--beta", "0"]
    if case == "unknown_recipe_key":
        recipe = tmp_path / "r.yaml"
        recipe.write_text("dataset: digits\nlearning_rate: 0.1\n")
        args += ["--recipe", str(recipe)]
    if case in ("truncated_checkpoint", "foreign_checkpoint", "malicious_checkpoint"):
        write_folder(data)
        checkpoint = tmp_path / "c.pth"
        if case == "truncated_checkpoint":
            torch.save({"format": FORMAT, "x": torch.zeros(1000)}, checkpoint)
            checkpoint.write_bytes(checkpoint.read_bytes()[:300])
        elif case == "foreign_checkpoint":
            torch.save(torch.nn.Linear(2, 2).state_dict(), checkpoint)
        else:
            _malicious(checkpoint, marker)
        args += ["--resume", str(checkpoint)]
    if case in ("unknown_model", "T_for_an_ann"):
        write_folder(data)
        args += ["--model", "resnet_9000"] if case == "unknown_model" else ["--model", "resnet18", "--T", "4"]
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 2
    assert "snn-lats train: error:" in stderr and expected in stderr, stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert not marker.exists()


def test_malicious_checkpoint_is_refused_by_every_command(tmp_path, capsys):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pth"
    _malicious(checkpoint, marker)
    for args in (
        ["evaluate", "--checkpoint", str(checkpoint)],
        ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "export")],
    ):
        code, _, stderr = run_cli(args, capsys)
        assert code == 2 and "refusing to unpickle" in stderr
    assert not marker.exists() and not (tmp_path / "export").exists()


def test_a_file_that_is_not_a_checkpoint_is_one_line_for_every_command(tmp_path, capsys):
    """``echo hi > text.pth``: torch's parser trips on it with an IndexError or a KeyError (not the
    errors of a truncated file); every command that reads a checkpoint says so in one line."""
    data = write_folder(tmp_path / "data")
    text = tmp_path / "text.pth"
    text.write_text("hi\n")
    train = ["train", "--data-path", str(data), "--epochs", "1", "--device", "cpu", "--output-dir", str(tmp_path / "o")]
    for args in (
        [*train, "--weights", str(text)],
        [*train, "--resume", str(text)],
        ["evaluate", "--checkpoint", str(text)],
        ["sops", "--checkpoint", str(text)],
        ["export", "--checkpoint", str(text), "--out", str(tmp_path / "export")],
    ):
        code, _, stderr = run_cli(args, capsys)
        assert code == 2, args
        assert "is truncated or not a torch file" in stderr and "Traceback" not in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "export").exists()


def test_output_paths_are_checked_before_any_work(tmp_path, capsys, digits_runs):
    """An output path that cannot be written is refused first, in one line with exit status 2:
    nothing evaluated, counted or trained before, and nothing written."""
    snn, _ = digits_runs
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    checkpoint = str(snn / "model_best.pth")
    for args, flag in (
        (["evaluate", "--checkpoint", checkpoint, "--json", str(blocker / "e.json")], "--json"),
        (["sops", "--checkpoint", checkpoint, "--batches", "1", "--plot", str(blocker / "s.png")], "--plot"),
        (["export", "--checkpoint", checkpoint, "--out", str(blocker)], "--out"),
        (["compare", str(snn), "--out", str(blocker / "cmp")], "--out"),
        (["train", *TINY, "--dataset", "digits", "--epochs", "1", "--output-dir", str(blocker)], "--output-dir"),
    ):
        code, stdout, stderr = run_cli(args, capsys)
        assert code == 2 and stdout == "", args  # refused before any table was printed
        assert len(stderr.strip().splitlines()) == 1 and f"error: {flag} " in stderr, stderr
    assert blocker.read_text() == "in the way" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_unreadable_images_are_skipped_and_counted_or_fail_by_flag(tmp_path, capsys):
    data = write_folder(tmp_path / "data", per_class=4)
    (data / "train" / "a" / "0.png").write_bytes(b"not an image")
    common = [
        "train",
        "--data-path",
        str(data),
        "--model",
        "resnet18",
        "--stem",
        "cifar",
        "--width",
        "4",
        "-b",
        "4",
        "--epochs",
        "1",
        "-j",
        "0",
        "--train-crop-size",
        "6",
        "--val-resize-size",
        "6",
        "--val-crop-size",
        "6",
        "--device",
        "cpu",
        "--sops-batches",
        "0",
    ]
    with pytest.warns(RuntimeWarning, match="0.png"):
        code, stdout, _ = run_cli([*common, "--output-dir", str(tmp_path / "skip")], capsys)
    assert code == 0 and "(1 unreadable images skipped)" in stdout
    assert json.loads((tmp_path / "skip" / "summary.json").read_text())["skipped_images"] == 1
    code, _, stderr = run_cli([*common, "--output-dir", str(tmp_path / "fail"), "--bad-images", "fail"], capsys)
    assert code == 2 and "unreadable image" in stderr and "0.png" in stderr
    assert not (tmp_path / "fail" / "checkpoint.pth").exists()


# ------------------------------------------------------------------------------------------- digits end to end


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """A pruned SNN and a dense ANN, one epoch each on digits at 8x8."""
    root = tmp_path_factory.mktemp("runs")
    snn, ann = root / "snn", root / "ann"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                *TINY,
                "--prune",
                "lats",
                "--final-threshold",
                "0.3",
                "--output-dir",
                str(snn),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--model",
                "resnet18",
                *[a for a in TINY if a not in ("--T", "2")],
                "--output-dir",
                str(ann),
            ]
        )
        == 0
    )
    return snn, ann


def test_evaluate_uses_the_saved_thresholds(digits_runs, tmp_path, capsys):
    snn, _ = digits_runs
    summary = json.loads((snn / "summary.json").read_text())
    code, stdout, _ = run_cli(
        [
            "evaluate",
            "--checkpoint",
            str(snn / "checkpoint.pth"),
            "--sops",
            "--sops-batches",
            "1",
            "--json",
            str(tmp_path / "e.json"),
        ],
        capsys,
    )
    assert code == 0 and "global weight sparsity" in stdout
    result = json.loads((tmp_path / "e.json").read_text())
    # The reference implementation's defect was evaluating with the dense theta: the sparsity and
    # accuracy of a re-evaluation from disk must be those measured at the end of training.
    assert result["sparsity"]["totals"]["sparsity"] == summary["sparsity"]["totals"]["sparsity"] > 0.3
    assert result["accuracy"]["acc1"] == summary["accuracy"]["acc1"]
    assert result["sops"]["totals"]["acs"] == summary["sops"]["totals"]["acs"]
    # train --test-only is the same evaluation.
    code, stdout, _ = run_cli(["train", "--resume", str(snn / "checkpoint.pth"), "--test-only"], capsys)
    assert code == 0 and f"top-1 {summary['accuracy']['acc1']:.2f}%" in stdout


def test_export_strict_loads_into_the_unpruned_network_and_computes_the_same(digits_runs, tmp_path, capsys):
    from safetensors.torch import load_file

    snn, _ = digits_runs
    out = tmp_path / "export"
    code, stdout, _ = run_cli(["export", "--checkpoint", str(snn / "model_best.pth"), "--out", str(out)], capsys)
    assert code == 0
    info = json.loads((out / "export.json").read_text())
    arch = info["architecture"]
    assert (arch["model"], arch["T"], arch["width"], arch["num_classes"], arch["spiking"]) == (
        "sew_resnet18",
        2,
        4,
        10,
        True,
    )

    plain = networks.create("sew_resnet18", num_classes=10, T=2, width=4, stem="cifar")
    state = torch.load(out / "model.pth", weights_only=True)
    plain.load_state_dict(state, strict=True)
    tensors = load_file(out / "model.safetensors")
    assert tensors.keys() == state.keys() and all(torch.equal(tensors[k], state[k]) for k in state)

    pruned, _ = build_model_from_checkpoint(snn / "model_best.pth")
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), pruned(x))
    weights = [m.weight for m in plain.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert info["sparsity"]["global"] == pytest.approx(zeros / sum(w.numel() for w in weights))


def test_load_exported_rebuilds_the_plain_network_of_an_export(digits_runs, tmp_path, capsys):
    from snn_lats.pruning import pruned_layers
    from snn_lats.workflows import load_exported

    snn, _ = digits_runs
    out = tmp_path / "export"
    assert run_cli(["export", "--checkpoint", str(snn / "checkpoint.pth"), "--out", str(out)], capsys)[0] == 0
    model, info = load_exported(out)
    assert info == json.loads((out / "export.json").read_text())
    assert not model.training and not pruned_layers(model)  # a plain network, in eval mode
    assert (type(model).__name__, model.T) == ("SEWResNet", 2)
    # Oracle: the checkpoint's network with its own thresholds (soft-threshold parametrizations).
    pruned, _ = build_model_from_checkpoint(snn / "checkpoint.pth")
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), pruned(x))
    (out / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError):
        load_exported(out)


def test_compare_ann_and_snn(digits_runs, tmp_path, capsys):
    snn, ann = digits_runs
    out = tmp_path / "cmp"
    code, stdout, _ = run_cli(["compare", str(ann), str(snn), "--names", "ann,snn", "--out", str(out)], capsys)
    assert code == 0 and "ann" in stdout and "snn" in stdout
    for name in (
        "compare.json",
        "compare.csv",
        "compare_layers.json",
        "compare_sparsity.png",
        "compare_accuracy_energy.png",
    ):
        assert (out / name).is_file(), name
    rows = {r["run"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}
    for name, run in (("ann", ann), ("snn", snn)):
        summary = json.loads((run / "summary.json").read_text())
        totals = summary["sops"]["totals"]
        assert rows[name]["acc1"] == summary["accuracy"]["acc1"]
        assert rows[name]["weight_sparsity"] == summary["sparsity"]["totals"]["sparsity"]
        # 45 nm fp32: 0.9 pJ per AC, 0.9 + 3.7 pJ per MAC (Horowitz 2014).
        assert rows[name]["energy_pj_per_sample"] == pytest.approx(
            0.9 * totals["acs_per_sample"] + 4.6 * totals["macs_per_sample"]
        )
    assert rows["ann"]["spiking"] is False and rows["ann"]["acs_per_sample"] == 0
    assert rows["snn"]["spiking"] is True and rows["snn"]["acs_per_sample"] > 0
    assert rows["ann"]["weight_sparsity"] == 0 and rows["snn"]["weight_sparsity"] > 0.3
    # Firing rate: neuron-count-weighted mean of the per-layer rates (oracle from the SOP rows).
    sops = json.loads((snn / "summary.json").read_text())["sops"]
    neurons = [r for r in sops["rows"] if r["kind"] == "neuron"]
    sizes = [int(np.prod(r["input_shape"])) for r in neurons]
    expected = sum(r["firing_rate"] * n for r, n in zip(neurons, sizes)) / sum(sizes)
    assert rows["snn"]["firing_rate"] == pytest.approx(expected)

    code, _, stderr = run_cli(["compare", str(tmp_path / "nothing"), "--out", str(out)], capsys)
    assert code == 2 and "summary.json" in stderr


# ------------------------------------------------------------------------------------------- processes


@pytest.mark.slow
def test_torchrun_two_processes_through_the_script_wrapper(tmp_path):
    """``torchrun scripts/train.py``: rank 0 alone writes; the reported accuracy is the whole val
    set's (reduced over both ranks), as a single-process evaluation of the checkpoint confirms."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master-port={free_port()}",
            str(REPO / "scripts" / "train.py"),
            "--dataset",
            "digits",
            *TINY,
            "-b",
            "32",
            "--prune",
            "lats",
            "--l1",
            "0.5",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("accuracy: top-1") == 1
    assert "2 process(es)" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    evaluated = subprocess.run(
        [
            sys.executable,
            "-m",
            "snn_lats",
            "evaluate",
            "--checkpoint",
            str(out / "checkpoint.pth"),
            "--json",
            str(tmp_path / "e.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    single = json.loads((tmp_path / "e.json").read_text())["accuracy"]
    assert single["samples"] == summary["history"][-1]["val"]["samples"] == 364
    assert single["acc1"] == pytest.approx(summary["accuracy"]["acc1"])


@pytest.mark.slow
def test_sigterm_to_the_command_writes_a_checkpoint_and_exits_143(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snn_lats",
            "train",
            "--dataset",
            "digits",
            *TINY,
            "-b",
            "8",
            "--epochs",
            "3",
            "--print-freq",
            "5",
            "--prune",
            "lats",
            "--final-threshold",
            "0.1",
            "--output-dir",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 240
    for line in process.stdout:  # wait until training is under way
        if line.startswith("epoch 0 [") or time.time() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted by SIGTERM" in stderr
    checkpoint = load_checkpoint(out / "checkpoint.pth")
    assert (
        checkpoint["epoch"] == 0
        and checkpoint["epoch_step"] >= 5
        and checkpoint["pruner"]["step_count"] == checkpoint["step"]
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "inf"], "lr must be a finite number"),
        (["--wd", "inf"], "weight_decay must be a finite number"),
        (["--sync-bn"], "--sync-bn synchronises BatchNorm between CUDA processes (NCCL); this run has one process"),
        (["--train-subset", "5"], "train_subset=5 is fewer than the 10 classes"),
    ],
)
def test_settings_that_cannot_train_are_refused_before_anything_is_written(flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, stderr = run_cli(["train", *TINY, "--dataset", "digits", "--output-dir", str(out), *flags], capsys)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists()


def test_help_is_plain_text_and_names_are_choices_listed_by_the_registries(capsys):
    from snn_lats import networks

    for command in ("train", "evaluate", "export", "compare", "sops"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text and ":class:" not in text, command
    for flag, value, names in (
        ("--model", "resnet_9000", networks.names()),
        ("--neuron", "relu", networks.NEURONS),
        ("--cnf", "XOR", networks.CNFS),
        ("--backend", "lava", networks.ALL_BACKENDS),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["train", "--dataset", "digits", flag, value])
        error = capsys.readouterr().err
        assert exit_.value.code == 2 and f"invalid choice: '{value}'" in error
        assert all(f"'{name}'" in error for name in names), error
