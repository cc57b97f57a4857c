"""Workflows on finished runs: runs compared side by side (:mod:`.compare`), a checkpoint exported
as its plain pruned network (:mod:`.export`), and the synaptic operations of a checkpoint or a
network counted (:mod:`.sops`). They read what training wrote (checkpoints, ``summary.json``)
through the engine's one way from a checkpoint to its model and data."""

from typing import TYPE_CHECKING

from snn_lats import _lazy

# The exports, imported from their submodule on first use (snn_lats._lazy says why).
if TYPE_CHECKING:
    from snn_lats.workflows.export import export_checkpoint, load_exported
    from snn_lats.workflows.sops import sops_of_checkpoint, sops_of_network

__all__, __getattr__, __dir__ = _lazy.attach(__name__)
