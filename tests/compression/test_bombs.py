"""Crafted ``.sfev`` files: declared sizes are checked before anything is allocated, large
files decode in bounded memory, and the CLI answers every one with a single ``error:`` line."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from cli_memory import assert_one_line_error, linux_only, run_spikeweave
from sfev_helpers import synthetic_events

from spikeweave.compression import codec, sampling
from spikeweave.compression.codec import (
    CODECS,
    MAGIC,
    decode_events,
    encode_events,
    iter_events,
    read_header,
)
from spikeweave.compression.files import decompress_file, decompress_to_file, write_nmnist
from spikeweave.compression.sampling import sample_events
from spikeweave.errors import ConfigError, DataError

zstandard = pytest.importorskip("zstandard")

_FIXED = struct.Struct("<8sHHIIQqB")
_ENTRY = struct.Struct("<BBBQQI")


def _zeros_zstd(n: int, content_size: bool = True) -> bytes:
    """A zstd frame of ``n`` zero bytes, compressed in pieces (never holds ``n`` bytes)."""
    comp = zstandard.ZstdCompressor(level=3, write_content_size=content_size).compressobj(
        size=n if content_size else -1
    )
    block, parts, left = bytes(1 << 22), [], n
    while left:
        k = min(left, len(block))
        parts.append(comp.compress(block[:k]))
        left -= k
    parts.append(comp.flush())
    return b"".join(parts)


def _crc_zeros(n: int) -> int:
    block, crc, left = bytes(1 << 22), 0, n
    while left:
        k = min(left, len(block))
        crc = zlib.crc32(block[:k], crc)
        left -= k
    return crc


def craft(n: int, streams: list[tuple[str, str, int, int, bytes, int]], width: int = 34) -> bytes:
    """A ``.sfev`` file of ``n`` events on a ``width``² sensor with the given stream table
    ``(tag, codec, param, raw_len, payload, crc32)``; the header checksum is right."""
    entries = b"".join(
        _ENTRY.pack(ord(tag), CODECS[c], param, raw_len, len(payload), crc)
        for tag, c, param, raw_len, payload, crc in streams
    )
    head = _FIXED.pack(MAGIC, 1, 0, width, width, n, 0, len(streams)) + entries
    return head + struct.pack("<I", zlib.crc32(head)) + b"".join(s[4] for s in streams)


def zero_events_file(n: int) -> bytes:
    """A valid file of ``n`` identical events (t = 0 at pixel (0, 0), polarity 0): every
    stream is zeros, so a few kB hold hundreds of MB of events."""
    table = []
    for tag, raw_len in (("T", n), ("X", n), ("Y", n), ("P", (n + 7) // 8)):
        table.append((tag, "zstd", 1, raw_len, _zeros_zstd(raw_len), _crc_zeros(raw_len)))
    return craft(n, table)


def test_a_tiny_file_claiming_2_to_the_40_events_is_refused_before_allocating(tmp_path):
    n = 1 << 40
    payload = _zeros_zstd(1000)
    table = [
        ("T", "zstd", 1, n, payload, 0),
        ("X", "zstd", 1, n, payload, 0),
        ("Y", "zstd", 1, n, payload, 0),
        ("P", "zstd", 1, n // 8, payload, 0),
    ]
    data = craft(n, table)
    assert len(data) < 300
    with pytest.raises(DataError, match="more than zstd can expand"):
        read_header(data)
    path = tmp_path / "bomb.sfev"
    path.write_bytes(data)
    assert_one_line_error(
        run_spikeweave("decompress", path, tmp_path / "out.npz"), "bomb.sfev", "expand"
    )
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("which", ["lzma", "raw"])
def test_lzma_and_raw_streams_are_bounded_by_their_ratio_too(which):
    ratio = codec.MAX_RATIO[which]
    table = [("T", which, 1, 100 * ratio + 1, b"\0" * 100, 0)]
    with pytest.raises(DataError, match=f"more than {which} can expand"):
        read_header(craft(0, table))


def _raw_zeros(n: int, tags: str = "XYP") -> list:
    """Valid raw streams of ``n`` events (all zeros) for ``tags``."""
    sizes = {"T": n, "X": n, "Y": n, "P": (n + 7) // 8}
    return [(t, "raw", 1, sizes[t], bytes(sizes[t]), _crc_zeros(sizes[t])) for t in tags]


def test_a_zstd_frame_declaring_more_than_the_header_is_refused():
    # decompress() would allocate what the frame declares (1 MB), not what the header says
    frame = _zeros_zstd(1 << 20)
    table = [("T", "zstd", 1, 1000, frame, _crc_zeros(1000)), *_raw_zeros(1000)]
    with pytest.raises(DataError, match="frame declares 1048576 bytes, the header 1000"):
        decode_events(craft(1000, table))


def test_a_zstd_frame_without_its_size_decodes_at_most_one_byte_past_the_header():
    frame = _zeros_zstd(5000, content_size=False)
    table = [("T", "zstd", 1, 1000, frame, _crc_zeros(1000)), *_raw_zeros(1000)]
    with pytest.raises(DataError, match="decodes to 1001 bytes, the header says 1000"):
        decode_events(craft(1000, table))
    n = 1000
    good = [(t, "zstd", 1, n, _zeros_zstd(n, content_size=False), _crc_zeros(n)) for t in "TXY"]
    events, _ = decode_events(craft(n, [*good, *_raw_zeros(n, "P")]))
    assert events.size == n and not events["t"].any() and not events["p"].any()


def _with_meta(meta: bytes) -> bytes:
    """A valid file of 100 events whose ``M`` stream holds ``meta`` (raw)."""
    base = encode_events(synthetic_events(100), (34, 34), codec="raw")
    header = read_header(base)
    pos = header.header_len
    table = []
    for s in header.streams:
        table.append((s.tag, s.codec, s.param, s.raw_len, base[pos : pos + s.comp_len], s.crc32))
        pos += s.comp_len
    table.append(("M", "raw", 1, len(meta), meta, zlib.crc32(meta)))
    return craft(100, table)


def test_deeply_nested_metadata_is_a_one_line_data_error(tmp_path):
    data = _with_meta(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(DataError, match="nested too deeply"):
        decode_events(data)
    path = tmp_path / "deep.sfev"
    path.write_bytes(data)
    assert_one_line_error(run_spikeweave("decompress", path, tmp_path / "o.npz"), "nested")


def test_metadata_longer_than_the_limit_is_refused():
    with pytest.raises(DataError, match="bytes of metadata"):
        decode_events(_with_meta(b" " * (codec.MAX_META_BYTES + 1)))


# -- decoding in pieces -----------------------------------------------------------------------


@pytest.fixture
def small_pieces(monkeypatch):
    """Decode every stream longer than 64 bytes through the piecewise readers."""
    monkeypatch.setattr(codec, "_WHOLE_STREAM", 64)


@pytest.mark.parametrize("which", ["zstd", "lzma", "raw"])
@pytest.mark.parametrize("size", [34, 300, 5000], ids=lambda s: f"{s}px")
def test_pieces_decode_exactly_what_the_whole_file_decodes(small_pieces, which, size):
    # wide gaps give escapes (E), sensors over 256 two-byte coordinates (zstd byte planes),
    # and few pixels on 34x34 give polarity runs that cross the pieces
    events = synthetic_events(3000, size, size, seed=size, mean_gap=400.0 if size > 34 else 60)
    data = encode_events(events, (size, size), codec=which, meta={"k": 1})
    header, pieces = iter_events(data, chunk_events=257)
    parts = list(pieces)
    assert len(parts) == 12 and header.meta == {"k": 1}
    np.testing.assert_array_equal(np.concatenate(parts), events)
    for col in "txyp":
        _, pieces = iter_events(data, chunk_events=1000, columns=col)
        np.testing.assert_array_equal(np.concatenate(list(pieces))[col], events[col])


# flipped bytes: ctx and ctx3 (our own decoders) in the fast tier; zstd and lzma in the full run
@pytest.mark.parametrize(
    "which",
    [pytest.param("zstd", marks=pytest.mark.slow), pytest.param("lzma", marks=pytest.mark.slow),
     "ctx", "ctx3", "rans"],
)  # fmt: skip
def test_damage_in_pieces_is_refused_or_harmless(small_pieces, which):
    events = synthetic_events(2000, 300, 300, mean_gap=400.0)
    good = encode_events(events, (300, 300), codec=which)
    head = read_header(good).header_len
    for pos in range(head, len(good), 11):
        bad = bytearray(good)
        bad[pos] ^= 0x24
        try:
            _, pieces = iter_events(bytes(bad), chunk_events=300)
            back = np.concatenate(list(pieces))
        except DataError as exc:
            assert "\n" not in str(exc)
            continue
        np.testing.assert_array_equal(back, events)
    for cut in range(head, len(good), 97):
        with pytest.raises(DataError):
            decode_events(good[:cut])


def test_decompress_to_file_writes_what_decompress_file_writes(tmp_path):
    events = synthetic_events(5000, mean_gap=5000.0)  # 25 s: overflow markers across pieces
    events["t"][2500:] += 3 * (1 << 23)
    path = tmp_path / "e.sfev"
    path.write_bytes(encode_events(events, (34, 34)))
    decompress_file(path, tmp_path / "whole.bin")
    decompress_file(path, tmp_path / "whole.npz")
    header = decompress_to_file(path, tmp_path / "piece.bin", chunk_events=333)
    decompress_to_file(path, tmp_path / "piece.npz", chunk_events=333)
    assert header.n_events == 5000
    assert (tmp_path / "piece.bin").read_bytes() == (tmp_path / "whole.bin").read_bytes()
    with np.load(tmp_path / "piece.npz") as a, np.load(tmp_path / "whole.npz") as b:
        assert sorted(a.files) == ["p", "t", "x", "y"]
        for key in "xypt":
            np.testing.assert_array_equal(a[key], b[key])
            assert a[key].dtype == b[key].dtype
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "e.sfev", "piece.bin", "piece.npz", "whole.bin", "whole.npz"
    ]  # fmt: skip


def test_timestamps_needing_absurdly_many_nmnist_markers_are_refused(tmp_path):
    events = synthetic_events(10)
    events["t"][5:] += 1 << 60  # would be 2**37 overflow markers: 687 GB of .bin
    path = tmp_path / "far.sfev"
    path.write_bytes(encode_events(events, (34, 34)))
    with pytest.raises(ConfigError, match="overflow markers; write .npz"):
        decompress_to_file(path, tmp_path / "far.bin")
    with pytest.raises(ConfigError, match="overflow markers"):
        write_nmnist(tmp_path / "far2.bin", events)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.sfev"]


# each case also runs the command in a subprocess: the links are the full run's
@pytest.mark.parametrize(
    "how",
    ["same name", pytest.param("hard link", marks=pytest.mark.slow),
     pytest.param("symlink", marks=pytest.mark.slow)],
)  # fmt: skip
def test_decompress_refuses_to_overwrite_its_own_input(tmp_path, how):
    # a .sfev named like an output, so the same name passes the suffix check
    path = tmp_path / "in.npz"
    data = encode_events(synthetic_events(100), (34, 34))
    path.write_bytes(data)
    out = path
    if how == "hard link":
        out = tmp_path / "in.bin"
        os.link(path, out)
    elif how == "symlink":
        out = tmp_path / "link.npz"
        out.symlink_to(path)
    for decompress in (decompress_file, decompress_to_file):
        with pytest.raises(ConfigError, match="overwrite the input"):
            decompress(path, out)
    assert path.read_bytes() == data
    assert_one_line_error(run_spikeweave("decompress", path, out), "overwrite the input")
    assert path.read_bytes() == data


@linux_only
@pytest.mark.slow
def test_a_4_kb_file_of_200_mb_of_events_decompresses_in_bounded_memory(tmp_path):
    n = 16_000_000  # 208 MB as .npz; holding the events and the .npz at once took ~600 MB
    path = tmp_path / "zeros.sfev"
    path.write_bytes(zero_events_file(n))
    assert path.stat().st_size < 5000
    small = tmp_path / "small.sfev"
    small.write_bytes(zero_events_file(10))
    base = run_spikeweave("decompress", small, tmp_path / "small.npz")
    assert base.code == 0, base.err
    for out in ("zeros.npz", "zeros.bin"):
        run = run_spikeweave("decompress", path, tmp_path / out)
        assert run.code == 0, run.err
        assert f"{n} events" in run.out
        # the CLI itself (torch, numpy) takes ~350 MB; decoding adds ~60 MB whatever n is
        assert run.peak_mb - base.peak_mb < 300, (run.peak_mb, base.peak_mb)
    assert (tmp_path / "zeros.bin").stat().st_size == 5 * n
    with np.load(tmp_path / "zeros.npz") as z:
        assert z["p"].shape == (n,) and not z["p"].any()


# -- compress --rate: windows in pieces ---------------------------------------------------------


@pytest.mark.parametrize("sampler", ["activity", "random"])
def test_sampling_in_pieces_keeps_exactly_what_one_piece_keeps(monkeypatch, sampler):
    events = synthetic_events(20_000, mean_gap=100.0)  # 2 s: 200 windows of 10 ms
    whole = sample_events(events, (34, 34), 0.2, sampler=sampler, seed=4)
    monkeypatch.setattr(sampling, "_WINDOW_PIXELS", 3 * 34 * 34)  # 3 windows per piece
    pieces = sample_events(events, (34, 34), 0.2, sampler=sampler, seed=4)
    np.testing.assert_array_equal(pieces[0], whole[0])
    assert pieces[1] == whole[1] and whole[1]["n_windows"] > 150


def test_sampling_refuses_a_duration_or_sensor_beyond_the_limits():
    events = synthetic_events(2)
    events["t"][1] = 1 << 50  # two events 36 years apart: 10**11 windows
    with pytest.raises(ConfigError, match="pixel-windows.*longer --window-us"):
        sample_events(events, (34, 34), 0.1, sampler="activity")
    with pytest.raises(ConfigError, match="sensors of up to"):
        sample_events(synthetic_events(5), (4096, 4096), 0.1, sampler="activity")


@linux_only
@pytest.mark.slow
def test_compress_rate_of_a_25_byte_recording_of_17_s_takes_bounded_memory(tmp_path):
    # x = 200 makes it a 304x240 ATIS recording; two overflow markers make it 17 s long:
    # 1678 windows of 10 ms, whose frames took 2 GB at once
    events = np.zeros(3, dtype=synthetic_events(1).dtype)
    events["t"] = [0, 5, 2 * (1 << 23) + 5]
    events["x"] = 200
    rec = tmp_path / "long.bin"
    write_nmnist(rec, events)
    assert rec.stat().st_size == 25
    short = tmp_path / "short.bin"
    write_nmnist(short, events[:2])
    args = ("--rate", "0.1", "--sampler", "activity")
    base = run_spikeweave("compress", short, tmp_path / "short.sfev", *args)
    assert base.code == 0, base.err
    run = run_spikeweave("compress", rec, tmp_path / "long.sfev", *args)
    assert run.code == 0, run.err
    assert run.peak_mb - base.peak_mb < 300, (run.peak_mb, base.peak_mb)
    header = read_header((tmp_path / "long.sfev").read_bytes())
    assert header.n_events == 3 and header.width == 304


def test_a_tiny_ctx3_file_claiming_2_to_the_40_events_is_refused_before_allocating():
    n = 1 << 40
    data = craft(n, [("B", "raw", 1, 37, bytes(37), 0), ("A", "ctx3", 1, 13 * n, bytes(5), 0)])
    assert len(data) < 200
    with pytest.raises(DataError, match="more than ctx3 can expand"):
        read_header(data)


def test_a_tiny_rans_file_claiming_2_to_the_40_events_is_refused_before_allocating():
    n = 1 << 40
    data = craft(n, [("B", "raw", 1, 37, bytes(37), 0), ("A", "rans", 1, 13 * n, bytes(14), 0)])
    assert len(data) < 200
    with pytest.raises(DataError, match="more than rans can expand"):
        read_header(data)


def test_a_rans_block_record_claiming_more_events_than_its_bytes_hold_is_refused():
    from spikeweave.compression import ranscode
    from spikeweave.compression.ctxcode import BlockInfo

    record = BlockInfo(65536, 0, 0, 0, 100, 0, 0)  # 65536 events from 100 bytes: > 128 per byte
    with pytest.raises(DataError, match="events per byte"):
        ranscode.check_block(record, "block 0")
