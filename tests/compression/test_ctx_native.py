"""The compiled ``ctx`` block decoder: it reads the bitstream the Python (constriction) path
writes into exactly the events that path decodes, refuses bad payloads with one-line errors,
and its absence falls back to the Python decoder."""

from __future__ import annotations

import numpy as np
import pytest
from sfev_helpers import AEDAT4_FILE, NMNIST_FILES, block_payloads, needs_real, synthetic_events

from spikeweave.compression import ctx_native, ctxcode
from spikeweave.compression.codec import decode_events, encode_events
from spikeweave.compression.files import load_events
from spikeweave.data.events import make_events
from spikeweave.errors import DataError

pytest.importorskip("constriction")
needs_native = pytest.mark.skipif(
    ctx_native.library() is None, reason=f"no compiled decoder: {ctx_native.unavailable_reason()}"
)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 300 events, so a few thousand events make many blocks."""
    monkeypatch.setattr(ctxcode, "BLOCK_EVENTS", 300)


def _assert_both_decoders_agree(data: bytes) -> int:
    """Decode every block of ``data`` with both decoders; returns the number of blocks."""
    count = 0
    for header, info, payload in block_payloads(data):
        ref, fast = make_events(info.n), make_events(info.n)
        ctxcode.decode_block(payload, info, header.width, header.height, ref, native=False)
        ctxcode.decode_block(payload, info, header.width, header.height, fast, native=True)
        np.testing.assert_array_equal(fast, ref)
        count += 1
    return count


def _variant(ev: np.ndarray, kind: str, width: int) -> np.ndarray:
    ev = ev.copy()
    if kind == "unordered-time":  # negative deltas: zigzag-coded, no age context
        ev["t"] = ev["t"][np.random.default_rng(1).permutation(ev.size)]
    elif kind == "column-scan":  # x steps down by one: the x-first pixel mode
        ev["x"] = (width - 1) - (np.arange(ev.size) % width)
    elif kind == "huge-gaps":  # deltas up to 2**62: four mantissa pieces
        gaps = np.random.default_rng(2).integers(0, 1 << 62, ev.size, dtype=np.int64) >> (
            np.arange(ev.size) % 63
        )
        ev["t"] = np.cumsum(gaps // ev.size)
    elif kind == "one-pixel":  # the likeliest symbol hits the 4095/4096 cap
        ev["x"], ev["y"], ev["p"] = 3 % width, 0, 1
    return ev


@needs_native
@pytest.mark.rotate("size")
@pytest.mark.parametrize(
    "kind", ["plain", "unordered-time", "column-scan", "huge-gaps", "one-pixel"]
)
@pytest.mark.parametrize("size", [(34, 34), (1, 1), (2, 700), (640, 480), (65535, 3)], ids=str)
def test_native_decoder_equals_the_python_decoder_on_random_streams(small_blocks, size, kind):
    ev = _variant(synthetic_events(1500, *size, seed=size[0] + size[1]), kind, size[0])
    data = encode_events(ev, size, codec="ctx")
    assert _assert_both_decoders_agree(data) == 5  # 300-event blocks
    np.testing.assert_array_equal(decode_events(data)[0], ev)


@needs_native
def test_native_decoder_reads_full_size_blocks_with_every_sub_block():
    ev = synthetic_events(ctxcode.BLOCK_EVENTS + 777, 320, 240, seed=5)
    data = encode_events(ev, (320, 240), codec="ctx")
    assert _assert_both_decoders_agree(data) == 2


@needs_native
@pytest.mark.slow
@needs_real
@pytest.mark.parametrize("path", NMNIST_FILES + [AEDAT4_FILE], ids=lambda p: p.name)
def test_native_decoder_equals_the_python_decoder_on_real_recordings(path):
    events, sensor, _ = load_events(path)
    data = encode_events(events, sensor, codec="ctx")
    _assert_both_decoders_agree(data)
    np.testing.assert_array_equal(decode_events(data)[0], events)


@needs_native
def test_native_decoder_refuses_damaged_payloads_with_one_line_errors():
    ev = synthetic_events(2000)
    header, info, payload = next(block_payloads(encode_events(ev, (34, 34), codec="ctx")))
    rng = np.random.default_rng(0)
    for trial in range(40):
        bad = bytearray(payload)
        if trial % 2:
            bad[int(rng.integers(len(bad)))] ^= 1 << int(rng.integers(8))
        else:  # random words: may ask for quantiles the coder refuses
            bad[:] = rng.integers(0, 256, len(bad), dtype=np.uint8).tobytes()
        out = make_events(info.n)
        with pytest.raises(DataError) as exc:
            ctxcode.decode_block(bytes(bad), info, 34, 34, out, native=True)
        assert "\n" not in str(exc.value)


def test_without_the_compiled_decoder_files_decode_in_python(monkeypatch):
    ev = synthetic_events(1200, 320, 240)
    data = encode_events(ev, (320, 240), codec="ctx")
    monkeypatch.setenv(ctx_native.ENV, "0")
    ctx_native.reset()
    try:
        assert ctx_native.library() is None
        assert "SPIKEWEAVE_CTX_NATIVE" in ctx_native.unavailable_reason()
        np.testing.assert_array_equal(decode_events(data)[0], ev)
        _, info, payload = next(block_payloads(data))
        with pytest.raises(DataError, match="no compiled ctx decoder"):
            ctxcode.decode_block(payload, info, 320, 240, make_events(info.n), native=True)
    finally:
        ctx_native.reset()


def test_a_missing_compiler_falls_back_to_python(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKEWEAVE_CACHE", str(tmp_path))  # nothing cached there
    monkeypatch.setattr(ctx_native, "c_compiler", lambda: None)
    ctx_native.reset()
    try:
        assert ctx_native.library() is None
        assert "no C compiler" in ctx_native.unavailable_reason()
        ev = synthetic_events(700)
        np.testing.assert_array_equal(
            decode_events(encode_events(ev, (34, 34), codec="ctx"))[0], ev
        )
    finally:
        ctx_native.reset()
