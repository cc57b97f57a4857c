"""The documentation cannot rot silently.

- Every ```python block of README.md and docs/*.md runs, in order; the blocks of one file share
  a namespace (a guide builds on its previous blocks). Their own ``assert`` lines are the oracles.
- docs/reference.md names every CLI flag of every ``snn-lats`` subcommand (read from the live
  argparse parsers) and every public name of the pruning, estimators and networks packages.
- scripts/plot_schedules.py draws what the code does: its LATS curve has the constant λ
  ``D / Σ planned η`` and its STDS-linear curve ``λ_t = (D / N) / η_t`` (closed forms).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return FENCE.findall(path.read_text(encoding="utf-8"))


def test_fence_parser_finds_blocks():
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n"
    assert FENCE.findall(text) == ["a = 1\n", "b = a + 1\n"]


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a snippet that writes files writes them here
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors; the machine is shared
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    try:
        for i, block in enumerate(python_blocks(path)):
            code = compile(block, f"{path.name}[python block {i}]", "exec")
            exec(code, namespace)
    finally:
        torch.set_num_threads(threads)


def _reference() -> str:
    return (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")


def _subcommand_flags() -> dict[str, set[str]]:
    from snn_lats.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {}
    for name, sub in subparsers.choices.items():
        flags[name] = {
            s for a in sub._actions for s in a.option_strings if s not in ("-h", "--help") and s.startswith("--")
        }
    return flags


def test_reference_documents_every_cli_flag():
    text = _reference()
    flags = _subcommand_flags()
    assert {"train", "evaluate", "export", "compare", "sops"} <= set(flags)
    missing = {}
    for command, options in flags.items():
        section = re.search(rf"^### `snn-lats {command}`\n(.*?)(?=^### |^## |\Z)", text, re.S | re.M)
        assert section, f"docs/reference.md has no '### `snn-lats {command}`' section"
        absent = sorted(o for o in options if not re.search(rf"`{re.escape(o)}[ `=]", section.group(1)))
        if absent:
            missing[command] = absent
    assert not missing, f"CLI flags not documented in docs/reference.md: {missing}"


def test_reference_flags_exist():
    """The reverse: a flag the reference documents for a subcommand is one that subcommand takes."""
    text = _reference()
    flags = _subcommand_flags()
    stale = {}
    for command, options in flags.items():
        section = re.search(rf"^### `snn-lats {command}`\n(.*?)(?=^### |^## |\Z)", text, re.S | re.M).group(1)
        named = set(re.findall(r"`(--[a-z][a-z0-9-]*)", section))
        extra = sorted(named - options - {"--help"})
        if extra:
            stale[command] = extra
    assert not stale, f"docs/reference.md documents flags that do not exist: {stale}"


def test_reference_names_every_public_name():
    import snn_lats.estimators as estimators
    import snn_lats.networks as networks
    import snn_lats.pruning as pruning

    text = _reference()
    names = set(pruning.__all__) | set(estimators.__all__) | set(networks.names()) | set(networks.__all__)
    missing = sorted(n for n in names if not re.search(rf"`[\w.]*{re.escape(n)}\b", text))
    assert not missing, f"public names missing from docs/reference.md: {missing}"


def test_readme_links_every_doc():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in ("getting_started.md", "guides.md", "concepts.md", "reference.md"):
        assert f"docs/{doc}" in readme, doc


def test_relative_links_resolve():
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def _plot_script():
    spec = importlib.util.spec_from_file_location("plot_schedules", ROOT / "scripts" / "plot_schedules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schedule_figure_reads_what_the_pruner_does():
    script = _plot_script()
    steps, warmup, D = 24, 4, script.FINAL_THRESHOLD
    planned = [script.BASE_LR * script.lr_factor(t, steps, warmup) for t in range(steps)]
    # The lr factor itself: warm-up from 1% to (almost) 1, then a half cosine to 0.
    assert math.isclose(script.lr_factor(0, steps, warmup), 0.01)
    assert math.isclose(script.lr_factor(warmup, steps, warmup), 1.0)
    assert math.isclose(script.lr_factor(steps, steps, warmup), 0.0, abs_tol=1e-12)

    lats = script.run_schedule("lats", steps, warmup)
    assert lats["lr"] == pytest.approx(planned, rel=1e-12)  # the scheduler applied the planned lrs
    assert lats["implied_l1"] == pytest.approx([D / sum(planned)] * steps, rel=1e-9)
    assert lats["threshold"][-1] == pytest.approx(D, rel=1e-12)

    linear = script.run_schedule("stds-linear", steps, warmup)
    assert linear["threshold"] == pytest.approx([D * (t + 1) / steps for t in range(steps)], rel=1e-12)
    assert linear["implied_l1"] == pytest.approx([D / steps / lr for lr in planned], rel=1e-9)


def test_demo_description_matches_the_recipe():
    """getting_started.md and the ANN-vs-SNN guide quote models/demo_digits.yaml; keep them equal."""
    import yaml

    recipe = yaml.safe_load((ROOT / "models" / "demo_digits.yaml").read_text(encoding="utf-8"))
    text = (ROOT / "docs" / "getting_started.md").read_text(encoding="utf-8")
    for phrase in (
        f"{recipe['epochs']} epochs",
        f"batch {recipe['batch_size']}",
        f"SGD lr {recipe['lr']}",
        f"momentum {recipe['momentum']}",
        f"`T = {recipe['T']}`",
        f"width {recipe['width']}",
        f"`D = {recipe['final_threshold']}`",
        f"upsampled to\n  {recipe['image_size']}×{recipe['image_size']}",
        f"`--prune {recipe['prune']}`",
    ):
        assert phrase in text, f"getting_started.md should say {phrase!r} (models/demo_digits.yaml)"
    guide = (ROOT / "docs" / "guides.md").read_text(encoding="utf-8")
    ann = re.search(r"snn-lats train --dataset digits .*?--output-dir runs/ann_lats", guide, re.S).group(0)
    for flag, key in (
        ("--epochs", "epochs"),
        ("--final-threshold", "final_threshold"),
        ("-b", "batch_size"),
        ("--width", "width"),
        ("--image-size", "image_size"),
        ("--lr", "lr"),
        ("--stem", "stem"),
    ):
        assert re.search(rf"{re.escape(flag)} {re.escape(str(recipe[key]))}\b", ann), (flag, recipe[key])
