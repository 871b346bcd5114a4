"""``load_run``: a trained model back from its run directory, without datasets or optimizers.

>>> run = spikeweave.load_run("runs/mnist5k-convnet-lif-bptt-T4-s0-20261130-120000")
>>> run.predict(images)                  # [B, 1, 28, 28] -> class indices [B]
>>> run.evaluate("test")["accuracy"]     # equals summary.json's test_accuracy

Used by ``spikeweave eval``, attacks, export and anything else that needs a trained model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import data as datasets
from ..errors import DataError, InputError
from ..losses import Loss
from ..tasks import DataSpec, Task, make_task
from .config import TrainConfig
from .evaluation import SPLITS, encode_batch, evaluate_model, split_validation
from .methods import TrainingMethod, make_method
from .rundir import RunDir
from .trainer import load_model_state, read_training_checkpoint

__all__ = ["Run", "load_run"]


@dataclass
class Run:
    """A trained run: its config, model (weights loaded, eval mode) and task.

    Attributes:
        path: the run directory.
        config: the run's :class:`TrainConfig`.
        model: the network, ``[T, B, ...] -> [T, B, outputs]``, in eval mode.
        task: readout, loss and metrics of the run.
        method: the training method (for its loss and options; not used for inference).
        epoch: the epoch of the loaded checkpoint.
    """

    path: Path
    config: TrainConfig
    model: nn.Module
    task: Task
    method: TrainingMethod
    epoch: int

    @property
    def loss(self) -> Loss:
        """The named loss the run trained on and reported."""
        return self.method.loss(self.task)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A dataset batch ``[B, ...]`` as the model's time-major input ``[T, B, ...]``."""
        return encode_batch(self.config, self.task.spec, x)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output ``[T, B, ...]`` for a dataset batch ``x``."""
        self.model.eval()
        return self.model(self.encode(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The task's prediction for a dataset batch (class indices for classification)."""
        return self.task.predict(self.forward(x))

    def dataset(self, split: str = "test") -> Dataset:
        """Split ``train``, ``val`` or ``test`` of the run's named dataset, carved exactly as
        the trainer carved it (same validation split, same order)."""
        if split not in SPLITS or (split == "val" and not self.config.val_fraction):
            raise InputError(f"unknown split {split!r}; choose one of train, test (val "
                             "when the run held out val_fraction)")  # fmt: skip
        if not _named_data(self):
            raise DataError(
                f"{self.path} was trained on injected datasets; pass dataset= to evaluate"
            )
        options: dict[str, Any] = {"root": self.config.data_root or None}
        if self.task.spec.temporal:
            options["frames"] = self.config.steps
        dataset = datasets.load(
            self.config.dataset, "test" if split == "test" else "train", **options
        )
        if split != "test":
            train, val = split_validation(
                dataset, self.config.val_fraction, self.task.name == "classification"
            )
            dataset = val if split == "val" else train
        return dataset

    def evaluate(self, split: str = "test", dataset: Dataset | None = None) -> dict[str, Any]:
        """``{"loss": ..., metric: ...}`` on ``split`` of the run's dataset, or on ``dataset``.

        The numbers equal those the trainer logged for the same checkpoint.
        """
        if dataset is None:
            dataset = self.dataset(split)
        return evaluate_model(self.model, self.task, self.loss, dataset, self.config)


def _named_data(run: Run) -> bool:
    info = datasets.DATASETS.get(run.config.dataset)
    return info is not None and tuple(info.input_shape) == run.task.spec.input_shape


def load_run(run_dir: str | Path, method: TrainingMethod | None = None) -> Run:
    """The run in ``run_dir`` at its latest checkpoint.

    ``method`` is needed only for runs trained with an unregistered method instance.
    One-line errors for a missing directory or checkpoint, a corrupt checkpoint, or one whose
    weights do not fit the model its config describes.
    """
    rundir = RunDir(run_dir).require()
    path = rundir / RunDir.CHECKPOINT
    tensors, meta = read_training_checkpoint(path)
    config = TrainConfig.from_dict(meta["config"], source=str(path))
    config.validate(
        check_method=method is None, check_dataset=not isinstance(meta.get("data_spec"), dict)
    )
    if method is None:
        method = make_method(config.method, config.method_options)
    spec_dict = meta.get("data_spec")
    spec = DataSpec.from_dict(spec_dict) if isinstance(spec_dict, dict) else None
    if spec is None:
        info = datasets.info(config.dataset)
        spec = DataSpec(tuple(info.input_shape), info.num_classes, info.temporal)
    task = make_task(
        meta.get("task") or config.task or "classification",
        spec,
        loss=config.loss,
        spiking=config.spiking,
        rate_scale=config.rate_scale,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = method.build_model(config, task)
    load_model_state(model, tensors, path)
    model.eval()
    return Run(rundir.path, config, model, task, method, int(meta["epoch"]))
