"""The package skeleton: the torchvision shim, the report type, the console script."""

import csv
import io
import json
import subprocess
import sys

import pytest
import torch

import snn_lats
from snn_lats.cli.commands import SUBCOMMANDS
from snn_lats.report import Report


def test_torchvision_shim_gives_working_models_and_transforms():
    from snn_lats._torchvision import models, transforms

    model = models.resnet18(num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    image = transforms.ToPILImage()(torch.zeros(3, 8, 8))
    assert transforms.ToTensor()(image).shape == (3, 8, 8)


@pytest.mark.parametrize("package, shim", [("torchvision", "_torchvision.py"), ("spikingjelly", "_spikingjelly.py")])
def test_torchvision_and_spikingjelly_are_imported_only_through_their_shims(package, shim):
    from pathlib import Path

    root = Path(snn_lats.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != shim
        and any(
            line.strip().startswith((f"import {package}", f"from {package}")) for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []


def test_report_renders_table_json_and_csv():
    report = Report(
        title="demo",
        rows=[{"name": "conv1", "numel": 1200, "density": 0.25}, {"name": "fc", "numel": 10, "density": 1.0}],
        totals={"global_sparsity": 0.5},
        notes=["a note"],
    )
    lines = report.table().splitlines()
    assert lines[0] == "demo"
    assert lines[1].split() == ["name", "numel", "density"]
    assert lines[3].split() == ["conv1", "1,200", "0.2500"]
    assert lines[4].split() == ["fc", "10", "1.0000"]
    assert "global_sparsity  0.5000" in lines
    assert lines[-1] == "note: a note"

    data = json.loads(report.to_json())
    assert data["rows"][0] == {"name": "conv1", "numel": 1200, "density": 0.25}
    assert data["totals"] == {"global_sparsity": 0.5}
    assert Report.from_dict(data).rows == report.rows

    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert rows == [
        {"name": "conv1", "numel": "1200", "density": "0.25"},
        {"name": "fc", "numel": "10", "density": "1.0"},
    ]


def test_report_files_are_written_whole(tmp_path):
    report = Report(title="t", rows=[{"a": 1}])
    report.to_json(tmp_path / "sub" / "r.json")
    report.to_csv(tmp_path / "r.csv")
    assert json.loads((tmp_path / "sub" / "r.json").read_text())["rows"] == [{"a": 1}]
    assert (tmp_path / "r.csv").read_text() == "a\n1\n"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["r.csv", "r.json"]


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    from snn_lats._io import atomic_open

    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_console_script_version_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "snn_lats", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"snn-lats {snn_lats.__version__}"
    assert snn_lats.__version__ == "0.1.0"
    help_text = subprocess.run(
        [sys.executable, "-m", "snn_lats", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: snn-lats" in help_text


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        [],
        ["trian"],
        *([command, "--help"] for command in SUBCOMMANDS),
        ["train", "--model", "resnet_9000"],
        ["train", "--opt", "adam"],
        ["train", "--epochs", "two"],
        ["train", "--lr", "inf"],
        ["train", "--recipe", "no_such_recipe.yaml"],
        ["evaluate", "--checkpoint", "c.pth", "--json", "/proc/e.json"],
        ["export", "--checkpoint", "c.pth", "--out", "/proc/out"],
        ["sops", "--batches", "0"],
        ["sops", "--convention", "mine"],
        ["export", "--format", "onnx"],
    ],
)
def test_help_and_argument_errors_answer_without_importing_torch(argv):
    """torch and torchvision take seconds to import (23-29 s of wall-clock on a loaded machine):
    help, the version, a misspelt command, a flag argparse refuses and a fresh run's bad
    configuration need neither."""
    script = (
        "import sys\nfrom snn_lats.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True)
    assert done.stderr.strip().endswith("torch imported: False"), done.stderr
    assert "snn-lats" in done.stdout + done.stderr
    if argv[:1] == ["train"] and argv[1:] != ["--help"]:  # argparse's or the configuration's refusal
        assert done.stderr.startswith("usage: snn-lats train") or done.stderr.startswith("snn-lats train: error: ")
    if argv == ["train", "--help"]:  # the choices are all there, read without torch
        assert "sew_resnet18" in done.stdout and "qkformer_10_768" in done.stdout and "dvs128-gesture" in done.stdout


LAZY_SUBPACKAGES = ("networks", "estimators", "pruning", "deploy", "data", "engine", "workflows")


def test_importing_the_subpackages_and_the_configuration_imports_no_torch():
    script = (
        "import sys\n"
        + "".join(f"import snn_lats.{p}\n" for p in LAZY_SUBPACKAGES)
        + "from snn_lats.engine.recipe import TrainConfig\n"
        + "from snn_lats.networks import names\n"
        + "TrainConfig(model=names()[-1])\n"
        + "print(sorted(m for m in ('torch', 'torchvision', 'spikingjelly', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("package", LAZY_SUBPACKAGES)
def test_every_export_of_a_lazy_subpackage_resolves(package):
    import importlib
    import pkgutil

    from snn_lats import _lazy

    module = importlib.import_module(f"snn_lats.{package}")
    for sub in pkgutil.iter_modules(module.__path__):  # every submodule imported: none may hide an export
        importlib.import_module(f"{module.__name__}.{sub.name}")
    exports = _lazy._exports(module.__name__)
    assert list(exports) == module.__all__
    for name, source in exports.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), name), name
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match=f"'snn_lats.{package}' has no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


def test_atomic_write_gives_ordinary_file_permissions(tmp_path):
    import os

    from snn_lats._io import atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")  # what plain open() gives under the same umask
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == os.stat(tmp_path / "b.txt").st_mode & 0o777 == 0o644


# --- the architecture: the import graph read from the sources -------------------------------------

# What each subpackage may import of the others (docs/architecture.md's table).
ALLOWED = {
    "networks": set(),
    "estimators": set(),
    "pruning": {"estimators"},
    "deploy": {"networks"},
    "data": set(),
    "engine": {"networks", "estimators", "pruning", "deploy", "data"},
    "workflows": {"networks", "estimators", "pruning", "deploy", "data", "engine"},
    "cli": {"networks", "estimators", "pruning", "deploy", "data", "engine", "workflows"},
}


def module_imports() -> dict[str, set[str]]:
    """Every snn_lats module and the snn_lats modules its top level imports (``from pkg import
    sub`` counted as the submodule ``pkg.sub``)."""
    import ast
    from pathlib import Path

    root = Path(snn_lats.__file__).parent
    paths = {}
    for path in root.rglob("*.py"):
        name = ".".join(["snn_lats", *path.relative_to(root).with_suffix("").parts]).removesuffix(".__init__")
        paths[name] = path
    imports = {}
    for name, path in paths.items():
        found = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("snn_lats"):
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                          for a in node.names}  # fmt: skip
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("snn_lats")}
        imports[name] = found
    return imports


def test_no_module_imports_one_that_imports_it_back():
    imports = module_imports()
    packages = {name for name in imports if name.count(".") <= 1}  # an __init__ re-exporting its submodules
    cycles, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for other in sorted(imports[module] & imports.keys()):
            if state.get(other) == "open":
                cycles.append([*path[path.index(other) :], other])
            elif other not in state:
                visit(other, [*path, other])
        state[module] = "done"

    for module in sorted(imports):
        if module not in state:
            visit(module, [module])
    assert [c for c in cycles if not set(c) & packages] == []


def test_every_subpackage_imports_only_those_above_it():
    wrong = []
    for module, found in module_imports().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in ALLOWED:
            continue
        for other in found:
            target = other.split(".")[1] if other.count(".") else None
            if target in ALLOWED and target != parts[1] and target not in ALLOWED[parts[1]]:
                wrong.append(f"{module} imports {other}")
    assert wrong == []
