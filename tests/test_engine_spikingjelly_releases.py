"""Checkpoints do not depend on the SpikingJelly release: a pruned PLIF network trained under
0.0.0.0.14 loads under 2.x and gives the same outputs, and the other way round.

The other release runs in the other environment scripts/setup_env.sh builds (.venv-sj2 beside
.venv); where it is missing, the test skips. scripts/test.sh runs this file in both.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import image_folder
from safetensors.torch import load_file, save_file

from snn_lats import _spikingjelly
from snn_lats.engine.model import build_model_from_checkpoint
from snn_lats.engine.trainer import train

# isort: split
from test_engine_train import tiny

REPO = Path(__file__).resolve().parents[1]
OTHER = REPO / (".venv-sj2" if _spikingjelly.CUPY_ERA else ".venv") / "bin" / "python"

# The other environment: train the same run, then give the outputs of both checkpoints on x.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from safetensors.torch import load_file, save_file
    from snn_lats import _spikingjelly
    from snn_lats.engine.model import build_model_from_checkpoint
    from snn_lats.engine.recipe import TrainConfig
    from snn_lats.engine.trainer import train

    values, here, there, tensors = sys.argv[1:]
    train(TrainConfig.from_dict({**json.loads(values), "output_dir": there}))
    x = load_file(tensors)["x"]
    outputs = {}
    with torch.no_grad():
        for name, run in (("here", here), ("there", there)):
            outputs[name] = build_model_from_checkpoint(run + "/checkpoint.pth")[0](x)
    save_file(outputs, tensors + ".other")
    print(_spikingjelly.VERSION)
    """
)


@pytest.mark.skipif(not OTHER.exists(), reason=f"no {OTHER.parent.parent.name} (scripts/setup_env.sh builds it)")
def test_a_checkpoint_gives_the_same_outputs_under_both_releases(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    # PLIF: a learned tau per layer, so neuron parameters are in the state dict too.
    config = tiny(image_folder(tmp_path / "data"), here, neuron="plif", epochs=2, threads=1)
    summary = train(config)
    assert summary.sparsity.global_sparsity > 0
    values = {k: v for k, v in config.to_dict().items() if k != "output_dir"}
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    save_file({"x": x}, tmp_path / "x.safetensors")
    result = subprocess.run(
        [str(OTHER), "-c", SCRIPT, json.dumps(values), str(here), str(there), str(tmp_path / "x.safetensors")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    other_version = result.stdout.split()[-1]
    assert other_version.startswith("0.") != _spikingjelly.VERSION.startswith("0."), other_version
    theirs = load_file(tmp_path / "x.safetensors.other")
    with torch.no_grad():
        for name, run in (("here", here), ("there", there)):
            ours = build_model_from_checkpoint(run / "checkpoint.pth")[0](x)
            assert ours.abs().sum() > 0
            torch.testing.assert_close(ours, theirs[name], rtol=1e-5, atol=1e-6, msg=name)
