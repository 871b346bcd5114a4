"""Fuzzing the event readers: random, truncated and bit-flipped files.

Every outcome must be either a :class:`DataError` naming the file, or events that satisfy the
format's invariants (coordinates on the sensor, polarity 0/1, time never going backwards) —
never a numpy error, a hang or silently wrong events. A truncated file that still decodes must
give a prefix of the original events.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from real_data import AEDAT4_FILE as REAL_AEDAT4
from real_data import needs_aedat4
from spikeweave_format_writers import aedat2_bytes, aedat31_bytes, nmnist_bytes, random_events
from tiers import examples

from spikeweave.data import EVENT_DTYPE, read_events
from spikeweave.errors import DataError

FUZZ = settings(
    max_examples=examples(150),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# format -> (writer, sensor (width, height), suffix)
FORMATS = {
    "nmnist": (nmnist_bytes, (34, 34), ".bin"),
    "aedat2": (aedat2_bytes, (128, 128), ".aedat"),
    "aedat3": (aedat31_bytes, (128, 128), ".aedat"),
}


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _valid(ev: np.ndarray, sensor: tuple[int, int] | None) -> None:
    assert ev.dtype == EVENT_DTYPE
    if len(ev):
        if sensor is not None:
            assert int(ev["x"].max()) < sensor[0] and int(ev["y"].max()) < sensor[1]
        assert set(np.unique(ev["p"]).tolist()) <= {0, 1}
        assert (np.diff(ev["t"]) >= 0).all()


def _read(path: Path, **kw) -> np.ndarray | None:
    """The events, or ``None`` after a DataError that names the file."""
    try:
        return read_events(path, **kw)
    except DataError as exc:
        assert path.name in str(exc)
        return None


def _original(fmt: str, seed: int, n: int) -> tuple[np.ndarray, bytes]:
    writer, (w, h), _ = FORMATS[fmt]
    ev = random_events(np.random.default_rng(seed), n, w, h, 400_000)
    if fmt == "aedat3":
        return ev, writer(ev, packet_size=7)
    return ev, writer(ev)


@FUZZ
@given(
    prefix=st.sampled_from(
        [
            b"",
            b"#!AER-DAT2.0\r\n",
            b"#!AER-DAT3.1\r\n",
            b"#!AER-DAT3.1\r\n#!END-HEADER\r\n",
            b"#!AER-DAT4.0\r\n",
            b"#",
        ]
    ),
    body=st.binary(max_size=600),
    suffix=st.sampled_from([".bin", ".bs2", ".aedat", ".aedat4", ".dat"]),
)
def test_random_bytes_never_crash(fuzz_dir, prefix, body, suffix):
    path = fuzz_dir / f"random{suffix}"
    path.write_bytes(prefix + body)
    ev = _read(path)
    if ev is not None:
        _valid(ev, None)
        assert len(ev) <= len(body)


@FUZZ
@given(
    fmt=st.sampled_from(sorted(FORMATS)),
    seed=st.integers(0, 2**16),
    n=st.integers(1, 60),
    cut=st.floats(0, 1, exclude_max=True),
)
def test_truncated_files_fail_or_give_a_prefix(fuzz_dir, fmt, seed, n, cut):
    ev, blob = _original(fmt, seed, n)
    path = fuzz_dir / f"trunc{FORMATS[fmt][2]}"
    path.write_bytes(blob[: int(cut * len(blob))])
    out = _read(path, format=fmt, sensor_size=FORMATS[fmt][1])
    if out is not None:
        assert np.array_equal(out, ev[: len(out)])


@FUZZ
@given(
    fmt=st.sampled_from(sorted(FORMATS)),
    seed=st.integers(0, 2**16),
    n=st.integers(1, 60),
    where=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
    flips=st.integers(1, 3),
)
def test_bit_flipped_files_fail_or_stay_valid(fuzz_dir, fmt, seed, n, where, bit, flips):
    ev, blob = _original(fmt, seed, n)
    data = bytearray(blob)
    for k in range(flips):
        pos = (int(where * len(data)) + 97 * k) % len(data)
        data[pos] ^= 1 << ((bit + k) % 8)
    path = fuzz_dir / f"flip{FORMATS[fmt][2]}"
    path.write_bytes(bytes(data))
    sensor = FORMATS[fmt][1]
    out = _read(path, format=fmt, sensor_size=sensor)
    if out is not None:
        _valid(out, sensor)
        if fmt == "nmnist" and flips == 1 and len(out) == len(ev):
            # one flipped bit changes at most the one event whose record holds it
            assert (out != ev).sum() <= 1


@needs_aedat4
@settings(
    max_examples=examples(60),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7), truncate=st.booleans())
def test_aedat4_damage_is_reported_or_harmless(fuzz_dir, where, bit, truncate):
    blob = bytearray(REAL_AEDAT4.read_bytes())
    pos = int(where * len(blob))
    if truncate:
        blob = blob[:pos]
    else:
        blob[pos] ^= 1 << bit
    path = fuzz_dir / "damaged.aedat4"
    path.write_bytes(bytes(blob))
    out = _read(path)
    if out is not None:
        _valid(out, (320, 240))
        assert len(out) <= 111_954
