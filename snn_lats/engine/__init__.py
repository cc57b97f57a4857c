"""The training engine: data, recipes, checkpoints, distributed set-up and the training loop.

Public entry points used by the command line (and by other subcommands):

- :func:`build_datasets`, :func:`build_loaders`: data sets and (distributed) loaders;
- :class:`TrainConfig`, :func:`resolve_config`, :func:`load_recipe`: the configuration of a run;
- :func:`save_checkpoint`, :func:`load_checkpoint`: the one checkpoint format;
- :func:`init_distributed`: torchrun set-up.
"""

from snn_lats.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from snn_lats.engine.data import Batch, DataError, build_datasets, build_loaders, set_epoch
from snn_lats.engine.distributed import DistributedContext, init_distributed
from snn_lats.engine.recipe import RecipeError, TrainConfig, load_recipe, resolve_config

__all__ = [
    "Batch", "CheckpointError", "DataError", "DistributedContext", "RecipeError", "TrainConfig",
    "build_datasets", "build_loaders", "init_distributed", "load_checkpoint", "load_recipe",
    "resolve_config", "save_checkpoint", "set_epoch",
]
