"""Streaming a whole network: one step, or one chunk of steps, at a time, state passed in.

A network's forward takes the whole sequence ``[T, B, ...]``; :func:`stream` runs the same
network on a chunk ``[t, B, ...]`` and returns its output with a :class:`StreamState`, to be
passed with the next chunk. Nothing is kept in the modules between calls.

>>> state = None                                    # every neuron at rest, step 0
>>> for x_t in x.split(1):                          # x [T, B, ...], one step at a time
...     out_t, state = stream(model, x_t, state)    # out_t [1, B, outputs]
>>> state = state.to("cuda")                        # a plain structure of tensors

Chunks of any lengths concatenate to ``model(x)`` bit for bit in eval mode: the stateless
layers (:class:`~spikeweave.layers.TimeFolded`) act on each step alone, and every spiking
neuron runs its own ``forward`` with ``state=``/``return_state=True`` (the neuron equations are
not repeated here). A neuron whose charge depends on the step index (``OscillatingLIF``) takes
the chunk's first step as ``start=``.

What can stream: ``nn.Sequential`` stacks (the built-in models) of ``TimeFolded`` layers,
spiking neurons, :class:`~spikeweave.neurons.TimeChunked` blocks, element-wise activations and
the population readout. Anything else is refused with a ``ConfigError`` rather than guessed
at, since a layer that mixes time steps would give silently different outputs. In training
mode, BatchNorm's statistics would cover the chunk instead of the sequence and dropout would
draw other masks, so a model with either in training mode is refused too: call
``model.eval()``. Autograd is not blocked: gradients flow through the state across chunks.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..layers import TimeFolded
from ..neurons import SpikingNeuron, TimeChunked, check_time_major
from .readout import PopulationReadout

__all__ = ["StreamState", "stream", "streamed_outputs"]

# Layers that act on each element alone: streaming them is running them on the chunk.
_ELEMENTWISE = (
    PopulationReadout,
    nn.Identity,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
)


class StreamState(NamedTuple):
    """Where a streamed network stands: a plain structure of tensors (plus the step count).

    Attributes:
        step: steps streamed so far (the index of the next chunk's first step).
        membranes: spiking layer name (as in ``model.named_modules()``, e.g. ``"spike1"``) ->
            its membrane ``[B, ...]`` after the last step; a layer not listed is at rest
            (only before the first chunk).
        outputs: the chunks' outputs ``[t, B, ...]`` so far, kept only with
            ``keep_outputs=True`` (for a readout over the whole sequence, see
            :func:`streamed_outputs`); ``()`` otherwise.
    """

    step: int = 0
    membranes: dict[str, torch.Tensor] | None = None
    outputs: tuple[torch.Tensor, ...] = ()

    def to(self, device: torch.device | str) -> StreamState:
        """The same state with every tensor on ``device``."""
        return StreamState(
            self.step,
            {k: v.to(device) for k, v in (self.membranes or {}).items()},
            tuple(o.to(device) for o in self.outputs),
        )


def streamed_outputs(state: StreamState) -> torch.Tensor:
    """The outputs kept in ``state`` as one tensor ``[step, B, ...]``: equal to the whole
    sequence's ``model(x)``, so a task's readout (``out.mean(0)``) gives the same numbers."""
    if not state.outputs:
        raise InputError(
            "the stream state holds no outputs: stream at least one chunk with keep_outputs=True"
        )
    return torch.cat(state.outputs)


def stream(
    model: nn.Module,
    x: torch.Tensor,
    state: StreamState | None = None,
    keep_outputs: bool = False,
) -> tuple[torch.Tensor, StreamState]:
    """Run ``model`` on the chunk ``x [t, B, ...]`` (steps ``state.step .. state.step+t-1`` of
    the sequence) and return ``(output [t, B, ...], new state)``.

    ``state`` None starts every neuron at rest at step 0. The output and the new state's
    tensors are on ``x``'s device; ``keep_outputs`` appends the output to ``state.outputs``.
    Raises ``ConfigError`` for a model that cannot stream (see the module notes) and
    ``InputError`` for a state that does not fit the model or the chunk.
    """
    check_time_major(x, "stream", finite=False)  # the neurons check values
    if x.shape[0] == 0:
        raise InputError(f"stream: the chunk has no steps, shape {tuple(x.shape)}")
    if not isinstance(keep_outputs, bool):
        raise InputError(f"stream: keep_outputs must be True or False, got {keep_outputs!r}")
    neurons = _check_streamable(model)
    state = _checked_state(state, neurons)
    membranes: dict[str, torch.Tensor] = {}
    out = _run(model, "", x, state, membranes)
    outputs = (*state.outputs, out) if keep_outputs else state.outputs
    return out, StreamState(state.step + x.shape[0], membranes, outputs)


def _run(
    module: nn.Module, name: str, x: torch.Tensor, state: StreamState, new: dict
) -> torch.Tensor:
    if isinstance(module, SpikingNeuron):
        start = {"start": state.step} if _takes_start(module) else {}
        old = (state.membranes or {}).get(name)
        y, new[name] = module(x, state=old, return_state=True, **start)
        return y
    if isinstance(module, TimeChunked):
        # the same block, unchunked: chunking only changes what backward recomputes
        return _run(module.block, _join(name, "block"), x, state, new)
    if isinstance(module, nn.Sequential):
        for child, sub in module.named_children():
            x = _run(sub, _join(name, child), x, state, new)
        return x
    return module(x)  # TimeFolded or element-wise (checked by _check_streamable)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _takes_start(neuron: SpikingNeuron) -> bool:
    return "start" in inspect.signature(type(neuron).forward).parameters


def _check_streamable(model: nn.Module) -> list[str]:
    """The names of ``model``'s spiking layers; ``ConfigError`` where streaming could differ
    from the whole-sequence forward."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"stream: expected an nn.Module, got {type(model).__name__}")
    neurons: list[str] = []

    def visit(module: nn.Module, name: str) -> None:
        where = f"layer {name!r} ({type(module).__name__})" if name else type(module).__name__
        if isinstance(module, SpikingNeuron):
            neurons.append(name)
        elif isinstance(module, TimeChunked):
            visit(module.block, _join(name, "block"))
        elif isinstance(module, nn.Sequential):
            if type(module).forward is not nn.Sequential.forward:
                raise ConfigError(
                    f"stream: {where} has its own forward; only plain nn.Sequential stacks "
                    "can be streamed"
                )
            for child, sub in module.named_children():
                visit(sub, _join(name, child))
        elif isinstance(module, TimeFolded):
            for inner_name, inner in module.named_modules(prefix=name):
                _check_eval(inner, inner_name)
        elif not isinstance(module, _ELEMENTWISE):
            raise ConfigError(
                f"stream: {where} is not known to act on each time step alone, so a chunk "
                "could give other outputs than the whole sequence; wrap stateless layers in "
                "TimeFolded"
            )

    visit(model, "")
    return neurons


def _check_eval(module: nn.Module, name: str) -> None:
    if not module.training:
        return
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        raise ConfigError(
            f"stream: BatchNorm layer {name!r} is in training mode, where its statistics "
            "would cover the chunk instead of the whole sequence; call model.eval() first"
        )
    if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
        raise ConfigError(
            f"stream: dropout layer {name!r} is in training mode, where a chunk would draw "
            "other masks than the whole sequence; call model.eval() first"
        )


def _checked_state(state: object, neurons: list[str]) -> StreamState:
    if state is None:
        return StreamState(0, {}, ())
    if not isinstance(state, StreamState):
        raise InputError(
            f"stream: state must be a StreamState (from the previous call) or None, got "
            f"{type(state).__name__}"
        )
    step, membranes, outputs = state
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InputError(f"stream: state.step must be an int >= 0, got {step!r}")
    membranes = {} if membranes is None else membranes
    if not isinstance(membranes, dict) or not all(
        isinstance(v, torch.Tensor) for v in membranes.values()
    ):
        raise InputError("stream: state.membranes must map layer names to tensors")
    unknown = sorted(set(membranes) - set(neurons))
    if unknown:
        raise InputError(
            f"stream: the state has membranes for {', '.join(map(repr, unknown))}, which are "
            "not spiking layers of this model; pass the state this model returned"
        )
    missing = [n for n in neurons if n not in membranes]
    if step > 0 and missing:
        raise InputError(
            f"stream: the state is at step {step} but has no membrane for "
            f"{', '.join(map(repr, missing))}; pass the state this model returned"
        )
    if not isinstance(outputs, tuple) or not all(isinstance(o, torch.Tensor) for o in outputs):
        raise InputError("stream: state.outputs must be a tuple of tensors")
    return StreamState(step, membranes, outputs)
