"""snn-lats: soft-threshold pruning (LATS) for sparse spiking and artificial neural networks.

Subpackages follow the data flow, each using only those before it:

- :mod:`snn_lats.networks`: SEW ResNets on SpikingJelly's multi-step neurons, and ANNs as T = 1;
- :mod:`snn_lats.pruning`: the soft-threshold reparameterisation and its threshold schedulers;
- :mod:`snn_lats.estimators`: firing rates, mask-aware synaptic operations, energy;
- :mod:`snn_lats.engine`: data, training loop, evaluation, checkpoints, distributed set-up;
- :mod:`snn_lats.cli`: the ``snn-lats`` command.

Importing ``snn_lats`` itself is light (``snn-lats --help`` and ``--version`` answer without
torch). Importing any of its subpackages makes ``import torchvision`` work next to a CPU-only
torch, whose PyPI torchvision build otherwise fails to import (see :mod:`snn_lats._torchvision`).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("snn-lats")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
