"""Spiking neuron modules: thin wrappers that hold parameters and options, never state.

Every call starts at rest (membrane ``v_reset``) unless a ``state`` is passed, so there is
no ``reset_net()`` to forget. Input and output are time-major ``[T, B, ...]``.

>>> lif = LIF(tau=2.0)
>>> s = lif(x)                                        # x [T, B, ...] -> spikes [T, B, ...]
>>> s, v = lif(x, state=v, return_state=True)         # streaming: pass the state yourself

The dynamics run through the fused multi-step kernel by default (``backend="auto"``: one pass
over T forward and backward, compiled CPU kernel or Triton where available, else PyTorch ops);
``backend="reference"`` runs the plain per-step loop under autograd. All backends give identical
spikes (see :mod:`spikeforge.functional.fused` and docs/performance.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import functional as F
from .errors import ConfigError, InputError
from .functional.dynamics import Dynamics, FireReset, IFDynamics, KLIFDynamics, LIFDynamics
from .functional.fused import BACKENDS, neuron_multistep
from .surrogate import Atan, Sigmoid, Surrogate, get_surrogate

__all__ = ["SpikingNeuron", "LIF", "IF", "KLIF", "TimeChunked", "check_time_major"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_time_major(x: torch.Tensor, who: str, finite: bool = True) -> None:
    """Raise ``InputError`` unless ``x`` is a finite float tensor of rank >= 2 ``[T, B, ...]``.

    ``finite=False`` skips the NaN/inf scan (the fused kernels do it in their own pass).
    """
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
    if finite and not bool(torch.isfinite(x).all()):
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
        backend: ``"auto"`` (default: the fused multi-step kernel, compiled where possible),
            ``"torch"`` (fused, PyTorch ops only), ``"cpu"`` / ``"triton"`` (insist on that
            compiled kernel) or ``"reference"`` (the per-step loop under autograd).
    """

    def __init__(
        self,
        threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        surrogate: Surrogate | str | None = None,
        detach_reset: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ConfigError(
                f"{type(self).__name__}: backend must be one of {', '.join(BACKENDS)}, "
                f"got {backend!r}"
            )
        self.backend = backend
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
        check_time_major(x, who, finite=False)  # NaN/inf: checked by _run's backend
        if state is not None and (
            not isinstance(state, torch.Tensor) or state.shape != x.shape[1:]
        ):
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise InputError(
                f"{who}: state must have shape {tuple(x.shape[1:])} (input without its time "
                f"axis), got {got}"
            )
        spikes, v, h = self._run(x, None if state is None else state.to(x.dtype), return_membrane)
        out: list[torch.Tensor] = [spikes]
        if return_state:
            out.append(v)
        if return_membrane:
            out.append(h)
        return out[0] if len(out) == 1 else tuple(out)

    def dynamics(self) -> Dynamics | None:
        """The charge as a :class:`~spikeforge.functional.dynamics.Dynamics` for the fused path.

        None (the default for subclasses that only define ``charge``) runs the reference loop.
        """
        return None

    def fire_reset(self) -> FireReset:
        """Threshold, reset and surrogate as the fused kernels take them."""
        return FireReset(
            self.threshold, self.v_reset, self.reset, self.surrogate, self.detach_reset
        )  # type: ignore[arg-type]

    def _run(self, x: torch.Tensor, v: torch.Tensor | None, return_membrane: bool):
        dyn = self.dynamics() if self.backend != "reference" else None
        if v is None and type(self).initial_state is not SpikingNeuron.initial_state:
            v = self.initial_state(x)  # a subclass chose its own starting state
        if dyn is not None:
            return neuron_multistep(
                x,
                v,
                dyn,
                self.fire_reset(),
                backend=self.backend,
                return_membrane=return_membrane,
                check_finite=type(self).__name__,
            )
        check_time_major(x, type(self).__name__)
        if v is None:
            v = self.initial_state(x)
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
            + ("" if self.backend == "auto" else f", backend={self.backend!r}")
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
        backend: str = "auto",
    ) -> None:
        super().__init__(threshold, v_reset, reset, surrogate, detach_reset, backend)
        if not math.isfinite(tau) or tau < 1.0:
            raise ConfigError(f"LIF: tau is in steps and must be >= 1, got {tau}")
        self.tau = float(tau)
        self.decay_input = bool(decay_input)

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.lif_charge(v, x, self.tau, self.v_reset, self.decay_input)

    def dynamics(self) -> Dynamics | None:  # noqa: D102
        if type(self).charge is not LIF.charge:  # a subclass changed the charge: reference
            return None
        return LIFDynamics(self.tau, self.v_reset, self.decay_input)

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, decay_input={self.decay_input}, " + super().extra_repr()


class IF(SpikingNeuron):
    """Integrate-and-fire neuron (no leak): ``h = u + x``. Arguments as :class:`SpikingNeuron`."""

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.if_charge(v, x)

    def dynamics(self) -> Dynamics | None:  # noqa: D102
        if type(self).charge is not IF.charge:
            return None
        return IFDynamics()


class KLIF(SpikingNeuron):
    """KLIF (arXiv 2302.09238): LIF whose charged potential is scaled by a learnable ``k``.

    Per step: ``h = u + (x - (u - v_reset))/tau``; ``f = ReLU(k·h)``; ``s = H(f - threshold)``;
    hard reset ``u = f·(1 - s) + v_reset·s`` (soft: ``u = f - threshold·s``). Since
    ``ds/dh ≈ k·g'(k·h - θ)``, training ``k`` tunes the surrogate's position, height and width per
    layer. ``return_membrane`` returns ``f``. Runs through the fused multi-step path.

    Args:
        tau: membrane time constant in steps.
        k_init: initial value of ``k`` (1.0 as in the paper).
        channels: ``None`` for one ``k`` per layer (the paper); an int ``C`` for one ``k`` per
            channel, the channel axis being the one after the batch (``[T, B, C, ...]``).
        surrogate: default ``Sigmoid(alpha=4)``, KLIF's setting.
        Other arguments as :class:`SpikingNeuron`.
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
    ) -> None:
        surrogate = Sigmoid(4.0) if surrogate is None else surrogate
        super().__init__(threshold, v_reset, reset, surrogate, detach_reset, backend)
        if not math.isfinite(tau) or tau < 1.0:
            raise ConfigError(f"KLIF: tau is in steps and must be >= 1, got {tau}")
        if not math.isfinite(k_init) or k_init <= 0:
            raise ConfigError(f"KLIF: k_init must be a positive number, got {k_init}")
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise ConfigError(f"KLIF: channels must be a positive int or None, got {channels!r}")
        self.tau = float(tau)
        self.channels = channels
        self.k = nn.Parameter(torch.full((channels,) if channels else (), float(k_init)))

    def _k_for(self, step: torch.Tensor) -> torch.Tensor:
        """``k`` shaped to broadcast against one step ``[B, C, ...]``."""
        if self.channels is None:
            return self.k
        if step.dim() < 2 or step.shape[1] != self.channels:
            raise InputError(
                f"KLIF(channels={self.channels}): expected [T, B, {self.channels}, ...], got a "
                f"step of shape {tuple(step.shape)}"
            )
        return self.k.view(self.channels, *([1] * (step.dim() - 2)))

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.relu(self._k_for(x) * F.lif_charge(v, x, self.tau, self.v_reset, True))

    def dynamics(self) -> Dynamics | None:
        """None: KLIF builds its dynamics per call in ``_run``, where the step shape is known."""
        return None

    def _run(self, x: torch.Tensor, v: torch.Tensor | None, return_membrane: bool):
        check_time_major(x, "KLIF", finite=False)
        k = self._k_for(x[0])
        if self.backend == "reference" or type(self).charge is not KLIF.charge:
            return super()._run(x, v, return_membrane)
        return neuron_multistep(
            x,
            v,
            KLIFDynamics(k, self.tau, self.v_reset),
            self.fire_reset(),
            backend=self.backend,
            return_membrane=return_membrane,
            check_finite="KLIF",
        )

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
        if int(chunk) < 1:
            raise ConfigError(f"TimeChunked: chunk must be >= 1 steps, got {chunk}")
        mods = list(block) if isinstance(block, nn.Sequential) else [block]
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                raise ConfigError(
                    "TimeChunked: BatchNorm statistics would cover one chunk, not the whole "
                    "sequence; checkpoint a block without BatchNorm"
                )
        self.block = block
        self.chunk = int(chunk)
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
