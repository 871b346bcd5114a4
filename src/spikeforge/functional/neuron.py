"""Pure neuron dynamics on time-major tensors: charge, fire, reset, and the per-step loop.

Notation (per step ``t``, membrane ``u`` starting at ``v_reset``):

- LIF, ``decay_input=True``:  ``h = u + (x - (u - v_reset)) / tau``
- LIF, ``decay_input=False``: ``h = u - (u - v_reset) / tau + x``
- IF:                         ``h = u + x``
- fire:  ``s = H(h - threshold)`` (surrogate derivative in backward)
- reset: hard ``u = h·(1 - s) + v_reset·s``; soft ``u = h - threshold·s``

``detach_reset=True`` treats ``s`` inside the reset as a constant in backward (the usual
choice); ``False`` keeps the reset path's derivative (methods.md §1). ``tau`` is in steps.
This module is the plain reference every fast path is tested against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from ..surrogate import Surrogate

ResetMode = Literal["hard", "soft"]
Charge = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = ["lif_charge", "if_charge", "fire", "reset", "multistep", "ResetMode", "Charge"]


def lif_charge(
    u: torch.Tensor, x: torch.Tensor, tau: float, v_reset: float, decay_input: bool
) -> torch.Tensor:
    """Leaky integration of one step's input ``x`` into membrane ``u``."""
    if decay_input:
        return u + (x - (u - v_reset)) / tau
    return u - (u - v_reset) / tau + x


def if_charge(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Non-leaky integration ``h = u + x``."""
    return u + x


def fire(h: torch.Tensor, threshold: float, surrogate: Surrogate) -> torch.Tensor:
    """Spikes ``H(h - threshold)`` with the surrogate's derivative in backward."""
    return surrogate(h - threshold)


def reset(
    h: torch.Tensor,
    s: torch.Tensor,
    threshold: float,
    v_reset: float,
    mode: ResetMode,
    detach_reset: bool,
) -> torch.Tensor:
    """Membrane after the spike ``s``: hard reset to ``v_reset`` or soft (subtract threshold)."""
    if detach_reset:
        s = s.detach()
    if mode == "hard":
        return h * (1.0 - s) + v_reset * s
    return h - threshold * s


def multistep(
    x: torch.Tensor,
    v: torch.Tensor,
    charge: Charge,
    *,
    threshold: float,
    v_reset: float,
    reset_mode: ResetMode,
    surrogate: Surrogate,
    detach_reset: bool,
    return_membrane: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run a neuron over ``x [T, B, ...]`` one step at a time (autograd through every step).

    Returns ``(spikes [T, B, ...], v_last [B, ...], h [T, B, ...] or None)`` where ``h`` is the
    charged, pre-reset potential that was compared with the threshold.
    """
    spikes = []
    hs = [] if return_membrane else None
    for t in range(x.shape[0]):
        h = charge(v, x[t])
        s = fire(h, threshold, surrogate)
        v = reset(h, s, threshold, v_reset, reset_mode, detach_reset)
        spikes.append(s)
        if hs is not None:
            hs.append(h)
    membrane = torch.stack(hs) if hs is not None else None
    return torch.stack(spikes), v, membrane
