"""The pruner's state across versions: what older checkpoints hold, in today's layout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snn_lats.pruning.pruner import SoftThresholdPruner

__all__ = ["STATE_VERSION", "upgrade_state"]

# 4: the controller's anchors per layer, and the cost meter's window under "costs"; 3 (read too)
# had the anchors per param group; 2 (read too) had them flat
STATE_VERSION = 4
# the flat version-2 keys that are the controller's state now
_V2_CONTROLLER_KEYS = ("l1", "anchor_threshold", "anchor_lr_sum", "drift_origin")


def upgrade_state(state: Mapping[str, Any], pruner: SoftThresholdPruner) -> Mapping[str, Any]:
    """An older state of ``pruner``'s in the version-4 layout. Version 2 kept λ, the anchors and
    the drift origin flat, for every schedule: they become the controller's state; without
    target_sparsity they are dropped (λ follows from the constructor's arguments). Version 3
    anchored the threshold of every param group ``g``, and layer ``l``'s was ``layer_scale_l``
    times it: that is the layer anchor ``layer_scale_l·anchor_g`` with ``c_l = layer_scale_l``."""
    version = state.get("version")
    if version not in (2, 3):
        return state
    state = dict(state)
    controller = pruner._controller
    if version == 2:
        flat = {key: state.pop(key) for key in _V2_CONTROLLER_KEYS}
        state["controller"] = None if controller is None else flat
    old = state["controller"]
    if old is not None and controller is not None and controller.measure != "sparsity":
        raise ValueError(
            f"a version-{version} state is a target-sparsity pruner's; this pruner runs {controller.describe()}"
        )
    if old is not None and controller is not None:
        anchor, lr_sum = old["anchor_threshold"], old["anchor_lr_sum"]
        if len(anchor) != len(pruner._lr_sum):
            raise ValueError("state was saved with a different number of optimizer param groups")
        group, ref, scale = pruner._group_of, pruner._ref_group, pruner._scale
        state["controller"] = {
            "measure": "sparsity",
            "target": pruner.target_sparsity,
            "l1": old["l1"],
            "anchor": {name: scale[name] * anchor[group[name]] for name in pruner.layers},
            "anchor_lr_sum": {name: lr_sum[group[name]] for name in pruner.layers},
            "factor": dict(scale),
            "global_anchor": anchor[ref],
            "global_anchor_lr_sum": lr_sum[ref],
            "drift_origin": old["drift_origin"],
        }
    state["costs"] = None
    state["version"] = STATE_VERSION
    return state
