"""The second simulators of the NIR tests: exported graphs run by other frameworks' code.

Norse's NIR node translation and neurons (``norse.torch.utils.import_nir``), wired by nirtorch's
graph interpreter (``nirtorch.nir_to_torch``), with nirtorch's own AvgPool2d. Norse's public
``norse.torch.from_nir`` wires nodes with nirtorch's deprecated executor, which drops the
AvgPool2d node Norse does not map (the logits come out as a feature map), so it is not used.
Threshold, Scale and padded SumPool2d, which neither package maps, follow their NIR definitions
below, written from the spec (nir/ir/threshold.py, linear.py, pooling.py).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

__all__ = ["TOLERANCE", "norse_simulator"]

# Why a tolerance and not equality: the graph applies fc at every step and averages the T outputs,
# the toolkit averages the pooled spikes and applies fc once; and the folded conv rounds its sums
# differently from conv then BN. Both are float32 rounding. A spike of the
# last stage that differs moves a logit by about |w_fc| / (T·H·W), 1e-3 or more here: the
# tolerance hides no difference in the spikes that reach the output.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


class _SpecThreshold(nn.Module):
    """NIR's Threshold node as its spec defines it: z = 1 where v > threshold, else 0; or, with
    ``fire_on_equal``, where v >= threshold (as integer hardware may compare)."""

    def __init__(self, threshold, fire_on_equal=False):
        super().__init__()
        self.register_buffer("threshold", torch.from_numpy(np.asarray(threshold, dtype=np.float32)))
        self.fire_on_equal = fire_on_equal

    def forward(self, x):
        return (x >= self.threshold if self.fire_on_equal else x > self.threshold).to(x.dtype)


class _SpecScale(nn.Module):
    """NIR's Scale node: y = x ⊙ s."""

    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(np.asarray(scale, dtype=np.float32)))

    def forward(self, x):
        return x * self.scale


def _sum_pool(node):
    """NIR's SumPool2d: the sum over each window of the zero-padded input. (nirtorch's default
    mapping is an LPPool2d that ignores the padding, see its TODO.)"""
    pair = lambda v: tuple(int(i) for i in np.atleast_1d(v))  # noqa: E731
    return nn.AvgPool2d(pair(node.kernel_size), pair(node.stride), pair(node.padding), divisor_override=1)


def norse_simulator(graph, dt, fire_on_equal=False):
    """``run(x, T)``: the logits of ``graph`` simulated by Norse (see the module docstring), with
    Norse's neurons stepping ``dt`` seconds; ``fire_on_equal``: Threshold nodes fire on >=."""
    nirtorch = pytest.importorskip("nirtorch")
    import_nir = pytest.importorskip("norse.torch.utils.import_nir")
    nir = pytest.importorskip("nir")

    norse = functools.partial(import_nir._import_norse_module, dt=dt, ignore_warnings=True)
    node_map = {t: norse for t in (nir.IF, nir.LIF, nir.Conv2d, nir.Affine, nir.Flatten)}
    node_map[nir.SumPool2d] = _sum_pool
    node_map[nir.Threshold] = lambda n: _SpecThreshold(n.threshold, fire_on_equal)
    node_map[nir.Scale] = lambda n: _SpecScale(n.scale)
    module = nirtorch.nir_to_torch(graph, node_map)

    def run(x: torch.Tensor, T: int) -> torch.Tensor:
        """Logits of a batch of static images: each image (unbatched, as NIR types have no batch
        dimension) at every one of T steps from a fresh state; the mean of the T outputs."""
        logits = []
        for image in x:
            state, total = None, 0.0
            for _ in range(T):
                out, state = module(image, state)
                total = total + out
            logits.append(total / T)
        return torch.stack(logits)

    return run
