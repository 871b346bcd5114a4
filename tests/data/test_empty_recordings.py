"""Empty recordings are refused: every reader and every event dataset raises a DataError naming
the file, instead of yielding an all-zero sample (a run on such files once scored 100 %)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from real_data import AEDAT4_FILE as REAL_AEDAT4
from real_data import needs_aedat4
from spikeweave_format_writers import (
    AEDAT2_HEADER,
    AEDAT31_HEADER,
    aedat2_bytes,
    aedat31_bytes,
    aedat31_imu6_packet,
    aedat31_polarity_packet,
    aedat31_special_packet,
    make_events,
    nmnist_bytes,
    random_events,
    write,
)

from spikeweave import data
from spikeweave.data import read_events
from spikeweave.data.events import read_aedat2, read_aedat3, read_aedat4, read_nmnist
from spikeweave.data.tonic_interop import TonicFrames
from spikeweave.errors import DataError

ONE = make_events([10], [1], [2], [1])


def _refused(path: Path, why: str, **kw) -> None:
    with pytest.raises(DataError) as info:
        read_events(path, **kw)
    message = str(info.value)
    assert message.startswith(f"{path}: empty recording ({why}")
    assert "\n" not in message


# -- readers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["e.bin", "e.bs2", "e.aedat", "e.aedat4", "e.dat"])
def test_zero_byte_file_is_refused_whatever_its_suffix(tmp_path, name):
    _refused(write(tmp_path / name, b""), "the file is 0 bytes")


@pytest.mark.parametrize(
    ("fmt", "reader"),
    [("nmnist", read_nmnist), ("aedat2", read_aedat2), ("aedat3", read_aedat3), ("aedat4", None)],
)
def test_zero_byte_file_is_refused_by_each_reader_and_format(tmp_path, fmt, reader):
    path = write(tmp_path / "e.rec", b"")
    _refused(path, "the file is 0 bytes", format=fmt)
    if fmt == "aedat4":
        pytest.importorskip("aedat")
        reader = read_aedat4
    with pytest.raises(DataError, match=r"e\.rec: empty recording \(the file is 0 bytes\)"):
        reader(path)


def test_nmnist_with_only_overflow_markers_is_refused(tmp_path):
    path = write(tmp_path / "m.bin", bytes([0, 240, 0, 0, 0]) * 2)
    _refused(path, "no events, only 2 timestamp-overflow marker(s)")


def test_aedat2_header_without_events_is_refused(tmp_path):
    _refused(write(tmp_path / "h.aedat", AEDAT2_HEADER), "no events after the")


def test_aedat2_with_only_special_events_is_refused(tmp_path):
    special = np.array([0x8000, 5, 0x8000, 6], dtype=">u4").tobytes()
    _refused(write(tmp_path / "s.aedat", AEDAT2_HEADER + special), "no events, only 2 external")


def test_aedat31_header_without_packets_is_refused(tmp_path):
    _refused(write(tmp_path / "h.aedat", AEDAT31_HEADER), "no polarity events after the header")


def test_aedat31_with_only_other_packets_is_refused(tmp_path):
    blob = AEDAT31_HEADER + aedat31_special_packet(5) + aedat31_imu6_packet(6)
    _refused(write(tmp_path / "o.aedat", blob), "no polarity events after the header")


def test_aedat31_with_only_invalid_or_no_polarity_events_is_refused(tmp_path):
    two = make_events([10, 20], [1, 2], [3, 4], [1, 0])
    invalid = aedat31_polarity_packet(two, 0, invalid=np.array([True, True]))
    _refused(write(tmp_path / "i.aedat", AEDAT31_HEADER + invalid), "no valid polarity events")
    empty_packet = aedat31_polarity_packet(make_events([], [], [], []), 0, capacity=4)
    _refused(write(tmp_path / "p.aedat", AEDAT31_HEADER + empty_packet), "no polarity events")


class _FakeDecoder:
    """An AEDAT 4 decoder over a file whose event stream holds no events."""

    def __init__(self, path: str) -> None:
        self.packets = [
            {"stream_id": 1, "imus": np.zeros(3)},
            {
                "stream_id": 0,
                "events": np.zeros(
                    0, dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")]
                ),
            },
        ]

    def id_to_stream(self) -> dict:
        return {0: {"type": "events", "width": 320, "height": 240}, 1: {"type": "imus"}}

    def __iter__(self):
        return iter(self.packets)


def test_aedat4_stream_without_events_is_refused(tmp_path, monkeypatch):
    aedat = pytest.importorskip("aedat")
    monkeypatch.setattr(aedat, "Decoder", _FakeDecoder)
    path = write(tmp_path / "f.aedat4", b"#!AER-DAT4.0\r\n" + b"\0" * 8)
    _refused(path, "no events in event stream 0")


def _aedat4_without_event_packets(blob: bytes) -> bytes:
    """The real AEDAT 4 file with its event packets removed (IMU and trigger packets kept): a
    valid file whose event stream is empty. Layout: magic, int32 IOHeader size, IOHeader (a
    flatbuffer holding the int64 position of the data table), then packets (int32 stream id,
    int32 size, body) up to the data table."""
    size = struct.unpack_from("<I", blob, 14)[0]
    head = blob[: 18 + size]
    pos, kept = 18 + size, []
    while pos + 8 <= len(blob):
        stream, length = struct.unpack_from("<iI", blob, pos)
        if stream not in (0, 2, 3) or pos + 8 + length > len(blob):
            break  # the data table: not a packet of the recording's streams 0, 2, 3
        if stream != 0:  # stream 0 holds the events
            kept.append(blob[pos : pos + 8 + length])
        pos += 8 + length
    table = struct.pack("<q", pos)
    assert head.count(table) == 1, "data-table position not found in the IOHeader"
    body = b"".join(kept)
    head = head.replace(table, struct.pack("<q", len(head) + len(body)))
    return head + body + blob[pos:]


@needs_aedat4
def test_real_aedat4_without_its_event_packets_is_refused(tmp_path):
    pytest.importorskip("aedat")
    path = write(
        tmp_path / "imu_only.aedat4", _aedat4_without_event_packets(REAL_AEDAT4.read_bytes())
    )
    _refused(path, "no events in event stream 0")
    assert len(read_events(REAL_AEDAT4)) == 111_954  # the untouched file still reads


# -- datasets -----------------------------------------------------------------------------------


def _nmnist_root(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for digit in range(2):
        ev = random_events(rng, 30, 34, 34, 300_000)
        write(root / "nmnist" / "Train" / str(digit) / "1.bin", nmnist_bytes(ev))
    write(root / "nmnist" / "Train" / "1" / "2.bin", b"")  # the empty one
    (root / "nmnist" / "Test").mkdir(parents=True)
    return root / "nmnist" / "Train" / "1" / "2.bin"


@pytest.mark.parametrize("cache", [True, False])
def test_nmnist_dataset_refuses_an_empty_sample(tmp_path, cache):
    empty = _nmnist_root(tmp_path)
    ds = data.load("nmnist", root=tmp_path, cache=cache)
    assert len(ds) == 3
    i = [s.path for s in ds.samples].index(empty)
    with pytest.raises(DataError, match=rf"^{empty}: empty recording \(the file is 0 bytes\)"):
        ds[i]
    loader = torch.utils.data.DataLoader(ds, batch_size=3)
    with pytest.raises(DataError, match="empty recording"):
        next(iter(loader))  # a training run stops at the first batch instead of fitting zeros


def test_cifar10_dvs_dataset_refuses_a_recording_of_only_a_header(tmp_path):
    rng = np.random.default_rng(1)
    for cls in data.event_datasets.CIFAR10_CLASSES:
        for i in range(2):
            ev = random_events(rng, 20, 128, 128, 1_000_000)
            write(tmp_path / "cifar10-dvs" / cls / f"{i}.aedat", aedat2_bytes(ev))
    empty = write(tmp_path / "cifar10-dvs" / "cat" / "1.aedat", AEDAT2_HEADER)
    ds = data.load("cifar10-dvs", "train", root=tmp_path, cache=False)
    i = [s.path for s in ds.samples].index(empty)
    with pytest.raises(DataError, match=rf"^{empty}: empty recording \(no events after the"):
        ds[i]


def test_dvs_gesture_window_without_events_is_refused(tmp_path):
    folder = tmp_path / "DvsGesture"
    ev = make_events([1_000, 2_000, 9_000], [1, 2, 3], [4, 5, 6], [1, 0, 1])
    write(folder / "user01_natural.aedat", aedat31_bytes(ev))
    # gesture 2 covers 3000..8000 us, where the recording has no events
    write(
        folder / "user01_natural_labels.csv",
        b"class,startTime_usec,endTime_usec\n1,0,2500\n2,3000,8000\n3,8500,9001\n",
    )
    write(folder / "trials_to_train.txt", b"user01_natural.aedat\n")
    ds = data.load("dvs-gesture", "train", root=tmp_path, cache=False)
    assert int(ds[0][0].sum()) == 2 and int(ds[2][0].sum()) == 1
    with pytest.raises(
        DataError,
        match=r"user01_natural\.aedat: the window 3000\.\.8000 us of sample 1 \(label 1\) holds "
        "no events",
    ):
        ds[1]
    cached = data.load("dvs-gesture", "train", root=tmp_path)
    with pytest.raises(DataError, match="holds no events"):
        cached[0]  # a miss bins every gesture of the recording, the empty one included


class _Tonic:
    sensor_size = (34, 34, 2)
    dtype = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<f8"), ("p", "<i8")])

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        n = 5 if i == 0 else 0
        ev = np.zeros(n, dtype=self.dtype)
        ev["t"] = np.arange(n) * 10.0
        return ev, i


def test_tonic_sample_without_events_is_refused():
    ds = TonicFrames(_Tonic(), frames=2)
    assert int(ds[0][0].sum()) == 5
    with pytest.raises(DataError, match=r"^Tonic sample 1: empty recording \(no events\)"):
        ds[1]


def test_one_event_is_a_recording(tmp_path):
    for name, blob in [
        ("a.bin", nmnist_bytes(ONE)),
        ("b.aedat", aedat2_bytes(ONE)),
        ("c.aedat", aedat31_bytes(ONE)),
    ]:
        assert len(read_events(write(tmp_path / name, blob))) == 1
