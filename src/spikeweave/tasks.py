"""Tasks: what a network's output means — readout, target, default loss and metrics.

The trainer, ``load_run`` and the experiments ask the task, never assume classification:

- ``classification`` (default for labelled datasets): rates ``[B, classes]``, prediction =
  most active class; loss cross-entropy on rates (or MSE against one-hot); metric accuracy.
- ``regression``: the time-averaged output is the prediction (``[B]`` for one output);
  loss MSE; metric MSE.
- ``reconstruction``: image in, image out; the target is the input itself; loss MSE; metrics
  MSE, PSNR (dB, data range 1) and SSIM (torchmetrics, images only).

A task is built from a :class:`DataSpec` (input shape, number of outputs) and the run's config;
metrics are accumulated as ``(sum, count)`` pairs per batch so every split is averaged exactly
over samples, whatever the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .errors import ConfigError, InputError
from .losses import Loss, rate_cross_entropy, rate_mse, rate_mse_one_hot
from .registry import Registry

__all__ = [
    "TASKS",
    "DataSpec",
    "Task",
    "Classification",
    "Regression",
    "Reconstruction",
    "make_task",
]

TASKS: Registry[type[Task]] = Registry("task")


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about the data: per-sample input shape (without T) and the
    number of outputs (classes for classification, target size for regression, pixels for
    reconstruction); ``temporal`` datasets yield ``[T, ...]`` samples already."""

    input_shape: tuple[int, ...]
    num_outputs: int
    temporal: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in checkpoints, so a run is rebuilt without its data)."""
        return {
            "input_shape": list(self.input_shape),
            "num_outputs": self.num_outputs,
            "temporal": self.temporal,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(int(v) for v in d["input_shape"]), int(d["num_outputs"]), bool(d["temporal"])
        )


class Task:
    """Readout, target, loss and metrics of one kind of problem.

    Args:
        spec: the data's shapes.
        loss: ``""`` for the task's default, else one of ``LOSSES``.
        spiking: False for a one-step ANN (its output is logits, not rates).
        rate_scale: multiplies rates before a softmax (classification with ``loss="ce"``).
    """

    name: ClassVar[str] = ""
    LOSSES: ClassVar[tuple[str, ...]] = ("mse",)
    metric: ClassVar[str] = ""
    """The headline metric (a key of :meth:`batch_metrics`)."""
    higher_is_better: ClassVar[bool] = True

    def __init__(
        self, spec: DataSpec, loss: str = "", spiking: bool = True, rate_scale: float = 1.0
    ) -> None:
        if loss and loss not in self.LOSSES:
            raise ConfigError(
                f"loss {loss!r} does not fit the {self.name} task; choose one of "
                f"{', '.join(self.LOSSES)}"
            )
        self.spec = spec
        self.loss_kind = loss or self.LOSSES[0]
        self.spiking = spiking
        self.rate_scale = rate_scale

    @classmethod
    def improves(cls, value: float, best: float | None) -> bool:
        """Is ``value`` of the headline metric strictly better than ``best`` (None: nothing
        seen yet)? Ties keep the earlier epoch."""
        if best is None:
            return True
        return value > best if cls.higher_is_better else value < best

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What the loss compares the output with, from a batch ``(x, y)``."""
        return y

    def readout(self, out: torch.Tensor) -> torch.Tensor:
        """The network's answer ``[B, ...]`` from its time-major output ``[T, B, ...]``."""
        return out.mean(0)

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """The prediction for each sample (the readout, unless the task decides further)."""
        return self.readout(out)

    def loss(self) -> Loss:
        """The task's default loss."""
        raise NotImplementedError

    def batch_metrics(
        self, out: torch.Tensor, target: torch.Tensor
    ) -> dict[str, tuple[float, int]]:
        """``{metric: (sum over the batch, count)}``; a split's metric is sum / count."""
        raise NotImplementedError

    def describe(self, metrics: dict[str, float]) -> str:
        """A short progress text, e.g. ``"acc 97.1%"``."""
        value = metrics.get(self.metric)
        return "" if value is None else f"{self.metric} {value:.4g}"


@TASKS.register("classification")
class Classification(Task):
    """Class labels from firing rates; accuracy."""

    name = "classification"
    LOSSES = ("ce", "mse")
    metric = "accuracy"

    def predict(self, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.readout(out).argmax(-1)

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, classes]``: the softmax of the rates times ``rate_scale``
        (of the logits for a one-step ANN), as the cross-entropy loss scores them."""
        rates = self.readout(out).float()
        return torch.softmax(rates * self.rate_scale if self.spiking else rates, dim=-1)

    def loss(self) -> Loss:  # noqa: D102
        if not self.spiking:
            return rate_cross_entropy(1.0)
        if self.loss_kind == "ce":
            return rate_cross_entropy(self.rate_scale)
        return rate_mse_one_hot(self.spec.num_outputs)

    def batch_metrics(self, out, target):  # noqa: D102
        correct = int((self.predict(out) == target).sum())
        return {"accuracy": (correct, len(target))}

    def describe(self, metrics):  # noqa: D102
        return f"acc {metrics['accuracy']:.1%}" if "accuracy" in metrics else ""


@TASKS.register("regression")
class Regression(Task):
    """Real-valued targets from the time-averaged output; mean squared error."""

    name = "regression"
    metric = "mse"
    higher_is_better = False

    def readout(self, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        pred = out.mean(0)
        return pred.squeeze(-1) if self.spec.num_outputs == 1 and pred.dim() > 1 else pred

    def loss(self) -> Loss:  # noqa: D102
        return rate_mse()

    def batch_metrics(self, out, target):  # noqa: D102
        pred = self.readout(out)
        err = (pred - target.to(pred.dtype).reshape(pred.shape)) ** 2
        return {"mse": (float(err.sum()), err.numel())}


@TASKS.register("reconstruction")
class Reconstruction(Task):
    """Images in, images out; MSE, PSNR and SSIM against the input."""

    name = "reconstruction"
    metric = "psnr"

    def target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x

    def readout(self, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        pred = out.mean(0)
        return pred.reshape(pred.shape[0], *self.spec.input_shape)

    def loss(self) -> Loss:  # noqa: D102
        return rate_mse(self.spec.input_shape)

    def batch_metrics(self, out, target):  # noqa: D102
        from torchmetrics.functional.image import (
            peak_signal_noise_ratio,
            structural_similarity_index_measure,
        )

        pred = self.readout(out).float()
        target = target.float().reshape(pred.shape)
        n = pred.shape[0]
        dims = tuple(range(1, pred.dim()))
        mse = ((pred - target) ** 2).mean(dims)
        psnr = peak_signal_noise_ratio(
            pred.clamp(0, 1), target, data_range=1.0, reduction="none", dim=dims
        )
        result = {
            "mse": (float(mse.sum()), n),
            "psnr": (float(psnr.sum()), n),
        }
        if pred.dim() == 4 and min(pred.shape[-2:]) >= 3:
            side = min(pred.shape[-2:])
            kernel = min(11, side if side % 2 else side - 1)
            ssim = structural_similarity_index_measure(
                pred.clamp(0, 1), target, data_range=1.0, kernel_size=kernel, reduction="none"
            )
            result["ssim"] = (float(ssim.sum()), n)
        return result

    def describe(self, metrics):  # noqa: D102
        psnr = metrics.get("psnr")
        return "" if psnr is None or not math.isfinite(psnr) else f"psnr {psnr:.2f} dB"


def make_task(
    name: str, spec: DataSpec, loss: str = "", spiking: bool = True, rate_scale: float = 1.0
) -> Task:
    """The task registered as ``name`` for data of shape ``spec``."""
    cls = TASKS.get(name)
    if cls is Reconstruction and spec.num_outputs != math.prod(spec.input_shape):
        raise InputError(
            f"reconstruction needs as many outputs as input values "
            f"({math.prod(spec.input_shape)}), got {spec.num_outputs}"
        )
    return cls(spec, loss=loss, spiking=spiking, rate_scale=rate_scale)
