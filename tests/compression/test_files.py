"""File-level compression: N-MNIST .bin and .npz output, atomic writes, overflow markers."""

from __future__ import annotations

import numpy as np
import pytest
from sfev_helpers import AEDAT4_FILE, NMNIST_FILES, needs_real, synthetic_events

from spikeweave.compression import (
    compress_file,
    decompress_file,
    encode_events,
    read_sfev,
    write_nmnist,
)
from spikeweave.data.events import read_events, read_nmnist
from spikeweave.errors import ConfigError, DataError


@needs_real
@pytest.mark.parametrize("path", NMNIST_FILES[:3], ids=lambda p: p.name)
def test_nmnist_file_comes_back_byte_identical(tmp_path, path):
    result = compress_file(path, tmp_path / "a.sfev")
    assert result.n_events == result.n_kept and result.sensor_size == (34, 34)
    decompress_file(tmp_path / "a.sfev", tmp_path / "a.bin")
    assert (tmp_path / "a.bin").read_bytes() == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.sfev"]  # no temp files


@needs_real
def test_aedat4_to_npz(tmp_path):
    result = compress_file(AEDAT4_FILE, tmp_path / "a.sfev")
    assert result.sensor_size == (320, 240)
    decompress_file(tmp_path / "a.sfev", tmp_path / "a.npz")
    with np.load(tmp_path / "a.npz") as z:
        assert sorted(z.files) == ["p", "t", "x", "y"]
        original = read_events(AEDAT4_FILE)
        for key in "xypt":
            np.testing.assert_array_equal(z[key], original[key])
            assert z[key].dtype == original[key].dtype


def test_timestamps_past_2_23_us_write_overflow_markers(tmp_path):
    ev = synthetic_events(3000, mean_gap=20_000)  # 60 s: seven 2**23 µs overflows
    assert ev["t"][-1] > 7 * 2**23
    write_nmnist(tmp_path / "o.bin", ev)
    back = read_nmnist(tmp_path / "o.bin", sensor_size=(34, 34))
    np.testing.assert_array_equal(back, ev)
    assert (tmp_path / "o.bin").stat().st_size == 5 * (ev.size + int(ev["t"][-1] >> 23))


def test_nmnist_output_refuses_what_it_cannot_hold(tmp_path):
    ev = synthetic_events(10, width=300, height=300)
    with pytest.raises(ConfigError, match="npz"):
        write_nmnist(tmp_path / "o.bin", ev)


def test_output_suffix_overwrite_and_missing_input(tmp_path):
    src = tmp_path / "e.bin"
    write_nmnist(src, synthetic_events(100))
    with pytest.raises(ConfigError, match="overwrite the input"):
        compress_file(src, src)
    compress_file(src, tmp_path / "e.sfev")
    with pytest.raises(ConfigError, match=r"\.npz"):
        decompress_file(tmp_path / "e.sfev", tmp_path / "e.txt")
    with pytest.raises(DataError, match="no such file"):
        read_sfev(tmp_path / "missing.sfev")


def test_corrupt_file_error_names_the_file(tmp_path):
    path = tmp_path / "c.sfev"
    data = bytearray(encode_events(synthetic_events(500), (34, 34)))
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"c\.sfev: stream .*(corrupt|checksum)") as info:
        decompress_file(path, tmp_path / "c.npz")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "c.npz").exists()
