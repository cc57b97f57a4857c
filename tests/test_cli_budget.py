"""``snn-lats train --target-sops`` / ``--target-energy``: through the real command line, on digits.

Oracles: the network's exact count before training (``SynapticOpCounter`` on a training batch),
and, for the figure the run ends with, a recount of the saved checkpoint on the same validation
images, with the counter run here.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from test_cli import TINY, run_cli, write_folder

from snn_lats.data import build_datasets
from snn_lats.engine import build_model_from_checkpoint, resolve_config
from snn_lats.engine.model import build_model
from snn_lats.estimators import SynapticOpCounter

pytestmark = pytest.mark.usefixtures("one_thread")

DIGITS = ["train", "--dataset", "digits", *TINY, "--prune", "lats"]


def flags_to_config(args: list[str]):
    """The configuration ``snn-lats train ...`` builds from ``args`` ("train" first)."""
    from snn_lats.cli import build_parser
    from snn_lats.cli.train import explicit_flags

    return resolve_config({**explicit_flags(build_parser().parse_args(args)), "workers": 0})


def dense_count(args: list[str], preset: str | None = None) -> float:
    """SOPs (or pJ) per sample of the unpruned network of ``args`` on 64 training images."""
    config = flags_to_config([*args, "--prune", "none"])  # the network unpruned
    train_set, _, num_classes = build_datasets(config)
    torch.manual_seed(config.seed)
    model = build_model(config, num_classes).train()
    indices = range(len(train_set))[:: max(1, len(train_set) // 64)][:64]
    x = torch.stack([train_set[i][0] for i in indices])
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(x)
    report = counter.report()
    return report.acs_per_sample + report.macs_per_sample if preset is None else report.energy_pj(preset)


LINE = re.compile(
    r"^target: (?P<target>[\d.e+-]+) (?P<unit>M SOPs|uJ) per sample; reached: (?P<reached>[\d.e+-]+) (?P=unit) "
    r"\((?P<off>[+-][\d.]+) %\) on (?P<samples>\d+) validation samples \(exact count(?P<preset>, [\w-]+)?\)$",
    re.M,
)


@pytest.mark.slow
@pytest.mark.parametrize("measure", ["sops", "energy"])
def test_a_cost_target_run_ends_with_target_and_reached_from_the_validation_count(measure, tmp_path, capsys):
    out = tmp_path / "run"
    preset = "45nm-fp16" if measure == "energy" else None
    dense = dense_count(DIGITS, preset)
    given = f"{0.4 * dense:.6g}" if preset is None else f"{0.4 * dense / 1e6:.6g}"  # SOPs, or uJ
    target = float(given) * (1 if preset is None else 1e6)  # SOPs, or pJ
    flag = ["--target-sops", given] if preset is None else ["--target-energy", given, "--energy-preset", preset]
    code, stdout, stderr = run_cli([*DIGITS, *flag, "--output-dir", str(out)], capsys)
    assert code == 0, stderr
    (line,) = LINE.finditer(stdout)
    # the recount: the last checkpoint (the final weights) on the first sops-batches x batch
    # validation images, in order
    model, checkpoint = build_model_from_checkpoint(out / "checkpoint.pth")
    _, val_set, _ = build_datasets(flags_to_config([*DIGITS, "--prune", "none"]))
    samples = int(line["samples"])
    assert samples == 64  # --sops-batches 1, -b 64
    x = torch.stack([val_set[i][0] for i in range(samples)])
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(x)
    report = counter.report()
    reached = report.acs_per_sample + report.macs_per_sample if preset is None else report.energy_pj(preset)
    # printed in M SOPs or uJ, to 4 digits
    assert float(line["target"]) * 1e6 == pytest.approx(target, rel=5e-4)
    assert float(line["reached"]) * 1e6 == pytest.approx(reached, rel=5e-4)
    assert float(line["off"]) == pytest.approx(100 * (reached / target - 1), abs=0.006)
    assert line["preset"] == (None if preset is None else f", {preset}")
    # the run's figures line prices energy as the run does (the same preset, the same count)
    energy = re.search(r"energy ([\d.e+-]+) uJ per sample \(([\w-]+)\)$", stdout, re.M)
    assert energy[2] == (preset or "45nm-fp32")
    assert float(energy[1]) * 1e6 == pytest.approx(report.energy_pj(energy[2]), rel=5e-4)
    assert line["unit"] == ("M SOPs" if preset is None else "uJ")
    assert reached < 0.8 * dense  # it pruned
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["target_sops" if preset is None else "target_energy_uj"] == float(given)


CASES = {
    "above_dense": (["--target-sops", "1e12"], "is not below the unpruned network's"),
    "left_out_layers_cost_more": (
        ["--target-sops", "1", "--dense-first-last"],
        "cannot be reached: the synaptic layers left out of the pruning already cost",
    ),
    "energy_above_dense": (["--target-energy", "1e6"], "the energy target, 1e+06 µJ per sample, is not below"),
    "energy_negative": (["--target-energy", "-1"], "target_energy_uj must be a finite number > 0 (µJ per sample), got"),
    "with_final_threshold": (
        ["--target-sops", "1e4", "--final-threshold", "0.1"],
        "not final_threshold and target_sops",
    ),
    "with_target_sparsity": (["--target-energy", "0.1", "--target-sparsity", "0.9"], "not target_sparsity and"),
    "with_l1": (["--target-sops", "1e4", "--l1", "0.01"], "not l1 and target_sops"),
    "preset_without_energy": (["--target-sops", "1e4", "--energy-preset", "45nm-fp16"], "energy_preset prices energy"),
    "not_lats": (["--target-sops", "1e4", "--prune", "slats"], "target_sops does not apply to schedule 'slats'"),
    "zero": (["--target-sops", "0"], "target_sops must be a finite number > 0"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_cost_target_is_one_error_line_rc_2_and_nothing_written(case, tmp_path, capsys):
    flags, message = CASES[case]
    out = tmp_path / "run"
    code, stdout, stderr = run_cli([*DIGITS, *flags, "--output-dir", str(out)], capsys)
    assert code == 2
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("snn-lats train: error:") and message in errors[0], stderr
    assert not out.exists()


def test_a_cost_target_above_an_image_folders_dense_count_is_refused_before_anything_is_written(tmp_path, capsys):
    data, out = write_folder(tmp_path / "data", per_class=3), tmp_path / "run"
    args = ["train", "--data-path", str(data), *TINY, "--prune", "lats", "--output-dir", str(out)]
    args += ["--train-crop-size", "8", "--val-crop-size", "8", "--val-resize-size", "8"]
    dense = dense_count(args)
    code, _, stderr = run_cli([*args, "--target-sops", f"{1.5 * dense:.6g}"], capsys)
    assert code == 2 and "is not below the unpruned network's" in stderr, stderr
    assert not out.exists()
