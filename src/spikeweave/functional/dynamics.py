"""Neuron dynamics as data: the one place a neuron's charge is written.

A :class:`Dynamics` describes only the *charge* of one step, ``h[t] = charge(u[t-1], x[t], t)``,
and its vector-Jacobian product (the local derivatives ``∂h/∂u``, ``∂h/∂x`` and ``∂h/∂p`` for
each learnable parameter ``p``, applied to an incoming gradient). Fire (``s = H(h - θ)`` with
the surrogate's ``derivative`` in backward) and reset (hard or soft, reset path detached or not)
are shared by every neuron and described by :class:`FireReset`. Both loops over time run the
same ``charge``: the plain per-step reference under autograd
(:func:`spikeweave.functional.neuron.reference_multistep`) and the fused single pass
(:mod:`spikeweave.functional.fused`). A new neuron type plugs in by writing ``charge`` and
``charge_vjp``, without copying either loop; a charge written only as a Python function
``h = fn(u, x)`` runs through :class:`ChargeFunction` on the reference loop.

Charges shipped here (``tau`` in steps, membrane ``u`` before the step, input ``x``):

- :class:`LIFDynamics`, ``decay_input=True``:  ``h = u + (x - (u - v_reset)) / tau``
- :class:`LIFDynamics`, ``decay_input=False``: ``h = u - (u - v_reset) / tau + x``
- :class:`IFDynamics`:                         ``h = u + x``
- :class:`KLIFDynamics`: the LIF charge, then ``f = ReLU(k·h)``
- :class:`OscillatingLIFDynamics`: the LIF charge plus ``A·osc(2π·f·t + φ)``
- :class:`PLIFDynamics`: ``h = u + (x - (u - v_reset))·r`` with a learnable decay ``r = 1/tau``
- :class:`LIFWidthDynamics`: the LIF charge, with a learnable surrogate width ``w`` for the fire

The built-in charges are not written out here: each is a
:class:`~spikeweave.functional.spec.ChargeSpec` in :mod:`spikeweave.functional.spec`, which
these classes evaluate with PyTorch ops and from which the C and Triton kernels are generated.

Two optional fast paths:

- ``constant_derivatives()``: when ``∂h/∂u`` and ``∂h/∂x`` are constants and nothing needs a
  parameter gradient (LIF, IF), the backward recurrence collapses to one multiply-add per step.
- ``kernel_spec()``: the spec name and values of a charge that the compiled CPU kernel
  (:mod:`spikeweave.functional.cpu_kernel`) and the Triton kernel implement natively, generated
  from the same spec as ``charge`` so spikes are bit-identical.

``tau`` is always a time constant in steps, never ``1/tau``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from ..surrogate import Surrogate
from .spec import (
    CHARGES,
    FIRE_RESET,
    ChargeSpec,
    torch_charge,
    torch_charge_into,
    torch_dreset,
    torch_eval,
    torch_fire,
    torch_reset,
    torch_surrogate,
    torch_vjp,
)

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
        """Membrane after the step (no autograd): :data:`~.spec.FIRE_RESET`'s reset.

        ``s`` holds the spikes as 0/1 in ``h``'s dtype (float masks: PyTorch's bool kernels
        are several times slower than its float ones on the CPU). Hard:
        ``h·(1 - s) + v_reset·s`` (the last term left out when ``v_reset`` is 0, which changes
        at most the sign of a zero); soft: ``h - θ·s`` (``θ·s`` is exact).
        """
        return torch_reset(h, s, self.threshold, self.v_reset, self.reset, zero_shortcut=True)

    def dreset_dh(self, h: torch.Tensor, s: torch.Tensor, sg: torch.Tensor | None) -> torch.Tensor:
        """``∂u/∂h`` of the reset (:data:`~.spec.FIRE_RESET`), given 0/1 spikes ``s``
        (``h``'s dtype) and the surrogate derivative ``sg``."""
        return torch_dreset(h, s, sg, self.threshold, self.v_reset, self.reset, self.detach_reset)

    def spikes(self, h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``H(h - θ)`` as 0/1 in ``h``'s dtype (``h >= θ``; written into ``out`` if given)."""
        return torch_fire(h, self.threshold, out)

    def distance(self, h: torch.Tensor) -> torch.Tensor:
        """The surrogate's argument ``d = h - θ`` (:data:`~.spec.FIRE_RESET`'s ``distance``)."""
        return torch_eval(FIRE_RESET.distance, h=h, theta=self.threshold)

    def surrogate_derivative(self, d: torch.Tensor) -> torch.Tensor:
        """``g'(d)`` for ``d = h - θ``: a built-in surrogate's spec evaluated with PyTorch ops
        (no ``pow``, no bool), any other surrogate's own ``derivative``."""
        return torch_surrogate(self.surrogate, d)


@dataclass(frozen=True)
class KernelSpec:
    """A charge the compiled kernels implement natively, with its values for one call.

    ``kind`` names a :class:`~spikeweave.functional.spec.ChargeSpec` in
    :data:`~spikeweave.functional.spec.CHARGES` (``"if"``, ``"lif"``, ``"lif_nodecay"``,
    ``"klif"``, ``"osc_lif"``, ``"osc_lif_nodecay"``, ``"plif"``), where the charge is written
    once.
    ``tables`` are the spec's per-neuron tensors in order (those with a gradient are the
    dynamics' ``params()``, in the same order), each broadcastable to one step's neuron shape
    ``x.shape[2:]``; ``drives`` its per-step tensors ``[T, ...]``, likewise.
    """

    kind: str
    tau: float = 1.0
    v_reset: float = 0.0
    tables: tuple[torch.Tensor, ...] = ()
    drives: tuple[torch.Tensor, ...] = ()

    @property
    def charge(self) -> ChargeSpec:
        """The charge's spec."""
        return CHARGES[self.kind]

    @property
    def scalars(self) -> dict[str, float]:
        """The spec's scalars by name (``tau`` in steps, ``vr`` = v_reset)."""
        return {"tau": self.tau, "vr": self.v_reset}


class Dynamics:
    """The charge of one neuron type; subclasses override ``charge`` and ``charge_vjp``.

    Attributes:
        needs_x: ``charge_vjp`` needs the step's input ``x`` (then the forward saves ``x``).
        needs_u: ``charge_vjp`` needs the membrane before the step ``u`` (recomputed in
            backward from the saved potentials, so it costs no memory).
        reference_only: there is no ``charge_vjp``; only the per-step loop under autograd can
            differentiate this charge (``backend="auto"``/``"torch"`` then run that loop).
        width_index: None, or the index in ``params()`` of a learnable surrogate width ``w``
            (> 0, broadcastable to one step): the fire's backward is then ``g'(w·(h - θ))·w``
            and ``∂s/∂w = g'(w·(h - θ))·(h - θ)`` (:data:`~.spec.FIRE_RESET`'s ``scaled``);
            every backend returns ``w``'s gradient, ``charge_vjp`` gives None for it.
    """

    needs_x: bool = False
    needs_u: bool = False
    reference_only: bool = False
    width_index: int | None = None

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

    def charge_into(
        self, out: torch.Tensor, u: torch.Tensor, x: torch.Tensor, t: int, params
    ) -> torch.Tensor | None:
        """``charge`` writing ``h`` into ``out`` (no autograd); returns ``aux``.

        The fused PyTorch loop calls this; override it to save the copy (the built-ins do).
        """
        h, aux = self.charge(u, x, t, params)
        out.copy_(h)
        return aux

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
    This is how a :class:`~spikeweave.neurons.SpikingNeuron` subclass that overrides only
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
    """Leaky integration, the charge of :class:`~spikeweave.neurons.LIF`.

    ``decay_input=True``: ``h = u + (x - (u - v_reset))/tau``; else
    ``h = u - (u - v_reset)/tau + x``. ``tau`` in steps. Written once, in
    :data:`spikeweave.functional.spec.CHARGES` (``"lif"``, ``"lif_nodecay"``).
    """

    def __init__(self, tau: float, v_reset: float, decay_input: bool) -> None:
        self.tau = float(tau)
        self.v_reset = float(v_reset)
        self.decay_input = bool(decay_input)
        self.spec = CHARGES["lif" if self.decay_input else "lif_nodecay"]
        self.scalars = {"tau": self.tau, "vr": self.v_reset}

    def charge(self, u, x, t, params):  # noqa: D102
        return torch_charge(self.spec, u, x, self.scalars)[0], None

    def charge_into(self, out, u, x, t, params):  # noqa: D102
        return torch_charge_into(self.spec, out, u, x, self.scalars)

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        gu, gx, _ = torch_vjp(self.spec, gh, h, None, self.scalars)
        return gu, gx, ()

    def constant_derivatives(self):  # noqa: D102
        return self.spec.constant_derivatives(self.scalars)

    def kernel_spec(self):  # noqa: D102
        return KernelSpec(self.spec.name, self.tau, self.v_reset)


class IFDynamics(Dynamics):
    """Non-leaky integration ``h = u + x`` (spec ``"if"``)."""

    spec = CHARGES["if"]

    def charge(self, u, x, t, params):  # noqa: D102
        return torch_charge(self.spec, u, x, {})[0], None

    def charge_into(self, out, u, x, t, params):  # noqa: D102
        return torch_charge_into(self.spec, out, u, x, {})

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        gu, gx, _ = torch_vjp(self.spec, gh, h, None, {})
        return gu, gx, ()

    def constant_derivatives(self):  # noqa: D102
        return self.spec.constant_derivatives({})

    def kernel_spec(self):  # noqa: D102
        return KernelSpec("if")


class KLIFDynamics(Dynamics):
    """KLIF's charge (methods.md §3): LIF charge, then ``f = ReLU(k·h)`` before fire and reset.

    ``k`` is a learnable tensor broadcastable to one step's shape ``[B, ...]`` (a scalar per
    layer, or e.g. ``[C, 1, 1]`` per channel). Spec ``"klif"``: the compiled kernels keep the
    LIF charge ``hl`` for backward (``f`` is recomputed from it) and return ``∂L/∂k``.
    """

    spec = CHARGES["klif"]

    def __init__(self, k: torch.Tensor, tau: float, v_reset: float) -> None:
        self.k = k
        self.tau = float(tau)
        self.v_reset = float(v_reset)
        self.scalars = {"tau": self.tau, "vr": self.v_reset}

    def params(self):  # noqa: D102
        return (self.k,)

    def charge(self, u, x, t, params):  # noqa: D102
        (k,) = params
        return torch_charge(self.spec, u, x, self.scalars, {"k": k})

    def charge_into(self, out, u, x, t, params):  # noqa: D102
        return torch_charge_into(self.spec, out, u, x, self.scalars, {"k": params[0]})

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        (k,) = params
        return torch_vjp(self.spec, gh, h, aux, self.scalars, {"k": k})

    def kernel_spec(self):  # noqa: D102
        return KernelSpec("klif", self.tau, self.v_reset, tables=(self.k,))


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
    start: int = 0,
) -> torch.Tensor:
    """``A·osc(2π·f·t + φ)`` for ``t = start .. start+steps-1``: a tensor ``[steps, *phase.shape]``.

    ``frequency`` in cycles per step, ``phase`` in radians per neuron (any shape, e.g. one
    step's ``[C, H, W]``), ``amplitude`` in membrane-potential units. Computed in float64 and
    cast once to ``dtype``, so every backend adds exactly the same numbers; ``start`` (the
    index of the first step, for a streamed chunk) gives exactly the rows ``start..`` of the
    drive of a longer call, since the integer steps are exact in float64.
    """
    t = torch.arange(start, start + steps, dtype=torch.float64, device=phase.device)
    angle = (2.0 * math.pi * frequency) * t.view(-1, *([1] * phase.dim())) + phase.double()
    return (amplitude * oscillation(form, angle)).to(dtype)


class OscillatingLIFDynamics(Dynamics):
    """LIF charge plus an additive membrane oscillation (methods.md §6):
    ``h = (LIF charge of u, x) + drive[t]``, ``drive[t] = A·osc(2π·f·t + φ)``.

    ``drive [T, ...]`` (from :func:`oscillation_drive`) broadcasts against one step
    ``[B, ...]``. The oscillation does not depend on ``u`` or ``x``, so the local derivatives
    are LIF's (constant: the fused loop takes its one multiply-add backward); the oscillation
    changes gradients only through where the surrogate is evaluated and which steps spike.
    Spec ``"osc_lif"`` / ``"osc_lif_nodecay"``: the compiled kernels read ``drive`` per step.
    """

    def __init__(self, tau: float, v_reset: float, decay_input: bool, drive: torch.Tensor) -> None:
        self.lif = LIFDynamics(tau, v_reset, decay_input)
        self.drive = drive
        self.spec = CHARGES["osc_lif" if decay_input else "osc_lif_nodecay"]

    def charge(self, u, x, t, params):  # noqa: D102
        h, _ = torch_charge(self.spec, u, x, self.lif.scalars, drives={"drive": self.drive[t]})
        return h, None

    def charge_into(self, out, u, x, t, params):  # noqa: D102
        drives = {"drive": self.drive[t]}
        return torch_charge_into(self.spec, out, u, x, self.lif.scalars, drives=drives)

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        return self.lif.charge_vjp(gh, u, x, t, h, aux, params)

    def constant_derivatives(self):  # noqa: D102
        return self.spec.constant_derivatives(self.lif.scalars)

    def kernel_spec(self):  # noqa: D102
        return KernelSpec(self.spec.name, self.lif.tau, self.lif.v_reset, drives=(self.drive,))


__all__ += ["OSC_FORMS", "OscillatingLIFDynamics", "oscillation", "oscillation_drive"]


# ------------------------------------------------------------------ learnable time constant
# Appended for PLIF (the klif-vs-lif ablation). New names only; the classes above are unchanged.


class PLIFDynamics(Dynamics):
    """PLIF's charge (Fang et al., 2021): ``h = u + (x - (u - v_reset))·r``, ``r = 1/τ``.

    ``r`` is the decay factor as a tensor broadcastable to one step ``[B, ...]`` (a scalar per
    layer; e.g. ``[C, 1, 1]`` per channel), usually ``sigmoid(w)`` computed under autograd by
    the module, so the gradient the backends return for ``r`` reaches ``w`` through autograd.
    Spec ``"plif"``: ``∂h/∂r = x - (u - v_reset)`` reads the step's input and membrane, so
    every fused backend keeps ``x`` and rebuilds ``u`` from the previous step's ``h``.
    """

    spec = CHARGES["plif"]
    needs_x = True
    needs_u = True

    def __init__(self, r: torch.Tensor, v_reset: float) -> None:
        self.r = r
        self.v_reset = float(v_reset)
        self.scalars = {"vr": self.v_reset}

    def params(self):  # noqa: D102
        return (self.r,)

    def charge(self, u, x, t, params):  # noqa: D102
        return torch_charge(self.spec, u, x, self.scalars, {"r": params[0]})

    def charge_into(self, out, u, x, t, params):  # noqa: D102
        return torch_charge_into(self.spec, out, u, x, self.scalars, {"r": params[0]})

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        return torch_vjp(self.spec, gh, h, aux, self.scalars, {"r": params[0]}, u=u, x=x)

    def kernel_spec(self):  # noqa: D102
        return KernelSpec("plif", v_reset=self.v_reset, tables=(self.r,))


__all__ += ["PLIFDynamics"]


# ------------------------------------------------------------------ learnable surrogate width
# Appended for LearnableWidthLIF (the klif-vs-lif ablation). New names only.


class LIFWidthDynamics(Dynamics):
    """LIF's charge with a learnable surrogate width ``w`` (spec ``"lif_width"`` /
    ``"lif_nodecay_width"``): the forward is exactly LIF's (``w > 0`` never changes a
    spike); backward gives ``∂s/∂h = g'(w·(h - θ))·w`` and ``∂s/∂w = g'(w·(h - θ))·(h - θ)``.

    ``w`` is a tensor broadcastable to one step ``[B, ...]`` (a scalar per layer for
    :class:`~spikeweave.ablation_neurons.LearnableWidthLIF`, which passes ``exp(log_width)``
    under autograd). Every backend sums ``∂L/∂w`` over time and neurons itself: the spike's
    gradient, plus the reset path's where the reset is not detached.
    """

    width_index = 0

    def __init__(self, tau: float, v_reset: float, decay_input: bool, w: torch.Tensor) -> None:
        self.lif = LIFDynamics(tau, v_reset, decay_input)
        self.w = w
        self.spec = CHARGES["lif_width" if decay_input else "lif_nodecay_width"]

    def params(self):  # noqa: D102
        return (self.w,)

    def charge(self, u, x, t, params):  # noqa: D102
        return self.lif.charge(u, x, t, ())

    def charge_into(self, out, u, x, t, params):  # noqa: D102
        return self.lif.charge_into(out, u, x, t, ())

    def charge_vjp(self, gh, u, x, t, h, aux, params):  # noqa: D102
        gu, gx, _ = self.lif.charge_vjp(gh, u, x, t, h, aux, ())
        return gu, gx, (None,)  # w's gradient comes from the fire (the fused loop adds it)

    def kernel_spec(self):  # noqa: D102
        return KernelSpec(self.spec.name, self.lif.tau, self.lif.v_reset, tables=(self.w,))


__all__ += ["LIFWidthDynamics"]
