"""The neuron factory: defaults, hand-computed dynamics, backend choice and CuPy detection.

The CuPy comparison runs only where CuPy and a CUDA GPU are usable (marker ``cupy``). The backend
tests of one SpikingJelly release line skip under the other (scripts/test.sh runs both).
"""

import math
import os
import subprocess
import sys
import types

import pytest
import torch
from spikingjelly.activation_based import base, functional, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet as sj_sew
from torch import nn

from snn_lats import _spikingjelly, networks
from snn_lats._torchvision import torchvision  # noqa: F401  (before spikingjelly.model imports it)
from snn_lats.networks import neurons

pytestmark = pytest.mark.usefixtures("one_thread")
cupy_era = pytest.mark.skipif(not _spikingjelly.CUPY_ERA, reason="SpikingJelly 0.0.0.0.x: per-module backends, CuPy")
release_2 = pytest.mark.skipif(_spikingjelly.CUPY_ERA, reason="SpikingJelly 2.x: process-wide CUDA implementations")


@pytest.fixture
def fresh_cupy_check():
    neurons.cupy_unusable_reason.cache_clear()
    yield
    neurons.cupy_unusable_reason.cache_clear()


def fake_cupy(is_available=True, array_error=None):
    def arange(n):
        if array_error is not None:
            raise array_error
        return torch.arange(n)

    return types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: is_available), arange=arange)


# ---------------------------------------------------------------- what a neuron is


def test_default_neuron_is_a_multistep_if_with_atan_and_detached_reset():
    a, b = neurons.make_neuron(), neurons.make_neuron()
    assert type(a) is neuron.IFNode
    assert (a.step_mode, a.detach_reset, a.v_threshold, a.v_reset) == ("m", True, 1.0, 0.0)
    assert isinstance(a.surrogate_function, surrogate.ATan)
    assert a.surrogate_function is not b.surrogate_function  # one per layer, as SpikingJelly's models do


def test_the_neuron_kinds_the_command_line_lists_are_spikingjellys_three_classes():
    from snn_lats.networks.registry import NEURON_KINDS  # what --help lists, read without torch

    built = {kind: type(neurons.make_neuron(kind, "torch")).__name__ for kind in NEURON_KINDS}
    assert built == {"if": "IFNode", "lif": "LIFNode", "plif": "ParametricLIFNode"}
    assert tuple(neurons.NEURONS) == NEURON_KINDS


def test_if_neuron_spikes_and_resets_as_computed_by_hand():
    # H[t] = V[t-1] + X[t]; spike when H >= 1; hard reset to 0. Inputs 0.6: H = 0.6, 1.2 (spike), 0.6.
    node = neurons.make_neuron("if", "torch")
    spikes = node(torch.full((3, 1), 0.6))
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("kind, kwargs", [("lif", {"tau": 2.0}), ("plif", {"init_tau": 2.0})])
def test_leaky_neurons_follow_the_lif_equation(kind, kwargs):
    # H[t] = V[t-1] + (X[t] - V[t-1]) / tau, tau = 2, X = 1.2: H = 0.6, 0.9, 1.05 (spike), then 0.6.
    node = neurons.make_neuron(kind, "torch", **kwargs)
    assert type(node) is neurons.NEURONS[kind]
    spikes = node(torch.full((4, 1), 1.2))
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]


def test_surrogate_gradient_is_atan():
    # d spike / d H = (alpha / 2) / (1 + (pi / 2 * alpha * (H - 1))^2), alpha = 2; H = 0.5 here.
    x = torch.full((1, 1), 0.5, requires_grad=True)
    neurons.make_neuron("if", "torch")(x).sum().backward()
    assert x.grad.item() == pytest.approx(1.0 / (1.0 + (math.pi * 0.5) ** 2), rel=1e-6)


def test_neuron_kwargs_reach_every_neuron_and_cannot_change_step_mode():
    model = networks.sew_resnet18(width=4, neuron="lif", neuron_kwargs={"tau": 3.0, "v_threshold": 0.5})
    nodes = [m for m in model.modules() if isinstance(m, neuron.BaseNode)]
    assert len(nodes) == 1 + 8 * 2 + 3  # stem, two per BasicBlock, three downsample branches
    assert all(type(m) is neuron.LIFNode and m.tau == 3.0 and m.v_threshold == 0.5 for m in nodes)
    with pytest.raises(TypeError, match="step_mode"):
        networks.sew_resnet18(width=4, neuron_kwargs={"step_mode": "s"})


def test_plif_state_dict_keys_equal_spikingjelly():
    with torch.device("meta"):
        ours = networks.sew_resnet18(neuron="plif").state_dict()
        theirs = sj_sew.sew_resnet18(cnf="ADD", spiking_neuron=neuron.ParametricLIFNode, detach_reset=True).state_dict()
    assert list(ours) == list(theirs) and any(k.endswith("sn1.w") for k in ours)


# ---------------------------------------------------------------- backends


def test_a_backend_the_installed_release_does_not_offer_is_one_clear_error():
    other = next(b for b in networks.ALL_BACKENDS if b not in _spikingjelly.BACKENDS)  # cuda on 0.0.0.0.14
    message = rf"backend must be one of .* \(what SpikingJelly {_spikingjelly.VERSION} offers\), got '{other}'"
    with pytest.raises(ValueError, match=message):
        neurons.make_neuron("if", other)
    with pytest.raises(ValueError, match=message):
        networks.set_backend(networks.sew_resnet18(width=4), other)


@release_2
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_release_2_kernels_without_a_gpu_are_one_clear_error(backend):
    with pytest.raises(RuntimeError, match=rf"backend='{backend}' needs a CUDA GPU.*, but torch.cuda.is_available"):
        neurons.make_neuron("lif", backend)


@release_2
def test_release_2_native_kernels_missing_from_the_wheel_are_one_clear_error(monkeypatch):
    # The PyPI wheel of SpikingJelly 2.0 is pure Python: its native CUDA operators are built from source.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    message = r"backend='cuda' needs a CUDA GPU and SpikingJelly's native operators, but SpikingJelly .* no native"
    with pytest.raises(RuntimeError, match=message):
        neurons.make_neuron("if", "cuda")


@release_2
def test_release_2_backend_is_spikingjellys_variable_and_selection():
    # SpikingJelly 2.x reads SJ_<KIND>_CUDA_IMPLEMENTATION when the kind's kernels load, into their
    # selection: a fresh process, so that no earlier test loaded them.
    script = (
        "import os, sys, torch\n"
        "from snn_lats.networks import neurons\n"
        "node = neurons.make_neuron('plif', 'torch')\n"
        "print(os.environ.get('SJ_PLIF_CUDA_IMPLEMENTATION'), os.environ.get('SJ_IF_CUDA_IMPLEMENTATION'))\n"
        "node(torch.ones(2, 3))\n"
        "selection = sys.modules['spikingjelly._ops.plif']._selection\n"
        "print(selection._requested)\n"
        "os.environ['SJ_PLIF_CUDA_IMPLEMENTATION'] = 'auto'\n"
        "selection._requested = 'auto'\n"
        "neurons.make_neuron('plif', 'torch')\n"
        "print(selection._requested, os.environ['SJ_PLIF_CUDA_IMPLEMENTATION'])\n"
        "neurons.make_neuron('plif', 'auto')\n"
        "print(selection._requested)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SJ_")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["torch None", "torch", "torch torch", "torch"]


@cupy_era
def test_cupy_detection_names_each_missing_piece(fresh_cupy_check, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    reason = neurons.cupy_unusable_reason()
    assert "torch.cuda.is_available() is False" in reason and "cupy is not importable" in reason
    with pytest.raises(RuntimeError, match="backend='cupy' needs CuPy and a CUDA GPU.*cupy is not importable"):
        neurons.make_neuron("if", "cupy")


@cupy_era
def test_cupy_detection_catches_a_cupy_that_imports_but_cannot_run(fresh_cupy_check, monkeypatch):
    # cupy-cuda12x on a machine without a working driver: imports, then fails at the first array op.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(is_available=False))
    assert "cupy.cuda.is_available() is False" in neurons.cupy_unusable_reason()
    neurons.cupy_unusable_reason.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(array_error=RuntimeError("cudaErrorInsufficientDriver")))
    assert "cudaErrorInsufficientDriver" in neurons.cupy_unusable_reason()
    assert not neurons.cupy_usable()
    neurons.cupy_unusable_reason.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    monkeypatch.setattr(base, "cupy", sys.modules["cupy"])
    assert neurons.cupy_unusable_reason() is None and neurons.cupy_usable()


@cupy_era
def test_auto_backend_uses_torch_for_cpu_inputs_even_when_cupy_is_usable(monkeypatch):
    monkeypatch.setattr(_spikingjelly, "cupy_unusable_reason", lambda: None)
    model = networks.sew_resnet18(width=4, T=2, num_classes=3, stem="cifar")  # backend="auto"
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    assert {m.backend for m in model.modules() if isinstance(m, neuron.BaseNode)} == {"torch"}


@cupy_era
@pytest.mark.skipif(neurons.cupy_usable(), reason="CuPy is usable here")
def test_explicit_cupy_without_a_usable_cupy_raises_one_clear_error():
    with pytest.raises(RuntimeError, match="backend='cupy' needs CuPy and a CUDA GPU"):
        networks.sew_resnet18(backend="cupy")
    with pytest.raises(RuntimeError, match="backend='cupy' needs CuPy"):
        networks.set_backend(networks.sew_resnet18(width=4), "cupy")


@cupy_era
def test_set_backend_also_serves_spikingjellys_own_models():
    model = sj_sew.sew_resnet18(
        cnf="ADD", spiking_neuron=neuron.IFNode, surrogate_function=surrogate.ATan(), detach_reset=True, num_classes=3
    )
    functional.set_step_mode(model, "m")
    networks.set_backend(model, "auto")
    functional.reset_net(model)
    model(torch.rand(2, 1, 3, 32, 32)).sum().backward()
    nodes = [m for m in model.modules() if isinstance(m, neuron.BaseNode)]
    assert all(m.auto_backend and m.backend == "torch" for m in nodes)
    networks.set_backend(model, "torch")
    assert not any(m.auto_backend for m in nodes)
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'cupy', 'torch'\) \(what SpikingJelly 0.0"):
        networks.set_backend(model, "lava")


# ---------------------------------------------------------------- GPU only


@pytest.mark.cupy
@pytest.mark.skipif(not neurons.cupy_usable(), reason="needs CuPy and a usable CUDA GPU")
def test_cupy_backend_matches_torch_backend_outputs_and_gradients():
    torch.manual_seed(0)
    with_torch = networks.sew_resnet18(width=8, T=4, num_classes=10, stem="cifar", backend="torch").cuda()
    with_cupy = networks.sew_resnet18(width=8, T=4, num_classes=10, stem="cifar", backend="cupy").cuda()
    with_auto = networks.sew_resnet18(width=8, T=4, num_classes=10, stem="cifar", backend="auto").cuda()
    with_cupy.load_state_dict(with_torch.state_dict())
    with_auto.load_state_dict(with_torch.state_dict())
    x, target = torch.rand(8, 3, 32, 32, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    outputs = []
    for model in (with_torch, with_cupy, with_auto):
        out = model(x)
        nn.functional.cross_entropy(out, target).backward()
        outputs.append(out)
    assert {m.backend for m in with_auto.modules() if isinstance(m, neuron.BaseNode)} == {"cupy"}
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0], rtol=1e-4, atol=1e-5)
    reference = dict(with_torch.named_parameters())
    for model in (with_cupy, with_auto):
        for key, p in model.named_parameters():
            torch.testing.assert_close(p.grad, reference[key].grad, rtol=1e-3, atol=1e-5, msg=key)
    with_auto.cpu()(x.cpu())  # moved back to the CPU, "auto" follows the input
    assert {m.backend for m in with_auto.modules() if isinstance(m, neuron.BaseNode)} == {"torch"}
