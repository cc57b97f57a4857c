"""BatchNorm statistics that match the pruned weights.

A BatchNorm's running statistics are an average over the training steps, taken while the weights
before it moved. Soft thresholds that grow every step (and a target's final correction, which moves
every threshold at once) leave them describing weights the layer no longer has: validation
accuracy then falls far below training accuracy until the thresholds stop. Recomputing them on
training batches, with the weights as they are, removes that lag; pruned-network papers call it
BatchNorm recalibration (e.g. EagleEye, Li et al., ECCV 2020, "adaptive BN").
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from snn_lats._spikingjelly import functional as sj_functional

__all__ = ["batchnorm_layers", "recalibrate_batchnorm"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm (1d/2d/3d, SyncBatchNorm, SpikingJelly's multi-step ones) that tracks running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs: Iterable[torch.Tensor]) -> int:
    """Recompute the running statistics of every BatchNorm of ``model`` from ``inputs`` (batches of
    training images, as the model takes them); return the number of batches.

    The statistics are reset, then every batch runs forward in training mode without gradient
    (neuron states reset before each), with ``momentum=None``: BatchNorm's cumulative mode, so the
    running mean and variance become the plain averages of the batches' means and unbiased
    variances. Under ``torch.distributed`` the averages of every process are averaged (each must
    see as many batches). The model's mode and the momenta are restored. Give the model itself,
    not a ``DistributedDataParallel`` wrapper (whose forward would broadcast rank 0's buffers).
    ValueError when ``inputs`` is empty.
    """
    norms = batchnorm_layers(model)
    if not norms:
        return 0
    momenta = [bn.momentum for bn in norms]
    training = model.training
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    batches = 0
    try:
        for x in inputs:
            sj_functional.reset_net(model)
            model(x)
            batches += 1
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        model.train(training)
        sj_functional.reset_net(model)
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    fewest = batches
    if distributed:  # every process decides alike, so none waits in the averaging below alone
        count = torch.tensor([batches], dtype=torch.float64, device=norms[0].running_mean.device)
        dist.all_reduce(count, op=dist.ReduceOp.MIN)
        fewest = int(count.item())
    if fewest == 0:
        raise ValueError("no batch to recompute the BatchNorm statistics on")
    if distributed:
        for bn in norms:
            for stat in (bn.running_mean, bn.running_var):
                dist.all_reduce(stat)
                stat.div_(dist.get_world_size())
    return batches
