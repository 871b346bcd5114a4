"""Sampled mode: the achieved pixel rate, and exactly the kept events coming back."""

from __future__ import annotations

import numpy as np
import pytest
from sfev_helpers import AEDAT4_FILE, NMNIST_FILES, needs_real, synthetic_events

from spikeforge.compression import compress_file, decompress_file, sample_events
from spikeforge.compression.sampling import random_mask, topk_activity, window_index
from spikeforge.data.events import read_events
from spikeforge.errors import ConfigError


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
@pytest.mark.parametrize("sampler", ["topk-activity", "random"])
def test_achieved_rate_within_one_point(rate, sampler):
    ev = synthetic_events(5000)
    kept, meta = sample_events(ev, (34, 34), rate, window_us=100_000, sampler=sampler)
    assert abs(meta["achieved_rate"] - rate) <= 0.01
    assert meta["kept_events"] == kept.size < ev.size
    # every window keeps exactly round(rate * H * W) pixels
    assert meta["pixels_per_window"] == round(rate * 34 * 34)


def test_kept_events_are_those_at_sampled_pixels_in_order():
    ev = synthetic_events(3000)
    kept, meta = sample_events(ev, (34, 34), 0.1, window_us=10_000)
    win = window_index(ev["t"], 10_000)
    frames = np.zeros((meta["n_windows"], 34, 34), dtype=np.int64)
    np.add.at(frames, (win, ev["y"], ev["x"]), 1)
    mask = topk_activity(frames, meta["pixels_per_window"])
    expected = ev[mask[win, ev["y"], ev["x"]]]
    np.testing.assert_array_equal(kept, expected)
    # top-k by activity keeps more events than the pixel rate
    assert meta["event_fraction"] > 0.1


def test_topk_prefers_active_pixels_and_breaks_ties_by_index():
    frames = np.zeros((1, 2, 3), dtype=np.int64)
    frames[0, 1, 2] = 5
    mask = topk_activity(frames, 2)
    assert mask[0, 1, 2] and mask[0, 0, 0] and mask.sum() == 2
    assert random_mask(frames, 4, seed=3).sum() == 4


def test_window_closed_on_the_right():
    t = np.array([0, 5, 10, 20])
    np.testing.assert_array_equal(window_index(t, 10), [0, 0, 1, 1])


@needs_real
@pytest.mark.parametrize("path", [NMNIST_FILES[0], AEDAT4_FILE], ids=lambda p: p.name)
def test_sampled_file_decompresses_to_exactly_the_kept_events(tmp_path, path):
    # 100 ms windows: in 10 ms the AEDAT4 sample touches fewer than 10 % of its pixels, so
    # top-k by activity would keep every event.
    result = compress_file(path, tmp_path / "s.sfev", rate=0.1, window_us=100_000)
    full = read_events(path)
    kept, meta = sample_events(full, result.sensor_size, 0.1, window_us=100_000)
    assert 0 < kept.size < full.size
    back, header = decompress_file(tmp_path / "s.sfev", tmp_path / "s.npz")
    assert header.sampled and header.meta["kept_events"] == kept.size == back.size
    np.testing.assert_array_equal(back, kept)
    assert abs(header.meta["achieved_rate"] - 0.1) <= 0.01
    assert _is_ordered_subset(back[:300], full)
    assert result.compressed_bytes < compress_file(path, None).compressed_bytes


def test_rate_and_order_are_validated():
    for rate in (0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="rate"):
            sample_events(synthetic_events(10), (34, 34), rate)
    with pytest.raises(ConfigError, match="time-ordered"):
        sample_events(synthetic_events(10)[::-1], (34, 34), 0.1)
