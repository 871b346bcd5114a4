"""Callbacks: code that watches a training run without changing the trainer.

Pass them as ``Trainer(config, callbacks=[...])``. Each hook gets the trainer; ``on_epoch_end``
may add keys to the epoch's metrics row (they land in ``metrics.jsonl`` and the history).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:  # the trainer imports this module; this import is for annotations only
    from .trainer import Trainer

__all__ = ["Callback", "EpochMetrics", "PlateauStop"]


class Callback:
    """Hooks into a run; override the ones you need."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first remaining epoch."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based) trains."""

    def on_batch_end(self, trainer: Trainer, epoch: int, batch: int, loss: float) -> None:
        """After the method's step on batch ``batch`` (0-based)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        """After evaluation; ``row`` is the epoch's metrics and may be extended."""

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        """After ``summary.json`` is written."""


class EpochMetrics(Callback):
    """Adds ``fn(model)``'s dict to every epoch's row (e.g. a learnable neuron parameter)."""

    def __init__(self, fn: Callable[[nn.Module], dict[str, float]]) -> None:
        self.fn = fn

    def on_epoch_end(self, trainer, epoch, row):  # noqa: D102
        row.update(self.fn(trainer.model))


class PlateauStop(Callback):
    """Early stopping: end the run once the validation metric has not improved for
    ``patience`` epochs (a tie is no improvement), through :meth:`Trainer.request_stop`.

    Needs a validation split (``val_fraction`` > 0): the stop is decided on validation, never
    on test. ``config.epochs`` stays the cap. ``best_epoch`` and ``stopped_after`` say what
    happened (``stopped_after`` is None when the cap came first).
    """

    def __init__(self, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self.patience = patience
        self.best: float | None = None
        self.best_epoch = 0
        self.stopped_after: int | None = None

    def on_fit_start(self, trainer):  # noqa: D102
        if trainer.val_set is None:
            raise ValueError("PlateauStop needs a validation split: set val_fraction > 0")

    def on_epoch_end(self, trainer, epoch, row):  # noqa: D102
        value = row[f"val_{trainer.task.metric}"]
        if trainer.task.improves(value, self.best):
            self.best, self.best_epoch = value, epoch
        elif epoch - self.best_epoch >= self.patience:
            self.stopped_after = epoch
            trainer.request_stop(
                f"validation {trainer.task.metric} has not improved for {self.patience} "
                f"epochs (best {self.best:.4g} at epoch {self.best_epoch})"
            )
