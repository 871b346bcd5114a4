"""Selection on the validation split, and the per-image test predictions McNemar's test needs.

Every choice an experiment makes from data — the epoch it reports, the learning rate or
surrogate width it keeps, an accuracy target — is made on a validation split carved from the
training data (``TrainConfig.val_fraction``), never on the test set.

- :class:`BestValPredictions` — a trainer callback that records which test images the model
  gets right at the best-validation epoch (``epoch``): with ``test_eval = "best-val"`` once,
  at fit end, from the best-validation weights the run ends with; with ``each-epoch`` each
  time validation improves. ``correct.mean()`` is the reported test accuracy, and two arms'
  vectors go to :func:`~spikeweave.experiments.stats.mcnemar`. Without a validation split
  it follows the last epoch.
- :func:`per_image` — the one per-image evaluation every experiment uses: correctness (and,
  on request, output ties) of a model on a dataset, encoded and with its randomness drawn
  exactly as the trainer's evaluation (:mod:`spikeweave.training.evaluation`) draws them;
  :func:`test_correct` is it on a trainer's test set now.
- :func:`best_val_row` — the history row of the best validation epoch.
- :func:`run_record` — what a report needs of a finished run, as plain data, so the run can
  train in a forked worker (``--workers``) and hand only this back; :func:`read_records` —
  the arms' records read at their best validation epochs.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError
from ..tasks import Task
from ..training import Callback, TrainConfig
from ..training.evaluation import encode_batch, eval_seed

__all__ = [
    "PerImage",
    "per_image",
    "BestValPredictions",
    "test_correct",
    "best_val_row",
    "run_record",
    "ArmRecords",
    "read_records",
]


@dataclass
class PerImage:
    """Per image of a dataset: ``correct`` (bool ``[N]``) and, when asked for, ``tied`` (bool
    ``[N]``: the largest output spike count is shared by two or more classes, all-silent
    outputs included — the argmax then picks the lowest such class)."""

    correct: np.ndarray
    tied: np.ndarray | None = None


@torch.no_grad()
def per_image(
    model: nn.Module, task: Task, dataset: Dataset, config: TrainConfig, ties: bool = False
) -> PerImage:
    """:class:`PerImage` of ``model`` (output ``[T, B, classes]``) on ``dataset``, in batches of
    ``config.eval_batch_size``, each encoded as in training (``config.encoder``, steps). The
    randomness (e.g. Poisson encoding) is drawn as the trainer's evaluation draws it, inside a
    forked RNG, so the mean of ``correct`` equals the run's logged accuracy on that split and
    the caller's random stream is untouched. The model's train/eval mode is restored."""
    if task.name != "classification":
        raise ConfigError(f"per-image correctness needs a classification task, not {task.name!r}")
    was_training = model.training
    model.eval()
    correct: list[np.ndarray] = []
    tied: list[np.ndarray] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(eval_seed(config))
        for x, y in DataLoader(dataset, batch_size=config.eval_batch_size):
            out = model(encode_batch(config, task.spec, x))
            if ties:
                counts = out.sum(0)  # [B, classes]
                top = counts.max(-1, keepdim=True).values
                tied.append(((counts == top).sum(-1) > 1).numpy())
            pred = task.predict(out)
            correct.append((pred.cpu() == torch.as_tensor(y)).numpy())
    model.train(was_training)
    return PerImage(np.concatenate(correct), np.concatenate(tied) if ties else None)


def test_correct(trainer: Any) -> np.ndarray:
    """Bool per test image: does ``trainer.model`` classify it correctly now?
    (:func:`per_image` on the trainer's test set; its mean is the run's ``test_accuracy``.)"""
    return per_image(trainer.model, trainer.task, trainer.test_set, trainer.config).correct


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
    """Keeps the test images' correctness at the best validation epoch (see module doc);
    with ``ties``, also which of them had a tied top output count (``tied``).

    With the config's ``test_eval = "best-val"`` (every experiment's), the run ends holding
    its best validation epoch's weights, so the vector is taken once, at fit end, from them
    (``epoch`` is the summary's ``weights_epoch``); a resumed or reloaded run gets it the
    same way. With ``each-epoch`` it is taken whenever validation improves, as the per-epoch
    test rows are. Subclasses hook :meth:`captured`."""

    def __init__(self, ties: bool = False) -> None:
        self.ties = ties
        self.correct: np.ndarray | None = None
        self.tied: np.ndarray | None = None
        self.epoch = 0
        self._best: float | None = None

    def on_epoch_end(self, trainer, epoch, row):  # noqa: D102
        if trainer.config.test_eval == "best-val":
            return  # taken once in on_fit_end, from the weights the run ends with
        m = trainer.task.metric
        value = row.get(f"val_{m}")
        if value is not None and not trainer.task.improves(value, self._best):
            return
        self._best = value
        self._capture(trainer, epoch)

    def on_fit_end(self, trainer, summary):  # noqa: D102
        if trainer.config.test_eval == "best-val":
            self._capture(trainer, int(summary["weights_epoch"]))

    def _capture(self, trainer: Any, epoch: int) -> None:
        found = per_image(trainer.model, trainer.task, trainer.test_set, trainer.config, self.ties)
        self.correct, self.tied = found.correct, found.tied
        self.epoch = epoch
        self.captured(trainer)

    def captured(self, trainer: Any) -> None:
        """Called right after ``correct`` was taken, the model holding the selected weights."""


def run_record(trainer: Any, pick: BestValPredictions) -> dict[str, Any]:
    """``{"history", "correct", "test_accuracy", "n_test", "run_dir"}`` of a finished run: its
    epoch rows, the test images' correctness at the best validation epoch and its mean (the
    run's test accuracy there), the test set's size and its folder (rebuild the model with
    :func:`~spikeweave.load_run`)."""
    assert pick.correct is not None, "the run ended without a best validation epoch"
    return {
        "history": trainer.history,
        "correct": pick.correct,
        "test_accuracy": float(pick.correct.mean()),
        "n_test": len(trainer.test_set),
        "run_dir": str(trainer.run_dir),
    }


@dataclass
class ArmRecords:
    """Every arm's :func:`run_record` s read at their best validation epochs (seed order):
    epoch rows, the best rows, test accuracy and per-image correctness there, accuracy curves
    per epoch, median training step time (ms) per run, and the test set's size.

    ``curves`` are test-accuracy curves when the rows have test accuracy (``test_eval =
    "each-epoch"``), else validation-accuracy curves; ``curve_split`` says which
    (``"test"`` or ``"val"``), for figure labels and captions."""

    histories: dict[str, list[list[dict[str, Any]]]]
    rows: dict[str, list[dict[str, Any]]]
    accuracy: dict[str, list[float]]
    correct: dict[str, list[np.ndarray]]
    curves: dict[str, list[list[float]]]
    step_ms: dict[str, list[float]]
    n_test: int
    curve_split: str = "test"

    @property
    def curve_label(self) -> str:
        """``"test"`` or ``"validation"``: the split of :attr:`curves`, in words."""
        return "test" if self.curve_split == "test" else "validation"


def read_records(records: Mapping[str, Sequence[Mapping[str, Any]]]) -> ArmRecords:
    """:class:`ArmRecords` of classification runs, ``{arm: [record per seed]}``."""
    histories = {a: [r["history"] for r in recs] for a, recs in records.items()}
    rows = {a: [best_val_row(h, "accuracy", True) for h in hs] for a, hs in histories.items()}
    split = (
        "test" if all("test_accuracy" in h[0] for hs in histories.values() for h in hs) else "val"
    )
    return ArmRecords(
        histories=histories,
        rows=rows,
        accuracy={
            a: [
                float(r.get("test_accuracy", rec.get("test_accuracy")))
                for r, rec in zip(rs, records[a], strict=True)
            ]
            for a, rs in rows.items()
        },
        correct={a: [r["correct"] for r in recs] for a, recs in records.items()},
        curves={
            a: [[r[f"{split}_accuracy"] for r in h] for h in hs] for a, hs in histories.items()
        },
        step_ms={
            a: [1000 * statistics.median(r["step_time_s"] for r in h) for h in hs]
            for a, hs in histories.items()
        },
        n_test=next(iter(records.values()))[0]["n_test"],
        curve_split=split,
    )
