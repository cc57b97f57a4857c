"""snn-lats: soft-threshold pruning (LATS) for sparse spiking and artificial neural networks.

Subpackages, each using only those listed before it (docs/architecture.md draws the graph):

- :mod:`snn_lats.networks`: SEW ResNets on SpikingJelly's multi-step neurons, and ANNs as T = 1;
- :mod:`snn_lats.estimators`: firing rates, mask-aware synaptic operations, energy;
- :mod:`snn_lats.pruning`: the soft-threshold reparameterisation, its schedules, the
  :class:`~snn_lats.pruning.PruningSpec` and the controllers of the targets;
- :mod:`snn_lats.data`: the data sets, read from their own files, and resumable loaders;
- :mod:`snn_lats.engine`: the training loop, evaluation, checkpoints, distributed set-up;
- :mod:`snn_lats.deploy`, :mod:`snn_lats.workflows`: export, comparison and counting of runs;
- :mod:`snn_lats.cli`: the ``snn-lats`` command.

Importing ``snn_lats`` or a subpackage imports no torch: each name is imported from its
submodule when first used (:mod:`snn_lats._lazy`), so ``snn-lats train --help`` answers without
torch. ``import snn_lats._torchvision`` makes ``import torchvision`` work next to a CPU-only
torch, whose PyPI torchvision build otherwise fails to import; every module here that needs
torchvision or SpikingJelly imports it first.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("snn-lats")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
