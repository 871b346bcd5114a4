"""Event readers on the real recordings in ../shared/data/real and on byte-exact written files."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
from cli_memory import assert_one_line_error, run_spikeweave
from real_data import REAL, needs_real
from spikeweave_format_writers import (
    AEDAT31_HEADER,
    PACKET,
    aedat2_bytes,
    aedat31_bytes,
    aedat31_polarity_packet,
    make_events,
    nmnist_bytes,
    random_events,
    read_labels_csv,
    write,
)

from spikeweave.data import EVENT_DTYPE, detect_format, read_events
from spikeweave.errors import DataError

# From ../shared/data/real/SOURCES.md: file, class, events, OFF/ON counts, first/last t (µs).
NMNIST_SMALL = [
    ("1.bs2", 5, 4681, 2353, 2328, 893, 305_924),
    ("2.bs2", 0, 5028, 2519, 2509, 937, 305_341),
    ("3.bs2", 4, 3307, 1667, 1640, 4231, 306_195),
    ("4.bs2", 1, 2723, 1347, 1376, 105, 308_710),
    ("5.bs2", 9, 3913, 1975, 1938, 1213, 309_976),
    ("6.bs2", 2, 4921, 2485, 2436, 489, 308_966),
    ("8.bs2", 3, 5520, 2792, 2728, 1138, 310_333),
    ("14.bs2", 6, 4542, 2279, 2263, 3606, 309_032),
    ("16.bs2", 7, 4138, 2089, 2049, 1253, 310_336),
    ("18.bs2", 8, 4096, 2054, 2042, 1548, 309_431),
]


def _check_nmnist(ev, n, off, on, t0, t1):
    assert ev.dtype == EVENT_DTYPE
    assert len(ev) == n
    assert ev["x"].min() == 0 and ev["x"].max() == 33
    assert ev["y"].min() == 0 and ev["y"].max() == 33
    assert np.bincount(ev["p"], minlength=2).tolist() == [off, on]
    assert ev["t"][0] == t0 and ev["t"][-1] == t1
    assert (np.diff(ev["t"]) >= 0).all()


@needs_real
@pytest.mark.parametrize(("name", "label", "n", "off", "on", "t0", "t1"), NMNIST_SMALL)
def test_real_nmnist_samples_decode_as_listed(name, label, n, off, on, t0, t1):
    folder = REAL / "nmnist" / "slayerPytorch_NMNISTsmall"
    assert read_labels_csv(folder / "labels.csv")[name] == label
    ev = read_events(folder / name, sensor_size=(34, 34))
    _check_nmnist(ev, n, off, on, t0, t1)
    assert 300_000 < ev["t"][-1] - ev["t"][0] < 312_000  # three saccades


@needs_real
def test_real_tonic_nmnist_sample(tmp_path):
    path = REAL / "nmnist" / "tonic" / "sample_nmnist.bin"
    assert detect_format(path) == "nmnist"
    _check_nmnist(read_events(path), 4325, 2180, 2145, 654, 311_175)
    # the same bytes under SLAYER's suffix decode identically
    copy = shutil.copy(path, tmp_path / "sample.bs2")
    assert np.array_equal(read_events(copy), read_events(path))


@needs_real
def test_real_aedat4_recording():
    path = REAL / "aedat4" / "tonic_sample.aedat4"
    assert detect_format(path) == "aedat4"
    ev = read_events(path)
    assert ev.dtype == EVENT_DTYPE
    assert len(ev) == 111_954
    assert ev["x"].max() < 320 and ev["y"].max() < 240
    assert ev["x"].max() == 319 and ev["y"].max() == 239
    assert (np.diff(ev["t"]) >= 0).all()
    assert np.bincount(ev["p"]).tolist() == [56_931, 55_023]
    assert ev["t"][0] == 1_605_537_493_718_345 and ev["t"][-1] == 1_605_537_494_308_262


@needs_real
def test_real_aedat4_sensor_bound_is_enforced(tmp_path):
    with pytest.raises(
        DataError,
        match=r"tonic_sample.aedat4: event at event packet 0 .*outside the 100x100 sensor",
    ):
        read_events(REAL / "aedat4" / "tonic_sample.aedat4", sensor_size=(100, 100))


# -- N-MNIST written byte-exact ---------------------------------------------------------------


def test_nmnist_layout_and_overflow_marker(tmp_path):
    ev = make_events(
        [5, 70_000, (1 << 23) + 3, (2 << 23) + 9], [1, 33, 0, 7], [2, 0, 33, 5], [1, 0, 1, 0]
    )
    blob = nmnist_bytes(ev)
    assert len(blob) == 5 * (4 + 2)  # two overflow markers
    assert blob[:5] == bytes([1, 2, 0x80, 0, 5])
    out = read_events(write(tmp_path / "a.bin", blob))
    assert np.array_equal(out, ev)


def test_nmnist_empty_file_is_refused(tmp_path):
    # more cases, every format: test_empty_recordings.py
    with pytest.raises(DataError, match=r"e\.bin: empty recording \(the file is 0 bytes\)"):
        read_events(write(tmp_path / "e.bin", b""))


def test_nmnist_truncation_names_file_and_offset(tmp_path):
    blob = nmnist_bytes(make_events([1, 2, 3], [0, 1, 2], [0, 1, 2], [0, 1, 0]))
    path = write(tmp_path / "t.bin", blob[:-2])
    with pytest.raises(DataError, match=r"t\.bin.*byte offset 10"):
        read_events(path)


def test_nmnist_backwards_time_and_out_of_sensor_are_errors(tmp_path):
    path = write(tmp_path / "b.bin", nmnist_bytes(make_events([10, 5], [0, 0], [0, 0], [0, 0])))
    with pytest.raises(DataError, match=r"b\.bin.*backwards at byte offset 5"):
        read_events(path)
    sorted_ev = read_events(path, strict=False)
    assert sorted_ev["t"].tolist() == [5, 10]
    path = write(tmp_path / "c.bin", nmnist_bytes(make_events([1, 2], [3, 40], [0, 0], [0, 0])))
    with pytest.raises(DataError, match=r"byte offset 5 has \(x, y\) = \(40, 0\).*34x34"):
        read_events(path, sensor_size=(34, 34))


# -- AEDAT 2.0 (CIFAR10-DVS) written byte-exact ------------------------------------------------


def test_aedat2_roundtrip_with_dvs128_addressing(tmp_path):
    ev = random_events(np.random.default_rng(1), 500, 128, 128, 1_300_000)
    blob = aedat2_bytes(ev, special_at=(0, 200))
    path = write(tmp_path / "cifar10_cat_0.aedat", blob)
    assert detect_format(path) == "aedat2"
    out = read_events(path)
    assert np.array_equal(out, ev)  # the two special events are skipped


def test_aedat2_address_bits_by_hand(tmp_path):
    # x=0 is stored mirrored (127 << 1); y=5 in bits 14..8; ON is bit 0 clear.
    body = np.array([(5 << 8) | (127 << 1) | 0, 42, (0 << 8) | (0 << 1) | 1, 43], dtype=">u4")
    path = write(tmp_path / "h.aedat", b"#!AER-DAT2.0\r\n" + body.tobytes())
    out = read_events(path)
    assert out.tolist() == [(42, 0, 5, 1), (43, 127, 0, 0)]


def test_aedat2_errors_name_offsets(tmp_path):
    ev = make_events([1, 2], [0, 1], [0, 1], [0, 1])
    blob = aedat2_bytes(ev)
    header = blob.index(b"\r\n# created") + len(b"\r\n# created Thu Jan 01 00:00:00 CET 2015\r\n")
    with pytest.raises(DataError, match=rf"byte offset {header + 8}"):
        read_events(write(tmp_path / "t.aedat", blob[:-3]))
    bad = bytearray(blob)
    bad[header + 8] = 0x40  # sets bit 30 of the second address
    with pytest.raises(
        DataError,
        match=rf"b\.aedat: address 0x400001fc at byte offset {header + 8} is not a DVS128",
    ):
        read_events(write(tmp_path / "b.aedat", bytes(bad)))
    with pytest.raises(DataError, match="never ends"):
        read_events(write(tmp_path / "h.aedat", b"#!AER-DAT2.0 no newline"))


# -- AEDAT 3.1 (DVS128 Gesture) written byte-exact ---------------------------------------------


def test_aedat31_roundtrip_with_other_packets_and_ts_overflow(tmp_path):
    rng = np.random.default_rng(2)
    ev = random_events(rng, 700, 128, 128, 6_000_000)
    ev["t"] += (1 << 31) - 3_000_000  # crosses the 31-bit overflow
    blob = aedat31_bytes(ev, packet_size=50)
    path = write(tmp_path / "user01_natural.aedat", blob)
    assert detect_format(path) == "aedat3"
    out = read_events(path)
    assert np.array_equal(out, ev)


def test_aedat31_skips_invalid_events_and_unused_capacity(tmp_path):
    ev = make_events([10, 20, 30], [1, 2, 3], [4, 5, 6], [1, 0, 1])
    packet = aedat31_polarity_packet(ev, 0, capacity=8, invalid=np.array([False, True, False]))
    out = read_events(write(tmp_path / "v.aedat", AEDAT31_HEADER + packet))
    assert out.tolist() == [(10, 1, 4, 1), (30, 3, 6, 1)]


def test_aedat31_header_and_packet_errors(tmp_path):
    ev = make_events([10, 20], [1, 2], [4, 5], [1, 0])
    good = AEDAT31_HEADER + aedat31_polarity_packet(ev, 0)
    with pytest.raises(DataError, match="END-HEADER"):
        read_events(write(tmp_path / "a.aedat", b"#!AER-DAT3.1\r\n#Format: RAW\r\n"))
    start = len(AEDAT31_HEADER)
    with pytest.raises(DataError, match=rf"packet at byte offset {start} declares 16 bytes"):
        read_events(write(tmp_path / "b.aedat", good[:-1]))
    with pytest.raises(DataError, match=rf"packet header starts at byte offset {len(good)}"):
        read_events(write(tmp_path / "c.aedat", good + PACKET.pack(1, 1, 8, 4, 0, 0, 0, 0)[:10]))
    corrupt = AEDAT31_HEADER + PACKET.pack(1, 1, 8, 4, 0, 1, 5, 5)
    with pytest.raises(DataError, match=rf"corrupt packet header at byte offset {start}"):
        read_events(write(tmp_path / "d.aedat", corrupt))
    big = make_events([1], [200], [3], [1])
    with pytest.raises(DataError, match="outside the 128x128 sensor"):
        read_events(write(tmp_path / "e.aedat", AEDAT31_HEADER + aedat31_polarity_packet(big, 0)))


def test_unknown_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"x\.dat: not a recognised event file"):
        read_events(write(tmp_path / "x.dat", b"hello world"))
    with pytest.raises(DataError, match="no such event file"):
        read_events(tmp_path / "missing.bin")
    with pytest.raises(DataError, match="version 3.0 is not supported"):
        read_events(write(tmp_path / "old.aedat", b"#!AER-DAT3.0\r\n"))
    with pytest.raises(DataError, match="declares no event stream|AEDAT 4"):
        read_events(write(tmp_path / "v4.aedat4", b"#!AER-DAT4.0\r\n" + b"\0" * 40))


@needs_real
@pytest.mark.parametrize("where", ["header", "packet"])
def test_aedat4_lengths_beyond_the_file_are_refused_before_decoding(tmp_path, where):
    good = (REAL / "aedat4" / "tonic_sample.aedat4").read_bytes()
    bad = bytearray(good)
    if where == "header":  # the decoder allocated 4 GiB for this and aborted the process
        bad[14:18] = struct.pack("<I", 0xFFFFFFFF)
        match = r"header declares 4294967295 bytes at byte offset 18"
    else:
        (header_len,) = struct.unpack_from("<I", good, 14)
        bad[18 + header_len + 4 : 18 + header_len + 8] = struct.pack("<I", 0xFFFFFFF0)
        match = rf"packet at byte offset {18 + header_len} declares 4294967280 bytes"
    path = write(tmp_path / "bad.aedat4", bytes(bad))
    with pytest.raises(DataError, match=match):
        read_events(path)
    if where == "header":  # and through the CLI
        run = run_spikeweave("compress", path, tmp_path / "bad.sfev")
        assert_one_line_error(run, "bad.aedat4", "4294967295")
