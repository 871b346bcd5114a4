"""Neuron dynamics as data: the one place a neuron's charge is written.

A :class:`Dynamics` describes only the *charge* of one step, ``h[t] = charge(u[t-1], x[t], t)``,
and its vector-Jacobian product (the local derivatives ``∂h/∂u``, ``∂h/∂x`` and ``∂h/∂p`` for
each learnable parameter ``p``, applied to an incoming gradient). Fire (``s = H(h - θ)`` with
the surrogate's ``derivative`` in backward) and reset (hard or soft, reset path detached or not)
are shared by every neuron and described by :class:`FireReset`. Both loops over time run the
same ``charge``: the plain per-step reference under autograd
(:func:`spikeforge.functional.neuron.reference_multistep`) and the fused single pass
(:mod:`spikeforge.functional.fused`). A new neuron type plugs in by writing ``charge`` and
``charge_vjp``, without copying either loop; a charge written only as a Python function
``h = fn(u, x)`` runs through :class:`ChargeFunction` on the reference loop.

Charges shipped here (``tau`` in steps, membrane ``u`` before the step, input ``x``):

- :class:`LIFDynamics`, ``decay_input=True``:  ``h = u + (x - (u - v_reset)) / tau``
- :class:`LIFDynamics`, ``decay_input=False``: ``h = u - (u - v_reset) / tau + x``
- :class:`IFDynamics`:                         ``h = u + x``
- :class:`KLIFDynamics`: the LIF charge, then ``f = ReLU(k·h)``

Two optional fast paths:

- ``constant_derivatives()``: when ``∂h/∂u`` and ``∂h/∂x`` are constants and nothing needs a
  parameter gradient (LIF, IF), the backward recurrence collapses to one multiply-add per step.
- ``kernel_spec()``: the name and constants of a charge that the compiled CPU kernel
  (:mod:`spikeforge.functional.cpu_kernel`) and the Triton kernel implement natively, written
  with exactly the same floating-point operations as ``charge`` so spikes are bit-identical.

``tau`` is always a time constant in steps, never ``1/tau``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from ..surrogate import Surrogate

__all__ = [
    "Charge",
    "ChargeFunction",
    "Dynamics",
    "FireReset",
    "KernelSpec",
    "LIFDynamics",
    "IFDynamics",
    "KLIFDynamics",
    "ResetMode",
]

ResetMode = Literal["hard", "soft"]
Charge = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A charge written as a plain function: ``h = charge(u, x)`` for one step ``[B, ...]``."""


@dataclass(frozen=True)
class FireReset:
    """Fire and reset, shared by every neuron.

    ``s = H(h - threshold)`` (surrogate ``derivative(h - threshold)`` in backward); hard reset
    ``u = h·(1 - s) + v_reset·s``, soft reset ``u = h - threshold·s``; ``detach_reset`` treats
    ``s`` inside the reset as a constant in backward.
    """

    threshold: float
    v_reset: float
    reset: ResetMode
    surrogate: Surrogate
    detach_reset: bool

    def reset_value(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Membrane after the step (no autograd), bit-identical to the reference reset.

        ``s`` is a bool tensor of spikes.
        """
        if self.reset == "hard":
            return h.masked_fill(s, self.v_reset)
        return torch.where(s, h - self.threshold, h)

    def dreset_dh(self, h: torch.Tensor, s: torch.Tensor, sg: torch.Tensor | None) -> torch.Tensor:
        """``∂u/∂h`` of the reset, given bool spikes ``s`` and surrogate derivative ``sg``."""
        if self.reset == "hard":
            d = (~s).to(h.dtype)
            if not self.detach_reset:
                d = d + (self.v_reset - h) * sg
            return d
        if self.detach_reset:
            return torch.ones_like(h)
        return 1.0 - self.threshold * sg


@dataclass(frozen=True)
class KernelSpec:
    """A charge the compiled kernels implement natively.

    ``kind``: ``"if"`` (``h = u + x``), ``"lif"`` (``h = u + (x - (u - v_reset))/tau``) or
    ``"lif_nodecay"`` (``h = u - (u - v_reset)/tau + x``).
    """

    kind: Literal["if", "lif", "lif_nodecay"]
    tau: float = 1.0
    v_reset: float = 0.0


class Dynamics:
    """The charge of one neuron type; subclasses override ``charge`` and ``charge_vjp``.

    Attributes:
        needs_x: ``charge_vjp`` needs the step's input ``x`` (then the forward saves ``x``).
        needs_u: ``charge_vjp`` needs the membrane before the step ``u`` (recomputed in
            backward from the saved potentials, so it costs no memory).
        reference_only: there is no ``charge_vjp``; only the per-step loop under autograd can
            differentiate this charge (``backend="auto"``/``"torch"`` then run that loop).
    """

    needs_x: bool = False
    needs_u: bool = False
    reference_only: bool = False

    def params(self) -> tuple[torch.Tensor, ...]:
        """Tensors the charge depends on that may need gradients (e.g. KLIF's ``k``)."""
        return ()

    def charge(
        self, u: torch.Tensor, x: torch.Tensor, t: int, params: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(h, aux)`` for one step; ``aux`` is saved for ``charge_vjp`` (or None).

        Must be differentiable with autograd: the reference path runs it under autograd.
        """
        raise NotImplementedError

    def charge_vjp(
        self,
        gh: torch.Tensor,
        u: torch.Tensor | None,
        x: torch.Tensor | None,
        t: int,
        h: torch.Tensor,
        aux: torch.Tensor | None,
        params: tuple[torch.Tensor, ...],
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, ...]]:
        """Given ``gh = ∂L/∂h[t]``: ``(∂L/∂u[t-1], ∂L/∂x[t], per-element ∂L/∂p)``.

        Parameter gradients may be elementwise (shape of ``h``); the loop sums them over time
        and reduces them to each parameter's shape.
        """
        raise NotImplementedError

    def constant_derivatives(self) -> tuple[float, float] | None:
        """``(∂h/∂u, ∂h/∂x)`` if both are constants and no parameter needs a gradient."""
        return None

    def kernel_spec(self) -> KernelSpec | None:
        """The native kernel charge, if the compiled kernels implement this dynamics."""
        return None


class ChargeFunction(Dynamics):
    """A charge written only as a function ``h = fn(u, x)``, with no hand-written derivative.

    Autograd differentiates it through the per-step reference loop, so every tensor ``fn``
    reads (a module's parameters included) gets its gradient as it would in plain PyTorch.
    This is how a :class:`~spikeforge.neurons.SpikingNeuron` subclass that overrides only
    ``charge(v, x)`` runs. ``t`` is not passed: write a :class:`Dynamics` for a charge that
    depends on time.
    """

    reference_only = True

    def __init__(self, fn: Charge) -> None:
        self.fn = fn

    def charge(self, u, x, t, params):  # noqa: D102
        return self.fn(u, x), None

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        raise NotImplementedError("ChargeFunction is differentiated by autograd, per step")


class LIFDynamics(Dynamics):
    """Leaky integration, the charge of :class:`~spikeforge.neurons.LIF`.

    ``decay_input=True``: ``h = u + (x - (u - v_reset))/tau``; else
    ``h = u - (u - v_reset)/tau + x``. ``tau`` in steps.
    """

    def __init__(self, tau: float, v_reset: float, decay_input: bool) -> None:
        self.tau = float(tau)
        self.v_reset = float(v_reset)
        self.decay_input = bool(decay_input)

    def charge(self, u, x, t, params):  # noqa: D102
        if self.decay_input:
            return u + (x - (u - self.v_reset)) / self.tau, None
        return u - (u - self.v_reset) / self.tau + x, None

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        g_tau = gh / self.tau
        return gh - g_tau, (g_tau if self.decay_input else gh), ()

    def constant_derivatives(self):  # noqa: D102
        return 1.0 - 1.0 / self.tau, (1.0 / self.tau if self.decay_input else 1.0)

    def kernel_spec(self):  # noqa: D102
        return KernelSpec("lif" if self.decay_input else "lif_nodecay", self.tau, self.v_reset)


class IFDynamics(Dynamics):
    """Non-leaky integration ``h = u + x``."""

    def charge(self, u, x, t, params):  # noqa: D102
        return u + x, None

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        return gh, gh, ()

    def constant_derivatives(self):  # noqa: D102
        return 1.0, 1.0

    def kernel_spec(self):  # noqa: D102
        return KernelSpec("if")


class KLIFDynamics(Dynamics):
    """KLIF's charge (methods.md §3): LIF charge, then ``f = ReLU(k·h)`` before fire and reset.

    ``k`` is a learnable tensor broadcastable to one step's shape ``[B, ...]`` (a scalar per
    layer, or e.g. ``[C, 1, 1]`` per channel). This is the plug-in example for dynamics with a
    parameter gradient: the generic fused loop runs it, no kernel is copied.
    """

    def __init__(self, k: torch.Tensor, tau: float, v_reset: float) -> None:
        self.k = k
        self.tau = float(tau)
        self.v_reset = float(v_reset)

    def params(self):  # noqa: D102
        return (self.k,)

    def charge(self, u, x, t, params):  # noqa: D102
        (k,) = params
        hl = u + (x - (u - self.v_reset)) / self.tau
        return torch.relu(k * hl), hl

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        (k,) = params
        hl = aux
        gf = gh * (h > 0)  # ReLU'(k·hl); h = ReLU(k·hl) > 0 exactly where k·hl > 0
        ghl = gf * k
        g_tau = ghl / self.tau
        return ghl - g_tau, g_tau, (gf * hl,)


# ------------------------------------------------------------------ membrane oscillation
# Appended for OscillatingLIF (methods.md §6). New names only; the classes above are unchanged.

import math  # noqa: E402  (kept with the only code that needs it: this file is append-only)

OSC_FORMS = ("sine", "square", "triangle", "sawtooth")
"""Periodic forms of the membrane oscillation: period 2π, values in [-1, 1], each 0 (or, for the
square, switching to +1) at angle 0 and rising there, so that forms are interchangeable."""


def oscillation(form: str, angle: torch.Tensor) -> torch.Tensor:
    """``osc(angle)`` for ``form`` in :data:`OSC_FORMS`; ``angle`` in radians, any shape.

    sine ``sin a``; square ``+1`` on ``[0, π)`` and ``-1`` on ``[π, 2π)``; triangle ``4p`` rising
    to 1 at ``p = 1/4`` then down to -1 at ``p = 3/4``; sawtooth ``2p`` up to 1 at ``p → 1/2``,
    then from -1; where ``p = angle / 2π mod 1`` is the fraction of the period.
    """
    if form == "sine":
        return torch.sin(angle)
    p = torch.remainder(angle / (2.0 * math.pi), 1.0)
    if form == "square":
        return torch.where(p < 0.5, 1.0, -1.0).to(angle.dtype)
    if form == "triangle":
        return 4.0 * (torch.remainder(p - 0.25, 1.0) - 0.5).abs() - 1.0
    if form == "sawtooth":
        return 2.0 * torch.remainder(p + 0.5, 1.0) - 1.0
    raise ValueError(f"unknown oscillation form {form!r}; choose one of {', '.join(OSC_FORMS)}")


def oscillation_drive(
    steps: int,
    amplitude: float,
    frequency: float,
    form: str,
    phase: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``A·osc(2π·f·t + φ)`` for ``t = 0 .. steps-1``: a tensor ``[steps, *phase.shape]``.

    ``frequency`` in cycles per step, ``phase`` in radians per neuron (any shape, e.g. one
    step's ``[C, H, W]``), ``amplitude`` in membrane-potential units. Computed in float64 and
    cast once to ``dtype``, so every backend adds exactly the same numbers.
    """
    t = torch.arange(steps, dtype=torch.float64, device=phase.device)
    angle = (2.0 * math.pi * frequency) * t.view(-1, *([1] * phase.dim())) + phase.double()
    return (amplitude * oscillation(form, angle)).to(dtype)


class OscillatingLIFDynamics(Dynamics):
    """LIF charge plus an additive membrane oscillation (methods.md §6):
    ``h = (LIF charge of u, x) + drive[t]``, ``drive[t] = A·osc(2π·f·t + φ)``.

    ``drive [T, ...]`` (from :func:`oscillation_drive`) broadcasts against one step
    ``[B, ...]``. The oscillation does not depend on ``u`` or ``x``, so the local derivatives
    are LIF's (constant: the fused loop takes its one multiply-add backward); the oscillation
    changes gradients only through where the surrogate is evaluated and which steps spike.
    No compiled kernel implements it (``kernel_spec`` is None), so ``backend="auto"`` runs the
    fused PyTorch loop.
    """

    def __init__(self, tau: float, v_reset: float, decay_input: bool, drive: torch.Tensor) -> None:
        self.lif = LIFDynamics(tau, v_reset, decay_input)
        self.drive = drive

    def charge(self, u, x, t, params):  # noqa: D102
        h, _ = self.lif.charge(u, x, t, params)
        return h + self.drive[t], None

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        return self.lif.charge_vjp(gh, u, x, t, h, aux, params)

    def constant_derivatives(self):  # noqa: D102
        return self.lif.constant_derivatives()

    def kernel_spec(self):  # noqa: D102
        return None  # the compiled kernels would silently drop the oscillation


__all__ += ["OSC_FORMS", "OscillatingLIFDynamics", "oscillation", "oscillation_drive"]
