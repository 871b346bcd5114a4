"""Sampled mode: the achieved pixel rate, and exactly the kept events coming back."""

from __future__ import annotations

import numpy as np
import pytest
from sfev_helpers import AEDAT4_FILE, NMNIST_FILES, needs_real, synthetic_events

from spikeweave.compression import compress_file, decompress_file, sample_events
from spikeweave.compression.event_sampler import EventFrameSampler
from spikeweave.compression.sampling import (
    activity_mask,
    random_mask,
    window_frames,
    window_index,
)
from spikeweave.data.events import read_events
from spikeweave.errors import ConfigError


def _is_ordered_subset(kept: np.ndarray, full: np.ndarray) -> bool:
    """``kept`` is ``full`` with some events removed, order unchanged (greedy match)."""
    rows_full = full.tolist()
    i = 0
    for row in kept.tolist():
        while i < len(rows_full) and rows_full[i] != row:
            i += 1
        if i == len(rows_full):
            return False
        i += 1
    return True


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.25, 0.5])
@pytest.mark.parametrize("sampler", ["spiking", "activity", "random"])
def test_achieved_rate_within_one_point(rate, sampler):
    ev = synthetic_events(5000)
    kept, meta = sample_events(ev, (34, 34), rate, window_us=100_000, sampler=sampler)
    assert abs(meta["achieved_rate"] - rate) <= 0.01
    assert meta["kept_events"] == kept.size < ev.size
    # every window keeps exactly round(rate * H * W) pixels
    assert meta["pixels_per_window"] == round(rate * 34 * 34)
    assert meta["sampler"] == sampler


def test_default_sampler_is_the_busiest_pixel_baseline():
    events = synthetic_events(3000)
    kept, meta = sample_events(events, (34, 34), 0.1)
    assert meta["sampler"] == "activity"
    again, _ = sample_events(events, (34, 34), 0.1, sampler="activity")
    assert np.array_equal(kept, again)


@needs_real
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.25])
def test_spiking_sampler_rate_on_a_real_recording(rate):
    full = read_events(NMNIST_FILES[0])
    kept, meta = sample_events(full, (34, 34), rate, sampler="spiking")  # 10 ms windows
    assert abs(meta["achieved_rate"] - rate) <= 0.01
    assert meta["sampler"] == "spiking" and meta["sampler_source"].startswith("builtin:")
    assert 0 < kept.size < full.size


def test_kept_events_are_those_at_the_spiking_samplers_pixels_in_order():
    ev = synthetic_events(3000)
    kept, meta = sample_events(ev, (34, 34), 0.1, window_us=10_000, sampler="spiking")
    frames, _ = window_frames(ev, (34, 34), 10_000)
    assert frames.shape == (meta["n_windows"], 2, 34, 34) and frames.sum() == ev.size
    mask = EventFrameSampler.builtin(0.1)(frames, meta["pixels_per_window"])
    win = window_index(ev["t"], 10_000)
    expected = ev[mask[win, ev["y"], ev["x"]]]
    np.testing.assert_array_equal(kept, expected)
    assert meta["sampler_trained_rate"] == 0.1 and len(meta["sampler_sha256"]) == 16


@needs_real
@pytest.mark.parametrize("rate", [0.05, 0.1])
def test_builtin_sampler_keeps_far_more_events_than_random(rate):
    # The trained sampler picks pixels by content: at the same pixel rate it keeps several
    # times the events random pixels hold (it is not the activity ranking, see the docs).
    full = read_events(NMNIST_FILES[0])
    _, spiking = sample_events(full, (34, 34), rate, sampler="spiking")
    _, random = sample_events(full, (34, 34), rate, sampler="random")
    assert spiking["event_fraction"] > 3 * random["event_fraction"]


def test_activity_prefers_active_pixels_and_breaks_ties_by_index():
    frames = np.zeros((1, 2, 2, 3), dtype=np.int64)
    frames[0, 0, 1, 2] = 5
    mask = activity_mask(frames, 2)
    assert mask[0, 1, 2] and mask[0, 0, 0] and mask.sum() == 2
    assert random_mask(frames, 4, seed=3).sum() == 4


def test_window_closed_on_the_right():
    t = np.array([0, 5, 10, 20])
    np.testing.assert_array_equal(window_index(t, 10), [0, 0, 1, 1])


@pytest.mark.slow
@needs_real
@pytest.mark.parametrize("path", [*NMNIST_FILES[:1], AEDAT4_FILE], ids=lambda p: p.name)
def test_sampled_file_decompresses_to_exactly_the_kept_events(tmp_path, path):
    # 100 ms windows: in 10 ms the AEDAT4 sample touches fewer than 10 % of its pixels.
    # the trained sampler: the one whose weights the file must name (the default, the
    # busiest-pixel baseline, has none)
    result = compress_file(path, tmp_path / "s.sfev", rate=0.1, window_us=100_000,
                           sampler="spiking")  # fmt: skip
    full = read_events(path)
    kept, meta = sample_events(full, result.sensor_size, 0.1, window_us=100_000,
                               sampler="spiking")  # fmt: skip
    assert 0 < kept.size < full.size
    back, header = decompress_file(tmp_path / "s.sfev", tmp_path / "s.npz")
    assert header.sampled and header.meta["kept_events"] == kept.size == back.size
    np.testing.assert_array_equal(back, kept)
    # the file says which sampler (and which weights), rate and window produced it
    for key in ("sampler", "sampler_source", "sampler_sha256", "rate", "window_us"):
        assert header.meta[key] == meta[key]
    assert abs(header.meta["achieved_rate"] - 0.1) <= 0.01
    assert _is_ordered_subset(back[:300], full)
    assert result.compressed_bytes < compress_file(path, None).compressed_bytes


def test_rate_order_and_sampler_are_validated(tmp_path):
    for rate in (0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="rate"):
            sample_events(synthetic_events(10), (34, 34), rate)
    with pytest.raises(ConfigError, match="time-ordered"):
        sample_events(synthetic_events(10)[::-1], (34, 34), 0.1)
    with pytest.raises(ConfigError, match="unknown sampler 'nope'"):
        sample_events(synthetic_events(10), (34, 34), 0.1, sampler="nope")
    with pytest.raises(ConfigError, match="exactly"):
        sample_events(synthetic_events(10), (34, 34), 0.1, mask_fn=lambda f, k: f.sum(1) > 0)


def test_compress_file_defaults_to_the_same_sampler_as_the_cli():
    """The default depends on the mode (test_budget checks both files): ``None`` lets
    compress_file pick, as the CLI does, DEFAULT_SAMPLER under a rate."""
    import inspect

    from spikeweave.compression.files import compress_file
    from spikeweave.compression.sampling import DEFAULT_BUDGET_SAMPLER, DEFAULT_SAMPLER

    assert inspect.signature(compress_file).parameters["sampler"].default is None
    assert (DEFAULT_SAMPLER, DEFAULT_BUDGET_SAMPLER) == ("activity", "spiking")
