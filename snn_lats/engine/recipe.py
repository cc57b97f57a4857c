"""The resolved training configuration, and recipes (``models/*.yaml``) that supply its defaults.
(~570 lines, most of them the ~70 field declarations: the one place each flag is declared.)

Precedence, lowest first: the defaults of :class:`TrainConfig`, then the recipe, then the flags
given explicitly on the command line. Field names are the ``dest`` names of the ``snn-lats train``
flags (``--batch-size`` is ``batch_size``, ``--wd`` is ``weight_decay``); a recipe may spell them
with ``-`` or ``_``. A key that is not a field is an error, so a typo never silently falls back
to a default.

Every field is declared once, with :func:`option`: its default, type, help text, flag names,
choices and lower bound. The command line (:mod:`snn_lats.cli._args`) and the checks of
:meth:`TrainConfig.validate` are generated from those declarations.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

# Only torch-free modules: the command line builds its parser from this one (snn_lats._lazy).
from snn_lats.data.catalog import AUTO_AUGMENT, BAD_IMAGE_POLICIES, DATASETS, EVENT_DATASETS, SPLIT_BY
from snn_lats.estimators.energy import ENERGY_PRESETS
from snn_lats.networks import registry as networks
from snn_lats.pruning.schedules import SCHEDULES, schedule_class
from snn_lats.pruning.spec import COST_WEIGHTINGS, GRADIENTS, PruningSpec

__all__ = [
    "AMP_DTYPES",
    "ARCHITECTURE_FIELDS",
    "DEVICES",
    "FIELD_NAMES",
    "LR_SCHEDULERS",
    "NETWORK_FIELDS",
    "OPTIMIZERS",
    "PRUNE_MODES",
    "STRENGTH_FIELDS",
    "RecipeError",
    "TrainConfig",
    "load_recipe",
    "option",
    "resolve_config",
    "upgrade_config",
]

#: ``--prune`` values: the pruner's schedules, or no pruning.
PRUNE_MODES: tuple[str, ...] = (*SCHEDULES, "none")
#: ``--amp-dtype`` values: torch dtype names.
AMP_DTYPES: tuple[str, ...] = ("bfloat16", "float16")
#: ``--opt`` values (torchvision's reference scripts' flag): SGD with momentum, and AdamW
#: (decoupled weight decay, the transformers' recipes).
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
#: ``--lr-scheduler`` values: the per-epoch lr schedules after the warm-up (:func:`~snn_lats.engine.optim.epoch_lrs`).
LR_SCHEDULERS: tuple[str, ...] = ("cosine", "step")
#: ``--device`` values.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class RecipeError(ValueError):
    """A recipe file or a configuration that cannot be used."""


def option(
    default: Any,
    help: str,
    *,
    group: str,
    flags: Sequence[str] = (),
    choices: Sequence[Any] | None = None,
    minimum: float | None = None,
    trajectory: bool = True,
) -> Any:
    """One :class:`TrainConfig` field: its default and everything the CLI and the checks need.

    ``group`` is the CLI's argument group; ``flags`` the option strings (default:
    ``--field-name``); ``choices`` the accepted values; ``minimum`` the lowest accepted number.
    ``trajectory``: whether the field changes what the run computes (lr, batch size, data,
    pruning, seed, ...), so that changing it on resume would change the run; False for what
    only changes how or where it runs (workers, print frequency, output directory, device).
    ``help`` says ``(default: X)`` itself when the default is None; otherwise the CLI appends it.
    """
    metadata = {
        "help": help,
        "group": group,
        "flags": tuple(flags),
        "choices": choices,
        "minimum": minimum,
        "trajectory": trajectory,
    }
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything that defines a training run. Saved as ``config.yaml``/``config.json`` in the run
    directory and inside every checkpoint."""

    # data
    dataset: str = option(
        "imagefolder",
        "imagefolder: --data-path with train/ and val/ class folders (ImageNet layout); mnist, "
        "fashion-mnist: the four IDX files; cifar10, cifar100: the official binary version; dvs128-gesture, "
        "cifar10-dvs, n-mnist: event-camera recordings, integrated into --T frames; digits: scikit-learn's "
        "offline handwritten digits",
        group="data",
        choices=DATASETS,
    )
    data_path: str | None = option(
        None,
        "imagefolder: root holding train/<class>/* and val/<class>/*; mnist, fashion-mnist: the folder of "
        "the IDX files (default for fashion-mnist: /usr/share/datasets/fashion-mnist when it exists); "
        "cifar10/100: cifar-10-binary.tar.gz (or cifar-100-...), or its extracted folder; event data: the "
        "publisher's files, extracted (the frames are cached in .snn-lats-frames/ there)",
        group="data",
        trajectory=False,
    )
    image_size: int | None = option(
        None,
        "digits, mnist, fashion-mnist, cifar10/100: side of the images, resized from their own (default: "
        "32 for the upsampled 8x8 digits, 28 for mnist and fashion-mnist, 32 for cifar); event data: side "
        "of the frames, a divisor of the sensor's (128, or 34 for n-mnist), counts summed over blocks",
        group="data",
        minimum=1,
    )
    split_by: str = option(
        "number",
        "event data: cut each recording into its --T frames by equal event counts (number) or equal durations (time)",
        group="data",
        choices=SPLIT_BY,
    )
    train_crop_size: int = option(224, "", group="data", minimum=1)
    val_resize_size: int = option(256, "", group="data", minimum=1, trajectory=False)
    val_crop_size: int = option(224, "", group="data", minimum=1, trajectory=False)
    bad_images: str = option(
        "skip",
        "an unreadable image: skip it (warn, count in the log) or fail",
        group="data",
        choices=BAD_IMAGE_POLICIES,
        trajectory=False,
    )
    augment: bool = option(
        True, "random crops (and flips for image folders) in training; event data has none", group="data"
    )
    auto_augment: str | None = option(
        None,
        "ra: RandAugment (torchvision.transforms.v2) after the random crop and flip; image folders only",
        group="data",
        choices=AUTO_AUGMENT,
    )
    mixup_alpha: float = option(
        0.0, "MixUp's alpha (torchvision.transforms.v2.MixUp) on training batches; 0: off", group="data", minimum=0
    )
    cutmix_alpha: float = option(
        0.0,
        "CutMix's alpha (torchvision.transforms.v2.CutMix); with --mixup-alpha, one of the two per batch; 0: off",
        group="data",
        minimum=0,
    )
    workers: int = option(
        4, "data loading processes per rank", group="data", flags=("-j", "--workers"), minimum=0, trajectory=False
    )
    train_subset: int | None = option(
        None,
        "train on this many training images only: the first N/classes of every class (quick runs; the "
        "validation set stays whole)",
        group="data",
        minimum=1,
    )
    num_classes: int | None = option(
        None,
        "the classifier's outputs, which must be the data set's classes; with --weights whose classifier has "
        "another number of classes, a new classifier is created (default: the data set's, and such weights "
        "are refused)",
        group="data",
        minimum=1,
    )
    # network
    model: str = option("sew_resnet18", "the network", group="network", choices=tuple(networks.names()))
    T: int | None = option(None, "time steps of a spiking network (default: the network's)", group="network", minimum=1)
    neuron: str | None = option(
        None, "spiking neuron (default: the network's)", group="network", choices=networks.NEURON_KINDS
    )
    cnf: str | None = option(
        None, "SEW connect function (default: the network's)", group="network", choices=networks.CNFS
    )
    backend: str | None = option(
        None,
        "neuron backend: auto, torch, and cupy on SpikingJelly 0.0.0.0.14 or cuda, triton on 2.x (default: auto)",
        group="network",
        choices=networks.ALL_BACKENDS,
        trajectory=False,
    )
    width: int | None = option(
        None,
        "ResNets: channels of the first stage (default: the network's, 64); transformers: the embedding "
        "dimension (default: the name's, e.g. 384)",
        group="network",
        minimum=1,
    )
    width_mult: float | None = option(None, "MobileNet-V1: width multiplier alpha (default: 1)", group="network")
    depth: int | None = option(
        None, "transformers: number of blocks (default: the name's, e.g. 8)", group="network", minimum=1
    )
    num_heads: int | None = option(
        None, "transformers: attention heads (default: the network's)", group="network", minimum=1
    )
    stem: str | None = option(
        None,
        "imagenet, or cifar for small images (transformers: patches of 16 or of 4 pixels)",
        group="network",
        choices=networks.STEMS,
    )
    # optimisation
    batch_size: int = option(
        32, "images per process and step", group="optimisation", flags=("-b", "--batch-size"), minimum=1
    )
    epochs: int = option(90, "", group="optimisation", minimum=1)
    opt: str = option(
        "sgd",
        "optimizer: sgd (with --momentum), or adamw (the transformers' recipes; LATS then thresholds "
        "each weight by its own Adam step)",
        group="optimisation",
        choices=OPTIMIZERS,
    )
    lr: float = option(0.1, "initial learning rate", group="optimisation", minimum=0)
    momentum: float = option(0.9, "sgd: momentum", group="optimisation", minimum=0)
    weight_decay: float = option(
        1e-4,
        "weight decay of theta (the latent weights) and every non-norm parameter",
        group="optimisation",
        flags=("--wd", "--weight-decay"),
        minimum=0,
    )
    norm_weight_decay: float | None = option(
        None, "weight decay of normalisation layers (default: --wd)", group="optimisation", minimum=0
    )
    label_smoothing: float = option(0.0, "", group="optimisation", minimum=0)
    lr_scheduler: str = option("cosine", "per-epoch schedule", group="optimisation", choices=LR_SCHEDULERS)
    lr_warmup_epochs: int = option(0, "", group="optimisation", minimum=0)
    lr_warmup_decay: float = option(0.01, "warm-up starts at lr * decay", group="optimisation")
    lr_step_size: int = option(30, "step schedule: epochs per decay", group="optimisation", minimum=1)
    lr_gamma: float = option(0.1, "step schedule: decay factor", group="optimisation", minimum=0)
    lr_min: float = option(0.0, "cosine schedule: final lr", group="optimisation", minimum=0)
    amp: bool = option(False, "mixed precision: autocast to --amp-dtype", group="optimisation")
    channels_last: bool = option(False, "channels-last memory format", group="optimisation", trajectory=False)
    sync_bn: bool = option(
        False, "synchronised BatchNorm across processes (CUDA only; SEW: T folded into the batch)", group="optimisation"
    )
    amp_dtype: str | None = option(
        None,
        "the autocast dtype of --amp: bfloat16, or float16 with a GradScaler (default: bfloat16 where the "
        "device supports it, else float16)",
        group="optimisation",
        choices=AMP_DTYPES,
    )
    compile: bool = option(
        False,
        "torch.compile the training steps (evaluation and SOP counting stay eager)",
        group="optimisation",
        trajectory=False,
    )
    # pruning
    prune: str = option("none", "threshold schedule", group="pruning", choices=PRUNE_MODES)
    l1: float | None = option(
        None, "lats/pgh: the constant L1 coefficient lambda; d grows by lambda * lr", group="pruning"
    )
    final_threshold: float | None = option(None, "the final threshold D (instead of --l1)", group="pruning")
    target_sparsity: float | None = option(
        None,
        "lats: the global weight sparsity to end the pruning window at, e.g. 0.95 (instead of "
        "--l1/--final-threshold); lambda is re-estimated 32 times over the window. gmp: its final sparsity",
        group="pruning",
    )
    target_sops: float | None = option(
        None,
        "lats: the synaptic operations (ACs + MACs, exact count) per sample to end the pruning window at, e.g. "
        "2e6 (instead of --l1/--final-threshold): each weight's L1 term is weighted by what it costs, measured on "
        "the training forwards",
        group="pruning",
    )
    target_energy_uj: float | None = option(
        None,
        "lats: the energy per sample in uJ to end the pruning window at, e.g. 1.5, priced by --energy-preset "
        "(instead of --l1/--final-threshold)",
        group="pruning",
        flags=("--target-energy",),
    )
    energy_preset: str | None = option(
        None,
        "--target-energy: the energy of one AC and one MAC (default: 45nm-fp32)",
        group="pruning",
        choices=tuple(ENERGY_PRESETS),
    )
    cost_weighting: str = option(
        "sqrt",
        "--target-sops/--target-energy: a layer's threshold grows with the square root of what one of its weights "
        "costs (sqrt: keep a weight while its square is worth its cost), with the cost (linear: the cost-weighted "
        "L1 term), or alike for every layer (uniform: only lambda is steered by the cost)",
        group="pruning",
        choices=tuple(COST_WEIGHTINGS),
    )
    beta: float | None = option(
        None, "pgh: lambda is scaled by beta**x over the window, > 0 (< 1 prunes early, 1 is LATS)", group="pruning"
    )
    prune_start_epoch: int = option(0, "dense training before this epoch", group="pruning", minimum=0)
    prune_end_epoch: int | None = option(None, "the threshold stops growing here (default: --epochs)", group="pruning")
    freeze_mask: bool = option(
        True,
        "after --prune-end-epoch the pruned weights stay at zero and the others train as plain weights (a fixed "
        "mask); --no-freeze-mask keeps the threshold and lets the straight-through gradient regrow weights",
        group="pruning",
    )
    recalibrate_bn: bool = option(
        True,
        "when the pruning window ends, recompute the BatchNorm running statistics on training batches (they lag "
        "weights whose thresholds move)",
        group="pruning",
    )
    recalibrate_bn_batches: int = option(
        200, "training batches per process that --recalibrate-bn averages over", group="pruning", minimum=1
    )
    dense_first_last: bool = option(False, "keep the first conv and the classifier dense", group="pruning")
    gradient: str = option("straight-through", "d w/d theta", group="pruning", choices=GRADIENTS)
    prune_include: str | None = option(
        None,
        "prune only these layers: comma-separated module name patterns (fnmatch: 'layer*', 'fc') and/or "
        "torch.nn layer types ('Conv2d', 'Linear') (default: every Conv and Linear weight)",
        group="pruning",
    )
    prune_exclude: str | None = option(
        None,
        "keep these layers dense, in the same form as --prune-include; e.g. 'fc' keeps the classifier dense "
        "and prunes the first conv, as STDS did",
        group="pruning",
    )
    # run
    output_dir: str = option(
        "runs/train", "run directory: checkpoints, TensorBoard, summary", group="run", trajectory=False
    )
    resume: str | None = option(
        None,
        "checkpoint to continue from (its configuration is the base; the run writes next to it unless "
        "--output-dir is given), or 'auto': the --output-dir's checkpoint if there is one, else a fresh run",
        group="run",
        trajectory=False,
    )
    test_only: bool = option(False, "only evaluate the --resume checkpoint", group="run", trajectory=False)
    print_freq: int = option(10, "steps between log lines", group="run", minimum=1, trajectory=False)
    val_freq: int = option(
        1,
        "validate every this many epochs, and always after the last one and the one that ends the pruning "
        "window; the best checkpoint is chosen among the validated epochs",
        group="run",
        minimum=1,
        trajectory=False,
    )
    dist_timeout: float = option(
        300.0,
        "seconds a collective waits for the other processes (torchrun) before a stalled or dead peer becomes "
        "an error, and a restart",
        group="run",
        minimum=1,
        trajectory=False,
    )
    seed: int = option(0, "", group="run")
    device: str = option("auto", "", group="run", choices=DEVICES, trajectory=False)
    threads: int | None = option(
        None,
        "CPU threads of each process (default: $OMP_NUM_THREADS when set, else the cores this process may use, "
        "less those busy with other work, shared among the processes of this node and their loader workers)",
        group="run",
        minimum=1,
        trajectory=False,
    )
    sops_batches: int = option(
        4,
        "validation batches (rank 0) counted for firing rates and synaptic operations",
        group="run",
        minimum=0,
        trajectory=False,
    )
    weights: str | None = option(
        None,
        "start from these weights (fresh optimizer and pruner): an snn-lats checkpoint or export directory, "
        "or a state dict (.pth, .safetensors) of a SpikingJelly SEW ResNet or a torchvision ResNet",
        group="run",
    )
    recipe: str | None = option(
        None, "a YAML recipe (models/*.yaml) supplying defaults for every flag below", group="recipe", trajectory=False
    )

    def __post_init__(self) -> None:
        # Types are checked here (not only in argparse) because recipes and the Python API bypass
        # argparse. YAML reads "1e-4" as a string, so numeric strings are accepted for floats.
        for f in fields(self):
            value = getattr(self, f.name)
            expected, optional = field_type(f.name)
            if value is None:
                if not optional:
                    raise RecipeError(f"{f.name} must not be empty (null)")
                continue
            if expected is float and isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise RecipeError(f"{f.name} must be a number; got {value!r}") from None
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise RecipeError(f"{f.name} must be of type {expected.__name__}; got {value!r}")
            setattr(self, f.name, value)

    def validate(self) -> TrainConfig:
        """Raise :class:`RecipeError` naming the first bad field; return ``self``."""
        for f in fields(self):  # the declared choices and lower bounds
            value, choices, minimum = getattr(self, f.name), f.metadata["choices"], f.metadata["minimum"]
            if value is None:
                continue
            if choices is not None and value not in choices:
                raise RecipeError(f"{f.name} must be one of {', '.join(map(str, choices))}; got {value!r}")
            if minimum is not None and not value >= minimum:
                raise RecipeError(f"{f.name} must be a number >= {minimum}; got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):  # inf passes every bound and trains NaNs
                raise RecipeError(f"{f.name} must be a finite number; got {value!r}")
        if not self.lr > 0:
            raise RecipeError(f"lr must be > 0; got {self.lr!r}")
        if not 0 < self.lr_warmup_decay <= 1:
            raise RecipeError(f"lr_warmup_decay must be in (0, 1]; got {self.lr_warmup_decay!r}")
        if self.lr_warmup_epochs >= self.epochs and self.lr_warmup_epochs > 0:
            raise RecipeError(f"lr_warmup_epochs ({self.lr_warmup_epochs}) must be < epochs ({self.epochs})")
        if self.label_smoothing >= 1:
            raise RecipeError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.amp_dtype is not None and not self.amp:
            raise RecipeError(
                f"amp_dtype (--amp-dtype {self.amp_dtype}) is the dtype of --amp, which is off; add --amp"
            )
        if self.dataset == "imagefolder" and not self.data_path:
            raise RecipeError("data_path (--data-path) is required for dataset 'imagefolder'")
        if self.dataset in EVENT_DATASETS:
            if self.T is None:
                raise RecipeError(f"dataset {self.dataset!r} needs --T: the frames each recording is integrated into")
            if self.channels_last:  # a format of 4-d tensors; event batches are [T, N, C, H, W]
                raise RecipeError(f"channels_last (--channels-last) applies to images, not to {self.dataset!r} frames")
            if self.mixup_alpha or self.cutmix_alpha:
                raise RecipeError(f"mixup_alpha and cutmix_alpha mix images, not {self.dataset!r} frame sequences")
        if self.auto_augment is not None and self.dataset != "imagefolder":
            raise RecipeError(
                f"auto_augment (--auto-augment) works on the images of an image folder; {self.dataset!r} comes as "
                "normalised tensors"
            )
        self._validate_pruning()
        if self.test_only and not self.resume:
            raise RecipeError("test_only (--test-only) needs a checkpoint to evaluate (--resume PATH)")
        return self

    def _validate_pruning(self) -> None:
        if self.prune == "none":
            given = [name for name in (*STRENGTH_FIELDS, "beta", "energy_preset") if getattr(self, name) is not None]
            if given:
                raise RecipeError(
                    f"{', '.join(given)}: l1, final_threshold, the targets and beta need a pruning mode (--prune ...); "
                    "prune is 'none'"
                )
            selectors = [name for name in ("prune_include", "prune_exclude") if getattr(self, name) is not None]
            if selectors:
                raise RecipeError(f"{' and '.join(selectors)} choose the pruned layers; prune is 'none'")
            return
        energy = self.target_energy_uj
        if energy is not None and not (isinstance(energy, (int, float)) and math.isfinite(energy) and energy > 0):
            raise RecipeError(f"target_energy_uj must be a finite number > 0 (µJ per sample), got {energy!r}")
        try:
            spec = self.pruning_spec()
        except (TypeError, ValueError) as error:  # PruningSpec's rules, named by its arguments: name the fields
            message = str(error).replace("end (", "prune_end_epoch (").replace("start (", "prune_start_epoch (")
            raise RecipeError(message) from None
        if spec.end is not None and spec.end > self.epochs:
            raise RecipeError(f"prune_end_epoch ({spec.end}) must be <= epochs ({self.epochs})")

    def pruning_spec(self) -> PruningSpec | None:
        """The :class:`~snn_lats.pruning.PruningSpec` of this run, its window in epochs (None without
        pruning); ``spec.in_steps(steps_per_epoch)`` is what the pruner takes. ``target_energy_uj``
        (µJ) becomes the spec's ``target_energy`` (pJ)."""
        if self.prune == "none":
            return None
        windowed = schedule_class(self.prune).windowed
        return PruningSpec(
            schedule=self.prune,
            l1=self.l1,
            final_threshold=self.final_threshold,
            target_sparsity=self.target_sparsity,
            target_sops=self.target_sops,
            target_energy=None if self.target_energy_uj is None else self.target_energy_uj * 1e6,
            energy_preset=self.energy_preset,
            cost_weighting=self.cost_weighting,
            beta=self.beta,
            start=self.prune_start_epoch,
            # the windowless schedules refuse a window given explicitly
            end=self.pruning_end_epoch if windowed else self.prune_end_epoch,
            unit="epochs",
            freeze_mask=self.freeze_mask,
            recalibrate_bn=self.recalibrate_bn,
            gradient=self.gradient,
            include=self.prune_include,
            exclude=self.prune_exclude,
            dense_first_last=self.dense_first_last,
        )

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
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "configuration") -> TrainConfig:
        return cls(**_check_keys(values, source))


def field_type(name: str) -> tuple[type, bool]:
    """``(type, optional)`` of a :class:`TrainConfig` field: ``int | None`` is ``(int, True)``."""
    hint = _HINTS[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


_HINTS = typing.get_type_hints(TrainConfig)
#: Alternative ways to set the pruning strength: one given explicitly replaces a recipe's other.
STRENGTH_FIELDS = ("l1", "final_threshold", "target_sparsity", "target_sops", "target_energy_uj")
_PRUNING_FIELDS = (
    *STRENGTH_FIELDS,
    "energy_preset",
    "cost_weighting",
    "beta",
    "prune_start_epoch",
    "prune_end_epoch",
    "prune_include",
    "prune_exclude",
)
FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
#: The fields that choose and shape the network (``networks.create(model, **the others)``).
NETWORK_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.metadata["group"] == "network")
#: Those that a checkpoint's weights depend on: all but the neuron backend, which computes the same.
ARCHITECTURE_FIELDS = tuple(name for name in NETWORK_FIELDS if name != "backend")


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


#: What a configuration written before a field existed meant by its absence (a checkpoint's
#: configuration resumes, and evaluates, as it was trained). Before 2026-12-07 the pruned weights
#: could regrow after the window, BatchNorm statistics were not recomputed, and a cost weighed its
#: layer linearly.
_LEGACY_VALUES = {"freeze_mask": False, "recalibrate_bn": False, "cost_weighting": "linear"}


def upgrade_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """A saved configuration with the fields it predates set to what their absence meant."""
    return {**{k: v for k, v in _LEGACY_VALUES.items() if k not in values}, **values}


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """The ``{field: value}`` mapping of a YAML recipe, keys checked against :class:`TrainConfig`."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {str(path)!r} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:  # unreadable (permissions, an I/O error)
        raise RecipeError(f"recipe {str(path)!r} cannot be read: {error.strerror or error}") from error
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
    explicit: Mapping[str, Any],
    recipe: str | os.PathLike | None = None,
    base: Mapping[str, Any] | None = None,
    *,
    resuming: bool = True,
) -> TrainConfig:
    """Defaults, overridden by ``base`` (a checkpoint's configuration), by the recipe, then by
    ``explicit`` (the flags actually given: ``None`` values count as "not given").

    ``resuming=False``: the checkpoint is evaluated or counted, maybe on another machine, which
    keeps its own device and threads rather than the training run's.
    """
    skipped = ("resume", "test_only") if resuming else ("resume", "test_only", "device", "threads")
    values: dict[str, Any] = {}
    if base is not None:
        checked = _check_keys(base, "the checkpoint's configuration")
        values.update({k: v for k, v in checked.items() if k not in skipped})
    if recipe is not None:
        values.update(load_recipe(recipe))
        values["recipe"] = str(recipe)
    given = {k: v for k, v in _check_keys(explicit, "flags").items() if v is not None}
    if given.get("prune") == "none":
        # "--prune none" over a pruning recipe (its unpruned baseline) drops the recipe's pruning settings.
        for key in _PRUNING_FIELDS:
            values.pop(key, None)
    if any(key in given for key in STRENGTH_FIELDS):
        # "--target-sparsity 0.95" over a recipe that sets final_threshold replaces it (and the
        # recipe's energy preset, which priced its target energy).
        for key in (*STRENGTH_FIELDS, "energy_preset"):
            values.pop(key, None)
    values.update(given)
    try:
        config = TrainConfig(**values)
    except TypeError as error:
        raise RecipeError(str(error)) from error
    return config.validate()
