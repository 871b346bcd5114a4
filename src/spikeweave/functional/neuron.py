"""The plain per-step reference: fire, reset, and the loop over time under autograd.

Per step ``t``, from the membrane ``u`` (``v_reset`` at rest):

- charge: ``h = dynamics.charge(u, x[t], t)``, written once per neuron type in
  :mod:`spikeweave.functional.dynamics` (LIF, IF, KLIF, or any :class:`Dynamics`)
- fire:  ``s = H(h - threshold)`` (surrogate derivative in backward)
- reset: hard ``u = h·(1 - s) + v_reset·s``; soft ``u = h - threshold·s``

``detach_reset=True`` treats ``s`` inside the reset as a constant in backward (the usual
choice); ``False`` keeps the reset path's derivative (methods.md §1). This loop is what every
fast path (:mod:`spikeweave.functional.fused`) is tested against: it builds the autograd graph
step by step, with nothing hand-derived except the surrogate.
"""

from __future__ import annotations

import torch

from ..surrogate import Surrogate, heaviside
from .dynamics import Dynamics, FireReset, ResetMode
from .spec import FIRE_RESET, torch_eval, torch_reset

__all__ = ["fire", "reset", "reference_multistep"]


def fire(
    h: torch.Tensor, threshold: float, surrogate: Surrogate, width: torch.Tensor | None = None
) -> torch.Tensor:
    """Spikes ``H(h - threshold)`` with the surrogate's derivative in backward (the surrogate's
    argument is :data:`~.spec.FIRE_RESET`'s ``distance``).

    With a learnable ``width`` ``w > 0`` the surrogate is evaluated at ``w·d``
    (``FIRE_RESET.scaled``), so autograd gives ``∂s/∂h = g'(w·d)·w`` and
    ``∂s/∂w = g'(w·d)·d``; the forward stays ``H(d)`` exactly (``w·d`` may underflow to a
    zero of the wrong sign, so the value comes from ``d`` itself)."""
    d = torch_eval(FIRE_RESET.distance, h=h, theta=threshold)
    if width is None:
        return surrogate(d)
    q = surrogate(torch_eval(FIRE_RESET.scaled, d=d, w=width))
    return heaviside(d).detach() + (q - q.detach())


def reset(
    h: torch.Tensor,
    s: torch.Tensor,
    threshold: float,
    v_reset: float,
    mode: ResetMode,
    detach_reset: bool,
) -> torch.Tensor:
    """Membrane after the spike ``s``: hard reset to ``v_reset`` or soft (subtract threshold),
    :data:`~.spec.FIRE_RESET`'s ``reset[mode]`` under autograd."""
    if detach_reset:
        s = s.detach()
    return torch_reset(h, s, threshold, v_reset, mode)


def reference_multistep(
    x: torch.Tensor,
    v0: torch.Tensor | None,
    dynamics: Dynamics,
    fr: FireReset,
    return_membrane: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run ``dynamics`` over ``x [T, B, ...]`` one step at a time, autograd through every step.

    ``v0 [B, ...]`` is the membrane before the first step (None: at ``fr.v_reset``). Returns
    ``(spikes [T, B, ...], v_last [B, ...], h [T, B, ...] or None)`` where ``h`` is the
    charged, pre-reset potential that was compared with the threshold.
    """
    params = dynamics.params()
    width = None if dynamics.width_index is None else params[dynamics.width_index]
    u = torch.full_like(x[0], fr.v_reset) if v0 is None else v0
    spikes, hs = [], []
    for t in range(x.shape[0]):
        h, _ = dynamics.charge(u, x[t], t, params)
        s = fire(h, fr.threshold, fr.surrogate, width)
        u = reset(h, s, fr.threshold, fr.v_reset, fr.reset, fr.detach_reset)
        spikes.append(s)
        if return_membrane:
            hs.append(h)
    return torch.stack(spikes), u, (torch.stack(hs) if return_membrane else None)
