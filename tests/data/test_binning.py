"""Event -> frame binning: counts are conserved in every mode and the tail is never dropped."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spikeweave_format_writers import make_events, random_events
from tiers import examples

from spikeweave.data import Denoise, ToFrames, denoise, to_frames
from spikeweave.errors import ConfigError, InputError

SENSOR = (9, 7)  # width, height


@st.composite
def event_arrays(draw, max_n=300):
    n = draw(st.integers(0, max_n))
    seed = draw(st.integers(0, 2**16))
    t_max = draw(st.sampled_from([0, 1, 7, 1000, 10**6, 2**40]))
    ev = random_events(np.random.default_rng(seed), n, *SENSOR, t_max)
    ev["t"] += draw(st.sampled_from([0, 13, 1_605_537_493_718_345]))  # absolute AEDAT4-like
    return ev


def _per_pixel(ev):
    counts = np.zeros((2, SENSOR[1], SENSOR[0]))
    np.add.at(counts, (ev["p"].astype(int), ev["y"].astype(int), ev["x"].astype(int)), 1)
    return counts


@settings(max_examples=examples(150), deadline=None, derandomize=True)
@given(
    ev=event_arrays(),
    mode=st.sampled_from(["n_frames", "time_window", "event_count"]),
    value=st.integers(1, 40),
    factor=st.integers(1, 3),
)
def test_every_event_is_counted_exactly_once(ev, mode, value, factor):
    if mode == "time_window":
        span = int(ev["t"].max() - ev["t"].min()) if len(ev) else 0
        value *= max(1, span // 500)  # keep T in the hundreds at most
    frames = to_frames(ev, SENSOR, **{mode: value}, spatial_factor=factor)
    assert frames.dtype == np.float32
    assert frames.shape[1:] == (2, math.ceil(SENSOR[1] / factor), math.ceil(SENSOR[0] / factor))
    assert frames.sum() == len(ev)
    if factor == 1:
        assert np.array_equal(frames.sum(0), _per_pixel(ev))  # right pixel and polarity
    if mode == "n_frames":
        assert frames.shape[0] == value
    elif mode == "event_count":
        assert frames.shape[0] == max(1, math.ceil(len(ev) / value))
        if len(ev):
            assert (frames.reshape(frames.shape[0], -1).sum(1)[:-1] == value).all()
    else:
        span = int(ev["t"].max() - ev["t"].min()) if len(ev) else 0
        assert frames.shape[0] == max(1, math.ceil(span / value))


def test_last_event_exactly_at_the_end_time_is_kept():
    ev = make_events([0, 250, 500, 1000], [0, 1, 2, 3], [0, 0, 0, 0], [1, 1, 1, 1])
    frames = to_frames(ev, SENSOR, n_frames=4)
    assert frames.sum() == 4
    assert frames[3, 1, 0, 3] == 1  # t = t_end lands in the last frame, not beyond it
    assert frames.reshape(4, -1).sum(1).tolist() == [1, 1, 1, 1]
    # explicit window whose end is the last event's time
    frames = to_frames(ev, SENSOR, n_frames=2, t_start=0, t_end=1000)
    assert frames.reshape(2, -1).sum(1).tolist() == [2, 2]
    # fixed duration dividing the span exactly: the event at the end joins the last bin
    frames = to_frames(ev, SENSOR, time_window=500)
    assert frames.shape[0] == 2 and frames.reshape(2, -1).sum(1).tolist() == [2, 2]


def test_bin_edges_are_exact_integer_arithmetic():
    # 3 bins over [0, 3]: edges at 1 and 2 exactly; floating point 1/3 steps would misplace them
    ev = make_events([0, 1, 2, 3], [0] * 4, [0] * 4, [0] * 4)
    frames = to_frames(ev, SENSOR, n_frames=3)
    assert frames.reshape(3, -1).sum(1).tolist() == [1, 1, 2]


def test_explicit_window_counts_only_events_inside():
    ev = make_events([5, 10, 20, 30, 40], [0] * 5, [0] * 5, [0, 1, 0, 1, 0])
    frames = to_frames(ev, SENSOR, n_frames=2, t_start=10, t_end=30)
    assert frames.sum() == 3
    with pytest.raises(ConfigError, match="before t_start"):
        to_frames(ev, SENSOR, n_frames=2, t_start=30, t_end=10)


def test_polarity_channels_and_layout():
    ev = make_events([0, 1], [8, 2], [6, 3], [0, 1])
    frames = to_frames(ev, SENSOR, n_frames=1)
    assert frames.shape == (1, 2, 7, 9)
    assert frames[0, 0, 6, 8] == 1 and frames[0, 1, 3, 2] == 1  # [T, polarity, y, x]


def test_empty_and_zero_duration_recordings():
    assert to_frames(make_events([], [], [], []), SENSOR, n_frames=3).shape == (3, 2, 7, 9)
    same = make_events([7, 7, 7], [0, 1, 2], [0, 0, 0], [1, 1, 1])
    frames = to_frames(same, SENSOR, n_frames=4)
    assert frames.sum() == 3 and frames[0].sum() == 3


def test_bad_options_and_events_are_refused():
    ev = make_events([0], [0], [0], [0])
    with pytest.raises(ConfigError, match="exactly one"):
        to_frames(ev, SENSOR)
    with pytest.raises(ConfigError, match="exactly one"):
        to_frames(ev, SENSOR, n_frames=2, event_count=3)
    with pytest.raises(ConfigError, match="positive integer"):
        to_frames(ev, SENSOR, n_frames=0)
    with pytest.raises(InputError, match="do not fit the sensor"):
        to_frames(make_events([0], [9], [0], [0]), SENSOR, n_frames=1)
    with pytest.raises(InputError, match="polarity"):
        to_frames(make_events([0], [0], [0], [2]), SENSOR, n_frames=1)
    with pytest.raises(ConfigError, match="exactly one"):
        ToFrames(SENSOR)
    long = make_events([0, 2**40], [0, 0], [0, 0], [0, 0])
    with pytest.raises(ConfigError, match="use a larger time_window"):
        to_frames(long, SENSOR, time_window=1)


def test_to_frames_transform_params_cover_every_option():
    a = ToFrames(SENSOR, n_frames=4)
    assert a.frame_shape == (2, 7, 9)
    assert ToFrames(SENSOR, n_frames=4, spatial_factor=2).frame_shape == (2, 4, 5)
    variants = [
        ToFrames(SENSOR, n_frames=5),
        ToFrames(SENSOR, time_window=4),
        ToFrames(SENSOR, event_count=4),
        ToFrames(SENSOR, n_frames=4, spatial_factor=2),
        ToFrames(SENSOR, n_frames=4, denoise_us=100),
        ToFrames((9, 8), n_frames=4),
    ]
    keys = {str(sorted(v.params().items())) for v in [a, *variants]}
    assert len(keys) == len(variants) + 1
    assert a.params() == ToFrames(SENSOR, n_frames=4).params()


def _denoise_reference(ev, sensor, filter_time):
    """Tonic's per-event loop, for comparison."""
    w, h = sensor
    last = np.full((h + 2, w + 2), -(10**18), dtype=np.int64)
    keep = []
    for e in ev:
        x, y, t = int(e["x"]) + 1, int(e["y"]) + 1, int(e["t"])
        last[y, x] = t
        neigh = last[y - 1 : y + 2, x - 1 : x + 2].copy()
        neigh[1, 1] = -(10**18)
        keep.append(bool((neigh > t - filter_time).any()))
    return ev[np.array(keep, dtype=bool)] if len(ev) else ev


@settings(max_examples=examples(80), deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), n=st.integers(0, 200), filter_time=st.integers(1, 5000))
def test_denoise_matches_the_per_event_reference(seed, n, filter_time):
    ev = random_events(np.random.default_rng(seed), n, *SENSOR, 20_000)
    assert np.array_equal(
        denoise(ev, SENSOR, filter_time), _denoise_reference(ev, SENSOR, filter_time)
    )


def test_denoise_drops_isolated_events_and_keeps_clusters():
    ev = make_events([0, 10, 20, 5000], [4, 5, 4, 0], [3, 3, 4, 6], [1, 1, 0, 1])
    kept = Denoise(SENSOR, 100)(ev)
    assert kept["t"].tolist() == [10, 20]  # the first has no earlier neighbour; the last is alone
    frames = ToFrames(SENSOR, n_frames=1, denoise_us=100)(ev)
    assert frames.sum() == 2
