"""Fixtures and helpers the test modules share: threads, free ports, small image folders, and
resumable training loops for pruner tests, a network that preempts its own run."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

# Before any test module imports spikingjelly or torchvision (see snn_lats/_torchvision.py).
import snn_lats._torchvision  # noqa: F401


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and threads stall on a busy 2-core machine.

    Test modules of tiny models opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    """A TCP port nobody listens on now (for a torchrun master)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_folder(root: Path, per_class: tuple[int, int] = (8, 4), size: int = 10) -> Path:
    """An ImageNet-style folder of two classes told apart by colour (red vs blue, with noise),
    learnable in a few steps: ``per_class`` training and validation images of ``size`` pixels."""
    rng = np.random.default_rng(1)
    for split, count in zip(("train", "val"), per_class):
        for label, name in enumerate(("blue", "red")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                array = rng.integers(0, 120, size=(size, size, 3)).astype(np.uint8)
                array[..., 0 if label else 2] += 120
                Image.fromarray(array).save(folder / f"{i}.png")
    return root


def resume_train(model, optimizer, pruner, scheduler, start: int, stop: int) -> list[tuple]:
    """Train steps ``[start, stop)`` of a 6-feature, 3-class problem whose batch is a function of
    the step; per step: every layer's threshold, the global one, λ, λ_t and the layer costs."""
    trace = []
    for t in range(start, stop):
        g = torch.Generator().manual_seed(t)
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        scheduler.step()
        pruner.step()
        trace.append((pruner.thresholds(), pruner.threshold, pruner.l1, pruner.implied_l1(), pruner.layer_costs()))
    return trace


def signal_at(kind: str, call: int):
    """A model builder whose network sends SIGTERM to this process at its ``call``-th forward in
    training (``kind="train"``) or evaluation mode (``kind="eval"``)."""
    count = {"n": 0}

    def builder(config, num_classes):
        from snn_lats.engine.model import build_model

        model = build_model(config, num_classes)

        def hook(module, args):
            if module.training == (kind == "train"):
                count["n"] += 1
                if count["n"] == call:
                    os.kill(os.getpid(), signal.SIGTERM)

        model.register_forward_pre_hook(hook)
        return model

    return builder
