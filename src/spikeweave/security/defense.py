"""The oscillation defense's switch: give every oscillating neuron its true backward.

The defense itself lives in :class:`~spikeweave.neurons.OscillatingLIF` (``fake_form``,
``fake_phase``): forward true, backward through a neuron with another oscillation. An adaptive
attacker -- and a test -- needs the true gradient; :func:`true_gradients` provides it without
touching weights or the forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..neurons import OscillatingLIF

__all__ = ["defended_copy", "oscillating_neurons", "set_oscillation", "true_gradients"]


def _module(model: Any) -> nn.Module:
    """The ``nn.Module`` of a model, a :class:`~spikeweave.training.Run` or an attack wrapper."""
    if isinstance(model, nn.Module):
        return model
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        return inner
    from ..errors import ConfigError

    raise ConfigError(f"expected an nn.Module or a Run, got {type(model).__name__}")


def oscillating_neurons(model: Any) -> list[OscillatingLIF]:
    """Every :class:`OscillatingLIF` in ``model`` (an ``nn.Module`` or a ``Run``)."""
    return [m for m in _module(model).modules() if isinstance(m, OscillatingLIF)]


@contextmanager
def true_gradients(model: Any) -> Iterator[nn.Module]:
    """Within the block every oscillating neuron of ``model`` backpropagates its true
    oscillation (the forward is unchanged: it always was the true one). Restores each neuron's
    previous setting on exit, also after an exception; nesting is safe.

    >>> with true_gradients(run.model):
    ...     loss(run.model(x), y).backward()     # the gradient an adaptive attacker uses
    """
    neurons = oscillating_neurons(model)
    before = [n.true_backward for n in neurons]
    for n in neurons:
        n.true_backward = True
    try:
        yield _module(model)
    finally:
        for n, b in zip(neurons, before, strict=True):
            n.true_backward = b


def set_oscillation(model: Any, **options: Any) -> nn.Module:
    """Set oscillation options on every :class:`OscillatingLIF` of ``model`` in place.

    ``options``: any of ``amplitude``, ``frequency``, ``form``, ``phase``, ``fake_form``,
    ``fake_phase`` (checked as the constructor checks them). Weights and the saved phase seed
    are untouched, so the forward changes only with the true oscillation's options. Returns
    the module.
    """
    allowed = {"amplitude", "frequency", "form", "phase", "fake_form", "fake_phase"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        from ..errors import ConfigError

        raise ConfigError(
            f"unknown oscillation option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(allowed))}"
        )
    with torch.random.fork_rng(devices=[]):  # its phase seed draw must not shift the RNG
        checked = OscillatingLIF(**options)  # one place for the range and type checks
    for n in oscillating_neurons(model):
        for key in options:
            setattr(n, key, getattr(checked, key))
    return _module(model)


def defended_copy(model: nn.Module, fake_form: str | None, fake_phase: float | None) -> nn.Module:
    """A deep copy of ``model`` whose oscillating neurons backpropagate ``fake_form`` /
    ``fake_phase`` (the deployed defense); the original is unchanged."""
    import copy

    clone = copy.deepcopy(model)
    return set_oscillation(clone, fake_form=fake_form, fake_phase=fake_phase)
