"""SOPs and energy per sample reach TensorBoard after each evaluation: a real training run's event
file, read back with TensorBoard's own EventAccumulator, against the run's own SOP report."""

from __future__ import annotations

import pytest

from snn_lats.engine import train
from snn_lats.engine.recipe import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sops_and_energy_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(
        dataset="digits", image_size=8, model="sew_resnet18", T=2, width=4, stem="cifar", batch_size=64,
        epochs=1, workers=0, sops_batches=1, print_freq=100, device="cpu", output_dir=str(tmp_path / "run"),
    )  # fmt: skip
    summary = train(config)
    (events,) = (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    expected = summary.sops.per_sample_scalars()
    assert set(expected) == {"acs_per_sample", "macs_per_sample", "flops_per_sample", "energy_pj_per_sample"}
    # 45 nm fp32 (Horowitz 2014): 0.9 pJ per AC, 4.6 pJ per MAC.
    assert expected["energy_pj_per_sample"] == pytest.approx(
        0.9 * expected["acs_per_sample"] + 4.6 * expected["macs_per_sample"]
    )
    for name, value in expected.items():
        (scalar,) = accumulator.Scalars(f"sops/{name}")  # one evaluation: one point
        assert scalar.value == pytest.approx(value, rel=1e-6), name
