"""The lossless .sfev codec: exact round trips, the size target, and refusal of bad files."""

from __future__ import annotations

import lzma
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sfev_helpers import AEDAT4_FILE, NMNIST_FILES, needs_real, synthetic_events
from tiers import examples

from spikeweave.compression import MAGIC, decode_events, encode_events, load_events, read_header
from spikeweave.data.events import EVENT_DTYPE
from spikeweave.errors import ConfigError, DataError

TARGET = 0.75  # the bound: at most 0.75x the size of `xz -9e` of the original file


def _xz(path) -> int:
    return len(lzma.compress(path.read_bytes(), preset=9 | lzma.PRESET_EXTREME))


@pytest.mark.slow
@needs_real
@pytest.mark.parametrize("codec", ["zstd", "lzma", "ctx", "ctx3", "rans"])
@pytest.mark.parametrize("path", NMNIST_FILES + [AEDAT4_FILE], ids=lambda p: p.name)
def test_real_recordings_round_trip_and_beat_xz(path, codec):
    events, sensor, _ = load_events(path)
    data = encode_events(events, sensor, codec=codec)
    back, header = decode_events(data)
    assert back.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(back, events)  # same events, same order
    assert (header.width, header.height) == sensor and header.n_events == events.size
    assert len(data) <= TARGET * _xz(path), f"{len(data)} bytes vs xz -9e {_xz(path)}"


@pytest.mark.parametrize(
    "events",
    [
        synthetic_events(0),
        synthetic_events(1),
        synthetic_events(3000, mean_gap=5),  # deltas fit one byte
        synthetic_events(3000, mean_gap=3000),  # two-byte deltas
        synthetic_events(500, mean_gap=1e7),  # four-byte deltas
        synthetic_events(2000, width=640, height=480),  # two-byte coordinates
    ],
    ids=["empty", "one", "dense", "sparse", "very-sparse", "wide-sensor"],
)
@pytest.mark.parametrize("codec", ["zstd", "lzma", "raw", "ctx", "ctx3", "rans"])
def test_synthetic_round_trip(events, codec):
    width = 640 if events.size and events["x"].max() >= 34 else 34
    height = 480 if width == 640 else 34
    back, _ = decode_events(encode_events(events, (width, height), codec=codec))
    np.testing.assert_array_equal(back, events)


@pytest.mark.parametrize("codec", ["zstd", "ctx", "ctx3", "rans"])
def test_unordered_and_extreme_timestamps_round_trip(codec):
    ev = synthetic_events(1000)
    ev["t"] = np.random.default_rng(1).integers(-(2**62), 2**62, ev.size)  # not time-ordered
    ev["t"][:2] = [np.iinfo(np.int64).min, np.iinfo(np.int64).max]  # deltas wrap around
    back, _ = decode_events(encode_events(ev, (34, 34), codec=codec))
    np.testing.assert_array_equal(back, ev)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
    width=st.sampled_from([1, 34, 300]),
    height=st.sampled_from([1, 34, 260]),
    gap=st.sampled_from([0.5, 50.0, 1e5]),
    codec=st.sampled_from(["zstd", "lzma", "ctx", "ctx3", "rans"]),
)
def test_random_events_round_trip(n, seed, width, height, gap, codec):
    ev = synthetic_events(n, width, height, seed, gap)
    back, header = decode_events(encode_events(ev, (width, height), codec=codec))
    np.testing.assert_array_equal(back, ev)
    assert header.n_events == n


def test_bad_input_is_refused_when_encoding():
    ev = synthetic_events(10)
    with pytest.raises(ConfigError, match="outside"):
        encode_events(ev, (10, 10))
    with pytest.raises(ConfigError, match="codec"):
        encode_events(ev, (34, 34), codec="gzip")
    with pytest.raises(ConfigError, match="dtype"):
        encode_events(np.zeros(3), (34, 34))
    ev["p"][0] = 2
    with pytest.raises(ConfigError, match="polarity"):
        encode_events(ev, (34, 34))


# -- refusing corrupt, truncated and newer files ----------------------------------------------

GOOD_EVENTS = synthetic_events(2000)
GOOD = encode_events(GOOD_EVENTS, (34, 34))


def _refused_or_intact(data: bytes) -> None:
    """Decoding ``data`` raises DataError, or returns exactly the original events: the CRCs
    cover the decoded streams, so a flip in bits a zstd frame does not use (found by
    hypothesis: a Huffman table description) changes nothing and is not an error."""
    try:
        back, _ = decode_events(data)
    except DataError:
        return
    np.testing.assert_array_equal(back, GOOD_EVENTS)


def _with_header(data: bytes, **changes: int) -> bytes:
    """``data`` with fields of the fixed header replaced and the header checksum redone."""
    fields = list(struct.unpack_from("<8sHHIIQqB", data))
    names = ["magic", "version", "flags", "width", "height", "n", "t0", "n_streams"]
    for key, value in changes.items():
        fields[names.index(key)] = value
    head_len = read_header(data).header_len
    head = struct.pack("<8sHHIIQqB", *fields) + data[struct.calcsize("<8sHHIIQqB") : head_len - 4]
    return head + struct.pack("<I", zlib.crc32(head)) + data[head_len:]


def test_newer_version_is_refused():
    from spikeweave.compression.codec import VERSION

    with pytest.raises(DataError, match=f"version {VERSION + 1} is newer.*upgrade spikeweave"):
        decode_events(_with_header(GOOD, version=VERSION + 1))


def test_wrong_magic_truncated_and_trailing_bytes_are_refused():
    with pytest.raises(DataError, match="magic"):
        decode_events(b"PK\x03\x04" + GOOD[4:])
    for cut in (0, 5, 20, read_header(GOOD).header_len - 1, len(GOOD) - 1):
        with pytest.raises(DataError):
            decode_events(GOOD[:cut])
    with pytest.raises(DataError, match="truncated"):
        decode_events(GOOD[:-1])
    with pytest.raises(DataError, match="unexpected bytes"):
        decode_events(GOOD + b"\0")


def test_changed_event_count_is_refused_even_with_a_valid_header_checksum():
    with pytest.raises(DataError, match="expected for 2001 events"):
        decode_events(_with_header(GOOD, n=2001))


def test_byte_flips_are_caught_or_harmless():
    head = read_header(GOOD).header_len
    refused = 0
    for pos in range(0, len(GOOD), 7):
        bad = bytearray(GOOD)
        bad[pos] ^= 0x10
        if pos < head:  # the header checksum covers every header byte
            with pytest.raises(DataError):
                decode_events(bytes(bad))
        _refused_or_intact(bytes(bad))
        try:
            decode_events(bytes(bad))
        except DataError:
            refused += 1
    assert refused >= 0.95 * len(range(0, len(GOOD), 7))


FUZZ = settings(
    max_examples=examples(150), deadline=2000, suppress_health_check=[HealthCheck.too_slow]
)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    with pytest.raises(DataError):
        decode_events(data)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_after_the_magic(data):
    with pytest.raises(DataError):
        decode_events(MAGIC + data)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 7)), min_size=1, max_size=4)
)
def test_fuzz_bit_flips(flips):
    bad = bytearray(GOOD)
    for pos, bit in flips:
        bad[pos] ^= 1 << bit
    _refused_or_intact(bytes(bad))


@FUZZ
@given(st.integers(0, len(GOOD) - 1))
def test_fuzz_truncation(cut):
    with pytest.raises(DataError):
        decode_events(GOOD[:cut])


# the same fuzzers on a format-version-3 (ctx3) file of the same events
GOOD_CTX3 = encode_events(GOOD_EVENTS, (34, 34), codec="ctx3")


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(GOOD_CTX3) - 1), st.integers(0, 7)), min_size=1, max_size=4
    )
)
def test_fuzz_bit_flips_in_a_ctx3_file(flips):
    bad = bytearray(GOOD_CTX3)
    for pos, bit in flips:
        bad[pos] ^= 1 << bit
    try:
        back, _ = decode_events(bytes(bad))
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    np.testing.assert_array_equal(back, GOOD_EVENTS)


@FUZZ
@given(st.integers(0, len(GOOD_CTX3) - 1))
def test_fuzz_truncation_of_a_ctx3_file(cut):
    with pytest.raises(DataError):
        decode_events(GOOD_CTX3[:cut])


@FUZZ
@given(st.binary(min_size=1, max_size=200))
def test_fuzz_random_payload_after_a_valid_ctx3_header(data):
    head = read_header(GOOD_CTX3).header_len
    with pytest.raises(DataError):
        decode_events(GOOD_CTX3[:head] + data)


# the same fuzzers on a format-version-4 (rans) file of the same events
GOOD_RANS = encode_events(GOOD_EVENTS, (34, 34), codec="rans")


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(GOOD_RANS) - 1), st.integers(0, 7)), min_size=1, max_size=4
    )
)
def test_fuzz_bit_flips_in_a_rans_file(flips):
    bad = bytearray(GOOD_RANS)
    for pos, bit in flips:
        bad[pos] ^= 1 << bit
    try:
        back, _ = decode_events(bytes(bad))
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    np.testing.assert_array_equal(back, GOOD_EVENTS)


@FUZZ
@given(st.integers(0, len(GOOD_RANS) - 1))
def test_fuzz_truncation_of_a_rans_file(cut):
    with pytest.raises(DataError):
        decode_events(GOOD_RANS[:cut])


@FUZZ
@given(st.binary(min_size=1, max_size=200))
def test_fuzz_random_payload_after_a_valid_rans_header(data):
    head = read_header(GOOD_RANS).header_len
    with pytest.raises(DataError):
        decode_events(GOOD_RANS[:head] + data)


def test_progress_reaches_the_total():
    seen: list[tuple[int, int]] = []
    data = encode_events(
        synthetic_events(3000), (34, 34), progress=lambda d, t: seen.append((d, t))
    )
    assert seen and seen[-1][0] == seen[-1][1] and all(a <= b for a, b in seen)
    seen.clear()
    decode_events(data, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1]
