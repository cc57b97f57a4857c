"""The parts of the benchmark commands that decide what they report: the calibration of D (and
what counts as reached), the pairing against GMP and of --target-sparsity with hand-found LATS
(the timing loops themselves are not tested; see docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_command(argv: list[str]) -> subprocess.CompletedProcess:
    """``benchmarks/accuracy_sparsity.py`` as a user runs it, in its own process."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "accuracy_sparsity.py"), *argv],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def curve():
    return load("accuracy_sparsity")


def test_calibration_interpolation_is_exact_on_a_logistic_response(curve):
    # If logit(s) is linear in log D, the piecewise-linear interpolation recovers D exactly.
    def sparsity(d):
        return 1.0 / (1.0 + math.exp(-(2.5 * math.log(d) + 4.0)))

    points = [(d, sparsity(d)) for d in (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)]
    for level in (0.9, 0.95, 0.99):
        d = curve.interpolate_d(points, level)
        assert sparsity(d) == pytest.approx(level, rel=1e-9)
    # A level no run reached has no D.
    assert curve.interpolate_d(points[:2], 0.99) is None


def test_calibration_takes_the_first_rise_and_reports_a_level_beyond_it_as_not_reached(curve):
    # Past a collapse, sparsity may fall again as D grows; only the first rise counts.
    points = [(0.1, 0.5), (0.2, 0.95), (0.4, 0.90), (0.8, 0.99)]
    d = curve.interpolate_d(points, 0.92)
    assert 0.1 < d < 0.2
    x = (curve._logit(0.92) - curve._logit(0.5)) / (curve._logit(0.95) - curve._logit(0.5))
    assert d == pytest.approx(0.1 * 2**x)
    assert curve.interpolate_d(points, 0.97) is None  # only the collapsed branch gets there
    # the audit's ANN at 99 %: D = 0.8 -> 98.71 %, 1.6 -> 97.66 %, 3.2 -> 99.98 % (it picked D = 1.98, 97.54 %)
    assert curve.interpolate_d([(0.8, 0.9871), (1.6, 0.9766), (3.2, 0.9998)], 0.99) is None


def test_a_level_landed_off_is_not_reached_and_gmp_is_the_paired_reference(curve):
    def run(method, level, seed, acc1, sparsity):
        spec = {"network": "snn", "method": method, "level": level, "base": {"seed": seed}}
        return {
            "spec": spec,
            "acc1": acc1,
            "sparsity": sparsity,
            "energy_uj": 1.0,
            "sops_per_sample": 1.0,
            "seconds": 1,
        }

    results = [
        run("gmp", 0.99, 0, 60.0, 0.99), run("gmp", 0.99, 1, 62.0, 0.99),
        run("lats-target", 0.99, 0, 63.0, 0.99), run("lats-target", 0.99, 1, 61.0, 0.99),
        run("lats", 0.99, 0, 70.0, 0.9754), run("lats", 0.99, 1, 71.0, 0.9760),  # landed at 97.5 %
    ]  # fmt: skip
    rows = {r["method"]: r for r in curve.summarise(results, [0.99])}
    assert rows["gmp"]["reached"] and rows["lats-target"]["reached"] and not rows["lats"]["reached"]
    text = curve.paired_differences(results, list(rows.values()))
    # by hand: +3 and -1 -> +1.00 ± 2.83, one seed ahead and one behind; hand-found LATS is not paired
    assert "| SNN | 99 % | LATS, --target-sparsity | +1.00 ± 2.83 | 1 / 1 | 2 |" in text
    assert "| LATS |" not in text


@pytest.mark.slow
def test_the_command_trains_caches_and_reports(tmp_path):
    """The whole command on a tiny budget: every run is trained, written to the cache, reported,
    and read back (not retrained) by a second invocation."""
    argv = [
        "--networks",
        "ann",
        "--methods",
        "lats-target",
        "dense",
        "--levels",
        "0.9",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--lr-warmup-epochs",
        "0",
        "--width",
        "4",
        "--image-size",
        "8",
        "--jobs",
        "1",
        "--output-dir",
        str(tmp_path / "cache"),
        "--json",
        str(tmp_path / "r.json"),
        "--table",
        str(tmp_path / "r.md"),
    ]
    run_command(argv)
    cached = sorted((tmp_path / "cache").glob("*.json"))
    assert len(cached) == 2
    results = {r["spec"]["method"]: r for r in json.loads((tmp_path / "r.json").read_text())["runs"]}
    # The controller lands within 0.5 pp of the level; the dense run has (almost) no zeros.
    assert abs(results["lats-target"]["sparsity"] - 0.9) <= 0.005
    assert results["dense"]["sparsity"] < 0.01
    assert all(0 <= r["acc1"] <= 100 and r["seconds"] > 0 for r in results.values())
    table = (tmp_path / "r.md").read_text()
    assert "LATS, --target-sparsity" in table
    assert "### ANN" in table and "### SNN" not in table  # no empty table for a network left out
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = run_command(argv)
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # read from the cache, not retrained
    assert "warning" not in again.stderr  # this checkout's code trained both
    # A run that other code trained (here: a digest no source tree has) is reused, and named.
    older = json.loads(cached[0].read_text())
    older["code"] = "0" * 10
    cached[0].write_text(json.dumps(older))
    warned = run_command(argv)
    assert "warning: 1 of 2 runs" in warned.stderr and cached[0].name in warned.stderr
    assert json.loads(cached[0].read_text())["code"] == "0" * 10  # still not retrained


def test_paired_table_reports_the_seed_by_seed_differences(curve):
    def run(network, level, seed, acc1, sparsity):
        return {
            "spec": {"network": network, "level": level, "base": {"seed": seed}},
            "acc1": acc1,
            "sparsity": sparsity,
        }

    pairs = [
        (run("snn", 0.99, 0, 90.0, 0.991), run("snn", 0.99, 0, 85.0, 0.991)),
        (run("snn", 0.99, 1, 80.0, 0.989), run("snn", 0.99, 1, 86.0, 0.989)),
    ]
    row = curve.paired_markdown(pairs).splitlines()[-1]
    # by hand: differences −5 and +6, mean 0.5, sample std 5.5·√2 = 7.78; sparsity 99.0 ± 0.14
    assert row == "| SNN | 99 % | 99.00 ± 0.14 | 85.00 ± 7.07 | 85.50 ± 0.71 | 0.50 ± 7.78 | 2 |"


@pytest.mark.slow
def test_paired_runs_aim_at_the_sparsity_each_hand_found_run_reached(tmp_path):
    argv = [
        "--networks",
        "ann",
        "--methods",
        "lats",
        "lats-target",
        "--paired",
        "--levels",
        "0.9",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--lr-warmup-epochs",
        "0",
        "--width",
        "4",
        "--image-size",
        "8",
        "--jobs",
        "1",
        "--output-dir",
        str(tmp_path / "cache"),
        "--json",
        str(tmp_path / "r.json"),
    ]
    done = run_command(argv)
    (pair,) = json.loads((tmp_path / "r.json").read_text())["paired"]
    lats, target = pair["lats"], pair["lats-target"]
    assert lats["spec"]["method"] == "lats" and target["spec"]["method"] == "lats-target"
    assert target["spec"]["base"] == lats["spec"]["base"]  # same seed, same settings
    # The oracle is the other run's own zero count: the controller lands on it (to 1e-6 rounding + ties).
    assert abs(target["sparsity"] - lats["sparsity"]) <= 1e-4
    assert "same seed" in done.stdout
    # the trajectory read back from the run's own log ends at its final sparsity, all the lr spent
    curve = load("accuracy_sparsity")
    points = curve.trajectory((tmp_path / "cache" / f"{curve.spec_key(lats['spec'])}.log").read_text())
    assert len(points) == 1 and points[0][0] == 1.0 and abs(points[0][1] - lats["sparsity"]) < 1e-4
    assert "### The trajectory of constant-λ LATS" in done.stdout


def test_paired_needs_both_methods(curve):
    with pytest.raises(SystemExit):
        curve.parse_args(["--methods", "lats", "--paired"])


def test_pretrained_table_reports_the_seed_by_seed_differences(curve):
    def run(network, level, seed, acc1):
        return {"spec": {"network": network, "level": level, "base": {"seed": seed}}, "acc1": acc1}

    runs = [
        (run("ann", None, 0, 80.0), run("ann", 0.9, 0, 78.0), run("ann", 0.9, 0, 75.0)),
        (run("ann", None, 1, 82.0), run("ann", 0.9, 1, 77.0), run("ann", 0.9, 1, 78.0)),
    ]
    args = curve.parse_args(["--epochs", "4", "--finetune-epochs", "2"])
    text = curve.pretrained_markdown(runs, args)
    assert "dense 4 epochs, then `--weights` and `--target-sparsity` for 2 epochs" in text
    assert "from scratch for 6 epochs" in text
    # by hand: dense 81 ± 1.41; pretrained 77.5 ± 0.71; scratch 76.5 ± 2.12; differences +3 and −1: 1 ± 2.83
    assert text.splitlines()[-1] == "| ANN | 90 % | 81.00 ± 1.41 | 77.50 ± 0.71 | 76.50 ± 2.12 | 1.00 ± 2.83 | 2 |"


def test_trajectory_exponent_recovers_the_exponent_of_its_model(curve):
    def logistic(z):
        return 1 / (1 + math.exp(-z))

    final = 0.95
    points = [(c, logistic(curve._logit(final) + 2.3 * math.log(c))) for c in (0.2, 0.5, 0.8)] + [(1.0, final)]
    assert curve.trajectory_exponent(points) == pytest.approx(2.3, abs=1e-9)
    assert curve.trajectory_exponent([(1.0, final)]) is None  # one epoch: nothing to fit


def test_pretrained_needs_dense(curve):
    with pytest.raises(SystemExit):
        curve.parse_args(["--methods", "lats", "--pretrained"])


@pytest.mark.slow
def test_fashion_mnist_and_pruning_from_the_dense_runs(tmp_path, curve):
    """On tiny IDX files in the real format: dense runs, then --weights fine-tunes from their
    checkpoints, against --target-sparsity from scratch for the same total epochs."""
    from test_engine_data import write_mnist

    write_mnist(tmp_path / "fmnist", n_train=40, n_val=30)
    argv = [
        "--dataset", "fashion-mnist", "--data-path", str(tmp_path / "fmnist"), "--train-subset", "20",
        "--networks", "ann", "--methods", "dense", "--pretrained", "--finetune-epochs", "1",
        "--finetune-levels", "0.9", "--seeds", "1", "--epochs", "1", "--lr-warmup-epochs", "0", "--width", "4",
        "--image-size", "8", "-b", "10", "--jobs", "1", "--output-dir", str(tmp_path / "cache"),
        "--json", str(tmp_path / "r.json"), "--table", str(tmp_path / "r.md"),
    ]  # fmt: skip
    run_command(argv)
    result = json.loads((tmp_path / "r.json").read_text())
    ((dense, tuned, scratch),) = [(p["dense"], p["finetuned"], p["scratch"]) for p in result["pretrained"]]
    start = Path(tuned["spec"]["base"]["weights"])
    assert start.is_file() and start.name == f"{curve.spec_key(dense['spec'])}.pth"  # the dense run's checkpoint
    assert tuned["spec"]["base"]["epochs"] == 1 and scratch["spec"]["base"]["epochs"] == 2
    assert "weights" not in scratch["spec"]["base"]
    assert abs(tuned["sparsity"] - 0.9) <= 0.005 and abs(scratch["sparsity"] - 0.9) <= 0.005
    table = (tmp_path / "r.md").read_text()
    assert "20 training images, validation on all 30" in table and "### Pruning from pretrained" in table


def test_energy_budget_calibration_is_exact_when_log_energy_is_linear_in_logit_sparsity():
    """benchmarks/energy_budget.py: the sparsity that gives a budget, interpolated between the two
    calibration runs that bracket it; on a response log E = a − b·logit s it is exact (up to the
    rounding to 6 decimals), and a budget no pair brackets has none."""
    budget = load("energy_budget")

    def energy(s):
        return math.exp(1.0 - 0.8 * math.log(s / (1 - s)))

    points = [(s, energy(s)) for s in (0.8, 0.9, 0.95, 0.98, 0.99)]
    for target in (0.5, 0.2, 0.1):
        s = budget.level_for(points, target)
        assert energy(s) == pytest.approx(target, rel=1e-4)
    assert budget.level_for(points, 10.0) is None and budget.level_for(points, 0.001) is None
