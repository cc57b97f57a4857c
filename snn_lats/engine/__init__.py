"""The training engine: data, recipes, checkpoints, distributed set-up, the training loop, evaluation.

Public entry points (used by the command line and by other subcommands):

- :func:`build_datasets`, :func:`build_loaders`, :func:`set_epoch`: data sets and (distributed) loaders;
- :class:`TrainConfig`, :func:`resolve_config`, :func:`load_recipe`: the configuration of a run;
- :class:`CheckpointSaver`, :func:`save_checkpoint`, :func:`load_checkpoint`: the one checkpoint format;
- :func:`build_model`, :func:`build_model_from_checkpoint`: networks from a configuration or a checkpoint;
- :func:`train`, :func:`evaluate`, :func:`evaluate_checkpoint`, :func:`count_sops`: the commands' work;
- :class:`RunSummary`: what a run or an evaluation found (``summary.json``); :func:`compare`;
- :func:`export_checkpoint`, :func:`load_exported`: the plain pruned network;
- :func:`init_distributed`: torchrun set-up.
"""

from snn_lats.engine.checkpoint import CheckpointError, CheckpointSaver, load_checkpoint, save_checkpoint
from snn_lats.engine.compare import compare
from snn_lats.engine.data import Batch, DataError, build_datasets, build_loaders, set_epoch
from snn_lats.engine.distributed import DistributedContext, init_distributed
from snn_lats.engine.evaluation import count_sops, evaluate, evaluate_checkpoint
from snn_lats.engine.export import export_checkpoint, load_exported
from snn_lats.engine.model import build_model, build_model_from_checkpoint
from snn_lats.engine.recipe import RecipeError, TrainConfig, load_recipe, resolve_config
from snn_lats.engine.summary import RunSummary
from snn_lats.engine.trainer import NonFiniteLossError, TrainingInterrupted, train

__all__ = [
    "Batch",
    "CheckpointError",
    "CheckpointSaver",
    "DataError",
    "DistributedContext",
    "NonFiniteLossError",
    "RecipeError",
    "RunSummary",
    "TrainConfig",
    "TrainingInterrupted",
    "build_datasets",
    "build_loaders",
    "build_model",
    "build_model_from_checkpoint",
    "compare",
    "count_sops",
    "evaluate",
    "evaluate_checkpoint",
    "export_checkpoint",
    "init_distributed",
    "load_checkpoint",
    "load_exported",
    "load_recipe",
    "resolve_config",
    "save_checkpoint",
    "set_epoch",
    "train",
]
