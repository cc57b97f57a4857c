"""What each weight costs: ``SynapticOpCounter.weight_costs()`` and the column sums behind it.

Oracles: brute force with a one-hot weight mask (the operations a single weight adds to
``sum(conv(x', 1[w != 0]))``), and the brute-force count of the whole mask.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_estimators import brute_force, counted_sew, is_counts
from torch import nn

from snn_lats.estimators import ENERGY_PRESETS, SynapticOpCounter

pytestmark = pytest.mark.usefixtures("one_thread")


def ops_with_mask(module: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> float:
    """sum(layer(x', mask)) with x' = x (spike counts) or 1[x != 0] (real values), float64."""
    xs = x.double() if is_counts(x) else (x != 0).double()
    if isinstance(module, nn.Linear):
        return float(F.linear(xs.reshape(-1, xs.shape[-1]), mask).sum())
    xs = xs.reshape(-1, *x.shape[-3:])
    padding = module.padding
    if module.padding_mode != "zeros":
        xs = F.pad(xs, [p for p in reversed(module.padding) for _ in range(2)], mode=module.padding_mode)
        padding = 0
    return float(F.conv2d(xs, mask, None, module.stride, padding, module.dilation, module.groups).sum())


def test_each_weight_costs_what_it_adds_to_the_brute_force_count():
    model, counter, recorder, _ = counted_sew()
    costs = counter.weight_costs()
    modules = dict(model.named_modules())
    g = torch.Generator().manual_seed(1)
    for name, inputs in recorder.inputs.items():
        module, cost = modules[name], costs[name]
        assert cost.shape == module.weight.shape and cost.dtype == torch.float64
        # the whole mask: Σ_{w≠0} cost_w is the brute-force count per sample
        mask = (module.weight.detach() != 0).double()
        acs, macs = sum(brute_force(module, x, is_counts(x)) for x in inputs if is_counts(x)), 0
        macs = sum(brute_force(module, x, False) for x in inputs if not is_counts(x))
        assert float((cost * mask).sum()) == pytest.approx((acs + macs) / 5, rel=1e-12), name
        # single weights, one-hot masks (pruned ones too: what they would add)
        for j in torch.randint(cost.numel(), (12,), generator=g).tolist():
            one = torch.zeros(cost.numel(), dtype=torch.float64)
            one[j] = 1
            expected = sum(ops_with_mask(module, x, one.view_as(cost)) for x in inputs) / 5
            assert float(cost.flatten()[j]) == pytest.approx(expected, rel=1e-12, abs=1e-12), (name, j)
    # a conv weight w[o, c, ky, kx] is charged its input channel's events at its offset, whatever o
    encoder = costs["encoder.0"]
    assert torch.equal(encoder, encoder[:1].expand_as(encoder))
    assert float(encoder.sum()) > 0
    # ... within its group: block3.conv1 has groups=2, so its two halves see different channels
    grouped = costs["block3.conv1.0"]
    half = grouped.shape[0] // 2
    assert torch.equal(grouped[:half], grouped[:1].expand_as(grouped[:half]))
    assert not torch.equal(grouped[0], grouped[half])


def test_energy_costs_price_acs_and_macs_by_the_preset():
    model, counter, _, _ = counted_sew()
    report = counter.report()
    for preset in ENERGY_PRESETS:
        costs = counter.weight_costs(preset)
        modules = dict(model.named_modules())
        total = sum(float((c * (modules[n].weight != 0)).sum()) for n, c in costs.items())
        assert total == pytest.approx(report.energy_pj(preset), rel=1e-12)
    ops = counter.weight_costs()
    p = ENERGY_PRESETS["45nm-fp32"]
    # the encoder sees the real-valued image (MACs only), spike_fc sees spikes (ACs only)
    assert torch.allclose(counter.weight_costs("45nm-fp32")["encoder.0"], ops["encoder.0"] * p.mac_pj)
    assert torch.allclose(counter.weight_costs("45nm-fp32")["spike_fc"], ops["spike_fc"] * p.ac_pj)


def test_an_events_only_counter_gives_the_same_costs_and_no_report():
    model, counter, _, batches = counted_sew()
    with torch.no_grad(), SynapticOpCounter(model, events_only=True) as lean:
        for x in batches:
            model(x)
    full, light = counter.weight_costs(), lean.weight_costs()
    assert full.keys() == light.keys()
    for name in full:
        assert torch.equal(full[name], light[name]), name
    with pytest.raises(ValueError, match="input events only"):
        lean.report()
    with pytest.raises(ValueError, match="events_only keeps the exact rule"):
        SynapticOpCounter(model, events_only=True, convention="sinabs")


def test_costs_hold_across_weight_changes_as_events_do():
    """Weights that change between forwards (training) change the count, not the events: the costs
    of two forwards are the sums of each forward's costs."""
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    x1, x2 = torch.randn(4, 6), torch.randn(3, 6)
    with torch.no_grad(), SynapticOpCounter(model) as both:
        model(x1)
        model[0].weight.mul_(-1)  # another mask of activity downstream
        model(x2)
    costs = both.weight_costs()
    expected = torch.zeros(5, 6, dtype=torch.float64)
    expected[:] = ((x1 != 0).sum(0) + (x2 != 0).sum(0)).double() / 7  # w[o, i] multiplies input i
    assert torch.equal(costs["0"], expected)


def test_a_training_only_counter_skips_validation_passes():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    x = torch.randn(4, 6)
    with SynapticOpCounter(model, training_only=True) as counter:
        model.train()
        model(x).sum().backward()  # counted
        with torch.no_grad():
            model(torch.randn(8, 6))  # no grad: skipped
        model.eval()
        model(torch.randn(16, 6))  # eval mode: skipped
    assert counter.samples == 4
    assert torch.equal(counter.weight_costs()["0"][0], (x != 0).sum(0).double() / 4)
    with pytest.raises(ValueError, match="nothing was counted yet"):
        SynapticOpCounter(model).weight_costs()
