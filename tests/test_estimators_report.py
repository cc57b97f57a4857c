"""SOP reports on the project's networks (brute-force oracle), through snn_lats.pruning, energy
presets (Horowitz, ISSCC 2014), rendering (table, JSON, CSV, PNG) and bad input."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from torch import nn

from snn_lats import networks
from snn_lats.estimators import ENERGY_PRESETS, SOPReport, SynapticOpCounter
from snn_lats.estimators.plot import render_report
from snn_lats.pruning import attach
from snn_lats.report import Report

# isort: split
from test_estimators import Recorder, expected_ops, prune_randomly, rows_by_name

pytestmark = pytest.mark.usefixtures("one_thread")


def check_against_brute_force(model, batches, neuron_types):
    recorder = Recorder(model, neuron_types=neuron_types)
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        for x in batches:
            model(x)
    recorder.remove()
    report = counter.report()
    rows = rows_by_name(report)
    modules = dict(model.named_modules())
    for name, inputs in recorder.inputs.items():
        assert (rows[name]["acs"], rows[name]["macs"]) == expected_ops(modules[name], inputs), name
    for name, outputs in recorder.outputs.items():
        if model.spiking:
            active = sum(float(y.sum()) for y in outputs)
        else:
            active = sum(int((y != 0).sum()) for y in outputs)
        assert rows[name]["firing_rate"] == pytest.approx(active / sum(y.numel() for y in outputs)), name
    # Every synaptic layer of the network has a row, in named_modules() order.
    synaptic = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [r["name"] for r in report.rows if r["kind"] == "synaptic"] == synaptic
    return report


@pytest.mark.parametrize("cnf", ["ADD", "IAND"])
def test_sew_resnet18_pruned_matches_brute_force(cnf):
    from spikingjelly.activation_based.neuron import BaseNode

    torch.manual_seed(0)
    model = networks.create("sew_resnet18", num_classes=10, T=2, width=8, stem="cifar", cnf=cnf).eval()
    prune_randomly(model, 0.5, torch.Generator().manual_seed(0))
    batches = [torch.randn(2, 3, 16, 16), torch.randn(1, 3, 16, 16)]
    report = check_against_brute_force(model, batches, (BaseNode,))
    assert report.samples == 3 and report.totals["time_steps"] == 2
    assert report.total_acs > 0 and report.total_macs > 0  # spikes inside, image and readout outside
    assert rows_by_name(report)["conv1"]["acs"] == 0  # the static image is real-valued: MACs


def test_resnet18_and_mobilenet_pruned_match_brute_force():
    torch.manual_seed(1)
    for model in (
        networks.create("resnet18", num_classes=10, width=8, stem="cifar").eval(),
        networks.create("mobilenet_v1", num_classes=10, width_mult=0.25, stem="cifar").eval(),
    ):
        prune_randomly(model, 0.5, torch.Generator().manual_seed(1))
        report = check_against_brute_force(model, [torch.randn(2, 3, 16, 16)], (nn.ReLU,))
        assert report.total_acs == 0 and report.total_macs > 0  # an ANN counts MACs only
        assert report.total_dense_macs > report.total_macs


def test_soft_threshold_pruning_is_seen():
    # snn_lats.pruning's parametrization: module.weight is S_d(theta) with exact zeros.
    torch.manual_seed(2)
    model = networks.create("sew_resnet18", num_classes=10, T=2, width=8, stem="cifar").eval()
    layers = attach(model)
    for module in layers.values():
        module.parametrizations.weight[0].set_threshold(0.05)
    from spikingjelly.activation_based.neuron import BaseNode

    x = torch.randn(2, 3, 16, 16)
    report = check_against_brute_force(model, [x], (BaseNode,))
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    assert zeros > 0
    assert report.totals["params"] - report.totals["nonzero_params"] == zeros
    # Raising every threshold between batches prunes more; the counter follows.
    for module in layers.values():
        module.parametrizations.weight[0].set_threshold(0.1)
    check_against_brute_force(model, [x], (BaseNode,))


# --- energy -------------------------------------------------------------------------------


def small_report() -> SOPReport:
    model = networks.create("sew_resnet18", num_classes=4, T=2, width=4, stem="cifar").eval()
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(torch.randn(2, 3, 8, 8))
    return counter.report()


def test_energy_presets_are_horowitz_45nm():
    # Horowitz, ISSCC 2014 (45 nm), pJ: MAC = multiply + add.
    assert ENERGY_PRESETS["45nm-fp32"][:2] == pytest.approx((0.9, 3.7 + 0.9))
    assert ENERGY_PRESETS["45nm-fp16"][:2] == pytest.approx((0.4, 1.1 + 0.4))
    assert ENERGY_PRESETS["45nm-int8"][:2] == pytest.approx((0.03, 0.2 + 0.03))
    report = small_report()
    n = report.samples
    assert report.energy_pj() == pytest.approx(report.total_acs / n * 0.9 + report.total_macs / n * 4.6)
    assert report.energy_pj("45nm-int8") == pytest.approx(report.total_acs / n * 0.03 + report.total_macs / n * 0.23)
    with pytest.raises(ValueError, match="45nm-fp32.*45nm-int8"):
        report.energy_pj("7nm-magic")


# --- rendering ----------------------------------------------------------------------------


def test_table_json_csv_roundtrip():
    report = small_report()
    text = report.table()
    assert "layer1.0.conv1" in text and "firing_rate" in text and "k spikes" in text
    data = json.loads(report.to_json())
    assert data["totals"]["acs"] == report.total_acs
    again = SOPReport.from_dict(data)
    assert isinstance(again, SOPReport) and again.total_macs == report.total_macs
    assert again.energy_pj() == pytest.approx(report.energy_pj())
    assert again.table() == text
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [r["name"] for r in rows] == [r["name"] for r in report.rows]
    assert int(rows[0]["macs"]) == report.rows[0]["macs"]


def test_plot_writes_png(tmp_path):
    report = small_report()
    path = tmp_path / "figs" / "sops.png"
    report.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["sops.png"]  # no temporary file left
    with pytest.raises(ValueError, match=r"\.png"):
        report.plot(tmp_path / "sops.bmp")
    assert not (tmp_path / "sops.bmp").exists()


def test_plot_reads_only_the_rows_and_totals_of_the_json_layout():
    report = small_report()
    data = json.loads(report.to_json())
    assert render_report(Report.from_dict(data)) == render_report(report)  # a plain Report: duck-typed


# --- bad input ----------------------------------------------------------------------------


def test_bad_input():
    with pytest.raises(TypeError, match="model"):
        SynapticOpCounter(lambda x: x)
    with pytest.raises(ValueError, match="no synaptic layer"):
        SynapticOpCounter(nn.Sequential(nn.ReLU(), nn.AvgPool2d(2)))
    bad_t = nn.Sequential(nn.Linear(2, 2))
    bad_t.T = 0
    with pytest.raises(ValueError, match="model.T"):
        SynapticOpCounter(bad_t)
    model = nn.Sequential(nn.Linear(3, 2))
    with SynapticOpCounter(model) as counter:
        for x in []:  # an empty loader
            model(x)
    with pytest.raises(ValueError, match="nothing was counted"):
        counter.report()
    with pytest.raises(RuntimeError, match="already attached"):
        with counter, counter:
            pass
