"""Synaptic operations of spike attention: the transformers' products of two spike tensors.

Oracles: brute force, every scalar product enumerated by Python loops over the operands that the
test captures itself (forward hooks of its own); the papers' dense counts written out (2·L²·d,
L·d); and a cost target landed by the pruner on the counter's own count.
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from test_networks_transformers import images, tiny

from snn_lats.estimators import SynapticOpCounter
from snn_lats.estimators.attention import attention_ops, is_attention
from snn_lats.estimators.layers import NEURONS
from snn_lats.networks.spikformer import SpikeAttentionProducts

pytestmark = pytest.mark.usefixtures("one_thread")


def spikes(*shape, p=0.4, seed=0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def brute_force(expression: str, operands) -> int:
    """Every scalar addition of the expression, enumerated: a product of two spike counts a·b is
    a·b additions (a pair of single spikes is one), a mask is none, a sum adds each spike once."""
    total = 0
    leading = operands[0].shape[:-2]
    for index in itertools.product(*(range(n) for n in leading)):
        q, k, v = (
            (x[index].tolist() for x in operands) if len(operands) == 3 else (operands[0][index].tolist(), None, None)
        )
        if expression == "(Q K^T)V":  # q, k, v: [L][d]
            L, d = len(q), len(q[0])
            A = [[0] * L for _ in range(L)]
            for i, j, c in itertools.product(range(L), range(L), range(d)):
                total += int(q[i][c] * k[j][c])  # Q Kᵀ: pairs of spikes
                A[i][j] += q[i][c] * k[j][c]
            for i, j, c in itertools.product(range(L), range(L), range(d)):
                total += int(A[i][j] * v[j][c])  # (Q Kᵀ) V: a count times a spike
        elif expression == "Q(K^T V)":
            L, d = len(q), len(q[0])
            B = [[0] * d for _ in range(d)]
            for a, b, j in itertools.product(range(d), range(d), range(L)):
                total += int(k[j][a] * v[j][b])  # Kᵀ V
                B[a][b] += k[j][a] * v[j][b]
            for i, a, b in itertools.product(range(L), range(d), range(d)):
                total += int(q[i][a] * B[a][b])  # Q (Kᵀ V)
        elif expression == "Q*SN(sum_tokens K*V)":
            total += sum(int(kk * vv) for row_k, row_v in zip(k, v) for kk, vv in zip(row_k, row_v))
        elif expression == "SN(sum_channels Q)*K":
            total += sum(int(x) for row in q for x in row)
    return total


@pytest.mark.parametrize("kv_first", [False, True])
def test_spiking_self_attention_counts_every_pair_of_spikes_in_its_association(kv_first):
    q, k, v = spikes(2, 1, 2, 5, 3, seed=1), spikes(2, 1, 2, 5, 3, seed=2), spikes(2, 1, 2, 5, 3, seed=3)
    module = SpikeAttentionProducts(kv_first=kv_first)
    ops = attention_ops(module.products, (q, k, v), spiking=True)
    assert ops.ops == brute_force(module.products, (q, k, v)) > 0
    assert ops.as_acs and ops.events == float(q.sum() + k.sum() + v.sum()) and ops.elements == 3 * q.numel()
    L, d = 5, 3
    assert ops.flops == 2 * 2 * 1 * 2 * (L * L * d if not kv_first else L * d * d)  # [T, N, heads] x 2 products


def test_the_two_associations_have_equal_values_and_other_counts():
    q, k, v = spikes(1, 1, 1, 6, 2, seed=4), spikes(1, 1, 1, 6, 2, seed=5), spikes(1, 1, 1, 6, 2, seed=6)
    first, last = SpikeAttentionProducts(kv_first=False), SpikeAttentionProducts(kv_first=True)
    torch.testing.assert_close(first(q, k, v), last(q, k, v), rtol=0, atol=0)
    counts = {m.products: attention_ops(m.products, (q, k, v), True).ops for m in (first, last)}
    assert counts["(Q K^T)V"] != counts["Q(K^T V)"]


def test_spike_driven_and_token_attention_count_their_sums_and_no_mask():
    q, k, v = spikes(2, 2, 2, 4, 3, seed=7), spikes(2, 2, 2, 4, 3, seed=8), spikes(2, 2, 2, 4, 3, seed=9)
    sdsa = attention_ops("Q*SN(sum_tokens K*V)", (q, k, v), True)
    assert sdsa.ops == brute_force("Q*SN(sum_tokens K*V)", (q, k, v)) == int((k * v).sum()) > 0
    assert sdsa.flops == k.numel()
    token = attention_ops("SN(sum_channels Q)*K", (q, k), True)
    assert token.ops == brute_force("SN(sum_channels Q)*K", (q,)) > 0 and token.flops == q.numel()


def capture_products(model):
    """The operands of every products module, captured by hooks of the test's own."""
    seen = []
    hooks = [
        m.register_forward_hook(lambda m, args, out: seen.append((m.products, [a.detach().clone() for a in args])))
        for m in model.modules()
        if is_attention(m)
    ]
    return seen, hooks


@pytest.mark.parametrize("name", ["spikformer_8_384", "sdt_8_384", "qkformer_10_384"])
def test_the_counter_counts_each_transformer_s_attention_exactly_and_warns_of_nothing(name):
    model = tiny(name, lively=True).train()
    seen, hooks = capture_products(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "does not count" warning for any module
        with SynapticOpCounter(model) as counter, torch.no_grad():
            model(images())
        report = counter.report()
    for hook in hooks:
        hook.remove()
    rows = {row["name"]: row for row in report.rows}
    attention_rows = [row for row in report.rows if row["type"] in ("SpikeAttentionProducts", "SpikeDrivenProducts",
                                                                    "QKTokenProducts")]  # fmt: skip
    expected = sum(brute_force(expression, operands) for expression, operands in seen)
    assert len(attention_rows) == len({id(m) for m in model.modules() if is_attention(m)}) > 0
    assert sum(row["acs"] for row in attention_rows) == expected > 0
    assert all(row["macs"] == 0 for row in attention_rows)
    # firing rates of every neuron, the attention neurons included
    neurons = [key for key, m in model.named_modules() if isinstance(m, NEURONS)]
    assert any("attn_lif" in key or "talking_heads" in key for key in neurons)
    assert all(rows[key]["firing_rate"] is not None for key in neurons)
    assert any("spike attention" in note for note in report.notes)


@pytest.mark.parametrize("convention", ["paper", "neurobench", "sinabs", "syops"])
def test_every_convention_gives_its_figure_for_spike_attention(convention):
    model = tiny("spikformer_8_384", lively=True).train()
    seen, hooks = capture_products(model)
    with SynapticOpCounter(model, convention=convention) as counter, torch.no_grad():
        model(images())
    for hook in hooks:
        hook.remove()
    rows = [row for row in counter.report().rows if row["type"] == "SpikeAttentionProducts"]
    total = sum(row["acs"] + row["macs"] for row in rows)
    if convention != "paper":
        assert total == 0  # those tools hook layers with weights only
        return
    # Spikformer's appendix: SOPs of SSA = fr x T x FL, FL = 2·L²·d per head and sample, fr the
    # mean of the spike operands; summed here over blocks, heads, samples and steps.
    expected = 0.0
    for _, (q, k, v) in seen:
        *lead, L, d = q.shape
        fr = float((q.sum() + k.sum() + v.sum()) / (3 * q.numel()))
        expected += fr * math.prod(lead) * 2 * L * L * d
    assert total == pytest.approx(expected, rel=1e-12)


def test_a_sops_target_lands_on_a_transformer_with_its_attention_counted():
    """The cost meter charges the attention products as fixed costs: a target on the exact count
    (attention included) is what the pruner lands on."""
    from snn_lats.pruning import SoftThresholdPruner

    torch.manual_seed(0)
    model = tiny("spikformer_8_384", lively=True)
    x = images(n=8)
    y = torch.arange(8) % 5
    with SynapticOpCounter(model) as counter, torch.no_grad():
        model.train()(x)
    dense = counter.report().totals["acs_per_sample"] + counter.report().totals["macs_per_sample"]
    attention = sum(counter.attention_ops()) / 8
    target = 0.6 * dense
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    steps = 40
    pruner = SoftThresholdPruner(
        model, optimizer, "lats", target_sops=target, end_step=30, lr_schedule=[1e-3] * steps, retarget_every=5
    )
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        pruner.step()
    with SynapticOpCounter(model) as counter, torch.no_grad():
        model(x)
    totals = counter.report().totals
    landed = totals["acs_per_sample"] + totals["macs_per_sample"]
    assert attention > 0.005 * dense  # the attention is a part of the count (0.7 % here: 16 tokens)
    assert landed == pytest.approx(target, rel=0.05)  # 0.977 when written
