"""The frame cache: keyed by every binning parameter and the source file, never stale."""

from __future__ import annotations

import os

import numpy as np
import pytest
from spikeweave_format_writers import nmnist_bytes, random_events, write

from spikeweave import data
from spikeweave.data import FrameCache, default_cache_dir
from spikeweave.data import event_datasets as ed


def _root(tmp_path, n=3, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        write(
            tmp_path / "nmnist" / "Train" / str(i) / f"{i}.bin",
            nmnist_bytes(random_events(rng, 200, 34, 34, 300_000)),
        )
    (tmp_path / "nmnist" / "Test").mkdir(parents=True, exist_ok=True)
    return tmp_path


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache root per test, so entry counts see only this test's entries."""
    monkeypatch.setenv("SPIKEWEAVE_CACHE", str(tmp_path / "spikeweave-cache"))
    return tmp_path / "spikeweave-cache"


def _entries():
    return sorted(default_cache_dir().rglob("*.npy"))


def _forbid_decoding(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("decoded although the frames were cached")

    monkeypatch.setattr(ed, "read_events", boom)


def test_cached_frames_are_reused_and_identical(tmp_path, monkeypatch):
    root = _root(tmp_path)
    first = [data.load("nmnist", root=root)[i][0] for i in range(3)]
    assert len(_entries()) == 3
    _forbid_decoding(monkeypatch)
    again = [data.load("nmnist", root=root)[i][0] for i in range(3)]
    assert all((a == b).all() for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize(
    "option",
    [
        {"frames": 7},
        {"time_window": 50_000},
        {"event_count": 64},
        {"spatial_factor": 2},
        {"denoise_us": 5000},
        {"strict": False},
    ],
)
def test_a_changed_parameter_never_reuses_the_cache(tmp_path, option):
    root = _root(tmp_path, n=1)
    data.load("nmnist", root=root)[0]
    before = set(_entries())
    frames, _ = data.load("nmnist", root=root, **option)[0]
    assert len(set(_entries()) - before) == 1
    expected = data.load("nmnist", root=root, cache=False, **option)[0][0]
    assert (frames == expected).all()


def test_a_changed_source_file_never_reuses_the_cache(tmp_path):
    root = _root(tmp_path, n=1)
    path = root / "nmnist" / "Train" / "0" / "0.bin"
    old = data.load("nmnist", root=root)[0][0]
    stat = path.stat()
    events = random_events(np.random.default_rng(9), 200, 34, 34, 300_000)
    path.write_bytes(nmnist_bytes(events))  # same size, new content
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    new = data.load("nmnist", root=root)[0][0]
    assert not (new == old).all()
    assert (new.numpy() == data.ToFrames((34, 34), n_frames=10)(events)).all()


def test_corrupt_entries_are_recomputed(tmp_path):
    root = _root(tmp_path, n=1)
    good = data.load("nmnist", root=root)[0][0]
    (entry,) = _entries()
    entry.write_bytes(b"not an npy file")
    assert (data.load("nmnist", root=root)[0][0] == good).all()
    assert np.load(entry).sum() == good.sum()


def test_disabled_cache_writes_nothing_and_cache_dir_is_honoured(tmp_path):
    root = _root(tmp_path, n=1)
    data.load("nmnist", root=root, cache=False)[0]
    assert not _entries()
    data.load("nmnist", root=root, cache_dir=tmp_path / "elsewhere")[0]
    assert len(list((tmp_path / "elsewhere").rglob("*.npy"))) == 1


def test_frame_cache_stores_counts_compactly(tmp_path):
    cache = FrameCache(tmp_path)
    src = write(tmp_path / "src.bin", b"")
    key = cache.key(src, {"a": 1})
    assert key != cache.key(src, {"a": 2})
    frames = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    cache.save(key, frames)
    assert np.load(cache.path(key)).dtype == np.uint16
    assert cache.load(key).dtype == np.float32 and (cache.load(key) == frames).all()
    cache.save(key, frames + 0.5)
    assert np.load(cache.path(key)).dtype == np.float32


def test_default_cache_dir_is_frames_under_the_cache_root(tmp_path, monkeypatch, own_cache):
    assert default_cache_dir() == own_cache / "frames"
    monkeypatch.delenv("SPIKEWEAVE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "spikeweave" / "frames"
