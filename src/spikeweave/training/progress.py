"""Training progress: a live bar on a terminal, plain per-epoch lines anywhere else.

Logs and pipes never get bar frames; a terminal never shows the previous epoch's loss as the
next one starts.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["EpochProgress"]


class EpochProgress:
    """Context manager reporting batches within epochs.

    Args:
        enabled: False prints nothing.
        epochs: the run's last epoch.
        steps: batches per epoch.
        stream: where plain lines go (default stdout); the bar is used only if it is a TTY.
    """

    def __init__(self, enabled: bool, epochs: int, steps: int, stream: Any = None) -> None:
        self.enabled = enabled
        self.epochs = epochs
        self.steps = steps
        self.stream = stream if stream is not None else sys.stdout
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> EpochProgress:
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=Console(file=self.stream),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=self.steps, stats="")
        return self

    def __exit__(self, *exc: Any) -> bool:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False

    def start_epoch(self, epoch: int) -> None:
        """A new epoch begins: reset the bar and its statistics."""
        if self._bar is not None:
            self._bar.reset(
                self._task, total=self.steps, description=f"epoch {epoch}/{self.epochs}", stats=""
            )

    def update(self, batch: int, loss: float, metrics: str) -> None:
        """``batch`` batches of this epoch are done; running loss and metrics text."""
        if self._bar is not None:
            self._bar.update(self._task, completed=batch, stats=f"loss {loss:.3f} {metrics}")

    def end_epoch(self, line: str) -> None:
        """The epoch's summary line, above the bar or as a plain line."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(line, highlight=False)
        else:
            print(line, file=self.stream, flush=True)
