"""SyncBatchNorm for multi-step networks: the converted network normalises exactly as SpikingJelly's
multi-step BatchNorm does (T folded into the batch).

Oracle: the unconverted network (SpikingJelly's ``layer.BatchNorm2d(step_mode="m")``), on the CPU
in one process, where ``nn.SyncBatchNorm`` has no process group and normalises with the local batch
statistics; and on a GPU across two real processes (gloo over CUDA tensors), against the
unconverted layer run on both processes' batches at once.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import free_port
from spikingjelly.activation_based import layer
from torch import nn

from snn_lats import networks
from snn_lats.engine.distributed import cleanup_distributed
from snn_lats.networks import SyncBatchNorm, convert_sync_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


def sew(**kwargs):
    torch.manual_seed(0)
    return networks.sew_resnet18(width=8, T=3, num_classes=5, stem="cifar", backend="torch", **kwargs)


def batchnorms(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def test_torchs_own_conversion_breaks_a_multi_step_network():
    """The defect this module exists for: T read as the batch, N as the channels."""
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(sew()))
    with pytest.raises(RuntimeError, match="running_mean should contain"):
        converted(torch.rand(4, 3, 16, 16))


def test_every_batchnorm_is_converted_keeping_its_step_mode_parameters_and_keys():
    model = sew()
    before = batchnorms(model)
    params = {n: (m.weight, m.bias, m.running_mean) for n, m in before.items()}
    keys = list(model.state_dict())
    converted = convert_sync_batchnorm(model)
    after = batchnorms(converted)
    assert set(after) == set(before) and len(after) == 20
    for name, m in after.items():
        assert type(m) is SyncBatchNorm and m.step_mode == "m" == before[name].step_mode
        assert (m.weight, m.bias, m.running_mean) == params[name]  # the same objects
    assert list(converted.state_dict()) == keys
    # A plain (single-step) BatchNorm becomes a single-step SyncBatchNorm, the root one too.
    plain = convert_sync_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    assert type(plain[1]) is SyncBatchNorm and plain[1].step_mode == "s"
    assert type(convert_sync_batchnorm(layer.BatchNorm2d(4, step_mode="m"))) is SyncBatchNorm


def test_converted_network_equals_the_unconverted_one_outputs_gradients_and_running_statistics():
    reference = sew()
    converted = convert_sync_batchnorm(copy.deepcopy(reference))
    assert not dist.is_initialized()  # no process group: SyncBatchNorm uses the local batch statistics
    x, target = torch.rand(4, 3, 16, 16), torch.randint(0, 5, (4,))
    outputs = []
    for model in (reference, converted):
        model.train()
        outputs.append(model(x))
        nn.functional.cross_entropy(outputs[-1], target).backward()
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    second = torch.rand(4, 3, 16, 16)
    for model in (reference, converted):  # a second batch: running statistics feed eval mode
        with torch.no_grad():
            model(second)
    ref_params = dict(reference.named_parameters())
    for name, p in converted.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=1e-5, atol=1e-6, msg=name)
    ref_state = reference.state_dict()
    for key, value in converted.state_dict().items():
        torch.testing.assert_close(value, ref_state[key], rtol=1e-6, atol=1e-7, msg=key)
    assert converted.layer1[0].bn1.num_batches_tracked == 2
    reference.eval()
    converted.eval()
    sequence = torch.rand(3, 4, 3, 16, 16)  # [T, N, C, H, W] input too
    with torch.no_grad():
        for inputs in (x, sequence):
            torch.testing.assert_close(converted(inputs), reference(inputs), rtol=1e-5, atol=1e-6)


def test_inside_a_process_group_cpu_training_is_refused_by_torch_and_eval_still_runs(tmp_path):
    """Why ``--sync-bn`` is refused on CPU processes: inside any process group, even of one
    process, nn.SyncBatchNorm refuses CPU tensors in training; eval mode uses running statistics."""
    reference = sew().eval()
    converted = convert_sync_batchnorm(copy.deepcopy(reference))
    x = torch.rand(4, 3, 16, 16)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with torch.no_grad():
            torch.testing.assert_close(converted(x), reference(x), rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="SyncBatchNorm expected input tensor to be on GPU"):
            converted.train()(x)
    finally:
        cleanup_distributed(synchronize=True)  # the barrier first: without it this can hang (see there)


def test_one_layer_normalises_over_time_and_batch_as_a_closed_form():
    bn = SyncBatchNorm(2, step_mode="m", momentum=None)
    x = torch.randn(3, 4, 2, 5, 5) * 2 + 1
    y = bn(x)
    mean = x.mean(dim=(0, 1, 3, 4), keepdim=True)
    var = x.var(dim=(0, 1, 3, 4), unbiased=False, keepdim=True)
    torch.testing.assert_close(y, (x - mean) / torch.sqrt(var + bn.eps), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, x.var(dim=(0, 1, 3, 4), unbiased=True), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[T, N, C, \.\.\.\]"):
        bn(torch.randn(4, 2))


def test_a_converted_checkpoint_loads_strictly_into_the_unconverted_network_and_back():
    trained = convert_sync_batchnorm(sew())
    with torch.no_grad():
        trained(torch.rand(4, 3, 16, 16))  # running statistics move
    plain = sew()
    plain.load_state_dict(trained.state_dict(), strict=True)
    for key, value in plain.state_dict().items():
        assert torch.equal(value, trained.state_dict()[key]), key
    again = convert_sync_batchnorm(sew())
    again.load_state_dict(plain.state_dict(), strict=True)


# ---------------------------------------------------------------- GPU: two real processes

TWO_RANKS = """
import json, sys, torch, torch.distributed as dist
from snn_lats import networks
from snn_lats.networks import convert_sync_batchnorm

dist.init_process_group("gloo")  # gloo gathers CUDA tensors too: two ranks on one GPU
rank = dist.get_rank()
torch.manual_seed(0)
model = convert_sync_batchnorm(networks.sew_resnet18(width=8, T=3, num_classes=5, stem="cifar", backend="torch"))
model = model.cuda().train()
x = torch.load(sys.argv[1])[:, rank * 4 : (rank + 1) * 4].cuda().requires_grad_()
out = model(x)
weights = torch.load(sys.argv[2]).cuda()[rank * 4 : (rank + 1) * 4]
(out * weights).sum().backward()
torch.save({"out": out.cpu(), "x_grad": x.grad.cpu(),
            "grads": {n: p.grad.cpu() for n, p in model.named_parameters()},
            "state": {k: v.cpu() for k, v in model.state_dict().items()}}, sys.argv[3] + f".{rank}")
dist.destroy_process_group()
"""


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_two_processes_normalise_as_one_layer_over_both_batches(tmp_path):
    """Statistics gathered over 2 ranks x [T, 4, ...] equal one multi-step BN over [T, 8, ...]:
    same outputs, input gradients and running statistics; the ranks' weight gradients sum to the
    one-process gradient (SyncBatchNorm reduces the input-gradient terms, DDP would average the rest)."""
    torch.manual_seed(1)
    x, weights = torch.rand(3, 8, 3, 16, 16), torch.randn(8, 5)
    torch.save(x, tmp_path / "x.pt")
    torch.save(weights, tmp_path / "w.pt")
    script = tmp_path / "two_ranks.py"
    script.write_text(textwrap.dedent(TWO_RANKS))
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # keep a --target install
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # both ranks on this machine: loopback, whatever the hostname says
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={free_port()}",
         str(script), str(tmp_path / "x.pt"), str(tmp_path / "w.pt"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"out.{r}") for r in range(2)]

    reference = sew().cuda().train()  # unconverted, both ranks' images in one batch
    xr = x.cuda().requires_grad_()
    out = reference(xr)
    (out * weights.cuda()).sum().backward()
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), out.cpu(), rtol=1e-4, atol=1e-5)
    x_grad = torch.cat([r["x_grad"] for r in ranks], dim=1)
    torch.testing.assert_close(x_grad, xr.grad.cpu(), rtol=1e-3, atol=1e-5)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(ranks[0]["grads"][name] + ranks[1]["grads"][name], p.grad.cpu(),
                                   rtol=1e-3, atol=1e-5, msg=name)  # fmt: skip
    for key, value in reference.state_dict().items():
        for r in ranks:
            torch.testing.assert_close(r["state"][key], value.cpu(), rtol=1e-4, atol=1e-6, msg=key)
