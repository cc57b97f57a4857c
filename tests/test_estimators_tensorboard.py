"""SOPs and energy per sample reach TensorBoard after each evaluation: a real training run's event
file, read back with TensorBoard's own EventAccumulator, against a brute-force count of the same
validation batch through the trained checkpoint (Σ conv(x, 1[w ≠ 0]) per layer, written out in
test_estimators.py) and the 45 nm energies of Horowitz (ISSCC 2014)."""

from __future__ import annotations

import pytest
import torch
from test_estimators import brute_force
from torch import nn

from snn_lats.data import build_datasets, build_loaders
from snn_lats.engine import train
from snn_lats.engine.model import build_model_from_checkpoint
from snn_lats.engine.recipe import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sops_and_energy_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(
        dataset="digits", image_size=8, model="sew_resnet18", T=2, width=4, stem="cifar", batch_size=64,
        epochs=1, workers=0, sops_batches=1, print_freq=100, device="cpu", output_dir=str(tmp_path / "run"),
    )  # fmt: skip
    train(config)
    (events,) = (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    logged = {name: accumulator.Scalars(f"sops/{name}") for name in ("acs_per_sample", "macs_per_sample")}
    logged["energy_pj_per_sample"] = accumulator.Scalars("sops/energy_pj_per_sample")
    assert all(len(points) == 1 for points in logged.values())  # one evaluation: one point

    # The brute force: the first validation batch through the checkpoint's network, every synaptic
    # layer's input counted as spikes (non-negative integers: ACs) or nonzero real values (MACs).
    model, _ = build_model_from_checkpoint(tmp_path / "run" / "checkpoint.pth")
    _, val_set, _ = build_datasets(config, train=False)
    images = next(iter(build_loaders(None, val_set, config.batch_size)[1])).images
    ops = {"acs": 0, "macs": 0}

    def count(module, args):
        x = args[0].detach()
        spikes = bool((x >= 0).all()) and torch.equal(x, x.round())
        ops["acs" if spikes else "macs"] += brute_force(module, x, count_spikes=spikes)

    handles = [m.register_forward_pre_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    acs, macs = ops["acs"] / len(images), ops["macs"] / len(images)
    assert logged["acs_per_sample"][0].value == pytest.approx(acs, rel=1e-6)
    assert logged["macs_per_sample"][0].value == pytest.approx(macs, rel=1e-6)
    assert logged["energy_pj_per_sample"][0].value == pytest.approx(0.9 * acs + 4.6 * macs, rel=1e-6)


def test_a_target_and_what_it_reached_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(
        dataset="digits", image_size=8, model="sew_resnet18", T=2, width=4, stem="cifar", batch_size=64,
        epochs=1, workers=0, sops_batches=1, print_freq=100, device="cpu", output_dir=str(tmp_path / "run"),
        prune="lats", target_sparsity=0.6,
    )  # fmt: skip
    train(config)
    (events,) = (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    (target,) = accumulator.Scalars("target/target")
    (reached,) = accumulator.Scalars("target/validation")
    # the zeros of S_d(θ) by hand, from the checkpoint's θ and thresholds
    state = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)["model"]
    zeros = total = 0
    for key, theta in state.items():
        if key.endswith(".parametrizations.weight.original"):
            d = state[key.replace(".original", ".0.threshold")]
            zeros += int((theta.abs() <= d).sum())
            total += theta.numel()
    assert target.value == pytest.approx(0.6) and reached.value == pytest.approx(zeros / total, abs=1e-6)


def test_histograms_and_hparams_in_the_runs_one_event_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = TrainConfig(
        dataset="digits", image_size=8, model="sew_resnet18", T=2, width=4, stem="cifar", batch_size=64,
        epochs=2, workers=0, sops_batches=1, print_freq=100, device="cpu", output_dir=str(tmp_path / "run"),
        prune="lats", l1=0.5, seed=4,
    )  # fmt: skip
    summary = train(config)
    (events,) = (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*")  # one file
    accumulator = EventAccumulator(str(events), size_guidance={"histograms": 0})
    accumulator.Reload()
    weights = [t for t in accumulator.Tags()["histograms"] if t.startswith("weights/")]
    assert len(weights) == 21 and "pruning/thresholds" in accumulator.Tags()["histograms"]
    for tag in ("weights/conv1", "pruning/thresholds"):
        assert [h.step for h in accumulator.Histograms(tag)] == [0, 1]  # each evaluation
    conv1 = accumulator.Histograms("weights/conv1")[-1].histogram_value
    assert conv1.num == 4 * 3 * 3 * 3  # every weight of the stem (4 channels of 3x3x3)
    content = accumulator.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["prune"].string_value == "lats" and hparams["seed"].number_value == 4
    (final,) = accumulator.Scalars("final/acc1")
    assert final.value == pytest.approx(summary.accuracy["acc1"])
