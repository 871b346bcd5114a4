"""The atomic writer: never through a link, one-line errors, dead writers' temporaries removed."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

import pytest

from spikeweave import atomic
from spikeweave.atomic import atomic_write_bytes, refuse_linked_folder, remove_stale_temporaries
from spikeweave.errors import OutputError, SpikeweaveError

HEX = "0123456789abcdef"


def sentinel(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"do not touch")
    return path


def old_temporary(folder: Path, target: str, age_s: float = 3600.0) -> Path:
    """What a writer killed mid-write leaves: ``.NAME.<16 hex>.tmp``, last touched long ago."""
    tmp = folder / f".{target}.{HEX}.tmp"
    tmp.write_bytes(b"half a checkpoint")
    past = time.time() - age_s
    os.utime(tmp, (past, past))
    return tmp


def test_a_link_at_the_target_is_replaced_and_what_it_points_to_is_unchanged(tmp_path):
    precious = sentinel(tmp_path)
    link = tmp_path / "plot.png"
    link.symlink_to(precious)
    atomic_write_bytes(link, b"new")
    assert precious.read_bytes() == b"do not touch"
    assert not link.is_symlink() and link.read_bytes() == b"new"


def test_a_dangling_link_at_the_target_creates_nothing_where_it_points(tmp_path):
    link = tmp_path / "out.bin"
    link.symlink_to(tmp_path / "elsewhere.bin")
    atomic_write_bytes(link, b"x")
    assert not (tmp_path / "elsewhere.bin").exists() and link.read_bytes() == b"x"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.mkdir(), "it is a folder"),
        (lambda p: os.mkfifo(p), "it is not a regular file"),
    ],
)
def test_a_folder_or_fifo_at_the_target_is_refused(tmp_path, make, reason):
    target = tmp_path / "out.bin"
    make(target)
    with pytest.raises(OutputError, match=f"cannot write {target}: {reason}"):
        atomic_write_bytes(target, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing/out.bin", "its folder does not exist"),
        ("file/out.bin", "a file is in the way"),
        ("n" * 300, "file name too long"),
    ],
)
def test_os_errors_are_one_line_output_errors_naming_path_and_reason(tmp_path, name, reason):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as info:
        atomic_write_bytes(tmp_path / name, b"x")
    message = str(info.value)
    assert message == f"cannot write {tmp_path / name}: {reason}"
    assert isinstance(info.value, SpikeweaveError) and isinstance(info.value, OSError)
    assert info.value.errno is not None


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = atomic_write_bytes(tmp_path / "f.bin", b"old")
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd: int, mode: str) -> None:
            self._f = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self._f.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fdopen", FullDisk)
    with pytest.raises(OutputError, match="f.bin: no space left on device"):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_dead_writers_temporary_of_the_target_is_removed_by_the_next_write(tmp_path):
    stale = old_temporary(tmp_path, "c.safetensors")
    other = old_temporary(tmp_path, "other.json")
    atomic_write_bytes(tmp_path / "c.safetensors", b"x")
    assert not stale.exists()
    assert other.exists()  # another target's temporaries wait for that target's next write


def test_recent_or_locked_temporaries_are_kept(tmp_path):
    recent = old_temporary(tmp_path, "c.bin", age_s=0.0)
    locked = tmp_path / f".c.bin.{HEX[::-1]}.tmp"
    locked.write_bytes(b"being written")
    past = time.time() - 3600
    os.utime(locked, (past, past))
    fd = os.open(locked, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a live writer holds its temporary file locked
        atomic_write_bytes(tmp_path / "c.bin", b"x")
        assert recent.exists() and locked.exists()
    finally:
        os.close(fd)


def test_stale_temporary_cleanup_never_follows_or_removes_links_and_folders(tmp_path):
    precious = sentinel(tmp_path)
    link = tmp_path / f".c.bin.{HEX}.tmp"
    link.symlink_to(precious)
    folder = tmp_path / f".c.bin.{HEX[::-1]}.tmp"
    folder.mkdir()
    past = time.time() - 3600
    os.utime(folder, (past, past))
    assert remove_stale_temporaries(tmp_path) == []
    assert link.is_symlink() and folder.is_dir()
    assert precious.read_bytes() == b"do not touch"


def test_names_that_only_look_like_temporaries_are_left_alone(tmp_path):
    kept = [tmp_path / ".c.bin.xyz.tmp", tmp_path / "c.bin.0123456789abcdef.tmp"]
    for path in kept:
        path.write_bytes(b"user file")
        os.utime(path, (0, 0))
    atomic_write_bytes(tmp_path / "c.bin", b"x")
    assert all(p.exists() for p in kept)


def test_refuse_linked_folder_names_the_link_and_where_it_points(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert refuse_linked_folder(tmp_path / "real") == tmp_path / "real"
    with pytest.raises(OutputError, match="is a symbolic link .*pass the folder itself"):
        refuse_linked_folder(tmp_path / "link")
