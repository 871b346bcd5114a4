"""Spiking neuron modules: thin wrappers that hold parameters and options, never state.

Every call starts at rest (membrane ``v_reset``) unless a ``state`` is passed, so there is
no ``reset_net()`` to forget. Input and output are time-major ``[T, B, ...]``.

>>> lif = LIF(tau=2.0)
>>> s = lif(x)                                        # x [T, B, ...] -> spikes [T, B, ...]
>>> s, v = lif(x, state=v, return_state=True)         # streaming: pass the state yourself

A module's charge is not written here: it returns its
:class:`~spikeweave.functional.dynamics.Dynamics` from ``dynamics(x)`` (``LIFDynamics``,
``IFDynamics``, ``KLIFDynamics``), and :meth:`SpikingNeuron.forward` runs that one charge on
every backend: the fused multi-step kernel by default (``backend="auto"``: one pass over T
forward and backward, compiled CPU kernel or Triton where available, else PyTorch ops), or
the plain per-step loop under autograd (``backend="reference"``). All backends give identical
spikes (see :mod:`spikeweave.functional.fused` and docs/performance.md). A subclass may
instead override only ``charge(v, x)``; that charge then runs on the per-step loop.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .errors import ConfigError, InputError
from .functional.dynamics import (
    ChargeFunction,
    Dynamics,
    FireReset,
    IFDynamics,
    KLIFDynamics,
    LIFDynamics,
)
from .functional.fused import BACKENDS, neuron_multistep
from .functional.memory import check_mode as check_memory
from .registry import Registry
from .surrogate import Atan, Sigmoid, Surrogate, get_surrogate

__all__ = [
    "SpikingNeuron",
    "LIF",
    "IF",
    "KLIF",
    "NEURONS",
    "TimeChunked",
    "check_time_major",
    "neuron_outputs",
    "check_number",
    "check_flag",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def neuron_outputs(
    spikes: torch.Tensor,
    state: torch.Tensor | None,
    membrane: torch.Tensor | None,
    return_state: bool,
    return_membrane: bool,
):
    """What a neuron's ``forward`` returns: ``spikes [T, B, ...]`` alone, or a tuple with the
    final ``state [B, ...]`` and/or the ``membrane [T, B, ...]`` as requested, in that order."""
    out: list[torch.Tensor] = [spikes]
    if return_state:
        out.append(state)  # type: ignore[arg-type]
    if return_membrane:
        out.append(membrane)  # type: ignore[arg-type]
    return out[0] if len(out) == 1 else tuple(out)


def check_time_major(x: torch.Tensor, who: str, finite: bool = True) -> None:
    """Raise ``InputError`` unless ``x`` is a finite float tensor of rank >= 2 ``[T, B, ...]``.

    ``finite=False`` skips the NaN/inf scan (the fused kernels do it in their own pass).
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{who}: expected a torch.Tensor [T, B, ...], got {type(x).__name__}")
    if x.dim() < 2:
        raise InputError(
            f"{who}: expected a time-major tensor [T, B, ...] of rank >= 2, got shape "
            f"{tuple(x.shape)}; add the time axis first (e.g. spikeweave.encoding.direct(x, T))"
        )
    if x.dtype not in _FLOAT_DTYPES:
        raise InputError(
            f"{who}: expected a floating-point tensor, got {x.dtype}; cast with .float()"
        )
    if finite and not bool(torch.isfinite(x).all()):
        raise InputError(
            f"{who}: input contains NaN or inf; check the data and the layer before this neuron"
        )


def _got(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_number(value: object, where: str, unit: str = "") -> float:
    """``value`` as a float if it is a real number, else a ``ConfigError`` naming ``where``.

    A bool is refused although Python counts it as an int: ``tau=True`` is a slip, not 1.0.
    ``unit`` (e.g. ``"steps"``) is named in the message.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        what = f"a number ({unit})" if unit else "a number"
        raise ConfigError(f"{where} must be {what}, got {_got(value)}")
    return float(value)


def check_flag(value: object, where: str) -> bool:
    """``value`` if it is a bool, else a ``ConfigError`` naming ``where``.

    Truthiness is not enough: ``detach_reset="false"`` would otherwise mean True.
    """
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be True or False, got {_got(value)}")
    return value


def _check_count(value: object, where: str, what: str = "a positive int") -> int:
    """``value`` if it is a positive int (not a bool, not a float that happens to be whole)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ConfigError(f"{where} must be {what}, got {_got(value)}")
    return int(value)


def _check_optional_count(value: object, where: str) -> int | None:
    return None if value is None else _check_count(value, where, "a positive int or None")


def _check_tau(value: object, who: str) -> float:
    tau = check_number(value, f"{who}: tau", "steps")
    if not math.isfinite(tau) or tau < 1.0:
        raise ConfigError(f"{who}: tau is in steps and must be >= 1, got {value}")
    return tau


def _charge_only(cls: type) -> bool:
    """Whether ``cls`` defines its neuron by ``charge(v, x)`` rather than ``dynamics(x)``.

    The most derived definition wins (a subclass overriding ``charge`` of LIF runs its own
    charge); within one class ``dynamics`` wins.
    """
    for klass in cls.__mro__:
        if "dynamics" in vars(klass):
            return False
        if "charge" in vars(klass):
            return True
    return False


class SpikingNeuron(nn.Module):
    """Base class: threshold, reset, surrogate and the multi-step call contract.

    A subclass provides its charge in one of two ways:

    - ``dynamics(x) -> Dynamics`` (the shipped neurons): the charge and its derivatives as a
      :class:`~spikeweave.functional.dynamics.Dynamics`, run by every backend. ``x`` is the
      call's input ``[T, B, ...]``, so per-channel parameters can be shaped to it (KLIF).
    - ``charge(v, x) -> h`` for one step: wrapped in a
      :class:`~spikeweave.functional.dynamics.ChargeFunction` and run on the per-step loop
      under autograd, whatever the backend (``"auto"``/``"torch"``; ``"cpu"``/``"triton"``
      refuse it).

    Args:
        threshold: firing threshold ``θ`` (same units as the membrane potential).
        v_reset: resting / reset potential; the membrane starts here on every call.
        reset: ``"hard"`` (set to ``v_reset``) or ``"soft"`` (subtract ``θ``).
        surrogate: a :class:`~spikeweave.surrogate.Surrogate` or its name (default atan).
        detach_reset: treat the spike inside the reset as a constant in backward.
        backend: ``"auto"`` (default: the fused multi-step kernel, compiled where possible),
            ``"torch"`` (fused, PyTorch ops only), ``"cpu"`` / ``"triton"`` (insist on that
            compiled kernel) or ``"reference"`` (the per-step loop under autograd).
        steps: the number of time steps ``T`` every call must have, or None (default) for
            any. Set it to turn a batch-major ``[B, T, ...]`` input into an ``InputError``
            instead of a silently wrong result (streaming in shorter chunks, or
            :class:`TimeChunked`, then needs ``steps=None``).
        memory: what backward keeps (:mod:`spikeweave.functional.memory`): ``"save"`` the
            potentials ``h`` (one value per element and step), ``"recompute"`` only the input
            (the kernel's forward runs again in backward; same spikes and gradients), or
            ``"auto"`` (default: recompute where the input is stored in less than half of
            ``h``'s bytes, e.g. broadcast over time).
    """

    def __init__(
        self,
        threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        surrogate: Surrogate | str | None = None,
        detach_reset: bool = True,
        backend: str = "auto",
        steps: int | None = None,
        memory: str = "auto",
    ) -> None:
        super().__init__()
        who = type(self).__name__
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise ConfigError(
                f"{who}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
            )
        self.backend = backend
        self.memory = check_memory(memory, f"{who}: memory")
        if not isinstance(reset, str) or reset not in ("hard", "soft"):
            raise ConfigError(f"{who}: reset must be 'hard' or 'soft', got {reset!r}")
        threshold = check_number(threshold, f"{who}: threshold")
        v_reset = check_number(v_reset, f"{who}: v_reset")
        if not math.isfinite(threshold):
            raise ConfigError(f"{who}: threshold must be finite, got {threshold}")
        if not math.isfinite(v_reset) or v_reset >= threshold:
            raise ConfigError(
                f"{who}: v_reset ({v_reset}) must be finite and below the threshold ({threshold})"
            )
        self.threshold = threshold
        self.v_reset = v_reset
        self.reset = reset
        self.surrogate = Atan() if surrogate is None else get_surrogate(surrogate)
        self.detach_reset = check_flag(detach_reset, f"{who}: detach_reset")
        self.steps = _check_optional_count(steps, f"{who}: steps")

    def dynamics(self, x: torch.Tensor) -> Dynamics:
        """This neuron's charge for a call on ``x [T, B, ...]``; subclasses override it."""
        raise NotImplementedError(
            f"{type(self).__name__} defines neither dynamics(x) nor charge(v, x)"
        )

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step of integration: membrane ``v [B, ...]`` and input ``x [B, ...]`` to ``h``.

        By default this is one step (``t = 0``) of ``dynamics``; override it to define a
        neuron by its charge alone.
        """
        dyn = self.dynamics(x.unsqueeze(0))
        return dyn.charge(v, x, 0, dyn.params())[0]

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """The resting membrane ``[B, ...]`` for input ``x [T, B, ...]``."""
        return torch.full_like(x[0], self.v_reset)

    def fire_reset(self) -> FireReset:
        """Threshold, reset and surrogate as the fused kernels take them."""
        return FireReset(
            self.threshold, self.v_reset, self.reset, self.surrogate, self.detach_reset
        )  # type: ignore[arg-type]

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
        A floating-point ``state`` of another dtype is cast to ``x``'s.
        """
        who = type(self).__name__
        check_time_major(x, who, finite=False)  # NaN/inf: checked by the backend's own pass
        self._check_steps(x)
        if state is not None:
            state = self._checked_state(state, x)
        elif type(self).initial_state is not SpikingNeuron.initial_state:
            state = self.initial_state(x)  # a subclass chose its own starting state
        if _charge_only(type(self)):
            dyn: Dynamics = ChargeFunction(self.charge)
        else:
            dyn = self.dynamics(x)
        spikes, v, h = neuron_multistep(
            x,
            state,
            dyn,
            self.fire_reset(),
            backend=self.backend,
            return_membrane=return_membrane,
            check_finite=who,
            memory=getattr(self, "memory", "auto"),  # modules pickled before the option
        )
        return neuron_outputs(spikes, v, h, return_state, return_membrane)

    def _check_steps(self, x: torch.Tensor) -> None:
        if self.steps is None or x.shape[0] == self.steps:
            return
        who = f"{type(self).__name__}(steps={self.steps})"
        if x.shape[1] == self.steps:
            raise InputError(
                f"{who}: got shape {tuple(x.shape)}, which looks like [B, T, ...]; spikeweave is "
                f"time-major [T, B, ...]: pass x.transpose(0, 1)"
            )
        raise InputError(
            f"{who}: expected {self.steps} steps on the time axis of [T, B, ...], got shape "
            f"{tuple(x.shape)}"
        )

    def _checked_state(self, state: object, x: torch.Tensor) -> torch.Tensor:
        who = type(self).__name__
        if not isinstance(state, torch.Tensor) or state.shape != x.shape[1:]:
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise InputError(
                f"{who}: state must have shape {tuple(x.shape[1:])} (input without its time "
                f"axis), got {got}"
            )
        if state.dtype not in _FLOAT_DTYPES:
            # an integer or bool state is almost always spikes passed by mistake
            raise InputError(
                f"{who}: state must be a floating-point membrane potential, got {state.dtype}; "
                "pass the state returned with return_state=True"
            )
        if state.device != x.device:
            raise InputError(
                f"{who}: state is on {state.device} but the input on {x.device}; move it with "
                "state.to(x.device)"
            )
        if state.is_cuda:  # checked on the device, raised later: no host sync per call
            from .functional import finite

            finite.defer(~torch.isfinite(state.sum()), f"{who} (state)")
        elif not bool(torch.isfinite(state).all()):
            raise InputError(
                f"{who}: state contains NaN or inf; pass the state returned with "
                "return_state=True, or None to start at rest"
            )
        return state.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"threshold={self.threshold:g}, v_reset={self.v_reset:g}, reset={self.reset!r}, "
            f"surrogate={self.surrogate!r}, detach_reset={self.detach_reset}"
            + ("" if self.backend == "auto" else f", backend={self.backend!r}")
            + ("" if self.steps is None else f", steps={self.steps}")
            + ("" if getattr(self, "memory", "auto") == "auto" else f", memory={self.memory!r}")
        )


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron (charge: :class:`~spikeweave.functional.LIFDynamics`).

    Args:
        tau: membrane time constant in steps (> 1 for a leak that does not overshoot).
        decay_input: if True the input is scaled by ``1/tau`` with the leak
            (``h = u + (x - (u - v_reset))/tau``); else ``h = u - (u - v_reset)/tau + x``.

    The other arguments are those of :class:`SpikingNeuron`.
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
        super().__init__(threshold, v_reset, reset, surrogate, detach_reset, backend, steps, memory)
        self.tau = _check_tau(tau, type(self).__name__)
        self.decay_input = check_flag(decay_input, f"{type(self).__name__}: decay_input")

    def dynamics(self, x: torch.Tensor) -> Dynamics:  # noqa: D102
        return LIFDynamics(self.tau, self.v_reset, self.decay_input)

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, decay_input={self.decay_input}, " + super().extra_repr()


class IF(SpikingNeuron):
    """Integrate-and-fire neuron (no leak): ``h = u + x``. Arguments as :class:`SpikingNeuron`."""

    def dynamics(self, x: torch.Tensor) -> Dynamics:  # noqa: D102
        return IFDynamics()


class KLIF(SpikingNeuron):
    """KLIF (arXiv 2302.09238): LIF whose charged potential is scaled by a learnable ``k``.

    Per step: ``h = u + (x - (u - v_reset))/tau``; ``f = ReLU(k·h)``; ``s = H(f - threshold)``;
    hard reset ``u = f·(1 - s) + v_reset·s`` (soft: ``u = f - threshold·s``). Since
    ``ds/dh ≈ k·g'(k·h - θ)``, training ``k`` tunes the surrogate's position, height and width per
    layer. ``return_membrane`` returns ``f``. The charge is
    :class:`~spikeweave.functional.KLIFDynamics`, run by the generic fused loop.

    Args:
        tau: membrane time constant in steps.
        k_init: initial value of ``k`` (1.0 as in the paper).
        channels: ``None`` for one ``k`` per layer (the paper); an int ``C`` for one ``k`` per
            channel, the channel axis being the one after the batch (``[T, B, C, ...]``).
        surrogate: default ``Sigmoid(alpha=4)``, KLIF's setting.

    The other arguments are those of :class:`SpikingNeuron`.
    """

    def __init__(
        self,
        tau: float = 2.0,
        threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        k_init: float = 1.0,
        channels: int | None = None,
        surrogate: Surrogate | str | None = None,
        detach_reset: bool = True,
        backend: str = "auto",
        steps: int | None = None,
        memory: str = "auto",
    ) -> None:
        surrogate = Sigmoid(4.0) if surrogate is None else surrogate
        super().__init__(threshold, v_reset, reset, surrogate, detach_reset, backend, steps, memory)
        who = type(self).__name__
        self.tau = _check_tau(tau, who)
        k = check_number(k_init, f"{who}: k_init")
        if not math.isfinite(k) or k <= 0:
            raise ConfigError(f"{who}: k_init must be a positive number, got {k_init}")
        self.channels = _check_optional_count(channels, f"{who}: channels")
        self.k = nn.Parameter(torch.full((self.channels,) if self.channels else (), k))

    def dynamics(self, x: torch.Tensor) -> Dynamics:
        """KLIF's charge with ``k`` shaped to broadcast against one step ``[B, C, ...]``."""
        if self.channels is None:
            return KLIFDynamics(self.k, self.tau, self.v_reset)
        if x.dim() < 3 or x.shape[2] != self.channels:
            raise InputError(
                f"KLIF(channels={self.channels}): expected [T, B, {self.channels}, ...], got "
                f"shape {tuple(x.shape)}"
            )
        k = self.k.view(self.channels, *([1] * (x.dim() - 3)))
        return KLIFDynamics(k, self.tau, self.v_reset)

    def extra_repr(self) -> str:
        per = "layer" if self.channels is None else f"channel ({self.channels})"
        return f"tau={self.tau:g}, k per {per}, " + super().extra_repr()


class TimeChunked(nn.Module):
    """Low-memory option for long T: run ``block`` over time in chunks, recomputing in backward.

    ``block`` is an ``nn.Sequential`` of time-folded stateless layers and spiking neurons (e.g.
    ``Linear → LIF → Linear → LIF``). The input ``[T, B, ...]`` is cut into chunks of ``chunk``
    steps; each chunk runs under :func:`torch.utils.checkpoint.checkpoint` with the neurons'
    states carried explicitly from one chunk to the next, so the block's inner activations
    (layer outputs, saved potentials) are held for one chunk at a time instead of all ``T``
    steps. The price is one extra forward of the block during backward. Spikes and gradients
    equal the unchunked block's, except for layers that mix time steps: BatchNorm in training
    mode normalises over the chunk instead of the whole sequence (so it is refused here).
    """

    def __init__(self, block: nn.Module, chunk: int) -> None:
        super().__init__()
        if not isinstance(block, nn.Module):
            raise ConfigError(
                f"TimeChunked: block must be an nn.Module (e.g. nn.Sequential), got {_got(block)}"
            )
        mods = list(block) if isinstance(block, nn.Sequential) else [block]
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                raise ConfigError(
                    "TimeChunked: BatchNorm statistics would cover one chunk, not the whole "
                    "sequence; checkpoint a block without BatchNorm"
                )
        self.block = block
        self.chunk = _check_count(chunk, "TimeChunked: chunk (steps)")
        self._mods = mods

    def _run_chunk(self, x: torch.Tensor, *states: torch.Tensor | None):
        new_states: list[torch.Tensor] = []
        i = 0
        for m in self._mods:
            if isinstance(m, SpikingNeuron):
                x, v = m(x, state=states[i], return_state=True)
                new_states.append(v)
                i += 1
            else:
                x = m(x)
        return (x, *new_states)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        from torch.utils.checkpoint import checkpoint

        check_time_major(x, "TimeChunked", finite=False)  # the neurons inside check values
        n = sum(isinstance(m, SpikingNeuron) for m in self._mods)
        states: tuple[torch.Tensor | None, ...] = (None,) * n
        outs = []
        for t0 in range(0, x.shape[0], self.chunk):
            xc = x[t0 : t0 + self.chunk]
            if torch.is_grad_enabled():
                y, *new = checkpoint(self._run_chunk, xc, *states, use_reentrant=False)
            else:
                y, *new = self._run_chunk(xc, *states)
            states = tuple(new)
            outs.append(y)
        return torch.cat(outs)

    def extra_repr(self) -> str:
        return f"chunk={self.chunk}"


# Names for configs and the CLI. "relu" is the ANN twin's activation, not a spiking neuron.
# The klif-vs-lif ablation neurons register themselves where they live; loading them on first
# lookup lets a saved run that used one be reloaded without importing the experiment.
NEURONS: Registry = Registry("neuron", providers=("spikeweave.ablation_neurons",))
NEURONS.register("lif", LIF, help="leaky integrate-and-fire")
NEURONS.register("klif", KLIF, help="LIF with a learnable k scaling the potential")
NEURONS.register("if", IF, help="integrate-and-fire, no leak")
NEURONS.register("relu", nn.ReLU, help="ReLU: trains the ANN twin of the architecture")


# ------------------------------------------------------------------ OscillatingLIF
# Appended (methods.md §6, issue 12). The classes above are unchanged.

from .functional.dynamics import (  # noqa: E402  (this file is append-only for this neuron)
    OSC_FORMS,
    OscillatingLIFDynamics,
    oscillation_drive,
)


def _check_form(value: object, where: str) -> str:
    if not isinstance(value, str) or value not in OSC_FORMS:
        raise ConfigError(f"{where} must be one of {', '.join(OSC_FORMS)}, got {value!r}")
    return value


def _check_finite(value: object, where: str, unit: str = "") -> float:
    v = check_number(value, where, unit)
    if not math.isfinite(v):
        raise ConfigError(f"{where} must be finite, got {value!r}")
    return v


class _TrueForwardFakeBackward(torch.autograd.Function):
    """``true`` in forward, the gradient passed to ``fake`` in backward."""

    @staticmethod
    def forward(ctx, true: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return true.view_as(true)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        return None, grad


class OscillatingLIF(SpikingNeuron):
    """LIF with an additive membrane oscillation, and optionally the "fake neuron" defense.

    Per step ``t`` (counted from the call's first step):
    ``h = u + (x - (u - v_reset))/tau + A·osc(2π·f·t + φ)``, then fire and reset as LIF
    (``decay_input=False``: ``h = u - (u - v_reset)/tau + x + A·osc(...)``). ``osc`` is one of
    ``sine`` (default), ``square``, ``triangle``, ``sawtooth``
    (:func:`~spikeweave.functional.dynamics.oscillation`). The charge is
    :class:`~spikeweave.functional.dynamics.OscillatingLIFDynamics`, run by the fused PyTorch
    loop (no compiled kernel) or the reference loop, with identical spikes.

    Phases: with ``phase=None`` every neuron (every element of one step's shape, e.g.
    ``[C, H, W]``) gets its own ``φ ~ U[0, 2π)``, drawn from a generator seeded by the buffer
    ``phase_seed``. The seed is drawn from torch's RNG at construction (so a seeded model is
    reproducible) and saved in the checkpoint with the weights; φ for a given neuron shape is
    therefore fixed for the life of the model, however the layer is called. (The seed, not the
    φ tensor, is the buffer because the neuron shape is only known at the first call, and a
    checkpoint must load into a freshly built model.) ``phase=<float>`` gives every neuron that
    phase (radians).

    The defense (``fake_form`` and/or ``fake_phase``): the forward output is always the true
    neuron's, bit for bit, but gradients are those of the same neuron with the oscillation
    ``A·fake_form(2π·f·t + φ + fake_phase)`` -- backpropagation through the *fake* neuron's own
    trajectory. Because the oscillation is additive, ``∂h/∂u`` and ``∂h/∂x`` do not contain it:
    swapping only the charge's local derivative would change nothing. What the oscillation does
    to gradients is move the potential the surrogate is evaluated at and decide which steps
    fire and reset; the fake backward therefore replaces the whole neuron's backward (see
    docs/methods/oscillation.md). :func:`spikeweave.security.true_gradients` switches every
    such neuron to its true backward.

    Streaming: ``t`` counts from ``start`` (default 0) on every call, so a sequence cut into
    chunks sees one continuous oscillation only when each chunk passes the index of its first
    step: ``neuron(x[a:b], state=v, return_state=True, start=a)`` concatenates exactly, as
    :func:`spikeweave.models.stream` does for a whole network.

    Args:
        tau: membrane time constant in steps.
        amplitude: ``A``, in membrane-potential units (same as the threshold), ``>= 0``.
        frequency: ``f`` in cycles per step (0.25: one period every 4 steps).
        form: the oscillation's form.
        phase: None (random per neuron) or one phase in radians for all neurons.
        fake_form: the form the backward sees (None: ``form``).
        fake_phase: a phase offset in radians the backward sees (None: 0).
        decay_input: as :class:`LIF`.

    The other arguments are those of :class:`SpikingNeuron`.
    """

    def __init__(
        self,
        tau: float = 2.0,
        threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        decay_input: bool = True,
        amplitude: float = 0.2,
        frequency: float = 0.25,
        form: str = "sine",
        phase: float | None = None,
        fake_form: str | None = None,
        fake_phase: float | None = None,
        surrogate: Surrogate | str | None = None,
        detach_reset: bool = True,
        backend: str = "auto",
        steps: int | None = None,
        memory: str = "auto",
    ) -> None:
        super().__init__(threshold, v_reset, reset, surrogate, detach_reset, backend, steps, memory)
        who = type(self).__name__
        self.tau = _check_tau(tau, who)
        self.decay_input = check_flag(decay_input, f"{who}: decay_input")
        self.amplitude = _check_finite(amplitude, f"{who}: amplitude", "membrane units")
        if self.amplitude < 0:
            raise ConfigError(f"{who}: amplitude must be >= 0, got {amplitude}")
        self.frequency = _check_finite(frequency, f"{who}: frequency", "cycles per step")
        self.form = _check_form(form, f"{who}: form")
        self.phase = None if phase is None else _check_finite(phase, f"{who}: phase", "radians")
        self.fake_form = None if fake_form is None else _check_form(fake_form, f"{who}: fake_form")
        self.fake_phase = (
            None if fake_phase is None else _check_finite(fake_phase, f"{who}: fake_phase", "rad")
        )
        self.true_backward = False  # set by spikeweave.security.true_gradients
        self._fake = False  # inside forward: build the fake dynamics
        self._start = 0  # inside forward: the index of the call's first step
        self.register_buffer(
            "phase_seed", torch.randint(0, 2**62, (), dtype=torch.int64), persistent=True
        )
        self._phase_cache: dict[tuple, torch.Tensor] = {}
        self._drive_cache: dict[tuple, torch.Tensor] = {}

    @property
    def defended(self) -> bool:
        """Whether the backward sees a different oscillation than the forward."""
        return (self.fake_form not in (None, self.form)) or bool(self.fake_phase)

    def phases(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        """``φ`` (radians, float64) for one step's neuron shape, e.g. ``(C, H, W)``."""
        shape = tuple(shape)
        if self.phase is not None:
            return torch.full(shape, self.phase, dtype=torch.float64, device=device)
        key = (shape, str(device), int(self.phase_seed))
        if key not in self._phase_cache:
            gen = torch.Generator().manual_seed(int(self.phase_seed))
            phi = 2.0 * math.pi * torch.rand(shape, generator=gen, dtype=torch.float64)
            self._phase_cache = {key: phi.to(device)}  # one shape per layer in practice
        return self._phase_cache[key]

    def dynamics(self, x: torch.Tensor) -> Dynamics:
        """The true charge for ``x [T, B, ...]`` (the fake one inside a defended backward)."""
        form = self.form
        shift = 0.0
        if self._fake:
            form = self.fake_form or self.form
            shift = self.fake_phase or 0.0
        # the drive is the same on every call of the same shape: computed once (float64 sin
        # over [T, neurons] is otherwise a sizeable share of a training step), kept per key
        start = getattr(self, "_start", 0)  # modules pickled before the option
        key = (
            tuple(x.shape[:1]) + tuple(x.shape[2:]),
            start,
            x.dtype,
            str(x.device),
            form,
            shift,
            self.amplitude,
            self.frequency,
            self.phase,
            # the seed buffer's identity and version, not its value: reading it would sync a
            # GPU on every call; loading a state dict bumps the version
            self.phase_seed.data_ptr(),
            self.phase_seed._version,
        )
        drive = self._drive_cache.get(key)
        if drive is None:
            phi = self.phases(tuple(x.shape[2:]), x.device)
            if shift:
                phi = phi + shift
            drive = oscillation_drive(
                x.shape[0], self.amplitude, self.frequency, form, phi, x.dtype, start
            )
            if len(self._drive_cache) >= 4:
                self._drive_cache.clear()
            self._drive_cache[key] = drive
        return OscillatingLIFDynamics(self.tau, self.v_reset, self.decay_input, drive)

    def forward(
        self,
        x: torch.Tensor,
        state: torch.Tensor | None = None,
        return_state: bool = False,
        return_membrane: bool = False,
        start: int = 0,
    ):
        """As :meth:`SpikingNeuron.forward`; with the defense on and autograd recording, every
        output is the true value with the fake neuron's gradient (what
        ``true + (fake - fake.detach())`` computes, without its two extra passes).

        ``start``: the index of ``x``'s first step in the whole sequence (the oscillation's
        ``t``), for a chunk of a streamed sequence; 0 for a call that starts it.
        """
        if isinstance(start, bool) or not isinstance(start, numbers.Integral) or start < 0:
            raise InputError(f"{type(self).__name__}: start must be an int >= 0, got {_got(start)}")
        self._start = int(start)
        try:
            return self._forward(x, state, return_state, return_membrane)
        finally:
            self._start = 0

    def _forward(self, x, state, return_state, return_membrane):
        if not self.defended or self.true_backward or not torch.is_grad_enabled():
            return super().forward(x, state, return_state, return_membrane)
        with torch.no_grad():
            true = super().forward(x, state, return_state, return_membrane)
        self._fake = True
        try:
            fake = super().forward(x, state, return_state, return_membrane)
        finally:
            self._fake = False
        if isinstance(true, torch.Tensor):
            return _TrueForwardFakeBackward.apply(true, fake)
        return tuple(_TrueForwardFakeBackward.apply(t, f) for t, f in zip(true, fake, strict=True))

    def extra_repr(self) -> str:
        phase = "random per neuron" if self.phase is None else f"{self.phase:g}"
        fake = ""
        if self.defended:
            form = self.fake_form or self.form
            fake = f", fake_form={form!r}, fake_phase={self.fake_phase or 0:g}"
        return (
            f"tau={self.tau:g}, amplitude={self.amplitude:g}, frequency={self.frequency:g}, "
            f"form={self.form!r}, phase={phase}{fake}, " + super().extra_repr()
        )


NEURONS.register(
    "oscillating",
    OscillatingLIF,
    help="LIF plus a membrane oscillation A·osc(2π·f·t + φ); optional fake-gradient defense",
)
__all__ += ["OscillatingLIF"]
