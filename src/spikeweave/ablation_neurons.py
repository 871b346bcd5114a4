"""Neurons for the klif-vs-lif ablations: which of KLIF's ingredients does the work?

KLIF (methods.md §3) changes LIF in three ways at once: the membrane is floored at zero
(``ReLU``), a learnable ``k`` rescales it (which changes the effective leak ``k·(1 - 1/τ)``)
and, through ``ds/dh ≈ k·g'(k·h - θ)``, ``k`` also tunes the surrogate's width per layer.
Each neuron here isolates one ingredient:

- :class:`PLIF` (``"plif"``): LIF with a learnable time constant, ``1/τ = sigmoid(w)`` per
  layer (Fang et al., 2021) — a learnable leak without the floor or the surrogate change.
  Its charge is the spec ``"plif"`` (:class:`~spikeweave.functional.dynamics.PLIFDynamics`,
  decay factor ``r = sigmoid(w)`` as a table), so it runs through the compiled kernels (C on
  the CPU, Triton on CUDA) like LIF and KLIF; the kernels return ``∂L/∂r`` and autograd
  carries it through the sigmoid to ``w``.
- :class:`FlooredLIF` (``"lif-floor"``): KLIF with ``k`` fixed at 1, i.e. LIF with a
  ReLU-floored membrane and nothing learnable (KLIF's charge: the compiled kernels run it).
- :class:`LearnableWidthLIF` (``"lif-width"``): LIF whose spike is ``H(a·(h - θ))`` with a
  learnable ``a > 0`` per layer. The forward is exactly LIF's (``a`` never changes the sign);
  backward gives ``∂s/∂h = a·g'(a·(h - θ))`` and ``∂s/∂a = (h - θ)·g'(a·(h - θ))``, so the
  surrogate's width is learned and nothing else. For the sigmoid surrogate this is the sigmoid
  surrogate with ``α_eff = a·α``. Its dynamics is the spec ``"lif_width"`` (LIF's charge,
  the width a table whose gradient the kernels sum from the fire), so it runs through the
  compiled kernels like the others.

They sit beside :mod:`spikeweave.neurons` (same floor), not in it, because they exist for the
klif-vs-lif experiment; ``NEURONS`` imports this module on its first lookup, so
``TrainConfig(neuron="plif")``, ``--neuron plif`` and reloading a run that used one work
without importing any experiment.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import ConfigError
from .functional.dynamics import Dynamics, LIFWidthDynamics, PLIFDynamics
from .neurons import KLIF, LIF, NEURONS, SpikingNeuron, _check_tau
from .surrogate import Surrogate

__all__ = ["PLIFDynamics", "PLIF", "FlooredLIF", "LearnableWidthLIF", "learned_values"]


class PLIF(SpikingNeuron):
    """LIF with a learnable time constant per layer (``tau`` is its initial value, > 1)."""

    def __init__(
        self,
        tau: float = 2.0,
        threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        surrogate: Surrogate | str | None = None,
        detach_reset: bool = True,
        backend: str = "auto",
        steps: int | None = None,
        memory: str = "auto",
    ) -> None:
        super().__init__(threshold, v_reset, reset, surrogate, detach_reset, backend, steps, memory)
        tau = _check_tau(tau, "PLIF")
        if tau <= 1:
            raise ConfigError(f"PLIF: tau must be above 1 (1/tau = sigmoid(w)), got {tau}")
        self.w = nn.Parameter(torch.tensor(-math.log(tau - 1.0)))

    @property
    def tau(self) -> float:
        """The current time constant in steps, ``1/sigmoid(w)``."""
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def dynamics(self, x: torch.Tensor) -> Dynamics:
        """The ``"plif"`` charge with ``r = sigmoid(w)`` under autograd (``w`` gets
        ``∂L/∂r·r·(1 - r)``)."""
        return PLIFDynamics(torch.sigmoid(self.w), self.v_reset)

    def extra_repr(self) -> str:
        return f"tau={self.tau:.3g} (learnable), " + super().extra_repr()


class FlooredLIF(KLIF):
    """KLIF with ``k`` fixed at 1 (a buffer): LIF with a ReLU-floored membrane."""

    def __init__(
        self,
        tau: float = 2.0,
        threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        surrogate: Surrogate | str | None = None,
        detach_reset: bool = True,
        backend: str = "auto",
        steps: int | None = None,
        memory: str = "auto",
    ) -> None:
        super().__init__(
            tau, threshold, v_reset, reset, 1.0, None, surrogate, detach_reset, backend, steps,
            memory,
        )  # fmt: skip
        k = self.k.detach().clone()
        del self.k
        self.register_buffer("k", k)

    def extra_repr(self) -> str:
        return "k=1 (fixed), " + super().extra_repr()


class LearnableWidthLIF(LIF):
    """LIF with a learnable surrogate width ``a`` per layer (``a = exp(log_width)``, from 1).

    Its dynamics is :class:`~spikeweave.functional.dynamics.LIFWidthDynamics` (spec
    ``"lif_width"``), so it runs on every backend like LIF: the compiled kernels (C on the
    CPU, Triton on CUDA) sum ``∂L/∂a`` in their backward, and the ``memory`` modes and 1-bit
    spikes apply. ``backend="reference"`` is the per-step loop under autograd.
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
        backend: str = "auto",
        steps: int | None = None,
        memory: str = "auto",
    ) -> None:
        super().__init__(
            tau, threshold, v_reset, reset, decay_input, surrogate, detach_reset, backend, steps,
            memory,
        )  # fmt: skip
        self.log_width = nn.Parameter(torch.zeros(()))

    @property
    def width(self) -> float:
        """The current ``a`` (multiplies the surrogate's α for the sigmoid surrogate)."""
        return float(self.log_width.detach().exp())

    def dynamics(self, x: torch.Tensor) -> Dynamics:
        """LIF's charge with the width ``a = exp(log_width)`` under autograd (``log_width``
        gets ``∂L/∂a·a``)."""
        return LIFWidthDynamics(self.tau, self.v_reset, self.decay_input, self.log_width.exp())

    def extra_repr(self) -> str:
        return f"width={self.width:.3g} (learnable), " + super().extra_repr()


def learned_values(model: nn.Module) -> dict[str, float]:
    """Learned neuron parameters per layer: ``k/<layer>`` (KLIF), ``tau/<layer>`` (PLIF),
    ``width/<layer>`` (learnable-width LIF); for :class:`~spikeweave.experiments.EpochMetrics`."""
    out: dict[str, float] = {}
    for name, m in model.named_modules():
        if isinstance(m, KLIF) and not isinstance(m, FlooredLIF):
            out[f"k/{name}"] = float(m.k.detach().mean())
        elif isinstance(m, PLIF):
            out[f"tau/{name}"] = m.tau
        elif isinstance(m, LearnableWidthLIF):
            out[f"width/{name}"] = m.width
    return out


for _name, _cls, _help in (
    ("plif", PLIF, "LIF with a learnable time constant (klif-vs-lif ablation)"),
    ("lif-floor", FlooredLIF, "LIF with a ReLU-floored membrane (KLIF with k = 1)"),
    ("lif-width", LearnableWidthLIF, "LIF with a learnable surrogate width"),
):
    if _name not in NEURONS.names():
        NEURONS.register(_name, _cls, help=_help)
