"""``snn-lats compare`` for the ANN-vs-SNN question, on run summaries of real counted networks:
refusal (and --force) when runs were measured differently, activity per inference on both sides,
layers lined up by the synaptic layer they feed, several runs per side, the recount under another
convention."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from snn_lats import networks
from snn_lats.cli import main
from snn_lats.engine.summary import RunSummary
from snn_lats.estimators import SynapticOpCounter
from snn_lats.pruning import sparsity_report
from snn_lats.workflows.compare import compare, mismatches

# isort: split
from test_estimators import Recorder, prune_randomly
from test_estimators_cli import pruned_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(40))


def write_run(root, name, model_name, acc1, pruned, *, image_size=16, convention="exact", seed=0, record=False):
    """A run directory whose summary.json holds a real count of a real (randomly pruned) network."""
    torch.manual_seed(seed)
    kwargs = {"T": 2} if model_name.startswith("sew") else {}
    net = networks.create(model_name, num_classes=10, width=4, stem="cifar", **kwargs).eval()
    prune_randomly(net, pruned, torch.Generator().manual_seed(seed))
    recorder = Recorder(net, neuron_types=(nn.ReLU,)) if record else None
    with torch.no_grad(), SynapticOpCounter(net, convention=convention) as counter:
        net(BATCH)
    if recorder is not None:
        recorder.remove()
    config = {"model": model_name, "dataset": "digits", "image_size": image_size, "data_path": None}
    summary = RunSummary(
        config=config,
        accuracy={"acc1": acc1, "acc5": 99.0, "loss": 0.1, "samples": 3, "skipped_images": 0},
        sparsity=sparsity_report(net),
        sops=counter.report(),
    )
    (root / name).mkdir()
    summary.write(root / name / "summary.json")
    return root / name, summary, recorder


def test_refuses_runs_measured_differently(tmp_path, capsys):
    ann, *_ = write_run(tmp_path, "ann", "resnet18", 90.0, 0.5)
    snn_28, *_ = write_run(tmp_path, "snn28", "sew_resnet18", 85.0, 0.5, image_size=28)
    snn_paper, *_ = write_run(tmp_path, "snnpaper", "sew_resnet18", 85.0, 0.5, convention="paper")
    with pytest.raises(ValueError, match="image_size: ann has 16, snn28 has 28"):
        compare([ann, snn_28])
    with pytest.raises(ValueError, match="SOP convention: ann was counted with 'exact', snnpaper with 'paper'"):
        compare([ann, snn_paper])
    out = tmp_path / "out"
    assert main(["compare", str(ann), str(snn_28), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and not out.exists()
    assert main(["compare", str(ann), str(snn_28), "--force", "--out", str(out)]) == 0
    assert "warning: NOT MEASURED ALIKE (--force): image_size" in capsys.readouterr().err
    notes = json.loads((out / "compare.json").read_text())["notes"]
    assert any(n.startswith("NOT MEASURED ALIKE") for n in notes)


def test_runs_differ_only_in_the_fields_their_data_set_uses():
    def summary(**config):
        return RunSummary(config=config, accuracy={}, sparsity=None, sops=None)

    fashion_14 = summary(dataset="fashion-mnist", image_size=14, val_resize_size=232, val_crop_size=224)
    fashion_default = summary(dataset="fashion-mnist", image_size=None, data_path="/data/fmnist")
    fashion_28 = summary(dataset="fashion-mnist", image_size=28, val_resize_size=8, val_crop_size=8)
    digits_14 = summary(dataset="digits", image_size=14)
    folder = summary(dataset="imagefolder", data_path="/d", image_size=14, val_resize_size=16, val_crop_size=14)
    folder_other_crop = summary(
        dataset="imagefolder", data_path="/d", image_size=None, val_resize_size=16, val_crop_size=12
    )
    names = ["a", "b"]
    # a default image size is the data set's own (28), and the path or crop fields do not apply
    assert mismatches([fashion_14, fashion_default], names) == ["image_size: a has 14, b has 28"]
    assert mismatches([fashion_default, fashion_28], names) == []
    # another data set: that alone
    assert mismatches([fashion_14, digits_14], names) == ["dataset: a has 'fashion-mnist', b has 'digits'"]
    # an image folder: its path and sizes, not image_size
    assert mismatches([folder, folder_other_crop], names) == ["val_crop_size: a has 14, b has 12"]


def test_activity_per_inference_and_layers_lined_up(tmp_path):
    ann, ann_summary, ann_rec = write_run(tmp_path, "ann", "resnet18", 90.0, 0.5, record=True)
    snn, snn_summary, snn_rec = write_run(tmp_path, "snn", "sew_resnet18", 85.0, 0.5, record=True)
    runs, layers = compare([ann, snn])
    rows = {r["run"]: r for r in runs.rows}
    # SNN: spikes per neuron over both steps; ANN: the fraction of nonzero activations.
    snn_neurons = [r for r in snn_summary.sops.neuron_rows()]
    spikes = sum(r["firing_rate"] * r["output_elements"] for r in snn_neurons)
    neurons_per_sample = sum(r["output_elements"] for r in snn_neurons) / (3 * 2)  # 3 samples, 2 steps
    assert rows["snn"]["activity_per_inference"] == pytest.approx(spikes / (3 * neurons_per_sample))
    assert rows["snn"]["firing_rate"] == pytest.approx(rows["snn"]["activity_per_inference"] / 2)
    nonzero = sum(int((y != 0).sum()) for ys in ann_rec.outputs.values() for y in ys)
    elements = sum(y.numel() for ys in ann_rec.outputs.values() for y in ys)
    assert rows["ann"]["activity_per_inference"] == pytest.approx(nonzero / elements)
    assert rows["ann"]["energy_vs_ann"] == 1.0 and rows["snn"]["energy_vs_ann"] > 0
    # Layers: the two families share synaptic layer names; each row gives the input activity of
    # that layer in each run, events per input element per inference (all steps together).
    by_layer = {r["layer"]: r for r in layers.rows}
    assert len(by_layer) == len(layers.rows)  # each layer once
    assert set(by_layer) == {r["name"] for r in snn_summary.sops.synaptic_rows()}
    assert set(by_layer) >= {"conv1", "layer1.0.conv2", "layer4.1.conv2", "fc"}
    (x,) = snn_rec.inputs["layer1.0.conv2"]  # [T, N, C, H, W] spikes
    assert by_layer["layer1.0.conv2"]["snn:input_activity"] == pytest.approx(float(x.sum()) / x[0].numel())
    (x,) = ann_rec.inputs["layer1.0.conv2"]
    assert by_layer["layer1.0.conv2"]["ann:input_activity"] == pytest.approx(float((x != 0).sum()) / x.numel())
    stem = by_layer["conv1"]  # the real-valued image: every element nonzero, once (static input)
    assert stem["snn:input_activity"] == pytest.approx(1.0) and stem["ann:input_activity"] == pytest.approx(1.0)
    assert by_layer["fc"]["snn:sparsity"] == pytest.approx(snn_summary.sparsity.layer_sparsity()["fc"])


def test_several_runs_per_side_and_plots(tmp_path, capsys):
    runs = [
        write_run(tmp_path, "ann90", "resnet18", 92.0, 0.9)[0],
        write_run(tmp_path, "ann50", "resnet18", 93.0, 0.5)[0],
        write_run(tmp_path, "snn90", "sew_resnet18", 88.0, 0.9)[0],
        write_run(tmp_path, "snn50", "sew_resnet18", 89.5, 0.5)[0],
    ]
    out = tmp_path / "out"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "compare.csv",
        "compare.json",
        "compare_accuracy_energy.png",
        "compare_accuracy_sparsity.png",
        "compare_layers.json",
        "compare_sparsity.png",
    ]
    for name in names:
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["spiking"] for r in rows] == [False, False, True, True]
    assert all(r["energy_memory_pj_per_sample"] > r["energy_pj_per_sample"] for r in rows)


def test_recount_under_another_convention(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _, config = pruned_checkpoint(run / "model_best.pth", 0.05, seed=41, sops_batches=1)
    from snn_lats.engine.evaluation import evaluate_checkpoint

    summary = evaluate_checkpoint(run / "model_best.pth")
    summary.write(run / "summary.json")
    runs, _ = compare([run], convention="paper", batches=1)
    (row,) = runs.rows
    # The oracle: the same checkpoint's network counted directly under the paper convention.
    from snn_lats.data import build_datasets, build_loaders
    from snn_lats.engine.model import build_model_from_checkpoint

    net, _ = build_model_from_checkpoint(str(run / "model_best.pth"), "cpu")
    _, val_set, _ = build_datasets(config, train=False)
    _, loader = build_loaders(None, val_set, 4, 0, seed=config.seed)
    images, _, _ = next(iter(loader))
    with torch.no_grad(), SynapticOpCounter(net.eval(), convention="paper") as counter:
        net(images)
    assert row["convention"] == "paper"
    assert row["acs_per_sample"] == pytest.approx(counter.report().acs_per_sample)
    assert row["macs_per_sample"] == pytest.approx(counter.report().macs_per_sample)
