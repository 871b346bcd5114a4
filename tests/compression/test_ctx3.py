"""The ``ctx3`` codec (format version 3): the compiled coder writes and reads the bitstream of
the Python reference byte for byte, blocks decode alone (random access by time), crafted or
damaged blocks are refused with one-line errors, and older versions still decode."""

from __future__ import annotations

import lzma

import numpy as np
import pytest
from sfev_helpers import (
    AEDAT4_FILE,
    NMNIST_FILES,
    block_payloads,
    event_variant,
    needs_real,
    rewrite_first_block_record,
    synthetic_events,
)

from spikeweave.compression import codec, ctx3code, ctx_native
from spikeweave.compression.codec import decode_events, encode_events, select_time
from spikeweave.compression.files import compress_file, load_events, write_nmnist
from spikeweave.data.events import make_events
from spikeweave.errors import DataError

needs_native = pytest.mark.skipif(
    ctx_native.library("ctx3") is None,
    reason=f"no compiled ctx3 coder: {ctx_native.unavailable_reason('ctx3')}",
)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 300 events, so a few thousand events make many blocks."""
    monkeypatch.setattr(ctx3code, "BLOCK_EVENTS", 300)


def test_ctx3_writes_version_3_and_older_versions_still_decode():
    ev = synthetic_events(500)
    for name, version in (("zstd", 1), ("ctx", 2), ("ctx3", 3)):
        data = encode_events(ev, (34, 34), codec=name)
        back, header = decode_events(data)
        assert header.version == version
        np.testing.assert_array_equal(back, ev)


@needs_native
@pytest.mark.parametrize(
    "kind", ["plain", "unordered-time", "column-scan", "huge-gaps", "one-pixel"]
)
# (4096, 2048): more pixels than the C coder's direct array, so its hash table is used
@pytest.mark.parametrize(
    "size", [(34, 34), (1, 1), (2, 700), (640, 480), (65535, 3), (4096, 2048)], ids=str
)
def test_compiled_coder_writes_and_reads_the_python_reference_bitstream(size, kind):
    ev = event_variant(synthetic_events(600, *size, seed=size[0] + size[1]), kind, size[0])
    fast_info, fast = ctx3code.encode_block(ev, *size, native=True)
    ref_info, ref = ctx3code.encode_block(ev, *size, native=False)
    assert fast == ref and fast_info.pack() == ref_info.pack()
    for native in (True, False):
        out = make_events(ev.size)
        ctx3code.decode_block(fast, fast_info, *size, out, native=native)
        np.testing.assert_array_equal(out, ev)


def test_both_pixel_modes_are_chosen_and_round_trip():
    rows = synthetic_events(2000, 320, 240)
    rows["y"], rows["x"] = 5, rows["x"] % 4  # one row, four columns: y first (mode 0) wins
    scan = event_variant(synthetic_events(2000, 320, 240), "column-scan", 320)  # x first wins
    for ev, mode in ((rows, 0), (scan, ctx3code.XFIRST)):
        data = encode_events(ev, (320, 240), codec="ctx3")
        assert {info.flags & ctx3code.XFIRST for _, info, _ in block_payloads(data)} == {mode}
        np.testing.assert_array_equal(decode_events(data)[0], ev)


@pytest.mark.parametrize("size", [(34, 34), (300, 2)], ids=str)
def test_ctx3_round_trips_across_many_blocks(small_blocks, size):
    ev = synthetic_events(2000, *size)
    back, header = decode_events(encode_events(ev, size, codec="ctx3", meta={"k": 3}))
    np.testing.assert_array_equal(back, ev)
    assert header.meta == {"k": 3} and header.version == 3


def test_the_most_compressible_block_stays_within_the_declared_bound():
    ev = synthetic_events(ctx3code.BLOCK_EVENTS, 1, 1)
    ev["t"], ev["x"], ev["y"], ev["p"] = 7, 0, 0, 1  # one pixel, one time, one polarity
    info, payload = ctx3code.encode_block(ev, 1, 1)
    assert ev.size <= ctx3code.MAX_EVENTS_PER_BYTE * len(payload)
    out = make_events(ev.size)
    ctx3code.decode_block(payload, info, 1, 1, out)
    np.testing.assert_array_equal(out, ev)


# -- random access by time --------------------------------------------------------------------


def test_a_time_range_equals_slicing_the_full_decode_and_decodes_only_its_blocks(
    small_blocks, monkeypatch
):
    ev = synthetic_events(3000, mean_gap=30.0)
    ev["t"][1000:1010] = ev["t"][1000]  # ties at a range bound
    data = encode_events(ev, (34, 34), codec="ctx3")
    t = ev["t"]
    ranges = [(None, None), (int(t[700]), int(t[1400])), (int(t[299]), int(t[300]))]
    ranges += [(int(t[1000]), int(t[1000]) + 1), (int(t[-1]) + 1, None), (None, int(t[0]))]
    for lo, hi in ranges:
        got, _ = decode_events(data, from_us=lo, to_us=hi)
        np.testing.assert_array_equal(got, select_time(ev, lo, hi), err_msg=f"[{lo}, {hi})")
    decoded = []
    real = ctx3code.decode_block

    def counting(payload, info, *args):
        decoded.append(info.t_first)
        return real(payload, info, *args)

    monkeypatch.setattr(ctx3code, "decode_block", counting)
    lo, hi = int(t[650]), int(t[1000])
    np.testing.assert_array_equal(
        decode_events(data, from_us=lo, to_us=hi)[0], select_time(ev, lo, hi)
    )
    assert decoded == [int(t[600]), int(t[900])]  # blocks 2 and 3 of 10


# -- hostile files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda r: [10**6, *r[1:]], "1..65536 allowed"),
        (lambda r: [65536, r[1], r[2], r[3], 5, *r[5:]], "events per byte"),
        (lambda r: [*r[:4], r[4] + 1, *r[5:]], "block index holds"),
        (lambda r: [*r[:6], 0x80], "inconsistent"),
        (lambda r: [r[0], r[1], r[1] + 1, *r[3:]], "inconsistent"),
        (lambda r: [*r[:5], r[5] ^ 1, r[6]], "checksum"),
    ],
    ids=["too-many-events", "bomb-ratio", "lengths", "flags", "t-order", "crc"],
)
def test_crafted_block_records_are_refused(edit, match):
    data = encode_events(synthetic_events(500), (34, 34), codec="ctx3")
    with pytest.raises(DataError, match=match):
        decode_events(rewrite_first_block_record(data, edit))


@pytest.mark.parametrize("native", [pytest.param(True, marks=needs_native), False])
def test_damaged_payloads_are_refused_with_one_line_errors(native):
    ev = synthetic_events(400)
    _, info, payload = next(block_payloads(encode_events(ev, (34, 34), codec="ctx3")))
    rng = np.random.default_rng(0)
    for trial in range(30):
        bad = bytearray(payload)
        if trial % 2:
            bad[int(rng.integers(len(bad)))] ^= 1 << int(rng.integers(8))
        else:
            bad[:] = rng.integers(0, 256, len(bad), dtype=np.uint8).tobytes()
        if bytes(bad) == payload:
            continue
        with pytest.raises(DataError) as exc:
            ctx3code.decode_block(bytes(bad), info, 34, 34, make_events(info.n), native=native)
        assert "\n" not in str(exc.value)


def test_damaged_ctx3_files_fail_with_one_line_errors(small_blocks):
    ev = synthetic_events(1000)
    good = encode_events(ev, (34, 34), codec="ctx3")
    head = codec.read_header(good).header_len
    for pos in range(0, len(good), 7):
        bad = bytearray(good)
        bad[pos] ^= 0x41
        try:
            back, _ = decode_events(bytes(bad))
        except DataError as exc:
            assert "\n" not in str(exc)
            continue
        assert pos < head and np.array_equal(back, ev)  # a harmless header bit (never a payload)
    for cut in range(1, len(good), 53):
        with pytest.raises(DataError):
            decode_events(good[:cut])


def test_v1_payloads_labelled_ctx3_are_refused():
    from test_bombs import craft

    with pytest.raises(DataError, match="no ctx-coded"):
        decode_events(craft(8, [("T", "ctx3", 1, 8, bytes(5), 0)]))


# -- without a compiler -----------------------------------------------------------------------


def test_without_the_compiled_coder_ctx3_encodes_and_decodes_in_python(monkeypatch, tmp_path):
    ev = synthetic_events(700, 320, 240)
    with_c = encode_events(ev, (320, 240), codec="ctx3")
    monkeypatch.setenv("SPIKEWEAVE_CACHE", str(tmp_path))  # nothing cached there
    monkeypatch.setattr(ctx_native, "c_compiler", lambda: None)
    ctx_native.reset()
    try:
        assert ctx_native.library("ctx3") is None
        assert "no C compiler" in ctx_native.unavailable_reason("ctx3")
        data = encode_events(ev, (320, 240), codec="ctx3")
        assert data == with_c  # the same bytes either way
        np.testing.assert_array_equal(decode_events(data)[0], ev)
        _, info, payload = next(block_payloads(data))
        with pytest.raises(DataError, match="no compiled ctx3 coder"):
            ctx3code.decode_block(payload, info, 320, 240, make_events(info.n), native=True)
    finally:
        ctx_native.reset()


def test_compress_defaults_to_ctx3_where_compiled_and_to_zstd_without_a_compiler(
    monkeypatch, tmp_path
):
    ev = synthetic_events(300)
    write_nmnist(tmp_path / "in.bin", ev)
    compiled = ctx_native.library("ctx3") is not None
    compress_file(tmp_path / "in.bin", tmp_path / "a.sfev")
    assert codec.read_header((tmp_path / "a.sfev").read_bytes()).version == (3 if compiled else 1)
    monkeypatch.setattr(ctx_native, "c_compiler", lambda: None)
    monkeypatch.setenv("SPIKEWEAVE_CACHE", str(tmp_path / "cache"))
    ctx_native.reset()
    try:
        compress_file(tmp_path / "in.bin", tmp_path / "b.sfev")
        assert codec.read_header((tmp_path / "b.sfev").read_bytes()).version == 1
        np.testing.assert_array_equal(decode_events((tmp_path / "b.sfev").read_bytes())[0], ev)
    finally:
        ctx_native.reset()


# -- real recordings --------------------------------------------------------------------------


@needs_real
@needs_native
@pytest.mark.parametrize("path", NMNIST_FILES + [AEDAT4_FILE], ids=lambda p: p.name)
def test_ctx3_is_lossless_and_smaller_than_ctx_and_zstd_on_real_recordings(path):
    events, sensor, _ = load_events(path)
    data = encode_events(events, sensor, codec="ctx3")
    np.testing.assert_array_equal(decode_events(data)[0], events)
    assert len(data) <= len(encode_events(events, sensor, codec="ctx"))
    assert len(data) < len(encode_events(events, sensor, codec="zstd"))
    if path == AEDAT4_FILE:  # the target for this file
        xz = len(lzma.compress(path.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
        assert len(data) <= 0.45 * xz


@pytest.mark.slow
@needs_real
@needs_native
@pytest.mark.parametrize("path", NMNIST_FILES, ids=lambda p: p.name)
def test_the_python_reference_decodes_real_recordings_like_the_compiled_coder(path):
    events, sensor, _ = load_events(path)
    for _, info, payload in block_payloads(encode_events(events, sensor, codec="ctx3")):
        out = make_events(info.n)
        ctx3code.decode_block(payload, info, *sensor, out, native=False)
        np.testing.assert_array_equal(out, events)
