"""Run directories: every file a run leaves, written in one place.

A run directory holds ``config.json``, ``metrics.jsonl`` (one JSON object per epoch),
``checkpoint.safetensors`` (latest epoch), ``summary.json``, ``activity.safetensors`` (spikes
of a few test samples, bit-packed) and the PNG plots; ``eval.json`` after ``spikeweave eval``;
with early stopping ``best_val.safetensors`` (the best validation epoch's weights), with
TensorBoard logging the event files under ``tensorboard/``.
Every file is written atomically (a temporary file renamed over the target, see
:mod:`spikeweave.atomic`), so a crash never leaves a half-written one, a link named like a run
file is replaced rather than written through, and files get mode 0644 like any a user writes.
A run directory that is itself a symbolic link is refused for writing; ``.lock`` is never
truncated and never followed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ..atomic import (
    atomic_write_bytes,
    make_folder,
    output_error,
    refuse_linked_folder,
    remove_stale_temporaries,
)
from ..errors import ConfigError, DataError

__all__ = ["RunDir"]

_OWNER_BYTES = 32  # the owner line in .lock, "process <pid>" padded with spaces


class RunDir:
    """The files of one run under ``path``."""

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    CHECKPOINT = "checkpoint.safetensors"
    ACTIVITY = "activity.safetensors"
    EVAL = "eval.json"
    BEST_VAL = "best_val.safetensors"
    TENSORBOARD = "tensorboard"
    PLOTS = ("training_curves.png", "spike_raster.png", "firing_rates.png")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def new(cls, out_dir: str | Path, name: str) -> RunDir:
        """A fresh directory ``out_dir/name-<timestamp>[-n]``, created now and exclusively:
        two runs started in the same second (a sweep) get different directories, as
        ``os.mkdir`` fails on a name another process took first and the next ``-n`` is tried."""
        out = cls.check_out_dir(out_dir)
        make_folder(out)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = out / f"{name}-{stamp}"
        path, n = base, 1
        while True:
            try:
                os.mkdir(path)
                return cls(path)
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")
            except OSError as exc:
                raise output_error(path, exc, "create run directory") from None

    @staticmethod
    def check_out_dir(out_dir: str | Path) -> Path:
        """``out_dir`` unless a file is in its place (checked by every process of a job, so
        none waits for a rank 0 that stopped on it)."""
        out = Path(out_dir)
        try:
            is_file = out.exists() and not out.is_dir()
        except OSError as exc:  # a name too long, a loop of links
            raise output_error(out, exc, "use out_dir") from None
        if is_file:
            raise ConfigError(f"out_dir {out} is a file; pass a folder for run directories")
        return out

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    def create(self) -> None:
        """Make the folder (and its parents), with a one-line error if that is impossible.
        A run directory that is a symbolic link is refused (see :meth:`check_not_link`)."""
        self.check_not_link()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(
                f"cannot create run directory {self.path}: a file is in the way; choose "
                "another out_dir"
            ) from None
        except PermissionError:
            raise ConfigError(
                f"cannot create run directory {self.path}: permission denied; choose a "
                "writable out_dir"
            ) from None
        except OSError as exc:
            raise output_error(self.path, exc, "create run directory") from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"run directory {self.path} is not writable; choose another out_dir")

    def check_not_link(self) -> RunDir:
        """``self`` unless the run directory is itself a symbolic link: a shared or downloaded
        run directory that is a link would send a resumed run's files (``config.json``, ...)
        wherever it points. The folders above it are the user's choice and are followed."""
        refuse_linked_folder(self.path)
        return self

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run for the duration; a second process training the
        same run directory gets a one-line ConfigError instead of interleaving files.

        ``.lock`` is opened without following a link and without truncating (a link or a hard
        link there must not damage another file); a link, FIFO, folder or a file with other
        hard links at ``.lock`` is a one-line ConfigError. Holding the lock, the temporary
        files of writes a killed process left behind are removed."""
        path = self.path / ".lock"
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            what = {errno.ELOOP: "a symbolic link", errno.EISDIR: "a folder"}.get(exc.errno)
            if what is None:
                raise output_error(path, exc, "open lock file") from None
            raise ConfigError(f"{path} is {what}, not a lock file; remove it") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{path} is not a regular file (a FIFO?); remove it")
            if st.st_nlink != 1:
                raise ConfigError(
                    f"{path} has other hard links, so it is not a lock file; remove it"
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, _OWNER_BYTES, 0).decode("utf-8", "replace")
                owner = " ".join(text.split()) or "another process"
                raise ConfigError(
                    f"run directory {self.path} is being trained by {owner}; wait for it or "
                    "choose another run"
                ) from None
            # padded to a fixed width and written in place: no truncation, and a longer
            # owner line of an earlier run is fully overwritten
            os.pwrite(fd, f"process {os.getpid()}".ljust(_OWNER_BYTES).encode(), 0)
            remove_stale_temporaries(self.path)
            yield
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Delete the run directory (a run that never finished an epoch)."""
        shutil.rmtree(self.path, ignore_errors=True)

    # -- writing ------------------------------------------------------------------------------
    def write_json(self, name: str, value: Any) -> Path:
        """``value`` as indented JSON in ``name``, atomically."""
        path = self.path / name
        atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())
        return path

    def write_metrics(self, rows: Iterable[dict[str, Any]]) -> Path:
        """Rewrite ``metrics.jsonl`` with ``rows`` (one line each), atomically."""
        text = "".join(json.dumps(row) + "\n" for row in rows)
        path = self.path / self.METRICS
        atomic_write_bytes(path, text.encode())
        return path

    def copy_in(self, name: str, source: str | Path) -> Path:
        """A copy of the file ``source`` as ``name`` in the run, written atomically."""
        try:
            content = Path(source).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {source}: {exc.strerror or exc}") from None
        return atomic_write_bytes(self.path / name, content)

    # -- reading ------------------------------------------------------------------------------
    def read_json(self, name: str) -> dict[str, Any]:
        """A JSON object file of the run; ``DataError`` naming it if missing or malformed."""
        path = self.path / name
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(
                f"{path} not found; pass a directory written by `spikeweave train`"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        if not isinstance(value, dict):
            raise DataError(f"{path} must hold a JSON object, got {type(value).__name__}")
        return value

    def require(self) -> RunDir:
        """``self`` if it is a run directory with a checkpoint, else a one-line DataError."""
        if not self.path.is_dir():
            what = "is a file, not a directory" if self.path.exists() else "does not exist"
            raise DataError(
                f"run directory {self.path} {what}; pass a directory written by `spikeweave train`"
            )
        if not (self.path / self.CHECKPOINT).is_file():
            raise DataError(
                f"{self.path} has no {self.CHECKPOINT}; the run never finished an epoch (or "
                "this is not a run directory)"
            )
        return self
