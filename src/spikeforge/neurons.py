"""Spiking neuron modules: thin wrappers that hold parameters and options, never state.

Every call starts at rest (membrane ``v_reset``) unless a ``state`` is passed, so there is
no ``reset_net()`` to forget. Input and output are time-major ``[T, B, ...]``.

>>> lif = LIF(tau=2.0)
>>> s = lif(x)                                        # x [T, B, ...] -> spikes [T, B, ...]
>>> s, v = lif(x, state=v, return_state=True)         # streaming: pass the state yourself
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import functional as F
from .errors import ConfigError, InputError
from .surrogate import Atan, Surrogate, get_surrogate

__all__ = ["SpikingNeuron", "LIF", "IF", "check_time_major"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_time_major(x: torch.Tensor, who: str) -> None:
    """Raise ``InputError`` unless ``x`` is a finite float tensor of rank >= 2 ``[T, B, ...]``."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{who}: expected a torch.Tensor [T, B, ...], got {type(x).__name__}")
    if x.dim() < 2:
        raise InputError(
            f"{who}: expected a time-major tensor [T, B, ...] of rank >= 2, got shape "
            f"{tuple(x.shape)}; add the time axis first (e.g. spikeforge.encoding.direct(x, T))"
        )
    if x.dtype not in _FLOAT_DTYPES:
        raise InputError(
            f"{who}: expected a floating-point tensor, got {x.dtype}; cast with .float()"
        )
    if not bool(torch.isfinite(x).all()):
        raise InputError(
            f"{who}: input contains NaN or inf; check the data and the layer before this neuron"
        )


class SpikingNeuron(nn.Module):
    """Base class: threshold, reset, surrogate and the multi-step call contract.

    Subclasses define ``charge(v, x) -> h`` for one step.

    Args:
        threshold: firing threshold ``θ`` (same units as the membrane potential).
        v_reset: resting / reset potential; the membrane starts here on every call.
        reset: ``"hard"`` (set to ``v_reset``) or ``"soft"`` (subtract ``θ``).
        surrogate: a :class:`~spikeforge.surrogate.Surrogate` or its name.
        detach_reset: treat the spike inside the reset as a constant in backward.
    """

    def __init__(
        self,
        threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        surrogate: Surrogate | str | None = None,
        detach_reset: bool = True,
    ) -> None:
        super().__init__()
        if reset not in ("hard", "soft"):
            raise ConfigError(
                f"{type(self).__name__}: reset must be 'hard' or 'soft', got {reset!r}"
            )
        if not math.isfinite(threshold):
            raise ConfigError(f"{type(self).__name__}: threshold must be finite, got {threshold}")
        if not math.isfinite(v_reset) or v_reset >= threshold:
            raise ConfigError(
                f"{type(self).__name__}: v_reset ({v_reset}) must be finite and below the "
                f"threshold ({threshold})"
            )
        self.threshold = float(threshold)
        self.v_reset = float(v_reset)
        self.reset = reset
        self.surrogate = Atan() if surrogate is None else get_surrogate(surrogate)
        self.detach_reset = bool(detach_reset)

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step of integration: membrane ``v [B, ...]`` and input ``x [B, ...]`` to ``h``."""
        raise NotImplementedError

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """The resting membrane ``[B, ...]`` for input ``x [T, B, ...]``."""
        return torch.full_like(x[0], self.v_reset)

    def forward(
        self,
        x: torch.Tensor,
        state: torch.Tensor | None = None,
        return_state: bool = False,
        return_membrane: bool = False,
    ):
        """Run over ``x [T, B, ...]``.

        Returns spikes ``[T, B, ...]`` (same dtype as ``x``); with ``return_state`` also the
        final membrane ``[B, ...]`` to pass as ``state`` to the next call; with
        ``return_membrane`` also the pre-reset potential ``h [T, B, ...]``, in that order.
        """
        who = type(self).__name__
        check_time_major(x, who)
        if state is None:
            state = self.initial_state(x)
        elif not isinstance(state, torch.Tensor) or state.shape != x.shape[1:]:
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise InputError(
                f"{who}: state must have shape {tuple(x.shape[1:])} (input without its time "
                f"axis), got {got}"
            )
        spikes, v, h = self._run(x, state.to(x.dtype), return_membrane)
        out: list[torch.Tensor] = [spikes]
        if return_state:
            out.append(v)
        if return_membrane:
            out.append(h)
        return out[0] if len(out) == 1 else tuple(out)

    def _run(self, x: torch.Tensor, v: torch.Tensor, return_membrane: bool):
        return F.multistep(
            x,
            v,
            self.charge,
            threshold=self.threshold,
            v_reset=self.v_reset,
            reset_mode=self.reset,  # type: ignore[arg-type]
            surrogate=self.surrogate,
            detach_reset=self.detach_reset,
            return_membrane=return_membrane,
        )

    def extra_repr(self) -> str:
        return (
            f"threshold={self.threshold:g}, v_reset={self.v_reset:g}, reset={self.reset!r}, "
            f"surrogate={self.surrogate!r}, detach_reset={self.detach_reset}"
        )


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron.

    Args:
        tau: membrane time constant in steps (> 1 for a leak that does not overshoot).
        decay_input: if True the input is scaled by ``1/tau`` with the leak
            (``h = u + (x - (u - v_reset))/tau``); else ``h = u - (u - v_reset)/tau + x``.
        Other arguments as :class:`SpikingNeuron`.
    """

    def __init__(
        self,
        tau: float = 2.0,
        threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        decay_input: bool = True,
        surrogate: Surrogate | str | None = None,
        detach_reset: bool = True,
    ) -> None:
        super().__init__(threshold, v_reset, reset, surrogate, detach_reset)
        if not math.isfinite(tau) or tau < 1.0:
            raise ConfigError(f"LIF: tau is in steps and must be >= 1, got {tau}")
        self.tau = float(tau)
        self.decay_input = bool(decay_input)

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.lif_charge(v, x, self.tau, self.v_reset, self.decay_input)

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, decay_input={self.decay_input}, " + super().extra_repr()


class IF(SpikingNeuron):
    """Integrate-and-fire neuron (no leak): ``h = u + x``. Arguments as :class:`SpikingNeuron`."""

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.if_charge(v, x)
