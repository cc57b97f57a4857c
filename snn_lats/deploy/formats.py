"""The export formats and the files each writes, and NIR's time step: importable without torch,
so that ``snn-lats export --help`` lists them."""

__all__ = ["DEFAULT_DT", "FORMATS"]

#: The formats of :func:`~snn_lats.workflows.export.export_checkpoint` and the files each writes.
FORMATS: dict[str, tuple[str, ...]] = {
    "dense": ("model.safetensors", "model.pth"),
    "sparse": ("model.sparse.safetensors",),
    "nir": ("model.nir",),
}
#: Seconds per time step of the exported graph, the value SpikingJelly's and snnTorch's NIR code assume.
DEFAULT_DT = 1e-4
