"""A run's parts from its config: neurons, the default model, the optimizer and its schedule.

Methods call these from their hooks (``build_model``, ``configure_optimizers``) to start from
the defaults and change only what they own; :mod:`.assembly` puts a run together from them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..layers import NeuronFactory, TimeFolded
from ..models import build_model
from ..neurons import NEURONS
from ..surrogate import get_surrogate
from ..tasks import Task
from .config import TrainConfig

__all__ = [
    "Optimization",
    "neuron_factory",
    "default_model",
    "default_optimization",
    "compile_stateless",
]

# Config fields a neuron constructor may take -> the constructor's parameter name.
_NEURON_FIELDS = {
    "tau": "tau",
    "threshold": "threshold",
    "v_reset": "v_reset",
    "reset": "reset",
    "decay_input": "decay_input",
    "detach_reset": "detach_reset",
    "osc_amplitude": "amplitude",
    "osc_frequency": "frequency",
    "osc_form": "form",
    "osc_phase": "phase",
    "osc_fake_form": "fake_form",
    "osc_fake_phase": "fake_phase",
}
# Config values that mean "not set" for constructor parameters whose default is None.
_UNSET = {"osc_fake_form": "", "osc_fake_phase": 0.0}


@dataclass
class Optimization:
    """An optimizer and the LR scheduler the trainer steps after every batch (or None)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None


def neuron_factory(cfg: TrainConfig) -> NeuronFactory | None:
    """A zero-argument constructor of the config's neuron; ``None`` for the ANN baselines.

    Every neuron option the config sets away from its default must be one the neuron takes:
    ``--neuron if --tau 5`` is refused, not ignored.
    """
    if not cfg.spiking:
        return None
    cls = NEURONS.get(cfg.neuron)
    params = inspect.signature(cls).parameters
    defaults = TrainConfig()
    kwargs = {}
    for name, param in _NEURON_FIELDS.items():
        value = getattr(cfg, name)
        if param in params:
            if name not in _UNSET or value != _UNSET[name]:
                kwargs[param] = value
        elif value != getattr(defaults, name):
            raise ConfigError(
                f"{name} = {value!r} does not apply to neuron {cfg.neuron!r}; leave it out or "
                f"choose a neuron that has it"
            )
    if "surrogate" in params:
        kwargs["surrogate"] = get_surrogate(cfg.surrogate, cfg.alpha)
    return lambda: cls(**kwargs)


def default_model(cfg: TrainConfig, task: Task) -> nn.Module:
    """The network the config describes for ``task``'s data, initialised from the current RNG
    state (the trainer seeds it from ``cfg.seed`` first)."""
    spec = task.spec
    readout = cfg.readout or ("spikes" if task.name == "classification" else "linear")
    options: dict = {"population": cfg.population, "dropout": cfg.dropout}
    if cfg.architecture == "mlp":
        if cfg.pool != "max":
            raise ConfigError(
                f"pool = {cfg.pool!r} applies to the conv net; model 'mlp' has no pooling"
            )
        options.update(batch_norm=cfg.batch_norm, readout=readout)
        if cfg.hidden:
            options["hidden"] = tuple(cfg.hidden)
    else:
        unsupported = {
            "batch_norm = false": not cfg.batch_norm,
            f"a {readout} readout (task {task.name})": readout != "spikes",
            "more than one hidden size": len(cfg.hidden) > 1,
        }
        options["pool"] = cfg.pool
        for what, bad in unsupported.items():
            if bad:
                raise ConfigError(
                    f"{what} is not available for model {cfg.model!r}; use model 'mlp'"
                )
        if cfg.hidden:
            options["hidden"] = cfg.hidden[0]
    return build_model(
        cfg.architecture, spec.input_shape, spec.num_outputs, neuron_factory(cfg), **options
    )


def default_optimization(model: nn.Module, cfg: TrainConfig, steps_per_epoch: int) -> Optimization:
    """AdamW (``lr``, ``weight_decay``) with the config's schedule, stepped once per batch."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters for the optimizer")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "cosine":
        scheduler: torch.optim.lr_scheduler.LRScheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=cfg.epochs * steps_per_epoch
            )
        )
    elif cfg.schedule == "exponential":
        # Applied per batch so that every schedule steps at the same place in the loop.
        gamma = cfg.gamma ** (1.0 / steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return Optimization(optimizer, scheduler)


def compile_stateless(model: nn.Module) -> int:
    """Compile every :class:`~spikeweave.layers.TimeFolded` layer of ``model`` in place with
    ``torch.compile`` (``nn.Module.compile``: parameter names, and so checkpoints, stay as
    they are); returns how many. Neurons are left alone: their fused kernels are custom
    autograd Functions that already run in one pass, and tracing them would only break the
    graph. Shapes are static: each layer compiles once per input shape it meets (training
    batch, last batch, evaluation batch); dynamic shapes hit an inductor error on the conv
    net in torch 2.13. Raises :class:`ConfigError` where this Python/torch cannot compile."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        raise ConfigError(
            "compile: torch.compile is not supported on this Python/torch; turn it off"
        )
    layers = [m for m in model.modules() if isinstance(m, TimeFolded)]
    # The layers share one code object (Module._call_impl), whose compiled-variant limit
    # (8 by default) several layers times a few shapes would exceed, falling back to eager.
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, 8 * len(layers))
    for layer in layers:
        layer.compile(dynamic=False)
    return len(layers)
