"""``--method adv-train``: PGD-k adversarial training (Madry et al. 2018), the costly baseline.

Every batch is replaced by PGD adversarial examples of the current model (L∞ or L2 ball of
radius ``eps`` in input units, ``steps`` gradient steps, random start), generated in eval mode
with the model's weights untouched, and the model takes one ordinary gradient step on them.
A step costs about ``steps + 1`` forward/backward passes of plain BPTT; the trainer records it
in every metrics row (``train_time_s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..training.methods import METHODS, StepContext, SurrogateBPTT, gradient_step
from .attacks import NORMS, pgd

__all__ = ["AdversarialTraining", "AdvTrainOptions"]


@dataclass(frozen=True)
class AdvTrainOptions:
    """Options of ``--method adv-train`` (a ``[method.adv-train]`` table).

    Attributes:
        eps: the training budget in input units (``[0, 1]`` pixels).
        steps: PGD steps per batch (the k of PGD-k).
        step_size: per PGD step in input units; 0 means ``2.5·eps/steps``.
        norm: ``linf`` or ``l2``.
        random_start: start PGD from a random point of the ball.
    """

    eps: float = 0.1
    steps: int = 3
    step_size: float = 0.0
    norm: str = "linf"
    random_start: bool = True

    def __post_init__(self) -> None:
        where = "[method.adv-train]"
        if not math.isfinite(self.eps) or self.eps < 0:
            raise ConfigError(f"{where} eps must be >= 0 (input units), got {self.eps}")
        if self.steps < 1:
            raise ConfigError(f"{where} steps must be >= 1, got {self.steps}")
        if not math.isfinite(self.step_size) or self.step_size < 0:
            raise ConfigError(f"{where} step_size must be >= 0, got {self.step_size}")
        if self.norm not in NORMS:
            raise ConfigError(f"{where} norm must be one of {', '.join(NORMS)}, got {self.norm!r}")


class _StepClassifier(nn.Module):
    """The model as the trainer runs it, seen as ``images -> logits [B, K]`` for PGD."""

    def __init__(self, ctx: StepContext) -> None:
        super().__init__()
        self.model = ctx.model
        self._ctx = ctx
        task = ctx.task
        self.scale = task.rate_scale if task.spiking and task.loss_kind == "ce" else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self._ctx.task.readout(self._ctx.forward(x)) * self.scale


@METHODS.register("adv-train")
class AdversarialTraining(SurrogateBPTT):
    """PGD-k adversarial training: surrogate BPTT on PGD examples of every batch."""

    name = "adv-train"
    Options = AdvTrainOptions

    def train_step(self, ctx, x, y):  # noqa: D102
        o = self.options
        if getattr(ctx.task, "name", "") != "classification":
            raise ConfigError("--method adv-train needs a classification task")
        if o.eps > 0:
            try:
                x = pgd(
                    _StepClassifier(ctx),
                    x,
                    y,
                    o.eps,
                    steps=o.steps,
                    norm=o.norm,
                    step_size=o.step_size or None,
                    random_start=o.random_start,
                )
            except RuntimeError as exc:
                if "does not require grad" in str(exc) or "not have been used" in str(exc):
                    raise ConfigError(
                        "--method adv-train needs a differentiable encoder (--encoder direct)"
                    ) from None
                raise
        out = ctx.forward(x)
        loss = ctx.loss(out, y)
        gradient_step(ctx, loss)
        return out.detach(), loss.detach()
