"""The synaptic operations of a trained checkpoint (with its own thresholds), or of a network
built from a configuration (random weights: the architecture's cost at a given activity), on
the first batches of its validation data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snn_lats.engine.checkpoint import load_checkpoint
from snn_lats.engine.distributed import configure_threads, resolve_device
from snn_lats.engine.evaluation import checkpoint_loader, count_sops
from snn_lats.engine.model import build_model, build_model_from_checkpoint
from snn_lats.engine.recipe import NETWORK_FIELDS, TrainConfig, resolve_config
from snn_lats.estimators import SOPReport

__all__ = ["sops_of_checkpoint", "sops_of_network"]


def sops_of_checkpoint(
    path: str, overrides: Mapping[str, Any], batches: int, convention: str = "exact", **options: bool
) -> SOPReport:
    """Count ``batches`` validation batches of the checkpoint at ``path``; ``overrides``: data
    settings (``TrainConfig`` fields) over the checkpoint's; ``options``: ``extras``, ``functional``."""
    clash = [k for k in NETWORK_FIELDS if k in overrides]
    if clash:
        flags = ", ".join("--" + k.replace("_", "-") for k in clash)
        raise ValueError(f"{flags} cannot be combined with --checkpoint: the network is the checkpoint's")
    checkpoint = load_checkpoint(path)
    config = resolve_config(overrides, base=checkpoint["config"], resuming=False)
    configure_threads(config.threads, config.workers)
    device = resolve_device(config.device)
    loader = checkpoint_loader(checkpoint, config)
    model, _ = build_model_from_checkpoint(checkpoint, device)
    return count_sops(model, loader, batches, device, convention, **options)


def sops_of_network(config: TrainConfig, batches: int, convention: str = "exact", **options: bool) -> SOPReport:
    """Count ``batches`` validation batches of ``config``'s data through ``config``'s network, untrained."""
    from snn_lats.data import build_datasets, build_loaders

    configure_threads(config.threads, config.workers)
    device = resolve_device(config.device)
    _, val_set, num_classes = build_datasets(config, train=False)
    model = build_model(config, num_classes).to(device).eval()
    _, loader = build_loaders(None, val_set, config.batch_size, config.workers, seed=config.seed)
    return count_sops(model, loader, batches, device, convention, **options)
