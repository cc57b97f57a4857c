"""``snn-lats export --format dense sparse nir`` of trained checkpoints, end to end.

Oracles: the dense safetensors file (nonzeros, sizes), ``snn-lats sops`` (the SOP report), the
checkpoint's own network with its thresholds (outputs), and Norse running the NIR file.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from nir_simulators import TOLERANCE, norse_simulator
from PIL import Image
from safetensors.torch import load_file

from snn_lats import networks
from snn_lats.cli import main
from snn_lats.deploy import load_sparse
from snn_lats.engine.model import build_model_from_checkpoint

SIZE = 12
TINY = ["-j", "0", "--train-crop-size", str(SIZE), "--val-resize-size", str(SIZE), "--val-crop-size", str(SIZE)]
TINY += ["--stem", "cifar", "--width", "4", "-b", "8", "--epochs", "1", "--sops-batches", "1", "--print-freq", "100"]
TINY += ["--device", "cpu", "--dataset", "imagefolder", "--no-augment"]


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _image_folder(root, classes=4, per_class=(6, 4)):
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val"), per_class):
        for c in range(classes):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / f"class{c}" / f"{i}.png")
    return root


def _make_every_layer_fire(path):
    """Give the checkpoint's BatchNorms the statistics of its validation images and a positive
    shift (one epoch on 24 random images leaves the deep layers of this network silent, and a
    silent network would make the simulator comparison vacuous). The file stays a checkpoint of
    the run: its θ, thresholds, configuration and history are untouched."""
    from snn_lats.data import build_datasets
    from snn_lats.engine.checkpoint import load_checkpoint, save_checkpoint
    from snn_lats.engine.recipe import TrainConfig

    content = load_checkpoint(path)
    model, _ = build_model_from_checkpoint(content)
    _, val_set, _ = build_datasets(TrainConfig.from_dict(content["config"]), train=False)
    images = torch.stack([val_set[i][0] for i in range(len(val_set))])
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            torch.nn.init.ones_(m.weight)
            torch.nn.init.constant_(m.bias, 0.3)
    model.train()
    with torch.no_grad():
        model(images)
    save_checkpoint(path, {**content, "model": model.state_dict()})
    return images


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A LATS-pruned SEW ResNet-18 (T = 2) and a dense ANN ResNet-18, one epoch each on a folder
    of random images; the SNN's BatchNorms then made to let every layer fire."""
    root = tmp_path_factory.mktemp("runs")
    data = _image_folder(root / "data")
    snn, ann = root / "snn", root / "ann"
    common = ["train", *TINY, "--data-path", str(data)]
    assert main([*common, "--T", "2", "--prune", "lats", "--final-threshold", "0.05", "--output-dir", str(snn)]) == 0
    assert main([*common, "--model", "resnet18", "--output-dir", str(ann)]) == 0
    _make_every_layer_fire(snn / "model_best.pth")
    return snn / "model_best.pth", ann / "model_best.pth"


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "all"
    args = ["export", "--checkpoint", str(checkpoints[0]), "--out", str(out), "--format", "dense", "sparse", "nir"]
    assert main([*args, "--sops-batches", "2"]) == 0
    return out


def test_every_format_is_written_and_reported(exported, checkpoints, tmp_path, capsys):
    info = json.loads((exported / "export.json").read_text())
    names = ["model.safetensors", "model.pth", "model.sparse.safetensors", "model.nir"]
    assert info["formats"] == ["dense", "sparse", "nir"] and info["files"] == names
    # Sizes: those of the files on disk; the sparse one beside the dense safetensors.
    sizes = {name: (exported / name).stat().st_size for name in names}
    assert info["sizes"]["bytes"] == sizes
    assert info["sizes"]["dense_safetensors_bytes"] == sizes["model.safetensors"]
    assert info["sizes"]["sparse_vs_dense"] == pytest.approx(
        sizes["model.safetensors"] / sizes["model.sparse.safetensors"]
    )
    assert sizes["model.sparse.safetensors"] < sizes["model.safetensors"]

    # Nonzeros per layer: counted again in the dense file.
    dense = load_file(exported / "model.safetensors")
    rows = info["nonzeros"]["rows"]
    assert [r["name"] for r in rows][0] == "conv1" and rows[-1]["name"] == "fc" and len(rows) == 21
    for row in rows:
        weight = dense[row["name"] + ".weight"]
        assert (row["params"], row["nonzeros"]) == (weight.numel(), int(torch.count_nonzero(weight)))
    assert info["nonzeros"]["totals"]["nonzeros"] == sum(r["nonzeros"] for r in rows)

    # The SOP report of the source model: what `snn-lats sops` counts on the same batches.
    sops_json = tmp_path / "sops.json"
    args = ["sops", "--checkpoint", str(checkpoints[0]), "--batches", "2", "-j", "0", "--json", str(sops_json)]
    assert run_cli(args, capsys)[0] == 0
    oracle = json.loads(sops_json.read_text())
    assert info["sops"]["totals"] == oracle["totals"]
    assert [r["acs"] for r in info["sops"]["rows"]] == [r["acs"] for r in oracle["rows"]]

    assert info["nir"]["input_shape"] == [3, 12, 12] and info["nir"]["dt"] == 1e-4 and info["nir"]["T"] == 2
    assert info["nir"]["node_types"]["IF"] == 20 and info["nir"]["node_types"]["Conv2d"] == 20


def test_the_printed_report(checkpoints, tmp_path, capsys):
    out = tmp_path / "export"
    code, stdout, stderr = run_cli(
        ["export", "--checkpoint", str(checkpoints[0]), "--out", str(out), "--format", "sparse", "--sops-batches", "1"],
        capsys,
    )
    assert code == 0, stderr
    info = json.loads((out / "export.json").read_text())
    assert "Nonzero weights per layer" in stdout and "layer4.1.conv2" in stdout
    assert "acs" in stdout  # the SOP table
    sizes = info["sizes"]
    assert f"{sizes['sparse_vs_dense']:.2f}x smaller" in stdout
    assert f"dense safetensors {sizes['dense_safetensors_bytes']:,} bytes" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.sparse.safetensors"]


def test_sparse_file_loads_into_the_unpruned_network_with_identical_outputs(exported, checkpoints):
    from snn_lats.workflows import load_exported

    plain = networks.create("sew_resnet18", num_classes=4, T=2, width=4, stem="cifar")
    plain.load_state_dict(load_sparse(exported / "model.sparse.safetensors"), strict=True)
    dense = networks.create("sew_resnet18", num_classes=4, T=2, width=4, stem="cifar")
    dense.load_state_dict(load_file(exported / "model.safetensors"), strict=True)
    pruned, _ = build_model_from_checkpoint(checkpoints[0])
    x = torch.rand(4, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), dense.eval()(x))
        assert torch.equal(plain(x), pruned(x))

    # load_exported of a sparse-only export reads the sparse file.
    only = exported.parent / "sparse_only"
    only.mkdir()
    (only / "model.sparse.safetensors").write_bytes((exported / "model.sparse.safetensors").read_bytes())
    info = json.loads((exported / "export.json").read_text())
    (only / "export.json").write_text(
        json.dumps({**info, "formats": ["sparse"], "files": ["model.sparse.safetensors"]})
    )
    model, _ = load_exported(only)
    with torch.no_grad():
        assert torch.equal(model(x), pruned(x))


def test_norse_runs_the_exported_nir_file_as_the_checkpoint_computes(exported, checkpoints):
    nir = pytest.importorskip("nir")
    from snn_lats.data import build_datasets
    from snn_lats.engine.recipe import TrainConfig

    graph = nir.read(exported / "model.nir")
    pruned, content = build_model_from_checkpoint(checkpoints[0])
    _, val_set, _ = build_datasets(TrainConfig.from_dict(content["config"]), train=False)
    images = torch.stack([val_set[i][0] for i in (0, 5, 10, 15)])  # a fixed input: validation images
    with torch.no_grad():
        expected = pruned(images)
        got = norse_simulator(graph, graph.metadata["dt"])(images, int(graph.metadata["T"]))
    torch.testing.assert_close(got, expected, **TOLERANCE)
    assert expected.std(0).max() > 1e-2
    # Pruned synapses stay zero: the graph's conv weights are zero exactly where S_d(θ) is.
    for name in ("conv1", "layer2.0.conv2", "layer4.1.conv1", "layer3.0.downsample.0"):
        weight = pruned.get_submodule(name).weight.detach().numpy()
        assert np.array_equal(graph.nodes[name].weight == 0, weight == 0), name
        assert (weight == 0).any()
    assert np.array_equal(graph.nodes["fc"].weight == 0, pruned.fc.weight.detach().numpy() == 0)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("ann", "cannot export the model (ResNet) to NIR: an ANN"),
        ("no_nir", "pip install 'snn-lats[nir]'"),
        ("channels", "input_shape has 2 channels, the network takes 3"),
        ("dt", "--dt must be > 0"),
        ("sops_batches", "--sops-batches must be >= 0"),
        ("dt_without_nir", "--dt: for --format nir only"),
        ("no_data", "give --data-path, or --sops-batches 0"),
    ],
)
def test_bad_exports_fail_with_one_line_and_write_nothing(case, expected, checkpoints, tmp_path, capsys, monkeypatch):
    snn, ann = checkpoints
    out = tmp_path / "export"
    args = [
        "export",
        "--checkpoint",
        str(ann if case == "ann" else snn),
        "--out",
        str(out),
        "--format",
        *(["dense"] if case == "dt_without_nir" else ["sparse", "nir"]),
    ]
    if case == "no_nir":
        monkeypatch.setitem(sys.modules, "nir", None)  # `import nir` raises ImportError
    args += {
        "channels": ["--input-shape", "2", "12", "12"],
        "dt": ["--dt", "0"],
        "sops_batches": ["--sops-batches", "-1"],
        "dt_without_nir": ["--dt", "1e-3"],
        "no_data": ["--data-path", str(tmp_path / "no-such-folder")],
    }.get(case, [])
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 2 and stderr.startswith("snn-lats export: error: ") and expected in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()


def test_unknown_format_is_refused_by_the_parser(checkpoints, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        main(["export", "--checkpoint", str(checkpoints[0]), "--out", str(tmp_path / "x"), "--format", "onnx"])
    assert error.value.code == 2 and "invalid choice: 'onnx'" in capsys.readouterr().err


def test_a_new_export_replaces_the_files_of_an_earlier_one(checkpoints, tmp_path, capsys):
    """export.json describes exactly the files in the folder: a dense-only export into a folder
    that held a NIR and a sparse export removes them."""
    out = tmp_path / "export"
    args = ["export", "--checkpoint", str(checkpoints[0]), "--out", str(out), "--sops-batches", "0"]
    assert run_cli([*args, "--format", "dense", "sparse", "nir"], capsys)[0] == 0
    assert {"model.nir", "model.sparse.safetensors", "model.safetensors"} <= {p.name for p in out.iterdir()}
    assert run_cli([*args, "--format", "dense"], capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.pth", "model.safetensors"]
    assert json.loads((out / "export.json").read_text())["files"] == ["model.safetensors", "model.pth"]


def test_a_pruned_spikformer_exports_sparse_exactly_and_nir_refuses_it_in_one_line(tmp_path, capsys):
    data = _image_folder(tmp_path / "data")
    run = tmp_path / "spikformer"
    common = ["train", *TINY, "--data-path", str(data), "--model", "spikformer_8_384", "--width", "16"]
    common += ["--depth", "1", "--num-heads", "2", "--T", "2", "--opt", "adamw", "--lr", "0.01"]
    assert main([*common, "--prune", "lats", "--target-sparsity", "0.8", "--output-dir", str(run)]) == 0
    checkpoint = run / "model_best.pth"
    out = tmp_path / "export"
    code, _, stderr = run_cli(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--format", "nir"], capsys)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert "spike attention multiplies two activations" in stderr and not out.exists()
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--format", "dense", "sparse"]
    assert run_cli([*args, "--sops-batches", "0"], capsys)[0] == 0
    model, _ = build_model_from_checkpoint(checkpoint)
    plain = networks.create("spikformer_8_384", num_classes=4, T=2, width=16, depth=1, num_heads=2, stem="cifar")
    plain.load_state_dict(load_sparse(out / "model.sparse.safetensors"), strict=True)
    zeros = sum(
        int((m.weight == 0).sum()) for m in plain.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))
    )
    assert zeros > 0
    x = torch.rand(3, 3, SIZE, SIZE)
    model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), rtol=0, atol=0)
