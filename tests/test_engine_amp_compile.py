"""Mixed precision (``--amp-dtype``), ``--compile`` and ``--sync-bn`` in the training engine.

Oracles: the closed-form threshold of LATS (``d = λ·Σ η`` over the optimizer steps actually
applied), the same run without ``--compile``, and real torchrun processes.
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import free_port, image_folder
from test_engine_train import tiny
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

from snn_lats.engine.checkpoint import load_checkpoint
from snn_lats.engine.evaluation import autocast_dtype
from snn_lats.engine.recipe import RecipeError, TrainConfig
from snn_lats.engine.trainer import NonFiniteLossError, train

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("data"))  # 16 training images: 4 steps of 4 per epoch


# ------------------------------------------------------------------------------------------ amp dtype


def test_amp_dtype_defaults_to_bfloat16_on_the_cpu_and_follows_the_flag():
    config = TrainConfig(dataset="digits")
    assert autocast_dtype(config, CPU) is None
    assert autocast_dtype(TrainConfig(dataset="digits", amp=True), CPU) == torch.bfloat16
    assert autocast_dtype(TrainConfig(dataset="digits", amp=True, amp_dtype="float16"), CPU) == torch.float16
    assert autocast_dtype(TrainConfig(dataset="digits", amp=True, amp_dtype="bfloat16"), CPU) == torch.bfloat16
    with pytest.raises(RecipeError, match=r"--amp-dtype float16\) is the dtype of --amp, which is off"):
        TrainConfig(dataset="digits", amp_dtype="float16").validate()
    with pytest.raises(RecipeError, match="amp_dtype must be one of bfloat16, float16"):
        TrainConfig(dataset="digits", amp=True, amp_dtype="half").validate()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_amp_dtype_on_this_gpu_is_bfloat16_where_it_is_native():
    native = torch.cuda.get_device_capability()[0] >= 8  # Ampere and later compute bfloat16 natively
    expected = torch.bfloat16 if native else torch.float16
    assert autocast_dtype(TrainConfig(dataset="digits", amp=True), torch.device("cuda")) == expected


class _PoisonedBackward(torch.autograd.Function):
    """Identity whose backward turns the gradient non-finite at one chosen backward pass: the
    overflow a float16 step can hit, at a step of the test's choosing."""

    calls = 0
    poison_at: int | None = None

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        index, _PoisonedBackward.calls = _PoisonedBackward.calls, _PoisonedBackward.calls + 1
        return grad * math.inf if index == _PoisonedBackward.poison_at else grad


class PoisonNet(nn.Module):
    T, spiking = 1, False

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x):
        return self.fc(_PoisonedBackward.apply(torch.relu(self.conv(x))).mean((2, 3)))


def _poisoned(poison_at):
    _PoisonedBackward.calls, _PoisonedBackward.poison_at = 0, poison_at
    return lambda config, num_classes: PoisonNet(num_classes)


# Per-epoch cosine over 3 epochs from 0.1: 0.1, 0.075, 0.025 at 4 steps each; LATS: d = λ·Σ applied lrs.
EPOCH_LRS = [0.05 * (1 + math.cos(math.pi * e / 3)) for e in range(3)]
L1 = 0.05


def test_float16_skips_an_overflowing_step_and_the_threshold_skips_its_lr(data_root, tmp_path):
    config = tiny(data_root, tmp_path, amp=True, amp_dtype="float16", final_threshold=None, l1=L1)
    summary = train(config, build_model_fn=_poisoned(poison_at=1))  # the second step of epoch 0
    applied = sum(4 * lr for lr in EPOCH_LRS) - EPOCH_LRS[0]
    assert summary.history[-1]["threshold"] == pytest.approx(L1 * applied, rel=1e-9)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pth")
    assert checkpoint["step"] == 12 and checkpoint["pruner"]["step_count"] == 11


def test_bfloat16_has_no_scaler_every_step_counts(data_root, tmp_path):
    config = tiny(data_root, tmp_path / "clean", amp=True, amp_dtype="bfloat16", final_threshold=None, l1=L1)
    summary = train(config, build_model_fn=_poisoned(poison_at=None))
    assert summary.history[-1]["threshold"] == pytest.approx(L1 * sum(4 * lr for lr in EPOCH_LRS), rel=1e-9)
    # Without a scaler nothing skips a non-finite gradient: it reaches the weights, and the next loss stops the run.
    config = tiny(data_root, tmp_path / "poisoned", amp=True, amp_dtype="bfloat16", final_threshold=None, l1=L1)
    with pytest.raises(NonFiniteLossError, match="not finite at epoch 0, step 2"):
        train(config, build_model_fn=_poisoned(poison_at=1))


# ------------------------------------------------------------------------------------------ compile


def test_compiled_training_equals_eager_training_and_compiles_one_graph(data_root, tmp_path, monkeypatch):
    """A pruned SEW ResNet trained with --compile: one graph for every training step while the
    thresholds grow (no recompile), and the weights of the eager run. The backend is aot_eager
    (dynamo and AOTAutograd, without inductor's C++ code generation, which takes minutes here)."""
    eager = train(tiny(data_root, tmp_path / "eager"))
    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counter))
    compiled = train(tiny(data_root, tmp_path / "compiled", compile=True))
    assert counter.frame_count == 1
    assert compiled.sparsity.global_sparsity == eager.sparsity.global_sparsity > 0
    a = load_checkpoint(tmp_path / "eager" / "checkpoint.pth")["model"]
    b = load_checkpoint(tmp_path / "compiled" / "checkpoint.pth")["model"]
    assert list(a) == list(b)  # no "_orig_mod." prefix in the checkpoint
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6, msg=key)
    assert compiled.sops.totals["acs"] == eager.sops.totals["acs"]


def test_compiled_training_to_a_cost_target_measures_eagerly_and_compiles_one_graph(data_root, tmp_path, monkeypatch):
    """--compile with --target-sops: the steps whose forward the cost meter measures run eagerly
    (dynamo traced the counter's hooks: graph breaks at every layer, and inductor failed on them);
    the others run compiled: one graph while the thresholds move, and one more for the fixed mask
    after the window. The oracle is the eager run: its costs, λ and weights. The window (epochs
    1-2 of 4) leaves unmeasured steps before and after it."""
    target = dict(final_threshold=None, target_sops=1.5e4, epochs=4, prune_start_epoch=1, prune_end_epoch=3)
    eager = train(tiny(data_root, tmp_path / "eager", **target))
    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counter))
    compiled = train(tiny(data_root, tmp_path / "compiled", compile=True, **target))
    assert counter.frame_count == 2
    a = load_checkpoint(tmp_path / "eager" / "checkpoint.pth")
    b = load_checkpoint(tmp_path / "compiled" / "checkpoint.pth")
    assert b["pruner"]["costs"]["estimate"]["samples"] == a["pruner"]["costs"]["estimate"]["samples"] > 0
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-6, msg=key)
    assert compiled.sops.totals["acs"] == eager.sops.totals["acs"]


# ------------------------------------------------------------------------------------------ sync-bn


def test_sync_bn_under_torchrun_with_gloo_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={free_port()}",
         "-m", "snn_lats", "train", "--dataset", "digits", "--image-size", "8", "--width", "4", "--T", "2",
         "-j", "0", "--epochs", "1", "--device", "cpu", "--sync-bn", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode != 0
    assert "snn-lats train: error: --sync-bn synchronises BatchNorm between CUDA processes" in result.stderr
    assert "2 processes run on the CPU (gloo)" in result.stderr
    assert not out.exists()
