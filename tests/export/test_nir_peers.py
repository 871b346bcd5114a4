"""NIR files through Norse 1.1 and snnTorch 1.0, in their own environment.

The peers live in a separate venv (built as ../shared/docs/peers.md says, so they never pull a
CUDA torch into the project's environment). These tests run ``peer_runner.py`` with that venv's
python in a subprocess, passing files and ``.npz`` arrays: no peer module is imported here, so
nothing of theirs (torch, numpy, nir versions) mixes with the project's in one process. Point
``SPIKEWEAVE_PEERS_PYTHON`` at it, e.g.

    SPIKEWEAVE_PEERS_PYTHON=/tmp/peers-venv/bin/python pytest tests/export/test_nir_peers.py

Without it (or if that python cannot import the peers) every test here skips with the reason.
"""

from __future__ import annotations

import os
import subprocess
from collections import OrderedDict
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import spikeweave as sf
from spikeweave.export import SumPool2d, import_run, load_nir, save_nir
from spikeweave.layers import TimeFolded
from spikeweave.neurons import SpikingNeuron
from spikeweave.training import TrainConfig, Trainer, load_run

RUNNER = Path(__file__).parent / "peer_runner.py"
ENV = "SPIKEWEAVE_PEERS_PYTHON"
PEERS = ("norse", "snntorch")
DT = {"norse": 1e-3, "snntorch": 1e-4}  # snnTorch's importer assumes 1e-4


@cache
def _peers_python() -> str | None:
    """The peers' python, or None; the reason to skip is in :func:`_skip_reason`."""
    py = os.environ.get(ENV)
    if not py:
        return None
    probe = "import nir, norse.torch, snntorch.import_nir"
    try:
        ok = subprocess.run([py, "-c", probe], capture_output=True, timeout=300).returncode == 0
    except OSError:
        ok = False
    return py if ok else None


def _skip_reason() -> str:
    if not os.environ.get(ENV):
        return f"{ENV} is not set (the python of a peers venv; see ../shared/docs/peers.md)"
    return f"{ENV}={os.environ[ENV]} cannot import nir, norse and snntorch"


pytestmark = pytest.mark.skipif(_peers_python() is None, reason=_skip_reason())


def _peer(*args: str | Path) -> None:
    res = subprocess.run(
        [_peers_python(), str(RUNNER), *map(str, args)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]


def _run_peer(peer: str, path: Path, x: torch.Tensor, tmp: Path, dt: float) -> dict:
    np.savez(tmp / "in.npz", x=x.numpy())
    _peer("run", peer, path, tmp / "in.npz", tmp / "out.npz", "--dt", repr(dt))
    with np.load(tmp / "out.npz") as f:
        return {k: f[k] for k in f.files}


def _spikes(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every spiking layer's output for ``x`` [T, B, ...], in order."""
    outs = []
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            if isinstance(layer, SpikingNeuron):
                outs.append(x)
    return outs


def _assert_same_spikes(ours: list[torch.Tensor], theirs: dict) -> None:
    assert len(theirs) - 1 == len(ours)  # "out" besides one array per spiking layer
    for i, s in enumerate(ours):
        assert np.array_equal(theirs[f"spikes_{i}"], s.numpy()), f"spiking layer {i} differs"


@pytest.fixture(scope="module")
def default_mlp(tmp_path_factory):
    """An MLP with the default options (BatchNorm, LIF τ = 2 with decaying input, hard reset,
    population 10) trained on digits; two epochs at lr 1e-2 so that every layer fires (one
    epoch at the default lr leaves the deeper layers silent, which would prove nothing)."""
    torch.set_num_threads(1)
    out = str(tmp_path_factory.mktemp("runs"))
    cfg = TrainConfig(dataset="digits", model="mlp", epochs=2, lr=1e-2, out_dir=out)
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    return load_run(trainer.run_dir)


@pytest.mark.parametrize("peer", PEERS)
def test_a_default_trained_mlp_exported_for_a_peer_gives_its_spikes_bit_for_bit(
    default_mlp, peer, tmp_path
):
    from spikeweave import data
    from spikeweave.cli import app

    path = tmp_path / "mlp.nir"
    args = ["export", str(default_mlp.path), str(path), "--for", peer]
    res = CliRunner().invoke(app, args + (["--dt", "0.001"] if peer == "norse" else []))
    assert res.exit_code == 0, res.output
    test = data.load("digits", "test")
    x = default_mlp.encode(torch.stack([torch.as_tensor(test[i][0]) for i in range(32)]))
    ours = _spikes(default_mlp.model, x)
    assert all(0 < s.mean() < 1 for s in ours), [float(s.mean()) for s in ours]
    _assert_same_spikes(ours, _run_peer(peer, path, x, tmp_path, DT[peer]))


@pytest.mark.parametrize("peer", PEERS)
def test_a_conv_net_with_sum_pooling_gives_the_peers_spikes_bit_for_bit(peer, tmp_path):
    torch.manual_seed(8)
    model = nn.Sequential(
        OrderedDict(
            conv=TimeFolded(nn.Conv2d(1, 6, 3, padding=1)),
            spike1=sf.LIF(tau=2.0),
            pool=TimeFolded(SumPool2d(2)),
            conv2=TimeFolded(nn.Conv2d(6, 8, 3, padding=1)),
            spike2=sf.LIF(tau=2.0),
            pool2=TimeFolded(SumPool2d(2)),
            flat=TimeFolded(nn.Flatten()),
            fc=TimeFolded(nn.Linear(32, 10)),
            spike3=sf.LIF(tau=2.0),
        )
    ).eval()
    with torch.no_grad():  # default init leaves the deeper layers nearly silent
        model.conv.module.weight.mul_(4.0)
        model.conv2.module.weight.mul_(3.0)
        model.fc.module.weight.mul_(3.0)
    path = save_nir(model, tmp_path / "conv.nir", dt=DT[peer], input_shape=(1, 8, 8), peer=peer)
    x = torch.rand(6, 5, 1, 8, 8) * 3
    ours = _spikes(model, x)
    assert all(0 < s.mean() < 1 for s in ours), [float(s.mean()) for s in ours]
    _assert_same_spikes(ours, _run_peer(peer, path, x, tmp_path, DT[peer]))


@pytest.mark.parametrize("peer", PEERS)
def test_a_peers_linear_first_mlp_file_imports_as_a_run_with_its_spikes(peer, tmp_path):
    # Norse 1.1 writes tau = dt·τ, so its file runs at dt² (docs/nir.md); snnTorch at 1e-4
    dt = {"norse": 1e-6, "snntorch": 1e-4}[peer]
    torch.manual_seed(9)
    x = torch.rand(6, 16, 64) * 1.5
    np.savez(tmp_path / "in.npz", x=x.numpy())
    path = tmp_path / f"{peer}.nir"
    _peer("write", peer, path, tmp_path / "in.npz", tmp_path / "spikes.npz")
    with np.load(tmp_path / "spikes.npz") as f:
        theirs = torch.from_numpy(f["spikes"])
    assert 0 < theirs.mean() < 1
    out = import_run(path, tmp_path / "run", dataset="digits", steps=6, dt=dt)
    run = load_run(out)
    with torch.no_grad():
        # the run's MLP flattens [T, B, 1, 8, 8] images; the same numbers as the peer's vectors
        ours = nn.Sequential(*list(run.model)[:-1])(x.reshape(6, 16, 1, 8, 8))
    assert torch.equal(ours, theirs)
    assert torch.equal(load_nir(path, dt=dt)(x), theirs)
