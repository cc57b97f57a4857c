"""The checkpoint format: plain data only, atomic writes, exact RNG restore, clear refusals."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from snn_lats.engine.checkpoint import (
    FORMAT,
    CheckpointError,
    CheckpointWriteError,
    check_architecture,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def minimal(**extra):
    return {
        "model": {"w": torch.arange(4.0)},
        "config": {"model": "a", "T": 4},
        "epoch": 1,
        "step": 10,
        "num_classes": 10,
        **extra,
    }


def test_round_trip_is_plain_data_loadable_with_weights_only(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, minimal(rng=rng_state(), history=[{"acc1": 50.0}]))
    # The oracle is torch itself: the raw file must load with the safe unpickler.
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["epoch"] == 1
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert loaded["history"] == [{"acc1": 50.0}]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_rng_state_restores_every_generator():
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    state = rng_state()
    draws = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], random.gauss(0, 1))
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], random.gauss(0, 1))
    assert torch.equal(draws[0], again[0])
    assert np.array_equal(draws[1], again[1])
    assert draws[2:] == again[2:]


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pth"
    save_checkpoint(path, minimal())
    with pytest.raises(AttributeError, match="pickle local object"):
        save_checkpoint(path, minimal(bad=lambda: None))  # cannot be pickled: fails mid-write
    assert load_checkpoint(path)["step"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, minimal())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", ["state_dict", "list", "garbage", "old_version"])
def test_foreign_files_are_refused(tmp_path, content):
    path = tmp_path / "foreign.pth"
    if content == "state_dict":
        torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    elif content == "list":
        torch.save([1, 2], path)
    elif content == "garbage":
        path.write_bytes(b"\x00\x01 definitely not a checkpoint" * 10)
    else:
        torch.save({"format": FORMAT, "version": 0, **minimal()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")


class _Payload:
    """Unpickling this would create the marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"format": FORMAT, "version": 1, **minimal(), "model": _Payload(marker)}
    if container == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    # Sanity of the test itself: an unrestricted unpickler does run the payload.
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))
    assert (tmp_path / "control").exists()

    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(path)
    assert not marker.exists()


def test_architecture_mismatch_names_the_differences():
    checkpoint = minimal()
    check_architecture(checkpoint, {"model": "a", "T": 4}, num_classes=10)
    with pytest.raises(CheckpointError, match="T: 4 in the checkpoint, 2 here"):
        check_architecture(checkpoint, {"model": "a", "T": 2})
    with pytest.raises(CheckpointError, match="num_classes"):
        check_architecture(checkpoint, {"model": "a", "T": 4}, num_classes=1000)


def test_state_of_another_network_is_refused():
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model_state(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2).state_dict())


def test_the_best_model_is_written_before_the_checkpoint_that_names_it(tmp_path):
    """A crash between the two writes then leaves a checkpoint whose best model is on disk."""
    from snn_lats.engine.checkpoint import CheckpointSaver

    class Progress:
        partial: dict = {}

        def state_dict(self):
            return {"epoch": 1, "step": 3, "best": {"epoch": 0}}

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    saver = CheckpointSaver(
        tmp_path, model=model, optimizer=optimizer, lr_scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1),
        pruner=None, scaler=None, run_state=Progress(), config={"model": "m"}, num_classes=2,
    )  # fmt: skip
    saver.save(best=True)
    best, latest = tmp_path / "model_best.pth", tmp_path / "checkpoint.pth"
    assert load_checkpoint(best)["step"] == load_checkpoint(latest)["step"] == 3
    assert len(load_checkpoint(latest)["rng"]) == 1  # one RNG state per rank
    # The next save fails at the checkpoint (a folder in its way): the best model is already written.
    best.unlink()
    latest.unlink()
    latest.mkdir()
    with pytest.raises(CheckpointWriteError, match="cannot write .*checkpoint.pth.*the previous checkpoint is intact"):
        saver.save(best=True)
    assert load_checkpoint(best)["step"] == 3
