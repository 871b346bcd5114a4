"""Sampled mode under a size budget: the largest k whose file fits, and what it records."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cli_run import run_main
from sfev_helpers import NMNIST_FILES, needs_real, synthetic_events

from spikeweave.compression import budget as budget_mod
from spikeweave.compression import compress_file, encode_events, load_events, read_sfev
from spikeweave.compression.budget import sample_to_budget
from spikeweave.compression.event_sampler import EventFrameSampler
from spikeweave.compression.files import write_nmnist
from spikeweave.compression.sampling import (
    activity_mask,
    activity_ranks,
    sample_events,
    window_frames,
)
from spikeweave.errors import ConfigError

SAMPLERS = ["spiking", "activity", "random"]
SENSOR = (34, 34)
HW = SENSOR[0] * SENSOR[1]


@pytest.fixture
def spy(monkeypatch):
    """Every sampled file the search encodes: ``{k: (bytes, kept events)}``, the last (the
    fixed point, as written) per ``k``."""
    files: dict[int, tuple[int, int]] = {}
    real = budget_mod.encode_events

    def encode(events, sensor, **kw):
        data = real(events, sensor, **kw)
        if kw.get("meta") is not None:
            files[kw["meta"]["pixels_per_window"]] = (len(data), int(events.size))
        return data

    monkeypatch.setattr(budget_mod, "encode_events", encode)
    return files


def _check_largest_k(data: bytes, meta: dict, files: dict, hw: int) -> int:
    """The file fits its budget and the one at ``k + 1`` (as the search wrote it) does not."""
    k, budget = meta["pixels_per_window"], meta["budget_bytes"]
    assert len(data) <= budget
    assert files[k][0] == len(data)
    if k < hw:
        assert files[k + 1][0] > budget
    return k


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_synthetic_file_fits_the_budget_and_one_more_pixel_would_not(spy, sampler, fraction):
    ev = synthetic_events(4000)
    data, kept, meta = sample_to_budget(ev, SENSOR, fraction, codec="ctx3", sampler=sampler)
    lossless = len(encode_events(ev, SENSOR, codec="ctx3"))
    assert meta["lossless_bytes"] == lossless
    assert meta["budget_bytes"] == math.floor(fraction * lossless)
    k = _check_largest_k(data, meta, spy, HW)
    assert 0 < k < HW and 0 < kept.size < ev.size
    assert spy[k + 1][1] >= kept.size  # nested: one more pixel per window keeps a superset


@needs_real
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_real_nmnist_file_fits_the_budget_and_one_more_pixel_would_not(tmp_path, spy, sampler):
    path = NMNIST_FILES[0]
    result = compress_file(path, tmp_path / "b.sfev", size_budget=0.25, sampler=sampler)
    events, header = read_sfev(tmp_path / "b.sfev")
    data = (tmp_path / "b.sfev").read_bytes()
    assert result.compressed_bytes == len(data)
    assert header.meta["lossless_bytes"] == compress_file(path, None).compressed_bytes
    w, h = result.sensor_size
    k = _check_largest_k(data, header.meta, spy, w * h)
    full, sensor, _ = load_events(path)
    kept, _ = sample_events(full, sensor, k / (w * h), sampler=sampler)
    np.testing.assert_array_equal(events, kept)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_budget_file_equals_sample_events_at_the_chosen_rate(tmp_path, sampler):
    path = tmp_path / "rec.bin"
    write_nmnist(path, synthetic_events(3000, seed=2))
    result = compress_file(path, tmp_path / "b.sfev", size_budget=0.4, sampler=sampler, seed=5)
    events, header = read_sfev(tmp_path / "b.sfev")
    full, sensor, _ = load_events(path)
    k = header.meta["pixels_per_window"]
    kept, meta = sample_events(full, sensor, k / HW, sampler=sampler, seed=5)
    np.testing.assert_array_equal(events, kept)
    assert result.n_kept == kept.size
    for key, value in meta.items():
        assert header.meta[key] == value, key
    # the file is the ordinary sampled file of those events with the recorded metadata
    again = encode_events(kept, sensor, codec="ctx3", meta=header.meta)
    assert again == (tmp_path / "b.sfev").read_bytes()


def test_metadata_records_budget_k_lossless_size_and_achieved_fraction(tmp_path):
    path = tmp_path / "rec.bin"
    write_nmnist(path, synthetic_events(3000))
    out = tmp_path / "b.sfev"
    code, stdout, err = run_main("compress", "--size-budget", "0.5", "--stats", path, out)
    assert code == 0, err
    _, header = read_sfev(out)
    m = header.meta
    size = out.stat().st_size
    assert m["size_budget"] == 0.5
    assert m["lossless_bytes"] == compress_file(path, None).compressed_bytes
    assert m["size_fraction"] == round(size / m["lossless_bytes"], 4)
    assert m["rate"] == m["achieved_rate"] == m["pixels_per_window"] / HW
    assert m["sampler"] == "spiking"  # the default under a size budget
    assert "size budget" in stdout and f"chose {m['pixels_per_window']} pixels/window" in stdout
    assert f"{m['size_fraction']:.4f} x lossless" in stdout


def test_default_sampler_is_spiking_under_a_budget_and_activity_under_a_rate(tmp_path):
    path = tmp_path / "rec.bin"
    write_nmnist(path, synthetic_events(2000))
    assert compress_file(path, None, size_budget=0.5).meta["sampler"] == "spiking"
    assert compress_file(path, None, rate=0.1).meta["sampler"] == "activity"
    code, _, err = run_main("compress", "--rate", "0.1", path, tmp_path / "r.sfev")
    assert code == 0, err
    assert read_sfev(tmp_path / "r.sfev")[1].meta["sampler"] == "activity"


def test_budget_below_the_smallest_file_is_a_one_line_error(tmp_path):
    ev = synthetic_events(200)
    with pytest.raises(ConfigError, match="less than the .* bytes of a sampled file"):
        sample_to_budget(ev, SENSOR, 0.01, codec="ctx3", sampler="activity")
    path = tmp_path / "rec.bin"
    write_nmnist(path, ev)
    code, _, err = run_main("compress", "--size-budget", "0.01", path, tmp_path / "o.sfev")
    _assert_one_line_error(code, err, "no events")
    assert not (tmp_path / "o.sfev").exists()


def _assert_one_line_error(code: int, err: str, match: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and match in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--rate", "0.1", "--size-budget", "0.5"], "not both"),
        (["--size-budget", "0"], "--size-budget must be in (0, 1]"),
        (["--size-budget", "-0.2"], "--size-budget must be in (0, 1]"),
        (["--size-budget", "1.5"], "--size-budget must be in (0, 1]"),
        (["--size-budget", "nan"], "--size-budget must be in (0, 1]"),
        (["--size-budget", "inf"], "--size-budget must be in (0, 1]"),
        (["--size-budget", "half"], "size-budget"),
        (["--size-budget", "0.5", "--sampler", "nope"], "unknown sampler 'nope'"),
        (["--size-budget", "0.5", "--window-us", "0"], "--window-us must be a positive"),
        (["--sampler", "spiking"], "add --rate R or --size-budget F"),
    ],
)
def test_cli_refuses_bad_budgets_in_one_line(tmp_path, args, match):
    path = tmp_path / "rec.bin"
    write_nmnist(path, synthetic_events(500))
    code, _, err = run_main("compress", *args, path, tmp_path / "o.sfev")
    _assert_one_line_error(code, err, match)
    assert not (tmp_path / "o.sfev").exists()


def test_compress_file_refuses_rate_with_budget_and_bad_fractions(tmp_path):
    path = tmp_path / "rec.bin"
    write_nmnist(path, synthetic_events(500))
    with pytest.raises(ConfigError, match="not both"):
        compress_file(path, None, rate=0.1, size_budget=0.5)
    for bad in (0, 1.0001, float("nan"), "x"):
        with pytest.raises(ConfigError, match="size-budget"):
            compress_file(path, None, size_budget=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="time-ordered"):
        sample_to_budget(synthetic_events(50)[::-1], SENSOR, 0.5, codec="ctx3")


def test_trained_sampler_scores_each_window_once_whatever_the_bisection(monkeypatch):
    calls = []
    real = EventFrameSampler.scores

    def scores(self, frames):
        calls.append(frames.shape[0])
        return real(self, frames)

    monkeypatch.setattr(EventFrameSampler, "scores", scores)
    ev = synthetic_events(3000)
    _, _, meta = sample_to_budget(ev, SENSOR, 0.5, codec="ctx3", sampler="spiking")
    assert sum(calls) == meta["n_windows"]  # every window scored once, not once per step


def test_activity_ranks_give_activity_masks_at_every_k():
    frames, _ = window_frames(synthetic_events(1500, width=8, height=6), (8, 6), 10_000)
    ranks = activity_ranks(frames)
    for k in range(0, 8 * 6 + 1):
        np.testing.assert_array_equal(ranks < k, activity_mask(frames, k))


def test_full_budget_keeps_almost_everything_and_reports_progress_to_the_end():
    ev = synthetic_events(3000)
    seen: list[tuple[int, int]] = []
    data, kept, meta = sample_to_budget(
        ev, SENSOR, 1.0, codec="zstd", sampler="activity", progress=lambda d, t: seen.append((d, t))
    )
    # the M stream makes the file with every event larger than the lossless one
    assert len(data) <= meta["lossless_bytes"] and kept.size < ev.size
    assert seen[-1][0] == seen[-1][1] and all(d <= t for d, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
