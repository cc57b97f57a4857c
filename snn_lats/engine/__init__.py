"""The training engine: recipes, the training loop, evaluation, checkpoints, distributed set-up.

Public entry points (used by the command line and by the workflows on finished runs):

- :class:`TrainConfig`, :func:`resolve_config`, :func:`load_recipe`: the configuration of a run;
- :class:`CheckpointSaver`, :func:`save_checkpoint`, :func:`load_checkpoint`: the one checkpoint format;
- :func:`build_model`, :func:`build_model_from_checkpoint`: networks from a configuration or a checkpoint;
- :func:`train`, :func:`evaluate`, :func:`evaluate_checkpoint`, :func:`count_sops`: the commands' work;
- :class:`RunSummary`: what a run or an evaluation found (``summary.json``);
- :func:`init_distributed`: torchrun set-up.

Data sets and loaders are :mod:`snn_lats.data`'s; comparing, exporting and counting finished runs
is :mod:`snn_lats.workflows`'.
"""

from typing import TYPE_CHECKING

from snn_lats import _lazy

# The exports, imported from their submodule on first use (snn_lats._lazy says why).
if TYPE_CHECKING:
    from snn_lats.engine.checkpoint import CheckpointError, CheckpointSaver, load_checkpoint, save_checkpoint
    from snn_lats.engine.distributed import DistributedContext, init_distributed
    from snn_lats.engine.evaluation import count_sops, evaluate, evaluate_checkpoint
    from snn_lats.engine.model import build_model, build_model_from_checkpoint
    from snn_lats.engine.recipe import RecipeError, TrainConfig, load_recipe, resolve_config
    from snn_lats.engine.signals import TrainingInterrupted
    from snn_lats.engine.summary import RunSummary
    from snn_lats.engine.trainer import NonFiniteLossError, train

__all__, __getattr__, __dir__ = _lazy.attach(__name__)
