"""One cache root: $SPIKEWEAVE_CACHE (default ~/.cache/spikeweave) holds frames/ and kernels/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from spikeweave_format_writers import nmnist_bytes, random_events, write

from spikeweave import data
from spikeweave.data import cache_root, default_cache_dir
from spikeweave.functional import cpu_kernel


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SPIKEWEAVE_CACHE", "SPIKEWEAVE_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_both_caches_live_under_spikeweave_cache(tmp_path: Path, clean_env) -> None:
    clean_env.setenv("SPIKEWEAVE_CACHE", str(tmp_path / "root"))
    assert cache_root() == cpu_kernel.cache_root() == tmp_path / "root"
    assert default_cache_dir() == tmp_path / "root" / "frames"
    assert cpu_kernel.cache_dir() == tmp_path / "root" / "kernels"


def test_default_root_is_home_cache_or_xdg(tmp_path: Path, clean_env) -> None:
    clean_env.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "spikeweave"
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "spikeweave" / "frames"
    assert cpu_kernel.cache_dir() == tmp_path / "home" / ".cache" / "spikeweave" / "kernels"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "spikeweave" / "frames"
    assert cpu_kernel.cache_dir() == tmp_path / "xdg" / "spikeweave" / "kernels"
    clean_env.setenv("SPIKEWEAVE_CACHE", "")  # empty means unset
    assert cache_root() == tmp_path / "xdg" / "spikeweave"


def test_old_kernel_variable_is_gone(tmp_path: Path, clean_env) -> None:
    clean_env.setenv("SPIKEWEAVE_CACHE", str(tmp_path / "root"))
    clean_env.setenv("SPIKEWEAVE_CACHE_DIR", str(tmp_path / "old"))
    assert cpu_kernel.cache_dir() == tmp_path / "root" / "kernels"


@pytest.mark.slow
def test_a_dataset_and_the_kernel_write_into_the_one_root(tmp_path: Path, clean_env) -> None:
    root = tmp_path / "root"
    clean_env.setenv("SPIKEWEAVE_CACHE", str(root))
    ev = random_events(np.random.default_rng(0), 50, 34, 34, 300_000)
    write(tmp_path / "data" / "nmnist" / "Train" / "0" / "0.bin", nmnist_bytes(ev))
    (tmp_path / "data" / "nmnist" / "Test").mkdir()
    data.load("nmnist", root=tmp_path / "data")[0]
    assert len(list((root / "frames").rglob("*.npy"))) == 1
    assert not (tmp_path / "data" / ".cache").exists()  # nothing under the data root any more
    if cpu_kernel.c_compiler() is None:
        pytest.skip("no C compiler on this machine")
    cpu_kernel.reset()
    try:
        assert cpu_kernel.available(), cpu_kernel.unavailable_reason()
        assert len(list((root / "kernels").glob("sf_kernel_*.so"))) == 1
    finally:
        cpu_kernel.reset()
    assert sorted(p.name for p in root.iterdir()) == ["frames", "kernels"]
