"""The seam where a training method plugs into the trainer.

A :class:`TrainingMethod` owns exactly what it changes and nothing else:

- ``Options``: a dataclass of its typed options, read from a ``[method.NAME]`` TOML table
  (unknown keys and wrong types are refused);
- ``build_model(config, task)``: its network (default: the config's model);
- ``configure_optimizers(model, config, steps_per_epoch)``: an optimizer and schedule, or
  ``None`` for a local rule that updates weights itself under ``torch.no_grad()``;
- ``loss(task)``: a named loss when it trains on something other than the task's loss;
- ``callbacks()``: callbacks it brings to every run (e.g. BioLeaF's apical mismatch);
- ``train_step(ctx, x, y) -> (output, loss)``: how one batch changes the model;
- ``state_dict()`` / ``load_state_dict(state)``: what the method itself carries from batch to
  batch (default: nothing), saved in the checkpoint's ``method_state`` and restored on resume.

The trainer owns the rest (data order, evaluation, checkpoints, run records). Methods register
in ``METHODS`` beside their definition; ``make_method(name, options)`` builds one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..losses import Loss
from ..options import build_options, options_dict
from ..registry import Registry
from ..tasks import Task
from .build import Optimization, default_model, default_optimization
from .callbacks import Callback
from .config import TrainConfig

__all__ = [
    "METHODS",
    "NoOptions",
    "Optimization",
    "StepContext",
    "SurrogateBPTT",
    "TrainingMethod",
    "make_method",
]

METHODS: Registry[type[TrainingMethod]] = Registry(
    "training method",
    providers=(
        "spikeweave.learning.na",
        "spikeweave.learning.noisy",
        "spikeweave.learning.bioleaf",
        "spikeweave.security.adv_train",
        "spikeweave.security.oscillation_bptt",
        "spikeweave.compression.sampler",
    ),
)


@dataclass
class StepContext:
    """What a method may use for one step.

    Attributes:
        model: the network, ``[T, B, ...] -> [T, B, outputs]``.
        optimizer: the optimizer from ``configure_optimizers`` (None for a local rule).
        forward: encodes a dataset batch ``[B, ...]`` and runs the model -> ``[T, B, ...]``.
        loss: the run's named loss, ``(output [T, B, ...], target) -> scalar``.
        grad_clip: max global gradient norm (0 disables).
        task: the run's task (readout, metrics).
        scaler: the fp16 gradient scaler (None in fp32/bf16); :func:`gradient_step` uses it.

    The trainer calls ``train_step`` on the run's device (``x``, ``y`` are there already) and
    inside the precision's autocast; a method creates tensors on ``x.device``.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    forward: Callable[[torch.Tensor], torch.Tensor]
    loss: Loss
    grad_clip: float
    task: Task
    scaler: torch.amp.GradScaler | None = None


@dataclass(frozen=True)
class NoOptions:
    """A method without options."""


class TrainingMethod:
    """How one batch updates the model. Subclasses set ``name`` and override
    :meth:`train_step` (and, where they own it, the other hooks).

    Args:
        options: an instance of ``Options``, or a mapping of its fields (checked: unknown keys
            and wrong types raise ``ConfigError``), or None for the defaults.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any = None) -> None:
        self.options = build_options(self.Options, options, f"[method.{self.name or 'custom'}]")

    def options_dict(self) -> dict[str, Any]:
        """The options as a JSON-able dict (recorded in the run's config)."""
        return options_dict(self.options)

    def build_model(self, config: TrainConfig, task: Task) -> nn.Module:
        """The network to train (default: the config's model for the task's data)."""
        return default_model(config, task)

    def model_fields(self) -> frozenset[str] | None:
        """Which network fields of the config (:data:`~.config.MODEL_FIELDS`) the network
        :meth:`build_model` returns depends on: None (default) for all, i.e. the config's model
        is built. A method that builds its own network returns the ones it reads, and the
        trainer refuses the others when they are set, rather than ignoring them."""
        return None

    def optimizer_fields(self) -> frozenset[str] | None:
        """Which optimisation fields of the config (:data:`~.config.OPTIMIZER_FIELDS`) the
        method reads: None (default) for all, i.e. the default optimisation. A method with an
        optimisation of its own returns the ones it reads, and the others are refused when
        set, rather than ignored."""
        return None

    def configure_optimizers(
        self, model: nn.Module, config: TrainConfig, steps_per_epoch: int
    ) -> Optimization | None:
        """Optimizer and schedule (default AdamW + the config's schedule); None: no optimizer."""
        return default_optimization(model, config, steps_per_epoch)

    def loss(self, task: Task) -> Loss:
        """The loss this method trains on and the run reports (default: the task's)."""
        return task.loss()

    def callbacks(self) -> list[Callback]:
        """Callbacks the method brings to every run it trains (e.g. a monitor of its own
        state); the trainer adds them after the ones it was given."""
        return []

    def train_step(
        self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update the model on one batch; return ``(output [T, B, ...], loss)``, detached."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The method's own state between batches (nested dicts/lists of tensors, numbers,
        strings), saved in every checkpoint. Default: none. Options are not state: they are
        in the config."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned. Called on resume after
        :meth:`configure_optimizers`, so a method may keep what the (possibly extended) run
        set there. Default: accepts only the empty state."""
        if state:
            raise ValueError(f"method {self.name!r} has no state, got keys {sorted(state)}")

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options_dict().items())
        return f"{type(self).__name__}({opts})"


def gradient_step(ctx: StepContext, loss: torch.Tensor) -> None:
    """Backward, clip, optimizer step: the update shared by gradient-based methods.

    Backward runs outside autocast (its ops take the dtypes autocast chose in forward); with
    an fp16 ``ctx.scaler`` the loss is scaled, the gradients unscaled before clipping and a step
    with inf/NaN gradients skipped (the scaler lowers its scale instead).
    """
    if ctx.optimizer is None:
        raise RuntimeError("gradient_step needs an optimizer; configure_optimizers returned None")
    ctx.optimizer.zero_grad(set_to_none=True)
    scaler = ctx.scaler
    with torch.autocast(loss.device.type, enabled=False):
        (loss if scaler is None else scaler.scale(loss)).backward()
    if scaler is not None:
        scaler.unscale_(ctx.optimizer)
    if ctx.grad_clip > 0:
        nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.grad_clip)
    if scaler is None:
        ctx.optimizer.step()
    else:
        scaler.step(ctx.optimizer)
        scaler.update()


@METHODS.register("bptt")
class SurrogateBPTT(TrainingMethod):
    """Backpropagation through time with the neurons' surrogate derivatives."""

    name = "bptt"

    def train_step(self, ctx, x, y):  # noqa: D102
        out = ctx.forward(x)
        loss = ctx.loss(out, y)
        gradient_step(ctx, loss)
        return out.detach(), loss.detach()


def make_method(name: str, options: Mapping[str, Any] | None = None) -> TrainingMethod:
    """A fresh instance of the method registered as ``name`` with ``options``."""
    return METHODS.get(name)(options)
