"""Losses as named objects, so every run says which loss it optimised and reported.

A :class:`Loss` maps a network's time-major output ``[T, B, ...]`` and a target to a scalar;
its ``name`` labels ``metrics.jsonl``, ``summary.json`` and the plots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

__all__ = ["Loss", "rate_cross_entropy", "rate_mse_one_hot", "rate_mse"]


@dataclass(frozen=True)
class Loss:
    """A loss with its name: ``loss(out [T, B, ...], target) -> scalar``."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(out, target)


def rate_cross_entropy(scale: float = 1.0) -> Loss:
    """Cross-entropy on firing rates ``out.mean(0)`` (spikes/step) times ``scale``.

    Rates lie in [0, 1], so ``scale`` sets how sharp the softmax can get; with ``scale=1`` and a
    one-step ANN the rates are the logits.
    """

    def fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rates = out.mean(0)
        return F.cross_entropy(rates * scale if scale != 1.0 else rates, y)

    name = "cross-entropy" if scale == 1.0 else f"cross-entropy on rates ×{scale:g}"
    return Loss(name, fn)


def rate_mse_one_hot(num_classes: int) -> Loss:
    """Mean squared error between firing rates ``[B, classes]`` and one-hot labels."""

    def fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rates = out.mean(0)
        return F.mse_loss(rates, F.one_hot(y, num_classes).to(rates.dtype))

    return Loss("MSE of rates vs one-hot", fn)


def rate_mse(shape: tuple[int, ...] | None = None) -> Loss:
    """Mean squared error between the time-averaged output and the target.

    ``shape``: the per-sample shape the output is reshaped to first (e.g. an image's
    ``(C, H, W)`` for reconstruction); ``None`` reshapes to the target's shape.
    """

    def fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = out.mean(0)
        pred = pred.reshape(target.shape if shape is None else (pred.shape[0], *shape))
        return F.mse_loss(pred, target.to(pred.dtype))

    return Loss("MSE", fn)
