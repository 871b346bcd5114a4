"""What a training step keeps for its backward pass: the ``activation_memory`` option.

A gradient step keeps, for every layer, the tensors its backward reads, over the whole
``[T, B, ...]`` sequence; at large ``T`` that, not the weights, fills the device. Four modes,
all exact (identical loss and parameter gradients, tested against ``save``):

- ``save`` (default): everything is kept, as PyTorch does.
- ``pack``: the forward runs inside :func:`~spikeweave.functional.memory.pack_spikes`, so
  every neuron's spike output that a later layer saves (a conv/linear or pooling after the
  neuron) is kept at 1 bit instead of 32. Nothing is recomputed.
- ``checkpoint``: the network runs as blocks, each ending at a spiking neuron (``conv-BN-
  neuron``, ``pool-conv-BN-neuron``, ``linear-BN-neuron``, ...), each under
  ``torch.utils.checkpoint.checkpoint(use_reentrant=False)``: only a block's input (the
  previous neuron's spikes) is kept, and the block's forward runs again during backward.
  RNG state (dropout, noisy neurons) is replayed by ``checkpoint`` so the recomputation draws
  the same values; BatchNorm running statistics are restored after the recomputation so they
  move once per step, as in ``save``.
- ``checkpoint+pack``: both; the block inputs, being spikes, are kept at 1 bit.

:func:`check_activation_memory` refuses (one line) a network the mode cannot apply to; the
trainer calls the model through :class:`ActivationMemory` (:func:`with_activation_memory`).
Module names, and so checkpoints, stay as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ..functional.memory import pack_spikes
from ..neurons import SpikingNeuron
from .config import ACTIVATION_MEMORY

__all__ = [
    "ACTIVATION_MEMORY",
    "ActivationMemory",
    "check_activation_memory",
    "plan_blocks",
    "with_activation_memory",
]


def _has_neuron(module: nn.Module) -> bool:
    return any(isinstance(m, SpikingNeuron) for m in module.modules())


def plan_blocks(model: nn.Module) -> list[range]:
    """The checkpointed blocks of a sequential ``model``: ranges of its children, each ending
    at a child that is (or holds) a :class:`~spikeweave.neurons.SpikingNeuron`. Children
    after the last neuron (the readout) are in no block. Empty for a model that is not an
    ``nn.Sequential`` or has no such child."""
    if not isinstance(model, nn.Sequential):
        return []
    blocks, start = [], 0
    for i, child in enumerate(model):
        if _has_neuron(child):
            blocks.append(range(start, i + 1))
            start = i + 1
    return blocks


def check_activation_memory(model: nn.Module, mode: str, method: str) -> None:
    """Refuse, with a one-line ``ConfigError``, a ``mode`` that ``model`` (built by method
    ``method``) cannot honour: ``pack`` needs spikeweave spiking neurons (they mark their
    spikes), ``checkpoint`` a sequential network of them (the ``convnet`` and ``mlp``
    models)."""
    if mode not in ACTIVATION_MEMORY:
        raise ConfigError(
            f"unknown activation_memory {mode!r}; choose one of {', '.join(ACTIVATION_MEMORY)}"
        )
    if mode == "save":
        return
    what = f"method {method!r} builds a {type(model).__name__}"
    if not _has_neuron(model):
        raise ConfigError(
            f"activation_memory = {mode!r} needs spikeweave spiking neurons (LIF, IF, KLIF, ...) "
            f"trained by backprop, and {what} without them; leave it at 'save'"
        )
    if mode.startswith("checkpoint") and not plan_blocks(model):
        raise ConfigError(
            f"activation_memory = {mode!r} needs a sequential network of layer blocks (the "
            f"convnet and mlp models), and {what}; use 'pack' or 'save'"
        )


@contextlib.contextmanager
def _running_stats_kept(modules: list[nn.Module]) -> Iterator[None]:
    """BatchNorm running statistics as they were on entry, whatever the body does: the
    recomputation of a block must not move them a second time."""
    norms = [
        m
        for mod in modules
        for m in mod.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    kept = [
        [b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in norms
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(norms, kept, strict=True):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


class _Block:
    """One block's forward for ``checkpoint``: the first call is the forward pass, every
    later one a recomputation in backward (BatchNorm statistics left alone)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules
        self.calls = 0

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.modules:
            x = m(x)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            return self._run(x)
        # recomputation (it may stop early, by an exception: the statistics still come back)
        with _running_stats_kept(self.modules):
            return self._run(x)


class ActivationMemory(nn.Module):
    """``net`` called under an ``activation_memory`` mode (module docstring):
    ``[T, B, ...] -> net's output``, the same values and gradients as ``net(x)``.

    Only a forward that records a graph changes (``torch.is_grad_enabled()``); inference runs
    ``net`` as it is. The trainer wraps its model in this (then in DDP); checkpoints store
    ``net``'s own state dict.
    """

    def __init__(self, net: nn.Module, mode: str) -> None:
        super().__init__()
        check_activation_memory(net, mode, "custom")
        self.net = net
        self.mode = mode
        self.blocks = plan_blocks(net) if mode.startswith("checkpoint") else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not torch.is_grad_enabled():
            return self.net(x)
        packing = pack_spikes() if self.mode.endswith("pack") else contextlib.nullcontext()
        with packing:
            if not self.blocks:
                return self.net(x)
            children = list(self.net)
            for block in self.blocks:
                x = checkpoint(_Block(children[block.start : block.stop]), x, use_reentrant=False)
            for m in children[self.blocks[-1].stop :]:
                x = m(x)
            return x

    def extra_repr(self) -> str:
        return f"activation_memory={self.mode!r}, blocks={len(self.blocks)}"


def with_activation_memory(model: nn.Module, mode: str) -> nn.Module:
    """``model`` itself for ``save``, else ``model`` wrapped in :class:`ActivationMemory`."""
    return model if mode == "save" else ActivationMemory(model, mode)
