"""The resolved training configuration, and recipes (``models/*.yaml``) that supply its defaults.

Precedence, lowest first: the defaults of :class:`TrainConfig`, then the recipe, then the flags
given explicitly on the command line. Field names are the ``dest`` names of the ``snn-lats train``
flags (``--batch-size`` is ``batch_size``, ``--wd`` is ``weight_decay``); a recipe may spell them
with ``-`` or ``_``. A key that is not a field is an error, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

PRUNE_MODES = ("lats", "slats", "pgh", "stds-sine", "stds-linear", "constant", "learnable", "none")
LR_SCHEDULERS = ("cosine", "step")
GRADIENTS = ("straight-through", "exact")


class RecipeError(ValueError):
    """A recipe file or a configuration that cannot be used."""


@dataclass
class TrainConfig:
    """Everything that defines a training run. Saved as ``config.yaml``/``config.json`` in the run
    directory and inside every checkpoint."""

    # data
    dataset: str = "imagefolder"  # imagefolder | digits
    data_path: str | None = None
    image_size: int = 32  # digits only
    train_crop_size: int = 224
    val_resize_size: int = 256
    val_crop_size: int = 224
    bad_images: str = "skip"  # skip (warn and count) | fail
    augment: bool = True  # random crops (and flips, for image folders) of the training images
    workers: int = 4
    # network
    model: str = "sew_resnet18"
    T: int | None = None  # time steps; None: the network's default
    neuron: str | None = None
    cnf: str | None = None
    backend: str | None = None
    width: int | None = None  # ResNets: channels of the first stage (64 is the published network)
    width_mult: float | None = None  # MobileNet-V1: the paper's alpha
    stem: str | None = None  # imagenet | cifar (for small images)
    # optimisation
    batch_size: int = 32  # per process
    epochs: int = 90
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4  # on theta (the latent weights) and every non-norm parameter
    norm_weight_decay: float | None = None  # None: same as weight_decay
    label_smoothing: float = 0.0
    lr_scheduler: str = "cosine"
    lr_warmup_epochs: int = 0
    lr_warmup_decay: float = 0.01
    lr_step_size: int = 30
    lr_gamma: float = 0.1
    lr_min: float = 0.0
    amp: bool = False
    channels_last: bool = False
    sync_bn: bool = False
    # pruning
    prune: str = "none"
    l1: float | None = None
    final_threshold: float | None = None
    target_sparsity: float | None = None  # lats only: lambda chosen to end at this sparsity
    beta: float | None = None  # pgh only
    prune_start_epoch: int = 0
    prune_end_epoch: int | None = None  # None: the last epoch
    dense_first_last: bool = False
    gradient: str = "straight-through"
    # run
    output_dir: str = "runs/train"
    resume: str | None = None
    test_only: bool = False
    print_freq: int = 10
    seed: int = 0
    device: str = "auto"
    sops_batches: int = 4  # validation batches counted for the final SOP report; 0: none
    recipe: str | None = None

    def __post_init__(self) -> None:
        # Types are checked here (not only in argparse) because recipes and the Python API bypass
        # argparse. YAML reads "1e-4" as a string, so numeric strings are accepted for floats.
        for f in fields(self):
            value = getattr(self, f.name)
            base = f.type.replace(" | None", "")
            if value is None:
                if "None" not in f.type:
                    raise RecipeError(f"{f.name} must not be empty (null)")
                continue
            if base == "float" and isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise RecipeError(f"{f.name} must be a number; got {value!r}") from None
            if base == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            expected = {"int": int, "float": float, "bool": bool, "str": str}[base]
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise RecipeError(f"{f.name} must be of type {base}; got {value!r}")
            setattr(self, f.name, value)

    def validate(self) -> "TrainConfig":
        """Raise :class:`RecipeError` naming the first bad field; return ``self``."""

        def choice(name: str, allowed: tuple) -> None:
            if getattr(self, name) not in allowed:
                raise RecipeError(f"{name} must be one of {', '.join(map(str, allowed))}; got {getattr(self, name)!r}")

        def at_least(name: str, low: float, *, optional: bool = False) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= low:
                raise RecipeError(f"{name} must be a number >= {low}; got {value!r}")

        choice("dataset", ("imagefolder", "digits"))
        choice("bad_images", ("skip", "fail"))
        choice("lr_scheduler", LR_SCHEDULERS)
        choice("prune", PRUNE_MODES)
        choice("gradient", GRADIENTS)
        choice("device", ("auto", "cpu", "cuda"))
        for name in (
            "batch_size",
            "epochs",
            "print_freq",
            "image_size",
            "train_crop_size",
            "val_resize_size",
            "val_crop_size",
            "lr_step_size",
        ):
            at_least(name, 1)
        if not self.lr > 0:
            raise RecipeError(f"lr must be > 0; got {self.lr!r}")
        for name in (
            "workers",
            "lr",
            "momentum",
            "weight_decay",
            "label_smoothing",
            "lr_warmup_epochs",
            "lr_min",
            "prune_start_epoch",
            "sops_batches",
            "lr_gamma",
        ):
            at_least(name, 0)
        at_least("norm_weight_decay", 0, optional=True)
        at_least("T", 1, optional=True)
        at_least("width", 1, optional=True)
        if not 0 < self.lr_warmup_decay <= 1:
            raise RecipeError(f"lr_warmup_decay must be in (0, 1]; got {self.lr_warmup_decay!r}")
        if self.lr_warmup_epochs >= self.epochs and self.lr_warmup_epochs > 0:
            raise RecipeError(f"lr_warmup_epochs ({self.lr_warmup_epochs}) must be < epochs ({self.epochs})")
        if self.label_smoothing >= 1:
            raise RecipeError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.dataset == "imagefolder" and not self.data_path:
            raise RecipeError("data_path (--data-path) is required for dataset 'imagefolder'")

        pruning = self.prune != "none"
        strengths = [name for name in STRENGTH_FIELDS if getattr(self, name) is not None]
        if len(strengths) > 1:
            raise RecipeError(
                f"give one of l1 (--l1), final_threshold (--final-threshold) or target_sparsity "
                f"(--target-sparsity), not {' and '.join(strengths)}: each determines the others"
            )
        if not pruning and (strengths or self.beta is not None):
            raise RecipeError(
                "l1, final_threshold, target_sparsity and beta need a pruning mode (--prune ...); prune is 'none'"
            )
        if pruning and self.prune != "learnable" and not strengths:
            raise RecipeError(f"prune={self.prune!r} needs --l1, --final-threshold or --target-sparsity")
        if self.prune == "learnable" and strengths:
            raise RecipeError(f"prune='learnable' learns its thresholds (STR); drop {', '.join(strengths)}")
        if self.target_sparsity is not None:
            if self.prune != "lats":
                raise RecipeError(
                    f"target_sparsity (--target-sparsity) drives prune='lats' only; prune is {self.prune!r}"
                )
            value = self.target_sparsity
            if not (isinstance(value, (int, float)) and 0 < value < 1):
                raise RecipeError(f"target_sparsity must be a fraction in (0, 1), e.g. 0.9; got {value!r}")
        if self.prune in ("slats", "stds-sine", "stds-linear", "constant") and self.l1 is not None:
            raise RecipeError(
                f"prune={self.prune!r} is set by final_threshold (--final-threshold), not l1; "
                "l1 applies to 'lats' and 'pgh'"
            )
        for name in ("l1", "final_threshold"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise RecipeError(f"{name} must be a finite number > 0; got {value!r}")
        if self.prune == "pgh" and self.beta is None:
            raise RecipeError("prune='pgh' needs --beta > 0 (1 is LATS, < 1 prunes early)")
        if self.beta is not None:
            if self.prune != "pgh":
                raise RecipeError(f"beta (--beta) applies to prune='pgh' only; prune is {self.prune!r}")
            if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta > 0):
                raise RecipeError(f"beta must be a finite number > 0 (1 is LATS, < 1 prunes early); got {self.beta!r}")
        if self.prune in ("constant", "learnable") and (
            self.prune_start_epoch != 0 or self.prune_end_epoch is not None
        ):
            raise RecipeError(f"prune={self.prune!r} has no pruning window: drop prune_start_epoch/prune_end_epoch")
        end = self.epochs if self.prune_end_epoch is None else self.prune_end_epoch
        if pruning and not self.prune_start_epoch < end <= self.epochs:
            raise RecipeError(
                f"need prune_start_epoch < prune_end_epoch <= epochs; got "
                f"{self.prune_start_epoch}, {end}, {self.epochs}"
            )
        if self.test_only and not self.resume:
            raise RecipeError("test_only (--test-only) needs a checkpoint to evaluate (--resume PATH)")
        return self

    @property
    def pruning_end_epoch(self) -> int:
        return self.epochs if self.prune_end_epoch is None else self.prune_end_epoch

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "configuration") -> "TrainConfig":
        return cls(**_check_keys(values, source))


#: Alternative ways to set the pruning strength: one given explicitly replaces a recipe's other.
STRENGTH_FIELDS = ("l1", "final_threshold", "target_sparsity")
_PRUNING_FIELDS = (*STRENGTH_FIELDS, "beta", "prune_start_epoch", "prune_end_epoch")
FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
#: Model-shaping fields: a checkpoint can only be loaded into a network built with the same ones.
ARCHITECTURE_FIELDS = ("model", "T", "neuron", "cnf", "width", "width_mult", "stem")


def _check_keys(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    normalised = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = [k for k in normalised if k not in FIELD_NAMES]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, FIELD_NAMES, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise RecipeError(f"unknown key(s) in {source}: {', '.join(hints)}")
    return normalised


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """The ``{field: value}`` mapping of a YAML recipe, keys checked against :class:`TrainConfig`."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {str(path)!r} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RecipeError(f"recipe {str(path)!r} is not valid YAML: {error}") from error
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"recipe {str(path)!r} must be a mapping of flag names to values")
    values = _check_keys(values, f"recipe {str(path)!r}")
    values.pop("recipe", None)
    return values


def resolve_config(
    explicit: Mapping[str, Any], recipe: str | os.PathLike | None = None, base: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Defaults, overridden by ``base`` (a resumed checkpoint's configuration), by the recipe, then
    by ``explicit`` (the flags actually given: ``None`` values count as "not given").
    """
    values: dict[str, Any] = {}
    if base is not None:
        values.update(
            {
                k: v
                for k, v in _check_keys(base, "the checkpoint's configuration").items()
                if k not in ("resume", "test_only")
            }
        )
    if recipe is not None:
        values.update(load_recipe(recipe))
        values["recipe"] = str(recipe)
    given = {k: v for k, v in _check_keys(explicit, "flags").items() if v is not None}
    if given.get("prune") == "none":
        # "--prune none" over a pruning recipe (its unpruned baseline) drops the recipe's pruning settings.
        for key in _PRUNING_FIELDS:
            values.pop(key, None)
    if any(key in given for key in STRENGTH_FIELDS):
        # "--target-sparsity 0.95" over a recipe that sets final_threshold replaces it.
        for key in STRENGTH_FIELDS:
            values.pop(key, None)
    values.update(given)
    try:
        config = TrainConfig(**values)
    except TypeError as error:
        raise RecipeError(str(error)) from error
    return config.validate()
