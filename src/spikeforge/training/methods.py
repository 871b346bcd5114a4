"""The seam where a training method plugs into the trainer.

A :class:`TrainingMethod` decides how one batch changes the model. The trainer owns
everything else (data order, schedule, evaluation, checkpoints, logging), so a new method —
a different gradient estimator, single-step noisy training, or a local plasticity rule that
updates weights without autograd — subclasses this and registers itself in ``METHODS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

__all__ = [
    "StepContext",
    "TrainingMethod",
    "SurrogateBPTT",
    "METHODS",
    "make_method",
    "register_method",
]


@dataclass
class StepContext:
    """What a method may use for one step.

    Attributes:
        model: the network, ``[T, B, ...] -> [T, B, classes]``.
        optimizer: the trainer's optimizer (a local rule may ignore it).
        forward: encodes a static batch ``[B, ...]`` and runs the model -> ``[T, B, classes]``.
        loss: ``(output [T, B, classes], labels [B]) -> scalar`` loss.
        grad_clip: max global gradient norm (0 disables).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    forward: Callable[[torch.Tensor], torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    grad_clip: float


class TrainingMethod:
    """How one batch updates the model. Subclasses override :meth:`train_step`."""

    name: str = ""

    def configure(self, config: Any) -> None:
        """Read method options from the run's :class:`TrainConfig` (e.g. its ``extra`` table).

        Called once before :meth:`prepare`; the default ignores the config.
        """

    def prepare(self, model: nn.Module) -> nn.Module:
        """Adapt a freshly built model before training (default: unchanged)."""
        return model

    def train_step(
        self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update the model on one batch; return ``(output [T, B, classes], loss)``, detached."""
        raise NotImplementedError


class SurrogateBPTT(TrainingMethod):
    """Backpropagation through time with the neurons' surrogate derivatives."""

    name = "bptt"

    def train_step(self, ctx, x, y):  # noqa: D102
        ctx.optimizer.zero_grad(set_to_none=True)
        out = ctx.forward(x)
        loss = ctx.loss(out, y)
        loss.backward()
        if ctx.grad_clip > 0:
            nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.grad_clip)
        ctx.optimizer.step()
        return out.detach(), loss.detach()


# A factory, or "module:attribute" for methods whose module is imported only when chosen.
METHODS: dict[str, Callable[[], TrainingMethod] | str] = {
    "bptt": SurrogateBPTT,
    "na": "spikeforge.learning.na:NAMethod",
    "noisy": "spikeforge.learning.noisy:NoisySingleStep",
}


def register_method(name: str, factory: Callable[[], TrainingMethod] | str) -> None:
    """Make ``factory`` (or a ``"module:attribute"`` path to it) available as ``--method name``."""
    METHODS[name] = factory


def make_method(name: str) -> TrainingMethod:
    """A fresh instance of the method registered as ``name``."""
    try:
        factory = METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory()
