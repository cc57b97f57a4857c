"""Deployment formats of a trained network: NIR graphs and compressed sparse state dicts.

These act on a model in memory, like the estimators, and know nothing of checkpoints;
``snn_lats.workflows.export`` applies them to a checkpoint for ``snn-lats export``.

- :func:`fold_batchnorm`: the eval-mode conv+BN as one convolution (exact in real arithmetic);
- :func:`to_nir`: a SEW ResNet as a ``nir.NIRGraph``, or :class:`NIRExportError` naming the module
  NIR cannot express and why (needs the optional ``nir`` package: ``pip install 'snn-lats[nir]'``);
- :func:`encode_sparse`, :func:`decode_sparse`, :func:`save_sparse`, :func:`load_sparse`: a state
  dict whose pruned weights are bitmask + values in safetensors, and back to dense tensors;
- :data:`FORMATS`, :data:`DEFAULT_DT` (:mod:`.formats`): the export formats' names, torch-free.
"""

from typing import TYPE_CHECKING

from snn_lats import _lazy

# The exports, imported from their submodule on first use (snn_lats._lazy says why).
if TYPE_CHECKING:
    from snn_lats.deploy.fold import fold_batchnorm
    from snn_lats.deploy.formats import DEFAULT_DT, FORMATS
    from snn_lats.deploy.nir import NIRExportError, to_nir
    from snn_lats.deploy.sparse import decode_sparse, encode_sparse, load_sparse, save_sparse

__all__, __getattr__, __dir__ = _lazy.attach(__name__)
