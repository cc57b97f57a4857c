"""``snn-lats sops``: a network from flags or a checkpoint, counted on the offline digits; files
written only on success."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from snn_lats.cli import main
from snn_lats.engine.checkpoint import save_checkpoint
from snn_lats.engine.model import attach_pruning, build_model
from snn_lats.engine.recipe import TrainConfig

SMALL = ["--T", "2", "--width", "4", "--stem", "cifar", "--image-size", "16", "-j", "0"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_network_from_flags_on_digits(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "sops",
            "--model",
            "sew_resnet18",
            *SMALL,
            "-b",
            "5",
            "--batches",
            "3",
            "--json",
            str(out / "s.json"),
            "--csv",
            str(out / "s.csv"),
            "--plot",
            str(out / "s.png"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "layer4.1.conv2" in printed and "uJ per sample" in printed
    data = json.loads((out / "s.json").read_text())
    assert data["totals"]["samples"] == 3 * 5  # three batches of five digits
    assert data["totals"]["time_steps"] == 2
    names = [r["name"] for r in data["rows"] if r["kind"] == "synaptic"]
    assert names[0] == "conv1" and names[-1] == "fc" and len(names) == 21  # 17 3x3 + 3 shortcuts + fc
    assert (out / "s.csv").read_text().count("\n") == len(data["rows"]) + 1
    assert (out / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["s.csv", "s.json", "s.png"]


def pruned_checkpoint(path, threshold: float, seed: int = 0, **overrides):
    """A pruned SEW ResNet checkpoint in the engine's format (every layer at ``threshold``); its config."""
    values = dict(dataset="digits", image_size=16, model="sew_resnet18", T=2, width=4, stem="cifar")
    values |= dict(prune="lats", l1=1e-4, batch_size=4, workers=0) | overrides
    config = TrainConfig(**values)
    torch.manual_seed(seed)
    model = build_model(config, 10)
    attach_pruning(model, config)
    for m in model.modules():
        if hasattr(m, "parametrizations"):
            m.parametrizations.weight[0].set_threshold(threshold)
    save_checkpoint(
        path, {"model": model.state_dict(), "config": config.to_dict(), "epoch": 1, "step": 1, "num_classes": 10}
    )
    return model, config


def test_checkpoint_with_saved_thresholds(tmp_path, capsys):
    # A pruned checkpoint in the engine's format; its thresholds must be the ones counted with.
    path = tmp_path / "model.pth"
    model, _ = pruned_checkpoint(path, 0.08)
    state = model.state_dict()
    thetas = {k: v for k, v in state.items() if k.endswith("parametrizations.weight.original")}
    # Nonzero weights of S_d(theta) with d = 0.08, computed here from theta alone.
    nonzero = sum(int((F.softshrink(t, 0.08) != 0).sum()) for t in thetas.values())
    total = sum(t.numel() for t in thetas.values())
    assert 0 < nonzero < total

    code = main(["sops", "--checkpoint", str(path), "--batches", "2", "--json", str(tmp_path / "s.json")])
    assert code == 0
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["totals"]["nonzero_params"] == nonzero and data["totals"]["params"] == total
    assert data["totals"]["samples"] == 2 * 4  # the checkpoint's batch size
    assert data["totals"]["dense_acs"] > data["totals"]["acs"]


@pytest.mark.parametrize(
    "argv, message",
    [
        ([*SMALL, "--batches", "0"], "--batches"),
        ([*SMALL, "--plot", "OUT/s.bmp"], ".png"),
        ([*SMALL, "--dataset", "imagefolder", "--data-path", "OUT/missing"], "does not exist"),
        ([*SMALL, "--model", "vgg16"], "invalid choice: 'vgg16'"),
        (["--checkpoint", "OUT/none.pth", "--model", "resnet18"], "--model cannot be combined"),
        (["--checkpoint", "OUT/none.pth"], "does not exist"),
        ([*SMALL, "--convention", "paper", "--functional"], "exact rule only"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    argv = [a.replace("OUT", str(out)) for a in argv]
    try:
        code = main(["sops", "-b", "2", *argv, "--json", str(out / "s.json"), "--csv", str(out / "s.csv")])
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_no_readable_image_writes_nothing(tmp_path, capsys):
    # Every image unreadable (skipped): nothing is counted, so no report file may appear.
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            (tmp_path / "data" / split / cls / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    code = main(
        [
            "sops",
            "--model",
            "resnet18",
            "--width",
            "4",
            "--stem",
            "cifar",
            "--data-path",
            str(tmp_path / "data"),
            "--val-resize-size",
            "16",
            "--val-crop-size",
            "16",
            "--bad-images",
            "skip",
            "-j",
            "0",
            "--json",
            str(out / "s.json"),
            "--plot",
            str(out / "s.png"),
        ]
    )
    assert code == 2
    assert "nothing was counted" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_convention_and_functional_flags(tmp_path, capsys):
    out = tmp_path / "s.json"
    argv = ["sops", *SMALL, "-b", "3", "--batches", "1"]
    assert main([*argv, "--convention", "neurobench", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["totals"]["convention"] == "neurobench" and "neurobench" in capsys.readouterr().out
    assert main([*argv, "--functional", "--extras", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["totals"]["convention"] == "exact" and "bias_adds_per_sample" in data["totals"]
