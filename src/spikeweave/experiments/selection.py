"""Selection on the validation split, and the per-image test predictions McNemar's test needs.

Every choice an experiment makes from data — the epoch it reports, the learning rate or
surrogate width it keeps, an accuracy target — is made on a validation split carved from the
training data (``TrainConfig.val_fraction``), never on the test set.

- :class:`BestValPredictions` — a trainer callback that, each time the validation metric
  improves, records which test images the model gets right. At the end of the run
  ``correct`` holds that vector for the best-validation epoch (``epoch``): the reported test
  accuracy is ``correct.mean()``, and two arms' vectors go to
  :func:`~spikeweave.experiments.stats.mcnemar`. Without a validation split it follows the
  last epoch.
- :func:`test_correct` — the same vector for a model now.
- :func:`best_val_row` — the history row of the best validation epoch.
- :func:`run_record` — what a report needs of a finished run, as plain data, so the run can
  train in a forked worker (``--workers``) and hand only this back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import ConfigError
from ..training import Callback
from ..training.evaluation import eval_seed

__all__ = ["BestValPredictions", "test_correct", "best_val_row", "run_record"]


@torch.no_grad()
def test_correct(trainer: Any) -> np.ndarray:
    """Bool per test image: does ``trainer.model`` classify it correctly? Randomness
    (e.g. Poisson encoding) is drawn exactly as the trainer's evaluation draws it, so the mean
    equals the run's ``test_accuracy``."""
    if trainer.task.name != "classification":
        raise ConfigError(
            f"per-image correctness needs a classification task, not {trainer.task.name!r}"
        )
    model, cfg = trainer.model, trainer.config
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(eval_seed(cfg))
        for x, y in DataLoader(trainer.test_set, batch_size=cfg.eval_batch_size):
            pred = trainer.task.predict(model(trainer.encode(x)))
            out.append((pred.cpu() == torch.as_tensor(y)).numpy())
    model.train(was_training)
    return np.concatenate(out)


def best_val_row(history: list[dict[str, Any]], metric: str, higher: bool) -> dict[str, Any]:
    """The row of the best ``val_<metric>`` (the earliest on ties); the last row when the run
    had no validation split."""
    if not history:
        raise ConfigError("the run has no epochs to select from")
    key = f"val_{metric}"
    if key not in history[0]:
        return history[-1]
    pick = max if higher else min
    return pick(history, key=lambda r: r[key])


class BestValPredictions(Callback):
    """Keeps the test images' correctness at the best validation epoch (see module doc)."""

    def __init__(self) -> None:
        self.correct: np.ndarray | None = None
        self.epoch = 0
        self._best: float | None = None

    def on_epoch_end(self, trainer, epoch, row):  # noqa: D102
        m = trainer.task.metric
        value = row.get(f"val_{m}")
        if value is not None and not trainer.task.improves(value, self._best):
            return
        self._best = value
        self.correct = test_correct(trainer)
        self.epoch = epoch


def run_record(trainer: Any, pick: BestValPredictions) -> dict[str, Any]:
    """``{"history", "correct", "n_test", "run_dir"}`` of a finished run: its epoch rows, the
    test images' correctness at the best validation epoch, the test set's size and its folder
    (rebuild the model with :func:`~spikeweave.load_run`)."""
    return {
        "history": trainer.history,
        "correct": pick.correct,
        "n_test": len(trainer.test_set),
        "run_dir": str(trainer.run_dir),
    }
