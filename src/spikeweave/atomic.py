"""Atomic file writes: a temporary file in the target's folder, fsync'ed, renamed over it.

A crash or an error mid-write never leaves a half-written file behind, and a reader never sees
one. Files get mode 0644 (``mkstemp``-style 0600 would hide run files from other users).

Links. The folder part of a path is the caller's choice and is followed as the OS does (a
user's ``~/runs`` may well be a link). The file's own name never is: the temporary file is
created with ``O_EXCL`` (which refuses a link), and ``os.replace`` renames over the *name*, so
a symbolic link at the target is replaced by the new regular file and whatever it pointed to
is left untouched. A folder, device, FIFO or socket at the target is refused. Folders that
came from elsewhere (a run directory someone shared) are checked with
:func:`refuse_linked_folder` by the code that writes into them.

Stale temporaries. A process killed mid-write leaves ``.NAME.<16 hex>.tmp`` behind. Each
write of ``NAME`` removes the stale ones of ``NAME``: regular files only (never following a
link), matching the writer's own pattern, older than :data:`STALE_AFTER_S`, and not locked
(a live writer holds an ``flock`` on its temporary file until the rename).

Every ``OSError`` becomes an :class:`~spikeweave.errors.OutputError` naming the path and the
reason, in one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import OutputError

try:  # POSIX; elsewhere a live writer cannot be told apart, so nothing is cleaned up
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "STALE_AFTER_S",
    "atomic_write_bytes",
    "atomic_writer",
    "make_folder",
    "output_error",
    "refuse_linked_folder",
    "remove_stale_temporaries",
]

STALE_AFTER_S = 10.0
"""A temporary file untouched this long (seconds) and unlocked belongs to a dead writer. The
age closes the microsecond window between a writer creating its file and locking it."""

_TEMP = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{16}\.tmp")


def output_error(path: str | Path, exc: OSError, doing: str = "write") -> OutputError:
    """A one-line :class:`OutputError` for ``exc`` raised while ``doing`` ``path``."""
    reasons = {
        "EEXIST": "a file is in the way",
        "ENOTDIR": "a file is in the way",
        "EISDIR": "it is a folder",
        "ELOOP": "it is a symbolic link",
    }
    code = exc.errno if isinstance(exc.errno, int) else None
    name = errno.errorcode.get(code, "") if code is not None else ""
    reason = reasons.get(name) or (exc.strerror or str(exc) or type(exc).__name__).lower()
    err = OutputError(f"cannot {doing} {path}: {' '.join(reason.split())}")
    err.errno = code  # callers that check errno keep working
    return err


def make_folder(path: str | Path) -> Path:
    """``mkdir -p path`` with a one-line :class:`OutputError` when that is impossible."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # exist_ok only covers folders: a file is in the way
        raise OutputError(f"cannot create folder {path}: a file is in the way") from None
    except OSError as exc:
        raise output_error(path, exc, "create folder") from None
    return path


def refuse_linked_folder(path: str | Path, what: str = "run directory") -> Path:
    """``path`` unless it is a symbolic link: a folder from elsewhere (shared, downloaded)
    that is a link would send our writes to wherever it points. The user can pass the real
    folder instead, a deliberate choice."""
    path = Path(path)
    if path.is_symlink():
        raise OutputError(
            f"{what} {path} is a symbolic link (to {os.readlink(path)}); spikeweave does not "
            "write through it: pass the folder itself"
        )
    return path


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically, never through a link at ``path``; returns
    ``path``. Any OS error (missing folder, no permission, no space, name too long, a folder
    at ``path``) is a one-line :class:`OutputError` (an ``OSError``); the previous file is
    then unchanged."""
    with atomic_writer(path, mode) as fh:
        fh.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file to write in pieces that replaces ``path`` atomically when the ``with``
    block ends without an error (fsync'ed first), with the same rules as
    :func:`atomic_write_bytes`; on an error the temporary file is removed and ``path`` is
    unchanged. For outputs too large to hold. An ``OSError`` raised in the block (a full disk
    while writing) becomes an :class:`OutputError` naming ``path``."""
    path = Path(path)
    name = path.name
    if name in ("", ".", ".."):
        raise OutputError(f"cannot write {path}: it is not a file name")
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        err = OutputError(f"cannot write {path}: its folder does not exist")
        err.errno = errno.ENOENT
        raise err from None
    except OSError as exc:
        raise output_error(path, exc) from None
    tmp: str | None = None
    keep: int | None = None
    try:
        _check_target(dir_fd, name, path)
        remove_stale_temporaries(dir_fd, name)
        candidate = f".{name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(candidate, flags, mode, dir_fd=dir_fd)
        tmp = candidate  # ours from here on: remove it if anything below fails
        keep = os.dup(fd)  # holds the lock after the file object closes, until the rename
        if fcntl is not None:
            fcntl.flock(keep, fcntl.LOCK_EX)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.fchmod(keep, mode)  # independent of the umask
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        tmp = None
        with contextlib.suppress(OSError):  # so a completed rename survives a crash
            os.fsync(dir_fd)
    except OutputError:
        raise
    except OSError as exc:
        raise output_error(path, exc) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
        if keep is not None:
            os.close(keep)
        os.close(dir_fd)


def _check_target(dir_fd: int, name: str, path: Path) -> None:
    """Refuse a folder, device, FIFO or socket at the target: renaming over a device (as
    root, ``/dev/null``) would replace it with a plain file. A link or regular file is fine."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise OutputError(f"cannot write {path}: it is a folder")
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OutputError(f"cannot write {path}: it is not a regular file (a device or FIFO)")


def remove_stale_temporaries(folder: str | Path | int, name: str | None = None) -> list[str]:
    """Remove the temporary files dead writers left in ``folder`` (a path or an open folder
    descriptor): those of target ``name``, or of any target when ``name`` is None. Returns
    the names removed. Never raises for a file it cannot inspect; it is skipped."""
    if fcntl is None:  # pragma: no cover - Windows
        return []
    own = isinstance(folder, int)
    try:
        dir_fd = folder if own else os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    removed: list[str] = []
    try:
        now = time.time()
        for entry in os.listdir(dir_fd):
            m = _TEMP.fullmatch(entry)
            if m is None or (name is not None and m["name"] != name):
                continue
            if _remove_if_stale(dir_fd, entry, now):
                removed.append(entry)
    except OSError:
        pass
    finally:
        if not own:
            os.close(dir_fd)
    return removed


def _remove_if_stale(dir_fd: int, entry: str, now: float) -> bool:
    try:  # O_NOFOLLOW: a link is not ours to judge; O_NONBLOCK: a FIFO does not hang us
        fd = os.open(
            entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < STALE_AFTER_S:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it
            return False
        same = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        if (same.st_dev, same.st_ino) != (st.st_dev, st.st_ino):
            return False  # the name was swapped since we opened it
        os.unlink(entry, dir_fd=dir_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
