"""The trained event-frame sampler: shipped weights, loading, user runs, and the simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import typer
from safetensors.torch import safe_open, save_file
from sfev_helpers import synthetic_events
from torch.utils.data import Subset
from typer.testing import CliRunner

from spikeweave.compression.cli import compress_command
from spikeweave.compression.event_sampler import (
    BUILTIN_RATES,
    EventFrameSampler,
    builtin_path,
    save_sampler,
)
from spikeweave.compression.files import read_sfev, write_nmnist
from spikeweave.compression.saccades import SaccadeModel, simulate_saccades
from spikeweave.compression.sampler import SamplerMethod, SpikingSampler
from spikeweave.compression.sampling import sample_events
from spikeweave.errors import ConfigError, DataError

app = typer.Typer()
app.command("compress")(compress_command)
app.command("other")(lambda: None)  # two commands, so "compress" is a subcommand
runner = CliRunner()


@pytest.mark.parametrize("rate", BUILTIN_RATES)
def test_builtin_samplers_are_shipped_with_their_command_and_seed(rate):
    path = builtin_path(rate)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["format"] == "spikeweave-event-sampler"
    assert meta["command"].startswith("python -m spikeweave.compression.pretrain")
    assert meta["seed"] == "0" and float(meta["rate"]) == rate
    assert "simulated" in meta["training_data"]
    s = EventFrameSampler.builtin(rate)
    assert s.channels == 2 and s.info["sampler_trained_rate"] == rate


def test_every_rate_uses_a_shipped_sampler(monkeypatch):
    for rate in (0.01, 0.07, 0.5, 1.0):
        assert EventFrameSampler.builtin(rate).info["sampler_trained_rate"] in BUILTIN_RATES
    # with several shipped rates, the nearest one in log scale is used
    from spikeweave.compression import event_sampler

    monkeypatch.setattr(event_sampler, "BUILTIN_RATES", (0.05, 0.10, 0.25))
    monkeypatch.setattr(
        event_sampler, "builtin_path", lambda r: builtin_path(0.10).with_name(f"missing-{r}")
    )
    with pytest.raises(DataError, match="missing-0.25 is missing"):
        EventFrameSampler.builtin(0.2)


def test_save_and_load_give_the_same_scores_and_digest(tmp_path):
    sampler = SpikingSampler(2, hidden=4)
    path = save_sampler(tmp_path / "s.safetensors", sampler, 3, 0.2, {"seed": "7"})
    loaded = EventFrameSampler.from_file(path)
    frames = np.random.default_rng(0).integers(0, 3, (5, 2, 12, 9))
    direct = EventFrameSampler(sampler, 3, 2)
    np.testing.assert_array_equal(loaded.scores(frames), direct.scores(frames))
    assert loaded.info["sampler_sha256"] == direct.info["sampler_sha256"]
    assert loaded(frames, 10).sum((1, 2)).tolist() == [10] * 5
    # the file can be given as the sampler of sampled mode
    _, meta = sample_events(synthetic_events(500), (34, 34), 0.1, sampler=path)
    assert meta["sampler_source"] == str(path) and meta["sampler_trained_rate"] == 0.2


def test_bad_sampler_files_are_refused(tmp_path):
    with pytest.raises(DataError, match="no such sampler file"):
        EventFrameSampler.from_file(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(DataError, match="not a readable safetensors"):
        EventFrameSampler.from_file(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(1)}, tmp_path / "e.safetensors")  # no sampler metadata
    with pytest.raises(DataError, match="not a spikeweave event sampler"):
        EventFrameSampler.from_file(tmp_path / "e.safetensors")


def test_simulated_saccades_are_deterministic_ordered_and_on_the_edges():
    rng = np.random.default_rng(0)
    images = np.zeros((3, 28, 28))
    images[0, 8:20, 12:16] = 1.0  # a bar
    images[1] = rng.random((28, 28))
    a = simulate_saccades(images, seed=5)
    b = simulate_saccades(images, seed=5)
    for ea, eb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ea, eb)
        assert (np.diff(ea["t"]) >= 0).all() and ea["x"].max() < 34 and ea["y"].max() < 34
        assert 0 <= ea["t"].min() and ea["t"].max() < 300_000
    bar, blank = a[0], a[2]
    assert set(np.unique(bar["p"])) == {0, 1}
    # a blank image gives only background noise (0.5 Hz per pixel: ~170 events in 0.3 s)
    assert blank.size < 300 < bar.size
    # the bar's events lie around the bar (x 15..18 on the canvas, +-3 px of motion)
    near = (bar["x"] >= 11) & (bar["x"] <= 22) & (bar["y"] >= 7) & (bar["y"] <= 27)
    assert near.mean() > 0.8
    with pytest.raises(ConfigError):
        simulate_saccades(np.zeros((1, 20, 20)), 0)
    with pytest.raises(ConfigError):
        simulate_saccades(images, 0, SaccadeModel(amplitude_px=7))


def _sampler_run(tmp_path, arm: str):
    from spikeweave import data
    from spikeweave.training import TrainConfig, Trainer

    train, test = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    cfg = TrainConfig(
        dataset="mnist5k",
        task="reconstruction",
        encoder="direct",
        steps=2,
        epochs=1,
        batch_size=16,
        out_dir=str(tmp_path),
    )
    trainer = Trainer(
        cfg,
        method=SamplerMethod({"rate": 0.1, "arm": arm, "hidden": 4}),
        datasets=(Subset(train, range(32)), Subset(test, range(16))),
        run_dir=tmp_path / f"run-{arm}",
    )
    trainer.fit()
    return tmp_path / f"run-{arm}"


@pytest.mark.slow
def test_a_users_sampler_run_from_the_command_line(tmp_path):
    rec = tmp_path / "rec.bin"
    write_nmnist(rec, synthetic_events(3000))
    run = _sampler_run(tmp_path, "spiking")
    out = runner.invoke(
        app,
        [
            "compress",
            str(rec),
            str(tmp_path / "s.sfev"),
            "--rate",
            "0.1",
            "--sampler",
            str(run),
            "--stats",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "achieved 0.10" in out.output and "run:" in out.output
    _, header = read_sfev(tmp_path / "s.sfev")
    assert header.meta["sampler"] == "spiking"
    assert header.meta["sampler_source"] == f"run:{run.resolve()}"
    # an image-trained run has one channel: it sees the polarity-summed frame
    assert EventFrameSampler.from_run(run).channels == 1
    with pytest.raises(ConfigError, match="no spiking sampler"):
        EventFrameSampler.from_run(_sampler_run(tmp_path, "random"))


def test_sampler_options_need_rate(tmp_path):
    rec = tmp_path / "rec.bin"
    write_nmnist(rec, synthetic_events(100))
    out = runner.invoke(
        app, ["compress", str(rec), str(tmp_path / "o.sfev"), "--sampler", "random"]
    )
    assert isinstance(out.exception, ConfigError) and "--rate" in str(out.exception)
    out = runner.invoke(
        app, ["compress", str(rec), str(tmp_path / "o.sfev"), "--rate", "0.1", "--sampler", "x"]
    )
    assert isinstance(out.exception, ConfigError) and "unknown sampler" in str(out.exception)
