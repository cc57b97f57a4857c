"""Soft-threshold pruning under ``torch.compile``: no graph break and no recompile of its own.

Oracles: the same network unpruned (its graph and break counts, from ``torch._dynamo.explain``),
``fullgraph=True`` (which raises at any break), a compile counter across training steps in which
every threshold moves, and the eager run of the same steps. The backends are dynamo's "eager" and
"aot_eager" (AOTAutograd traces the backward too): they count graphs without inductor's C++
code generation.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.testing import CompileCounterWithBackend
from torch.nn import functional as F

from snn_lats import networks
from snn_lats.pruning import SoftThresholdPruner, attach, pruned_layers, sparsity_report
from snn_lats.pruning.parametrization import soft_threshold_of

pytestmark = pytest.mark.usefixtures("one_thread")

NETWORKS = {
    "resnet18": dict(width=4, num_classes=5),
    "sew_resnet18": dict(width=4, num_classes=5, T=2, backend="torch"),
    "spikformer_8_384": dict(width=16, depth=1, num_heads=2, num_classes=5, T=2, stem="cifar", backend="torch"),
}


def build(name):
    torch.manual_seed(0)
    return networks.create(name, **NETWORKS[name])


@pytest.fixture(autouse=True)
def fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


@pytest.mark.parametrize("name", list(NETWORKS))
def test_pruning_adds_no_graph_break(name):
    x = torch.rand(2, 3, 16, 16)
    dense = dynamo.explain(build(name))(x)
    dynamo.reset()
    model = build(name)
    attach(model)
    for module in pruned_layers(model).values():
        soft_threshold_of(module).set_threshold(0.05)
    pruned = dynamo.explain(model)(x)
    assert (pruned.graph_count, pruned.graph_break_count) == (dense.graph_count, dense.graph_break_count) == (1, 0)


@pytest.mark.parametrize(
    "name, schedule, gradient, opt",
    [
        ("resnet18", "lats", "straight-through", "sgd"),
        ("resnet18", "lats", "exact", "sgd"),
        ("resnet18", "learnable", "exact", "sgd"),
        ("sew_resnet18", "lats", "straight-through", "sgd"),
        ("resnet18", "lats", "straight-through", "adamw"),  # per-weight thresholds
        ("spikformer_8_384", "lats", "straight-through", "adamw"),  # the transformers' optimizer
    ],
)
def test_compiled_training_steps_compile_once_while_the_thresholds_move_and_equal_eager(name, schedule, gradient, opt):
    base = build(name)
    x, y = torch.rand(4, 3, 16, 16), torch.randint(0, 5, (4,))

    def run(compiled: bool):
        model = copy.deepcopy(base)
        if opt == "sgd":
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        else:
            optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        kwargs = {"l1": 0.2 if opt == "sgd" else 0.002} if schedule == "lats" else {"s_init": -4.0}
        pruner = SoftThresholdPruner(model, optimizer, schedule, gradient=gradient, **kwargs)
        counter = CompileCounterWithBackend("aot_eager")
        forward = torch.compile(model, backend=counter, fullgraph=True) if compiled else model
        thresholds = []
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(forward(x), y).backward()
            optimizer.step()
            pruner.step()
            thresholds.append(pruner.threshold)
        assert counter.frame_count == (1 if compiled else 0)  # three steps, three thresholds, one graph
        model.eval()
        with torch.no_grad():
            out = forward(x)
            forward(x)
        assert counter.frame_count == (2 if compiled else 0)  # eval + no_grad: one more, once
        return model, out, thresholds

    eager_model, eager_out, eager_thresholds = run(False)
    model, out, thresholds = run(True)
    assert thresholds == eager_thresholds and len(set(thresholds)) == 3
    torch.testing.assert_close(out, eager_out, rtol=1e-5, atol=1e-6)
    eager_state = eager_model.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, eager_state[key], rtol=1e-5, atol=1e-6, msg=key)
    assert sparsity_report(model).global_sparsity > 0
