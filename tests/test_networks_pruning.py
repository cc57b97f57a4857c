"""Every network works with the pruning core (snn_lats.pruning: attach / finalize).

Oracle: the same architecture built without pruning, holding weights soft-thresholded by hand,
``w = sign(θ)·max(|θ| − d, 0)``.
"""

import pytest
import torch
from test_networks import tiny_input, tiny_kwargs
from torch import nn

from snn_lats import networks
from snn_lats.pruning import attach, finalize

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(name):
    torch.manual_seed(0)
    return networks.create(name, **tiny_kwargs(name))


@pytest.mark.parametrize("name", networks.names())
def test_every_network_prunes_all_synaptic_weights_and_finalizes_to_a_plain_model(name):
    model = tiny(name)
    synaptic = [k for k, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    # Oracle model: same architecture and weights, soft-thresholded by hand at each layer's median |w|.
    oracle = tiny(name)
    oracle.load_state_dict(model.state_dict())
    thresholds = {}
    with torch.no_grad():
        for key in synaptic:
            w = oracle.get_submodule(key).weight
            thresholds[key] = float(w.abs().median())
            w.copy_(torch.sign(w) * torch.clamp(w.abs() - thresholds[key], min=0))

    layers = attach(model)
    assert list(layers) == synaptic  # every conv and linear weight is prunable
    for key, module in layers.items():
        module.parametrizations.weight[0].set_threshold(thresholds[key])
    x = tiny_input(name)
    model.train(), oracle.train()  # batch-statistics BN: every layer is active, even in a tiny SNN
    with torch.no_grad():
        expected = oracle(x)
        torch.testing.assert_close(model(x), expected)

    # Training goes through the parametrization to the latent θ.
    model(x).sum().backward()
    theta = model.get_submodule(synaptic[0]).parametrizations.weight.original
    assert theta.grad is not None and float(theta.grad.abs().sum()) > 0

    finalize(model)
    plain = tiny(name)
    plain.load_state_dict(model.state_dict(), strict=True)
    for key in synaptic:  # the baked weights are the hand-thresholded ones
        torch.testing.assert_close(plain.get_submodule(key).weight, oracle.get_submodule(key).weight)
    zeros = sum(int((plain.get_submodule(k).weight == 0).sum()) for k in synaptic)
    total = sum(plain.get_submodule(k).weight.numel() for k in synaptic)
    assert 0.45 < zeros / total < 0.55  # thresholds at the median |w|: about half pruned
    plain.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), rtol=0, atol=0)
