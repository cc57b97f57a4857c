"""Recipes and the resolved configuration: precedence, validation, the shipped recipes, lr schedule."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from snn_lats.engine.optim import build_lr_scheduler, build_optimizer, epoch_lrs, parameter_groups
from snn_lats.engine.recipe import RecipeError, TrainConfig, load_recipe, resolve_config

MODELS = Path(__file__).resolve().parents[1] / "models"


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_precedence_defaults_then_base_then_recipe_then_flags(tmp_path):
    recipe = write(tmp_path, "dataset: digits\nepochs: 7\nlr: 0.5\nbatch-size: 16\n")
    config = resolve_config({"lr": 0.2, "momentum": None}, recipe, base={"epochs": 3, "seed": 5, "dataset": "digits"})
    assert config.lr == 0.2  # flag over recipe
    assert config.epochs == 7  # recipe over base
    assert config.seed == 5  # base over default
    assert config.batch_size == 16  # "-" spelling accepted
    assert config.momentum == TrainConfig().momentum  # None means "not given"
    assert config.recipe == str(recipe)


def test_unknown_recipe_key_is_an_error_with_a_suggestion(tmp_path):
    recipe = write(tmp_path, "dataset: digits\nlearning_rate: 0.1\nepoch: 3\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert "'learning_rate'" in str(info.value) and "did you mean 'epochs'" in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "lr: [1, 2\n"])
def test_recipe_must_be_a_yaml_mapping(tmp_path, text):
    with pytest.raises(RecipeError):
        load_recipe(write(tmp_path, text))


def test_missing_recipe():
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe("no/such/recipe.yaml")


def test_yaml_exponent_strings_are_numbers_and_types_are_checked(tmp_path):
    # YAML 1.1 reads 1e-4 (no dot) as a string.
    config = resolve_config({}, write(tmp_path, "dataset: digits\nweight_decay: 1e-4\nepochs: 2\n"))
    assert config.weight_decay == 1e-4
    with pytest.raises(RecipeError, match="epochs must be of type int"):
        resolve_config({}, write(tmp_path, "dataset: digits\nepochs: 2.5\n", "b.yaml"))
    with pytest.raises(RecipeError, match="lr must be a number"):
        resolve_config({}, write(tmp_path, "dataset: digits\nlr: fast\n", "c.yaml"))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"prune": "lats", "l1": 1e-3, "final_threshold": 0.1}, "not l1 and final_threshold"),
        ({"prune": "lats", "final_threshold": 0.1, "target_sparsity": 0.9}, "not final_threshold and target_sparsity"),
        ({"prune": "slats", "target_sparsity": 0.9}, "target_sparsity does not apply to schedule 'slats'"),
        ({"prune": "lats", "target_sparsity": 90.0}, "fraction in"),
        ({"target_sparsity": 0.9}, "need a pruning mode"),
        ({"prune": "pgh", "final_threshold": 0.1, "beta": 0.0}, "beta must be a finite number > 0"),
        ({"prune": "pgh", "final_threshold": 0.1}, "schedule 'pgh' needs beta > 0"),
        ({"prune": "lats", "final_threshold": 0.1, "beta": 0.5}, "beta applies to schedule 'pgh' only"),
        ({"prune": "lats"}, "needs l1 or final_threshold or target_sparsity or target_sops or target_energy"),
        ({"prune": "lats", "target_sops": 1e6, "l1": 0.01}, "not l1 and target_sops"),
        ({"prune": "lats", "target_energy_uj": 1.0, "final_threshold": 0.1}, "not final_threshold and target_energy"),
        ({"prune": "lats", "target_sops": 1e6, "target_sparsity": 0.9}, "not target_sparsity and target_sops"),
        ({"prune": "pgh", "target_sops": 1e6, "beta": 0.5}, "target_sops does not apply to schedule 'pgh'"),
        ({"prune": "lats", "target_sops": 0.0}, "target_sops must be a finite number > 0"),
        ({"prune": "lats", "target_energy_uj": float("inf")}, "target_energy_uj must be a finite number"),
        (
            {"prune": "lats", "target_sops": 1e6, "energy_preset": "45nm-fp16"},
            "energy_preset prices energy: it applies to target_energy",
        ),
        ({"prune": "lats", "target_energy_uj": 1.0, "energy_preset": "7nm"}, "energy_preset must be one of"),
        ({"target_sops": 1e6}, "need a pruning mode"),
        ({"l1": 0.01}, "need a pruning mode"),
        ({"prune": "learnable", "final_threshold": 0.1}, "learns its thresholds"),
        ({"prune": "stds-sine", "l1": 0.01}, "l1 does not apply to schedule 'stds-sine', which takes final_threshold"),
        ({"prune": "constant", "final_threshold": 0.1, "prune_start_epoch": 1}, "no pruning window"),
        (
            {"prune": "lats", "l1": 0.1, "prune_start_epoch": 5, "prune_end_epoch": 5},
            r"the pruning window is empty: prune_end_epoch \(5\) must be > prune_start_epoch \(5\) \(epochs\)",
        ),
        ({"prune": "lats", "l1": -1.0}, "l1 must be a finite number > 0"),
        ({"prune": "magnitude"}, "prune must be one of"),
        ({"test_only": True}, "needs a checkpoint"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr_warmup_epochs": 10}, "lr_warmup_epochs"),
        ({"batch_size": 0}, "batch_size must be a number >= 1"),
    ],
)
def test_contradictory_or_bad_values_are_refused(values, message):
    with pytest.raises(RecipeError, match=message):
        resolve_config({"dataset": "digits", "epochs": 10, **values})


def test_an_explicit_strength_replaces_the_recipes_other_one(tmp_path):
    recipe = write(tmp_path, "dataset: digits\nepochs: 4\nprune: lats\nfinal_threshold: 0.15\n")
    config = resolve_config({"target_sparsity": 0.95}, recipe)
    assert (config.target_sparsity, config.final_threshold, config.l1) == (0.95, None, None)
    config = resolve_config({"l1": 0.01}, recipe)
    assert (config.l1, config.final_threshold) == (0.01, None)
    assert resolve_config({}, recipe).final_threshold == 0.15
    assert resolve_config({"prune": "none"}, recipe).target_sparsity is None


def test_imagefolder_needs_a_data_path():
    with pytest.raises(RecipeError, match="data_path"):
        resolve_config({"dataset": "imagefolder"})


# ----------------------------------------------------------------------------------- shipped recipes


def test_every_shipped_recipe_loads_and_validates():
    paths = sorted(MODELS.glob("*.yaml"))
    assert {p.name for p in paths} >= {
        "sew_resnet18_imagenet_lats.yaml",
        "resnet50_imagenet_lats.yaml",
        "mobilenet_v1_imagenet_lats.yaml",
        "demo_digits.yaml",
    }
    for path in paths:
        assert path.read_text().lstrip().startswith("#"), f"{path.name} must say in comments what it reproduces"
        resolve_config({"data_path": "/data/imagenet"}, path)


def test_snn_recipe_is_the_stds_setting_of_the_paper():
    # The STDS recipe (Chen et al., ICML 2022) that LATS reuses: SEW ResNet-18, T=4, ADD, IF;
    # 8 processes x 32, SGD 0.1, momentum 0.9, weight decay 0, 320 epochs, cosine, AMP.
    c = resolve_config({"data_path": "/d"}, MODELS / "sew_resnet18_imagenet_lats.yaml")
    assert (c.model, c.T, c.cnf, c.neuron) == ("sew_resnet18", 4, "ADD", "if")
    assert (c.batch_size, c.lr, c.momentum, c.weight_decay, c.epochs) == (32, 0.1, 0.9, 0.0, 320)
    assert (c.lr_scheduler, c.amp, c.prune) == ("cosine", True, "lats")


@pytest.mark.parametrize(
    "name, model", [("resnet50_imagenet_lats.yaml", "resnet50"), ("mobilenet_v1_imagenet_lats.yaml", "mobilenet_v1")]
)
def test_ann_recipes_are_the_str_setting_of_the_paper(name, model):
    # The STR recipe (Kusupati et al., ICML 2020) that LATS reuses: 100 epochs, batch 256, SGD lr
    # 0.256, momentum 0.875, 5 warm-up epochs then cosine, weight decay 2^-15 on theta, label smoothing 0.1.
    c = resolve_config({"data_path": "/d"}, MODELS / name)
    assert c.model == model and c.T is None
    assert (c.epochs, c.lr, c.momentum, c.lr_warmup_epochs, c.lr_scheduler) == (100, 0.256, 0.875, 5, "cosine")
    assert c.weight_decay == 2.0**-15 and c.label_smoothing == 0.1
    assert c.batch_size * 8 == 256  # per process, for 8 processes


# ----------------------------------------------------------------------------------- lr schedule


def test_epoch_lrs_closed_forms():
    c = TrainConfig(dataset="digits", epochs=10, lr=0.4, lr_warmup_epochs=2, lr_warmup_decay=0.1, lr_min=0.01)
    lrs = epoch_lrs(c)
    assert lrs[0] == pytest.approx(0.04) and lrs[1] == pytest.approx(0.4 * (0.1 + 0.9 / 2))
    for e in range(2, 10):
        assert lrs[e] == pytest.approx(0.01 + 0.39 * (1 + math.cos(math.pi * (e - 2) / 8)) / 2)
    step = epoch_lrs(TrainConfig(dataset="digits", epochs=7, lr=1.0, lr_scheduler="step", lr_step_size=3, lr_gamma=0.5))
    assert step == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25])


def test_lambda_lr_scheduler_applies_the_epoch_lrs():
    # Oracle: torchvision's reference composition, LinearLR warm-up then CosineAnnealingLR.
    c = TrainConfig(dataset="digits", epochs=9, lr=0.3, lr_warmup_epochs=3, lr_warmup_decay=0.2, lr_min=0.0)
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(c, model)
    scheduler = build_lr_scheduler(c, optimizer)
    reference_opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.3)
    reference = torch.optim.lr_scheduler.SequentialLR(
        reference_opt,
        [
            torch.optim.lr_scheduler.LinearLR(reference_opt, start_factor=0.2, total_iters=3),
            torch.optim.lr_scheduler.CosineAnnealingLR(reference_opt, T_max=6, eta_min=0.0),
        ],
        milestones=[3],
    )
    for _ in range(9):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(reference_opt.param_groups[0]["lr"])
        optimizer.step(), reference_opt.step()
        scheduler.step(), reference.step()


def test_norm_parameters_get_their_own_weight_decay():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    groups = parameter_groups(model, weight_decay=0.1, norm_weight_decay=0.0)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert {id(p) for p in groups[1]["params"]} == {id(model[1].weight), id(model[1].bias)}
    assert len(groups[0]["params"]) == 4  # conv weight+bias, linear weight+bias
    same = parameter_groups(model, weight_decay=0.1, norm_weight_decay=None)
    assert [g["weight_decay"] for g in same] == [0.1, 0.1]


def test_opt_adamw_steps_as_torch_adamw_with_the_per_kind_weight_decay():
    # Oracle: torch.optim.AdamW built by hand on a copy, the BN parameters without decay.
    c = TrainConfig(dataset="digits", opt="adamw", lr=0.01, weight_decay=0.05, norm_weight_decay=0.0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    twin = copy.deepcopy(model)
    optimizer = build_optimizer(c, model)
    reference = torch.optim.AdamW(
        [{"params": twin[0].parameters()}, {"params": twin[1].parameters(), "weight_decay": 0.0}],
        lr=0.01,
        weight_decay=0.05,
    )
    x = torch.randn(8, 3)
    for _ in range(3):
        for m, opt in ((model, optimizer), (twin, reference)):
            opt.zero_grad()
            m(x).pow(2).sum().backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert type(build_optimizer(TrainConfig(dataset="digits"), model)) is torch.optim.SGD
    with pytest.raises(RecipeError, match="opt must be one of"):
        TrainConfig(dataset="digits", opt="adam").validate()


def test_prune_none_over_a_pruning_recipe_is_its_unpruned_baseline(tmp_path):
    recipe = write(tmp_path, "dataset: digits\nprune: lats\nfinal_threshold: 0.1\nprune_end_epoch: 5\n")
    config = resolve_config({"prune": "none"}, recipe)
    assert (config.prune, config.final_threshold, config.prune_end_epoch) == ("none", None, None)
    with pytest.raises(RecipeError, match="need a pruning mode"):  # but explicit contradictions stay errors
        resolve_config({"prune": "none", "l1": 0.1}, recipe)


def test_evaluating_a_checkpoint_takes_this_machines_device_and_threads_not_the_training_runs():
    trained = TrainConfig(dataset="digits", device="cuda", threads=64).to_dict()
    resumed = resolve_config({}, base=trained)
    assert (resumed.device, resumed.threads) == ("cuda", 64)  # a resumed run continues as it ran
    evaluated = resolve_config({}, base=trained, resuming=False)
    assert (evaluated.device, evaluated.threads) == ("auto", None)
    assert resolve_config({"threads": 2}, base=trained, resuming=False).threads == 2
