"""scripts/device_check.sh cannot rot before a GPU is lent: its dry run (every part, toy sizes, CPU)
runs here as a user runs it, and a part that overruns its time limit is reported while the next
one still runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def device_check(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "device_check.sh"), str(out), "--dry-run", *args],
        capture_output=True,
        text=True,
        timeout=1900,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return done, report


@pytest.mark.slow
@pytest.mark.timeout(2000)  # about 3 minutes on an idle 2-core machine; up to 5 times that on a shared one
def test_the_dry_run_runs_every_part_and_reports_it(tmp_path):
    done, report = device_check(tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    parts = report["parts"]
    assert list(parts) == [
        "install", "environment", "gpu_tests", "demo", "sop_overhead", "compile_breaks", "sew_throughput", "resnet50",
        "spikingjelly_releases", "dvs_throughput",
    ]  # fmt: skip
    assert parts.pop("install")["status"] == "skipped"  # a dry run uses the environment's own packages
    assert {name: p["status"] for name, p in parts.items()} == dict.fromkeys(parts, "ok")
    for name, p in parts.items():
        assert all(c["passed"] for c in p["checks"]), (name, p["checks"])

    # The GPU tests are selected, and skip cleanly without a GPU.
    tests = parts["gpu_tests"]
    assert tests["info"]["exit_code"] == 0 and tests["info"]["skipped"] == len(tests["rows"]) >= 3
    # Every variant of the SEW grid has a row: the CuPy ones say why they could not run.
    rows = parts["sew_throughput"]["rows"]
    assert len(rows) == 2 * 2 * 2 * 2 * 2
    assert all("needs CuPy" in r["error"] for r in rows if r["backend"] == "cupy")
    torch_rows = [r for r in rows if r["backend"] == "torch"]
    assert all(r["images_per_s"] > 0 and "error" not in r for r in torch_rows)
    assert all(r["sparsity"] > 0 for r in torch_rows if r["pruned"])
    # Pruned ResNet-50 compiles to one graph without a break.
    compiled = [r for r in parts["resnet50"]["rows"] if r["compiled"]]
    assert [(r["graphs"], r["graph_breaks"]) for r in compiled if r["pruned"]] == [(1, 0)]
    assert parts["compile_breaks"]["rows"][0] == {"backend": "torch", "graphs": 1, "graph_breaks": 0, "reasons": []}
    # Every backend of each SpikingJelly release at T = 2 and 4: the CPU runs torch, the others say why not.
    rows = parts["spikingjelly_releases"]["rows"]
    releases = {r["spikingjelly"] for r in rows}
    assert "0.0.0.0.14" in releases and len(releases) == (2 if (REPO / ".venv-sj2").exists() else 1)
    assert all(r["images_per_s"] > 0 and "error" not in r for r in rows if r["backend"] == "torch")
    assert all("needs" in r["error"] and "images_per_s" not in r for r in rows if r["backend"] != "torch")
    # 7B-Net on event frames: the torch backend runs in float32 and float16, CuPy says why not.
    rows = parts["dvs_throughput"]["rows"]
    assert {(r["backend"], r["amp"]) for r in rows} == {(b, a) for b in ("cupy", "torch") for a in (None, "float16")}
    assert all(r["images_per_s"] > 0 and r["sparsity"] > 0 for r in rows if r["backend"] == "torch")
    assert all("needs CuPy" in r["error"] for r in rows if r["backend"] == "cupy")
    # The demo trained through the CLI, and its checks ran.
    assert len(parts["demo"]["checks"]) == 11 and parts["demo"]["info"]["epochs"] == 1

    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# Device check (dry run, CPU)") and "| sew_throughput | ok |" in text
    assert "===== resnet50: ok" in (tmp_path / "device_check.log").read_text()


def test_a_part_past_its_limit_is_reported_and_the_next_part_still_runs(tmp_path):
    done, report = device_check(tmp_path, "--only", "sop_overhead", "compile_breaks", "--limit", "sop_overhead=2")
    assert done.returncode == 1
    parts = report["parts"]
    assert list(parts) == ["sop_overhead", "compile_breaks"]
    assert parts["sop_overhead"]["status"] == "timed out" and parts["sop_overhead"]["limit_s"] == 2
    assert parts["compile_breaks"]["status"] == "ok"
    assert "| sop_overhead | timed out |" in (tmp_path / "report.md").read_text()


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "report"
    done, _ = device_check(out, "--limit", "resnet50=soon")
    assert done.returncode == 2 and "--limit takes PART=SECONDS" in done.stderr
    assert not out.exists()
