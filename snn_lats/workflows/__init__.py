"""Workflows on finished runs: runs compared side by side (:mod:`.compare`), a checkpoint exported
as its plain pruned network (:mod:`.export`), and the synaptic operations of a checkpoint or a
network counted (:mod:`.sops`). They read what training wrote (checkpoints, ``summary.json``)
through the engine's one way from a checkpoint to its model and data."""

from snn_lats import _torchvision  # noqa: F401  (first: torchvision, and spikingjelly, which imports it)
from snn_lats.workflows.compare import compare
from snn_lats.workflows.export import FORMATS, export_checkpoint, load_exported
from snn_lats.workflows.sops import sops_of_checkpoint, sops_of_network

__all__ = ["FORMATS", "compare", "export_checkpoint", "load_exported", "sops_of_checkpoint", "sops_of_network"]
