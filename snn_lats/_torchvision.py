"""The one place that imports torchvision.

Every module of snn_lats that needs torchvision does ``from snn_lats._torchvision import
torchvision`` (or imports names from here) and never ``import torchvision`` directly.

Why: PyPI's torchvision wheels are CUDA builds. Next to a CPU-only torch their C++ extension
(``torchvision/_C.so``) fails to load, which torchvision tolerates, but
``torchvision/_meta_registrations.py`` then calls ``torch.library.register_fake`` for
``torchvision::nms`` and ``torchvision::qnms`` unconditionally, and that raises
``RuntimeError: operator torchvision::nms does not exist``. The import dies although models,
transforms, ``datasets.ImageFolder`` and PIL decoding never touch those operators.

The fix: if, and only if, the first import fails with exactly that error, declare the schemas
of the two operators (no kernels) so the fake registrations succeed, and import again. Calling
``torchvision.ops.nms`` afterwards still fails loudly ("no kernel registered"), which is right:
snn_lats never uses the C operators (nor ``torchvision.io.decode_jpeg``).
"""

from __future__ import annotations

import importlib
import sys

import torch

_OPERATOR_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

#: True when torchvision's C extension is missing and the schemas above were declared here.
C_OPS_MISSING = False
_library = None  # keeps the torch.library.Library alive for the process lifetime


def _import_torchvision():
    global C_OPS_MISSING, _library
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _OPERATOR_SCHEMAS:
            _library.define(schema)
        C_OPS_MISSING = True
        import torchvision
    return torchvision


torchvision = _import_torchvision()
datasets = torchvision.datasets
models = torchvision.models
transforms = torchvision.transforms
transforms_v2 = importlib.import_module("torchvision.transforms.v2")  # not imported by torchvision's own (20 ms)

__all__ = ["torchvision", "datasets", "models", "transforms", "transforms_v2", "C_OPS_MISSING"]
