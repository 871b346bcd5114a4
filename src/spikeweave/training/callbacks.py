"""Callbacks: code that watches a training run without changing the trainer.

Pass them as ``Trainer(config, callbacks=[...])``. Each hook gets the trainer; ``on_epoch_end``
may add keys to the epoch's metrics row (they land in ``metrics.jsonl`` and the history).
A row's ``weights_epoch`` says that a callback loaded an earlier epoch's weights into the model
(:class:`EarlyStopping`): the summary then reports that epoch's metrics.

Three sources of callbacks meet in the trainer: the caller's, the method's
(:meth:`~.methods.TrainingMethod.callbacks`) and the config's (:func:`config_callbacks`:
``early_stopping`` and ``tensorboard``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from ..atomic import refuse_linked_folder
from ..errors import CheckpointError, ConfigError
from ..losses import Loss
from ..tasks import Task
from .config import TrainConfig
from .distributed import Distributed
from .rundir import RunDir
from .weights_check import check_state_dtypes

__all__ = [
    "Callback",
    "TrainerView",
    "EarlyStopping",
    "EpochMetrics",
    "PlateauStop",
    "TensorBoardLog",
    "config_callbacks",
]


class TrainerView(Protocol):
    """What a callback sees of the run: :class:`~.trainer.Trainer` is one. (A protocol, so that
    this module, which the trainer imports, does not import the trainer back.)"""

    config: TrainConfig
    device: torch.device
    dist: Distributed
    epoch: int
    """Epochs finished so far."""
    history: list[dict[str, Any]]
    """The metrics rows of the finished epochs."""
    loss: Loss
    method: Any
    """The run's :class:`~.methods.TrainingMethod` (``Any`` here: the methods module imports
    this one)."""
    model: nn.Module
    run_dir: Path
    rundir: RunDir
    stop_reason: str | None
    task: Task
    train_set: Dataset
    val_set: Dataset | None
    test_set: Dataset

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The model's time-major input ``[T, B, ...]`` for a dataset batch ``x``."""

    def request_stop(self, reason: str) -> None:
        """End training after the current epoch."""

    def save_best_weights(self, state: dict[str, torch.Tensor], epoch: int) -> Path:
        """Keep ``state`` as epoch ``epoch``'s best validation weights in the run directory."""

    def read_best_weights(self, epoch: int) -> dict[str, torch.Tensor]:
        """The weights :meth:`save_best_weights` kept for ``epoch``."""


class Callback:
    """Hooks into a run; override the ones you need. Each gets the trainer
    (:class:`TrainerView`: what a callback may read and ask of it)."""

    def on_fit_start(self, trainer: TrainerView) -> None:
        """Before the first remaining epoch."""

    def on_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based) trains."""

    def on_batch_end(self, trainer: TrainerView, epoch: int, batch: int, loss: float) -> None:
        """After the method's step on batch ``batch`` (0-based)."""

    def on_epoch_end(self, trainer: TrainerView, epoch: int, row: dict[str, Any]) -> None:
        """After evaluation; ``row`` is the epoch's metrics and may be extended."""

    def on_fit_end(self, trainer: TrainerView, summary: dict[str, Any]) -> None:
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
    on test. ``patience`` None never stops (it only tracks the best epoch). ``config.epochs``
    stays the cap. ``best_epoch`` and ``stopped_after`` say what happened (``stopped_after``
    is None when the cap came first). A resumed run picks up the count from its history, so
    it stops where the uninterrupted run would have, and a run this callback already stopped
    trains no further epoch.
    """

    def __init__(self, patience: int | None) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self.patience = patience
        self.best: float | None = None
        self.best_epoch = 0
        self.stopped_after: int | None = None

    def on_fit_start(self, trainer):  # noqa: D102
        if trainer.val_set is None:
            raise ValueError("PlateauStop needs a validation split: set val_fraction > 0")
        key = f"val_{trainer.task.metric}"
        self.best, self.best_epoch, self.stopped_after = None, 0, None
        for row in trainer.history:  # a resumed run: replay the count
            value, epoch = row.get(key), row.get("epoch")
            if not isinstance(value, int | float) or not isinstance(epoch, int):
                raise CheckpointError(
                    f"{trainer.rundir}: the history's epoch {epoch!r} has no {key}; the run "
                    "was not trained with a validation split"
                )
            self._update(trainer, epoch, value, replay=True)
        if self.stopped_after is not None:
            trainer.request_stop(self._reason(trainer))

    def on_epoch_end(self, trainer, epoch, row):  # noqa: D102
        self._update(trainer, epoch, row[f"val_{trainer.task.metric}"])
        if self.stopped_after == epoch:
            trainer.request_stop(self._reason(trainer))

    def _update(self, trainer: TrainerView, epoch: int, value: float, replay: bool = False) -> None:
        """Count epoch ``epoch``'s validation ``value``; sets ``stopped_after`` once the
        patience is spent."""
        if self.stopped_after is not None:
            return
        if trainer.task.improves(value, self.best):
            self.best, self.best_epoch = value, epoch
            if not replay:
                self.improved(trainer, epoch)
        elif self.patience is not None and epoch - self.best_epoch >= self.patience:
            self.stopped_after = epoch

    def improved(self, trainer: TrainerView, epoch: int) -> None:
        """Called when epoch ``epoch`` is the new best (not while replaying a history)."""

    def _reason(self, trainer: TrainerView) -> str:
        return (
            f"validation {trainer.task.metric} has not improved for {self.patience} "
            f"epochs (best {self.best:.4g} at epoch {self.best_epoch})"
        )


class EarlyStopping(PlateauStop):
    """:class:`PlateauStop` that leaves the run with its best validation epoch's weights
    (``--early-stopping N``; the config's ``early_stopping``). With ``patience`` None it never
    stops and only keeps the best weights: the config's ``test_eval = "best-val"``.

    Whenever validation improves, the model's weights are kept (in memory, and in the run's
    ``best_val.safetensors``, written by :meth:`Trainer.save_best_weights`, so that a resumed
    run still has them). When the run ends (stopped by this or any callback, or at its
    ``epochs`` cap), the model gets the best epoch's weights back before the checkpoint is
    written, and the last row records ``weights_epoch``: the checkpoint, ``summary.json`` (its
    ``test_*`` are that epoch's), ``eval``, ``export`` and ``load_run`` all see the
    best-validation model. Optimizer state stays the last epoch's, so a run that ended this
    way is finished: extending it with more epochs is refused.
    """

    def __init__(self, patience: int | None) -> None:
        super().__init__(patience)
        self._kept: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, trainer):  # noqa: D102
        self._kept = None
        replaying = bool(trainer.history)
        super().on_fit_start(trainer)
        if not replaying:
            return
        held = trainer.history[-1].get("weights_epoch")
        more = trainer.epoch < trainer.config.epochs
        if held is not None and self.stopped_after is None and more:
            raise ConfigError(
                f"{trainer.rundir} ended with the weights of its best validation epoch {held} "
                "(early stopping or test_eval best-val); it cannot be extended. Train a new "
                "run with more --epochs"
            )

    def improved(self, trainer, epoch):  # noqa: D102
        state = trainer.model.state_dict()
        self._kept = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        if trainer.dist.is_main:
            trainer.save_best_weights(self._kept, epoch)

    def on_epoch_end(self, trainer, epoch, row):  # noqa: D102
        super().on_epoch_end(trainer, epoch, row)
        last = (
            self.stopped_after == epoch
            or trainer.stop_reason is not None  # another callback (PlateauStop) ends the run
            or epoch >= trainer.config.epochs
        )
        if last and self.best_epoch != epoch:
            self._restore(trainer)
            row["weights_epoch"] = self.best_epoch

    def _restore(self, trainer: TrainerView) -> None:
        """Load the best epoch's weights into the model (from memory, or from the run's file
        when this process resumed after that epoch)."""
        path = trainer.rundir / RunDir.BEST_VAL
        kept = self._kept
        if kept is None:
            kept = trainer.read_best_weights(self.best_epoch)
        own = trainer.model.state_dict()
        check_state_dtypes(
            {f"model/{k}": v for k, v in own.items()}, {f"model/{k}": v for k, v in kept.items()},
            path,
        )  # fmt: skip
        try:
            trainer.model.load_state_dict(kept)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{path} does not fit the run's model: {first}") from None


class TensorBoardLog(Callback):
    """Epoch metrics as TensorBoard scalars under ``RUN/tensorboard/`` (``--tensorboard``).

    Every number of an epoch's row is logged at step = epoch: ``train_accuracy`` as
    ``accuracy/train`` (``val_``/``test_`` alike, so the splits share a chart), the others
    (``lr``, timings) under their own names. Only the main process of a torchrun job writes.
    A resumed run appends a new event file to the same folder. Event files are appended as
    TensorBoard writes them (not atomically); a ``tensorboard`` folder that is a symbolic link
    is refused. Needs the ``tensorboard`` package (checked when the callback is made).
    """

    SPLITS = ("train", "val", "test")

    def __init__(self) -> None:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError(
                "tensorboard logging needs the tensorboard package: pip install "
                '"spikeweave[tensorboard]"'
            ) from None
        self.writer: Any = None

    def on_fit_start(self, trainer):  # noqa: D102
        if not trainer.dist.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        folder = refuse_linked_folder(trainer.rundir / RunDir.TENSORBOARD, "tensorboard folder")
        self.writer = SummaryWriter(log_dir=str(folder))

    def on_epoch_end(self, trainer, epoch, row):  # noqa: D102
        if self.writer is None:
            return
        for key, value in row.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            self.writer.add_scalar(self.tag(key), value, epoch)
        self.writer.flush()

    def on_fit_end(self, trainer, summary):  # noqa: D102
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    @classmethod
    def tag(cls, key: str) -> str:
        """The scalar's name for a metrics key: ``val_loss`` -> ``loss/val``, else ``key``."""
        split, _, rest = key.partition("_")
        return f"{rest}/{split}" if split in cls.SPLITS and rest else key


def config_callbacks(config: TrainConfig) -> list[Callback]:
    """The callbacks the config asks for: :class:`EarlyStopping` (``early_stopping`` > 0, or
    without patience for ``test_eval = "best-val"``) and
    :class:`TensorBoardLog` (``tensorboard``); the trainer adds them after the caller's and
    the method's."""
    out: list[Callback] = []
    if config.early_stopping:  # it also keeps the best weights test_eval best-val needs
        out.append(EarlyStopping(config.early_stopping))
    elif config.test_eval == "best-val":
        out.append(EarlyStopping(None))
    if config.tensorboard:
        out.append(TensorBoardLog())
    return out
