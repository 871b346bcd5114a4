"""Run directories: every file a run leaves, written in one place.

A run directory holds ``config.json``, ``metrics.jsonl`` (one JSON object per epoch),
``checkpoint.safetensors`` (latest epoch), ``summary.json``, ``activity.safetensors`` (spikes
of a few test samples, bit-packed) and the PNG plots; ``eval.json`` after ``spikeweave eval``.
Text files are written atomically (a temporary file renamed over the target), so a crash never
leaves a half-written one, and with mode 0644 like any file a user writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..errors import ConfigError, DataError

__all__ = ["RunDir"]


class RunDir:
    """The files of one run under ``path``."""

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    CHECKPOINT = "checkpoint.safetensors"
    ACTIVITY = "activity.safetensors"
    EVAL = "eval.json"
    PLOTS = ("training_curves.png", "spike_raster.png", "firing_rates.png")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def new(cls, out_dir: str | Path, name: str) -> RunDir:
        """A fresh, not yet created directory ``out_dir/name-<timestamp>[-n]``."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"out_dir {out} is a file; pass a folder for run directories")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = out / f"{name}-{stamp}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return cls(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    def create(self) -> None:
        """Make the folder (and its parents), with a one-line error if that is impossible."""
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
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"run directory {self.path} is not writable; choose another out_dir")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run for the duration; a second process training the
        same run directory gets a one-line ConfigError instead of interleaving files."""
        path = self.path / ".lock"
        fh = open(path, "a+")  # noqa: SIM115 - held until the context exits
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                owner = fh.read().strip() or "another process"
                raise ConfigError(
                    f"run directory {self.path} is being trained by {owner}; wait for it or "
                    "choose another run"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"process {os.getpid()}")
            fh.flush()
            yield
        finally:
            fh.close()

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
