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

__all__ = ["Callback", "EpochMetrics"]


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
