"""`spikeweave compress` / `decompress` as typer commands (wired here as the main CLI does)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import typer
from sfev_helpers import synthetic_events
from typer.testing import CliRunner

from spikeweave.compression.cli import compress_command, decompress_command
from spikeweave.compression.files import write_nmnist
from spikeweave.errors import DataError

app = typer.Typer()
app.command("compress")(compress_command)
app.command("decompress")(decompress_command)
runner = CliRunner()


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "rec.bin"
    write_nmnist(path, synthetic_events(4000))
    return path


def test_compress_decompress_round_trip(tmp_path, recording):
    out = runner.invoke(app, ["compress", str(recording), str(tmp_path / "r.sfev")])
    assert out.exit_code == 0, out.output
    assert "4000 events" in out.output and "bytes/event" in out.output
    out = runner.invoke(app, ["decompress", str(tmp_path / "r.sfev"), str(tmp_path / "r.bin")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "r.bin").read_bytes() == recording.read_bytes()


def test_stats_without_output_writes_nothing(tmp_path, recording):
    out = runner.invoke(app, ["compress", "--stats", str(recording)])
    assert out.exit_code == 0, out.output
    assert "xz -9e" in out.output and "bytes/event" in out.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.bin"]


def test_sampled_mode_from_the_command_line(tmp_path, recording):
    out = runner.invoke(
        app, ["compress", "--rate", "0.1", "--stats", str(recording), str(tmp_path / "s.sfev")]
    )
    assert out.exit_code == 0, out.output
    assert "achieved 0.10" in out.output
    out = runner.invoke(app, ["decompress", str(tmp_path / "s.sfev"), str(tmp_path / "s.npz")])
    assert "sampled" in out.output
    with np.load(tmp_path / "s.npz") as z:
        assert 0 < z["t"].size < 4000


def test_corrupt_input_is_a_spikeweave_error(tmp_path):
    (tmp_path / "bad.sfev").write_bytes(b"\x89SFEV\r\n\x1a\x05\x00" + bytes(50))
    out = runner.invoke(app, ["decompress", str(tmp_path / "bad.sfev"), str(tmp_path / "o.npz")])
    assert isinstance(out.exception, DataError)
    assert "newer" in str(out.exception)


def test_progress_bar_on_a_terminal(tmp_path, recording, monkeypatch, capsys):
    import sys

    from spikeweave.compression import cli

    monkeypatch.setattr(cli, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    cli.compress_command(
        recording,
        tmp_path / "p.sfev",
        rate=None,
        stats=False,
        window_us=None,
        sampler=None,
        seed=0,
        codec="zstd",
        device=None,
    )
    cli.decompress_command(tmp_path / "p.sfev", tmp_path / "p.npz")
    err = capsys.readouterr().err
    assert "compress" in err and "decompress" in err


def test_window_us_is_refused_without_rate_and_when_not_positive(tmp_path, recording):
    out = runner.invoke(app, ["compress", str(recording), str(tmp_path / "w.sfev"),
                              "--window-us", "5000"])  # fmt: skip
    assert out.exit_code != 0 and "add --rate R" in str(out.exception)
    for bad in ("0", "-5"):
        out = runner.invoke(app, ["compress", str(recording), str(tmp_path / "w.sfev"),
                                  "--rate", "0.1", "--window-us", bad])  # fmt: skip
        assert "--window-us must be a positive number" in str(out.exception)
    assert not (tmp_path / "w.sfev").exists()


def test_sample_events_refuses_a_zero_window_instead_of_using_the_default():
    from spikeweave.compression.sampling import sample_events
    from spikeweave.errors import ConfigError

    with pytest.raises(ConfigError, match="window must be a positive number of µs, got 0"):
        sample_events(synthetic_events(100), (34, 34), 0.1, window_us=0, sampler="random")


def test_device_is_refused_without_rate_and_a_missing_gpu_is_one_line(tmp_path, recording):
    out = runner.invoke(
        app, ["compress", str(recording), str(tmp_path / "d.sfev"), "--device", "cpu"]
    )
    assert out.exit_code != 0 and "add --rate R" in str(out.exception)
    if not torch.cuda.is_available():
        out = runner.invoke(app, ["compress", str(recording), str(tmp_path / "d.sfev"),
                                  "--rate", "0.1", "--device", "cuda"])  # fmt: skip
        assert out.exit_code != 0 and "CUDA" in str(out.exception)
        assert "\n" not in str(out.exception)
    assert not (tmp_path / "d.sfev").exists()


def test_the_trained_sampler_on_the_auto_device_keeps_what_it_keeps_on_the_cpu(tmp_path):
    from spikeweave.compression.sampling import sample_events

    events = synthetic_events(3000)
    auto, _ = sample_events(events, (34, 34), 0.1, sampler="spiking", device="auto")
    cpu, meta = sample_events(events, (34, 34), 0.1, sampler="spiking", device="cpu")
    assert meta["sampler"] == "spiking"
    if not torch.cuda.is_available():  # auto is the CPU here: bit-identical choice of events
        assert np.array_equal(auto, cpu)
