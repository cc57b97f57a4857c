"""Starting points (``--weights``), layer selection (``--prune-include``/``--prune-exclude``) and
the two sparsity denominators.

Oracles: torchvision's and SpikingJelly's own networks (the same function after loading), the
soft threshold's closed form ``sign(θ)·max(|θ| − d, 0)`` on a checkpoint's raw tensors, a second
network built with the same seed (the new classifier), and brute-force counts of zeros.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch
from torch import nn

from snn_lats._torchvision import models as tv_models  # before spikingjelly.model imports torchvision
from snn_lats.engine.checkpoint import CheckpointError, load_checkpoint
from snn_lats.engine.evaluation import evaluate_checkpoint
from snn_lats.engine.model import build_model, load_weights, read_weights
from snn_lats.engine.recipe import RecipeError, TrainConfig
from snn_lats.engine.trainer import train
from snn_lats.pruning import attach, sparsity_report
from snn_lats.pruning.spec import parse_selector
from snn_lats.workflows.export import export_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def digits_run(output_dir, **overrides) -> TrainConfig:
    """A run of a few seconds: a width-4 ResNet-18 on 200 of the 8x8 digits."""
    values = dict(
        dataset="digits",
        image_size=8,
        train_subset=200,
        model="resnet18",
        width=4,
        stem="cifar",
        batch_size=50,
        epochs=1,
        lr=0.1,
        workers=0,
        device="cpu",
        print_freq=10**6,
        sops_batches=1,
        output_dir=str(output_dir),
    )
    values.update(overrides)
    return TrainConfig(**values).validate()


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """A LATS-pruned checkpoint (classifier kept dense with --prune-exclude fc)."""
    out = tmp_path_factory.mktemp("pruned")
    summary = train(digits_run(out, prune="lats", target_sparsity=0.6, prune_exclude="fc"))
    return out, summary


def config_for(model: str, weights, **extra) -> TrainConfig:
    return TrainConfig(dataset="digits", model=model, weights=str(weights), **extra)


# -------------------------------------------------------------------------- foreign state dicts


def test_torchvision_resnet_state_dict_computes_what_torchvision_computes(tmp_path):
    torch.manual_seed(1)
    reference = tv_models.resnet18(num_classes=10).eval()
    for m in reference.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    config = config_for("resnet18", tmp_path / "resnet18.pth")
    ours = build_model(config, 10)
    assert "state dict" in load_weights(ours, config)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference(x))


def test_another_class_count_is_refused_and_num_classes_makes_a_new_classifier(tmp_path):
    torch.manual_seed(2)
    reference = tv_models.resnet18()  # 1000 ImageNet classes
    torch.save(reference.state_dict(), tmp_path / "imagenet.pth")
    with pytest.raises(
        CheckpointError, match=r"has 1000 classes \(classifier fc.*the data set 10: give --num-classes 10"
    ):
        load_weights(
            build_model(config_for("resnet18", tmp_path / "imagenet.pth"), 10),
            config_for("resnet18", tmp_path / "imagenet.pth"),
        )
    config = config_for("resnet18", tmp_path / "imagenet.pth", num_classes=10)
    torch.manual_seed(0)
    ours = build_model(config, 10)
    torch.manual_seed(0)
    fresh = build_model(config, 10)  # the same seed: the classifier a new run starts with
    assert "new classifier fc: 1000 -> 10 classes" in load_weights(ours, config)
    torch.testing.assert_close(ours.fc.weight, fresh.fc.weight)
    torch.testing.assert_close(ours.fc.bias, fresh.fc.bias)
    theirs = reference.state_dict()
    for key, value in ours.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(value, theirs[key])


@pytest.mark.parametrize(
    "source, target, match",
    [
        ("resnet34", "resnet18", r"unexpected keys \(layer1\.2\."),
        ("resnet18", "resnet50", r"missing keys \(.*other shapes"),
        ("mobilenet_v2", "mobilenet_v1", r"missing keys .*unexpected keys \(classifier\.1\.bias"),
    ],
)
def test_another_architecture_is_refused_with_the_mismatch_named(tmp_path, source, target, match):
    torch.save(getattr(tv_models, source)(num_classes=10).state_dict(), tmp_path / "w.pth")
    config = config_for(target, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=f"does not fit this run's {target}: .*{match}"):
        load_weights(build_model(config, 10), config)


def test_a_narrower_network_names_the_shapes(tmp_path):
    torch.save(build_model(TrainConfig(model="resnet18", width=16), 10).state_dict(), tmp_path / "w16.pth")
    config = config_for("resnet18", tmp_path / "w16.pth", width=8)
    with pytest.raises(CheckpointError, match=r"other shapes \(.*\[16, .*\] there, \[8, .*\] here"):
        load_weights(build_model(config, 10), config)


def test_spikingjelly_sew_resnet_state_dict_loads_into_ours(tmp_path):
    from spikingjelly.activation_based import neuron, surrogate
    from spikingjelly.activation_based.model import sew_resnet

    theirs = sew_resnet.sew_resnet18(
        cnf="ADD", spiking_neuron=neuron.IFNode, surrogate_function=surrogate.ATan(), detach_reset=True
    )
    torch.save(theirs.state_dict(), tmp_path / "sew18.pth")
    config = config_for("sew_resnet18", tmp_path / "sew18.pth", num_classes=10)
    ours = build_model(config, 10)
    load_weights(ours, config)  # 1000 ImageNet classes -> a new classifier for 10
    reference = theirs.state_dict()
    for key, value in ours.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, reference[key]), key


def test_state_dict_wrappers_and_ddp_prefixes_are_unwrapped(tmp_path):
    state = build_model(TrainConfig(model="resnet18", width=4, stem="cifar"), 10).state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "ref.pth")
    torch.save({"state_dict": state}, tmp_path / "lightning.pth")
    for name in ("ref.pth", "lightning.pth"):
        loaded, architecture, _ = read_weights(tmp_path / name)
        assert architecture is None and loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_files_holding_objects_or_no_tensors_are_refused(tmp_path):
    torch.save({"w": torch.zeros(1), "args": argparse.Namespace(lr=0.1)}, tmp_path / "objects.pth")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        read_weights(tmp_path / "objects.pth")
    torch.save({"epoch": 3}, tmp_path / "no_tensors.pth")
    with pytest.raises(CheckpointError, match="is not a state dict"):
        read_weights(tmp_path / "no_tensors.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="truncated or not a torch file"):
        read_weights(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_weights(tmp_path / "absent.pth")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="without model.safetensors"):
        read_weights(tmp_path / "empty_dir")


# ---------------------------------------------------------------------------- this project's files


def test_a_pruned_checkpoint_starts_from_its_pruned_weights(pruned_run):
    out, _ = pruned_run
    checkpoint = load_checkpoint(out / "checkpoint.pth")
    raw = checkpoint["model"]
    state, architecture, kind = read_weights(out / "checkpoint.pth")
    assert architecture["model"] == "resnet18" and architecture["num_classes"] == 10 and "epoch 1" in kind
    pruned = [k.removesuffix(".parametrizations.weight.original") for k in raw if k.endswith("weight.original")]
    assert pruned and "fc" not in pruned
    for layer in pruned:
        theta = raw[f"{layer}.parametrizations.weight.original"]
        d = raw[f"{layer}.parametrizations.weight.0.threshold"]
        expected = torch.sign(theta) * torch.clamp(theta.abs() - d, min=0)  # S_d(θ), closed form
        assert torch.equal(state[f"{layer}.weight"], expected)
    assert torch.equal(state["fc.weight"], raw["fc.weight"])
    config = digits_run(out, weights=str(out / "checkpoint.pth"))
    model = build_model(config, 10)
    load_weights(model, config)
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_an_export_loads_from_its_directory_and_files(pruned_run, tmp_path):
    out, _ = pruned_run
    export_checkpoint(out / "checkpoint.pth", tmp_path / "export")
    expected, _, _ = read_weights(out / "checkpoint.pth")
    for path in (tmp_path / "export", tmp_path / "export" / "model.safetensors", tmp_path / "export" / "model.pth"):
        state, architecture, kind = read_weights(path)
        assert kind == "export" and architecture["model"] == "resnet18"
        assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)


def test_another_model_of_this_project_is_refused_by_name(pruned_run):
    out, _ = pruned_run  # a resnet18, whose keys a sew_resnet18 shares
    config = config_for("sew_resnet18", out / "checkpoint.pth", width=4, stem="cifar")
    with pytest.raises(CheckpointError, match="holds a resnet18, this run trains sew_resnet18"):
        load_weights(build_model(config, 10), config)


def test_training_from_weights_starts_from_them_with_a_fresh_optimizer_and_pruner(pruned_run, tmp_path):
    out, _ = pruned_run
    dense = train(digits_run(tmp_path / "dense"))
    start = load_checkpoint(tmp_path / "dense" / "checkpoint.pth")["model"]
    # a negligible lr: the weights stay where --weights put them (BatchNorm statistics still move)
    still = train(digits_run(tmp_path / "still", lr=1e-12, weights=str(tmp_path / "dense" / "checkpoint.pth")))
    end = load_checkpoint(tmp_path / "still" / "checkpoint.pth")["model"]
    for key in ("conv1.weight", "layer4.1.conv2.weight", "fc.weight"):
        torch.testing.assert_close(end[key], start[key], atol=1e-8, rtol=0)
    assert still.epochs_completed == 1 and dense.epochs_completed == 1
    # pruning from the dense weights: the pruner starts at d = 0 and the controller lands on the target
    tuned = train(
        digits_run(
            tmp_path / "tuned", prune="lats", target_sparsity=0.8, weights=str(tmp_path / "dense" / "checkpoint.pth")
        )
    )
    assert tuned.history[0]["epoch"] == 0 and abs(tuned.sparsity.global_sparsity - 0.8) < 1e-3


def test_cli_refuses_mismatched_weights_with_exit_code_2_and_writes_nothing(pruned_run, tmp_path):
    out, _ = pruned_run
    command = [sys.executable, "-m", "snn_lats", "train", "--dataset", "digits", "--model", "resnet18", "--width", "8"]
    result = subprocess.run(
        [*command, "--weights", str(out / "checkpoint.pth"), "--output-dir", str(tmp_path / "run"), "-j", "0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("snn-lats train: error: --weights") and "other shapes" in result.stderr
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------- layer selection


def test_a_selector_text_reads_types_and_patterns():
    assert parse_selector("fc, Conv2d,layer4.*, nn.Linear") == ["fc", nn.Conv2d, "layer4.*", nn.Linear]
    assert parse_selector(None) is None
    with pytest.raises(ValueError, match="no layer pattern or type"):
        parse_selector(" , ")


def test_prune_exclude_keeps_the_classifier_dense_and_the_checkpoint_evaluates(pruned_run):
    out, summary = pruned_run
    names = [row["name"] for row in summary.sparsity.rows]
    assert "fc" not in names and "conv1" in names
    model = build_model(digits_run(out), 10)
    every = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert sorted(names) == sorted(n for n in every if n != "fc")
    # the checkpoint rebuilds with the same selection (strict load) and evaluates to the run's figures
    evaluation = evaluate_checkpoint(out / "checkpoint.pth")
    assert evaluation.accuracy["acc1"] == summary.accuracy["acc1"]


def test_a_selector_matching_no_layer_is_refused_naming_the_layers(tmp_path):
    with pytest.raises(ValueError, match=r"exclude: 'fcc' matches no layer of the network \(its layers: conv1, "):
        train(digits_run(tmp_path / "typo", prune="lats", l1=1.0, prune_exclude="fcc"))
    with pytest.raises(ValueError, match="include: type Conv1d matches no layer"):
        train(digits_run(tmp_path / "type", prune="lats", l1=1.0, prune_include="Conv1d"))
    assert not (tmp_path / "typo").exists() and not (tmp_path / "type").exists()
    with pytest.raises(RecipeError, match="prune_include choose the pruned layers; prune is 'none'"):
        digits_run(tmp_path, prune_include="fc")


# ------------------------------------------------------------------------ the two denominators


def test_sparsity_report_gives_both_denominators_by_brute_force():
    torch.manual_seed(0)
    model = build_model(TrainConfig(model="resnet18", width=4, stem="cifar"), 10)
    attach(model, exclude=["fc", "conv1"])
    for m in model.modules():
        if hasattr(m, "parametrizations"):
            m.parametrizations.weight[0].set_threshold(0.2)
    with torch.no_grad():
        model.fc.weight[:3] = 0.0  # zeros in a dense layer count in "all weights" only
    report = sparsity_report(model)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    pruned = [m for n, m in layers.items() if n not in ("fc", "conv1")]
    zeros = sum(int((m.weight == 0).sum()) for m in pruned)
    numel = sum(m.weight.numel() for m in pruned)
    all_zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    all_numel = sum(m.weight.numel() for m in layers.values())
    assert (report.totals["numel"], report.totals["zeros"]) == (numel, zeros)
    assert (report.totals["all_weights_numel"], report.totals["all_weights_zeros"]) == (all_numel, all_zeros)
    assert report.global_sparsity == zeros / numel and report.all_weights_sparsity == all_zeros / all_numel
    line = report.describe()
    assert f"{100 * zeros / numel:.2f}% of the {len(pruned)} pruned layers' {numel:,} weights" in line
    assert f"{100 * all_zeros / all_numel:.2f}% of all {all_numel:,} weights" in line
    assert any("all_weights_sparsity" in note and "pruned layers" in note for note in report.notes)


def test_summary_json_and_the_printed_report_name_both_denominators(pruned_run, capsys):
    out, summary = pruned_run
    import json

    totals = json.loads((out / "summary.json").read_text())["sparsity"]["totals"]
    assert totals["sparsity"] == summary.sparsity.global_sparsity
    assert totals["all_weights_sparsity"] < totals["sparsity"]  # the dense classifier counts in all weights only
