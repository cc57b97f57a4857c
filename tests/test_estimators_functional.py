"""Functional calls, spike-spike products and recurrent layers, against brute force written here:
``sum(w(A) @ w(B))`` for products, ``sum(F.conv2d(w(x), 1[w != 0]))`` for convolutions, and an
LSTM unrolled step by step with ``nn.LSTMCell`` (torch's own cell) for the hidden states."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import neuron
from torch import nn

from snn_lats.estimators import SynapticOpCounter

pytestmark = pytest.mark.usefixtures("one_thread")


def w(x: torch.Tensor, spikes: bool) -> torch.Tensor:
    return x.double() if spikes else (x != 0).double()


class SpikingAttention(nn.Module):
    """Q, K, V from functional linears (a Parameter, not a module), spike Q·Kᵀ, attention x V,
    then a functional conv on the spikes."""

    spiking, T = True, 1

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(50)
        self.wq = nn.Parameter(torch.randn(8, 6, generator=g))
        self.wk = nn.Parameter(torch.randn(8, 6, generator=g))
        with torch.no_grad():
            self.wq[torch.rand(8, 6, generator=g) < 0.5] = 0  # pruned: must not count
        self.sn_q = neuron.IFNode(v_threshold=0.3)
        self.sn_k = neuron.IFNode(v_threshold=0.3)
        self.kernel = nn.Parameter(torch.randn(3, 1, 3, 3, generator=g))
        self.head = nn.Linear(5 * 5, 2)  # a module: counted by its hook, not twice

    def forward(self, x):  # x: [N, L, 6] real
        for m in (self.sn_q, self.sn_k):
            m.reset()
        q = self.sn_q(F.linear(x, self.wq))  # [N, L, 8] spikes
        k = self.sn_k(F.linear(x, self.wk))
        attn = q @ k.transpose(-2, -1)  # spike x spike: ACs, counts as multiplicity
        y = torch.matmul(attn, x)  # counts x real: ACs
        z = F.conv2d(attn.unsqueeze(1), self.kernel, padding=1)  # counts: ACs
        return self.head(z.mean(1).flatten(1)) + y.mean()


def test_functional_calls_and_spike_products_match_brute_force():
    model = SpikingAttention().eval()
    x = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(51))
    with torch.no_grad():
        q = model.sn_q(F.linear(x, model.wq))
        k = model.sn_k(F.linear(x, model.wk))
        for m in (model.sn_q, model.sn_k):
            m.reset()
        attn = q @ k.transpose(-2, -1)
        expected = {
            "linear": (0, sum(float(F.linear(w(x, False), (wt != 0).double()).sum()) for wt in (model.wq, model.wk))),
            "matmul": (
                float((w(q, True) @ w(k.transpose(-2, -1), True)).sum()) + float((w(attn, True) @ w(x, False)).sum()),
                0,
            ),
            "conv2d": (float(F.conv2d(w(attn.unsqueeze(1), True), (model.kernel != 0).double(), padding=1).sum()), 0),
        }
    assert float(attn.max()) >= 2  # multiplicity is exercised
    with torch.no_grad(), SynapticOpCounter(model, functional=True) as counter:
        model(x)
    rows = {r["name"]: r for r in counter.report().rows}
    for name, (acs, macs) in expected.items():
        assert (rows[name]["acs"], rows[name]["macs"]) == (pytest.approx(acs), pytest.approx(macs)), name
    head = next(r for r in counter.report().rows if r["name"] == "head")
    assert head["macs"] > 0 and "head.linear" not in rows  # the module's own F.linear is not counted again
    with torch.no_grad(), SynapticOpCounter(model) as plain:  # without functional=True: the module only
        model(x)
    assert [r["name"] for r in plain.report().synaptic_rows()] == ["head"]
    with pytest.raises(ValueError, match="exact rule only"):
        SynapticOpCounter(model, functional=True, convention="paper")


def test_lstm_and_cells_match_an_unrolled_lstm():
    torch.manual_seed(52)
    lstm = nn.LSTM(4, 3, batch_first=True)
    with torch.no_grad():
        lstm.weight_hh_l0[torch.rand(lstm.weight_hh_l0.shape) < 0.5] = 0
        lstm.weight_ih_l0[:, 0] = 0  # input feature 0 reaches nothing
    model = nn.Sequential(lstm)
    x = torch.randn(2, 5, 4)
    x[:, :, 1] = 0  # zero inputs cost nothing
    # The hidden states by an independent path: torch's LSTMCell with the same weights, step by step.
    cell = nn.LSTMCell(4, 3)
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in lstm.state_dict().items()})
    h, c = torch.zeros(2, 3), torch.zeros(2, 3)
    expected = 0.0
    with torch.no_grad():
        for t in range(5):
            expected += float(F.linear(w(x[:, t], False), (lstm.weight_ih_l0 != 0).double()).sum())
            expected += float(F.linear(w(h, False), (lstm.weight_hh_l0 != 0).double()).sum())  # h_{t-1}
            h, c = cell(x[:, t], (h, c))
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(x)
    (row,) = counter.report().synaptic_rows()
    assert row["type"] == "LSTM" and row["macs"] == pytest.approx(expected) and row["acs"] == 0
    assert row["nonzero_params"] == int((lstm.weight_ih_l0 != 0).sum() + (lstm.weight_hh_l0 != 0).sum())
    # The cell itself, given a state: both products; spikes in, ACs.
    spiking = nn.Sequential(nn.GRUCell(4, 3))
    spiking.spiking, spiking.T = True, 1
    xs, hs = (torch.rand(2, 4) < 0.5).float(), torch.randn(2, 3)
    with torch.no_grad(), SynapticOpCounter(spiking) as counter:
        spiking[0](xs, hs)
        spiking(xs)
    (row,) = counter.report().synaptic_rows()
    gru = spiking[0]
    assert row["acs"] == 2 * float(F.linear(xs.double(), (gru.weight_ih != 0).double()).sum())
    assert row["macs"] == float(F.linear((hs != 0).double(), (gru.weight_hh != 0).double()).sum())


def test_deep_lstm_is_named_not_skipped():
    model = nn.Sequential(nn.LSTM(4, 3, num_layers=2))
    with pytest.warns(UserWarning, match="num_layers > 1"), torch.no_grad(), SynapticOpCounter(model) as counter:
        model(torch.randn(5, 2, 4))
    assert counter.report().synaptic_rows()[0]["macs"] == 0
