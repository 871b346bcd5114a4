"""Noise-based single-step training, converted to a multi-step SNN (methods.md §4).

Only the abstract of arXiv 2211.05453 is available; everything below is **spikeweave's
reading** of it (docs/methods/noisy.md explains each choice).

Idea. A multi-step integrate-and-fire neuron with soft reset (reset by subtraction) driven by a
constant input ``u`` per step fires at the rate ``clip(u/θ, 0, 1)`` as T grows: at every step its
membrane is ``u`` plus a residual ``r`` left over from earlier steps, and that residual is spread
over ``[0, θ)``. A *single-step* neuron whose potential carries a random residual ``ε``,

    s = H(u + ε − θ),      ε ~ N(μ, σ²)  (or uniform with the same mean and std),

fires with probability ``E[s] = P(ε ≥ θ − u)`` — the multi-step rate, if ``ε`` has the residual's
distribution (uniform on ``[0, θ)``: ``μ = θ/2``, ``σ = θ/√12``). So: train at T = 1 with fresh
noise every forward, then run the *same weights* as IF neurons with soft reset for T steps,
input repeated each step, output = spike count / T.

Two departures from the one-line sketch in methods.md, both ours and documented:

- the noise mean ``μ`` defaults to ``θ/2`` (the residual's mean), not 0. With zero-mean noise the
  expected spike is ``Φ((u − θ)/σ)``, centred on ``θ`` while the IF rate is centred on ``θ/2``, so
  conversion could not be lossless; ``noise_mean=0.0`` gives methods.md's literal form;
- the converted IF neurons start at ``v = μ`` (the residual's mean) instead of 0, so that the
  converted network at T = 1 fires exactly where the noise-free single-step neuron would.

Gradients: ``grad="surrogate"`` backpropagates the surrogate derivative at ``u + ε − θ``;
``grad="expected"`` keeps the sampled spike forward and backpropagates the derivative of the
expected spike ``E[s]`` (Gaussian: ``φ((u + μ − θ)/σ)/σ``; uniform: ``1/(2√3·σ)`` inside the
noise range), a straight-through estimator of the expectation.

>>> method = NoisySingleStep({"sigma": 0.3})    # the trainer's ``--method noisy``
>>> model = method.convert(model)                # neurons -> NoisyIF; T = 1 while training
>>> snn = to_multistep(model, T=8)               # ordinary spikeweave model with IF neurons
>>> rates = snn(spikeweave.encoding.direct(x, 8)).mean(0)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..functional.neuron import fire, reset
from ..functional.spec import torch_fire
from ..neurons import IF, SpikingNeuron, check_number, check_time_major, neuron_outputs
from ..surrogate import Surrogate
from ..training.build import default_model
from ..training.methods import METHODS, SurrogateBPTT

__all__ = [
    "NOISES",
    "GRADS",
    "MODES",
    "RESIDUAL_SIGMA",
    "sample_noise",
    "expected_spike",
    "noisy_spike",
    "NoisyIF",
    "SingleStepInput",
    "NoisySingleStep",
    "NoisyOptions",
    "noisy_neurons",
    "set_noisy_mode",
    "to_multistep",
    "multistep_rates",
    "converted_config",
]

NOISES = ("gaussian", "uniform")
GRADS = ("surrogate", "expected")
MODES = ("auto", "noisy", "expected", "multistep")
RESIDUAL_SIGMA = 1.0 / math.sqrt(12.0)
"""Std of the uniform residual on ``[0, θ)``, in units of θ: the σ that matches it."""

"""The lazy ``METHODS`` entry for ``--method noisy``."""

_SQRT3 = math.sqrt(3.0)


# ---------------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------------


def _check_noise(noise: str, sigma: float) -> None:
    if noise not in NOISES:
        raise ConfigError(f"noise must be one of {', '.join(NOISES)}, got {noise!r}")
    if not isinstance(sigma, int | float) or not math.isfinite(sigma) or sigma < 0:
        raise ConfigError(f"sigma must be a finite number >= 0, got {sigma!r}")


def sample_noise(
    like: torch.Tensor,
    noise: str,
    sigma: float,
    mean: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noise shaped like ``like``: ``N(mean, σ²)`` or uniform on ``mean ± √3·σ`` (same std).

    Drawn from ``generator`` (default: torch's global RNG, which the trainer seeds per epoch).
    """
    _check_noise(noise, sigma)
    if noise == "gaussian":
        eps = torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)
    else:
        eps = torch.rand(like.shape, dtype=like.dtype, device=like.device, generator=generator)
        eps = (2.0 * eps - 1.0) * _SQRT3
    return eps * sigma + mean


def expected_spike(
    u: torch.Tensor, threshold: float, sigma: float, noise: str = "gaussian", mean: float = 0.0
) -> torch.Tensor:
    """``E_ε[H(u + ε − θ)]``, differentiable in ``u``.

    Gaussian: ``Φ((u + μ − θ)/σ)``; uniform: ``clip((u + μ − θ)/(2√3·σ) + ½, 0, 1)``; σ = 0
    gives the step ``H(u + μ − θ)`` (zero gradient).
    """
    _check_noise(noise, sigma)
    # not the shared fire on purpose: this is the expectation over the noise (σ = 0: its step)
    z = u + (mean - threshold)
    if sigma == 0:
        return (z >= 0).to(u.dtype)
    if noise == "gaussian":
        return torch.special.ndtr(z / sigma)
    return (z / (2.0 * _SQRT3 * sigma) + 0.5).clamp(0.0, 1.0)


def noisy_spike(
    u: torch.Tensor,
    threshold: float,
    sigma: float,
    noise: str,
    mean: float,
    grad: str,
    surrogate: Surrogate,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One single-step spike ``H(u + ε − θ)`` with fresh noise ``ε``.

    ``grad="surrogate"``: backward uses ``surrogate.derivative(u + ε − θ)``.
    ``grad="expected"``: backward uses ``d E[s]/du`` (see :func:`expected_spike`); forward is
    still the sampled spike.
    """
    if grad not in GRADS:
        raise ConfigError(f"grad must be one of {', '.join(GRADS)}, got {grad!r}")
    eps = sample_noise(u, noise, sigma, mean, generator)
    if grad == "surrogate":
        return fire(u + eps, threshold, surrogate)
    if sigma == 0:
        raise ConfigError("grad='expected' needs sigma > 0 (the expectation of a step is flat)")
    s = torch_fire(u + eps, threshold)
    p = expected_spike(u, threshold, sigma, noise, mean)
    return s + (p - p.detach())


# ---------------------------------------------------------------------------------------------
# the neuron
# ---------------------------------------------------------------------------------------------


class NoisyIF(IF):
    """Single-step noisy neuron for training; IF with soft reset for inference.

    ``mode`` picks the behaviour (``"auto"``, the default: ``"noisy"`` in train mode,
    ``"multistep"`` in eval mode, so the trainer's ``evaluate`` measures the converted network):

    - ``"noisy"``: every step of ``x [T, B, ...]`` is an independent single-step forward,
      ``s[t] = H(x[t] + ε − θ)`` with fresh ``ε`` (the trainer feeds T = 1, see
      :class:`SingleStepInput`); no state is carried between steps;
    - ``"expected"``: the deterministic ``E[s[t]]`` (:func:`expected_spike`) — the noisy
      network's mean-field output, used by tests and diagnostics;
    - ``"multistep"``: the converted neuron — IF (``h = u + x``), soft reset ``u = h − θ·s``,
      starting at ``v = μ`` (the noise mean), exactly :class:`~spikeweave.neurons.IF` with
      ``v_reset=μ, reset="soft"``.

    Args:
        threshold: ``θ``.
        sigma: noise std σ (membrane units), ``>= 0``.
        noise: ``"gaussian"`` or ``"uniform"`` (uniform on ``μ ± √3·σ``).
        noise_mean: ``μ``; ``None`` (default) means ``θ/2``, the mean of the residual potential.
        grad: ``"surrogate"`` or ``"expected"`` (see :func:`noisy_spike`).
        surrogate: used by ``grad="surrogate"`` and by the multi-step mode.
        mode: see above.
    """

    def __init__(
        self,
        threshold: float = 1.0,
        sigma: float = 0.3,
        noise: str = "gaussian",
        noise_mean: float | None = None,
        grad: str = "surrogate",
        surrogate: Surrogate | str | None = None,
        mode: str = "auto",
    ) -> None:
        threshold = check_number(threshold, "NoisyIF: threshold")
        sigma = check_number(sigma, "NoisyIF: sigma")
        if noise_mean is not None:
            noise_mean = check_number(noise_mean, "NoisyIF: noise_mean")
        if threshold <= 0 or not math.isfinite(threshold):
            raise ConfigError(f"NoisyIF: threshold must be positive and finite, got {threshold}")
        mean = threshold / 2.0 if noise_mean is None else float(noise_mean)
        _check_noise(noise, sigma)
        if grad not in GRADS:
            raise ConfigError(f"NoisyIF: grad must be one of {', '.join(GRADS)}, got {grad!r}")
        if grad == "expected" and sigma == 0:
            raise ConfigError("NoisyIF: grad='expected' needs sigma > 0")
        if mode not in MODES:
            raise ConfigError(f"NoisyIF: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not math.isfinite(mean) or mean >= threshold:
            raise ConfigError(
                f"NoisyIF: noise_mean ({mean}) must be finite and below the threshold "
                f"({threshold}); it is also where the converted neuron's membrane starts"
            )
        super().__init__(
            threshold=threshold,
            v_reset=mean,
            reset="soft",
            surrogate=surrogate,
            detach_reset=True,
        )
        self.sigma = float(sigma)
        self.noise = noise
        self.noise_mean = mean
        self.grad = grad
        self.mode = mode

    def active_mode(self) -> str:
        """The behaviour a call makes now (``"auto"`` resolved by ``self.training``)."""
        if self.mode == "auto":
            return "noisy" if self.training else "multistep"
        return self.mode

    def forward(
        self,
        x: torch.Tensor,
        state: torch.Tensor | None = None,
        return_state: bool = False,
        return_membrane: bool = False,
    ):
        """``x [T, B, ...] -> spikes [T, B, ...]``; see the class docstring for the modes.

        In the single-step modes ``state`` must be None (nothing is carried between steps); the
        returned state is the last step's soft-reset membrane and the membrane is ``x``.
        """
        mode = self.active_mode()
        if mode == "multistep":
            return super().forward(x, state, return_state, return_membrane)
        check_time_major(x, "NoisyIF")
        if state is not None:
            raise InputError(
                f"NoisyIF in {mode!r} mode is single-step and carries no state; pass state=None "
                "(or use mode='multistep')"
            )
        u = x  # single step from rest: the membrane is this step's input
        if mode == "noisy":
            s = noisy_spike(
                u,
                self.threshold,
                self.sigma,
                self.noise,
                self.noise_mean,
                self.grad,
                self.surrogate,
            )
        else:
            s = expected_spike(u, self.threshold, self.sigma, self.noise, self.noise_mean)
        v = reset(u, s, self.threshold, self.v_reset, "soft", True)[-1] if return_state else None
        return neuron_outputs(s, v, u, return_state, return_membrane)

    def to_if(self) -> IF:
        """The converted neuron: :class:`~spikeweave.neurons.IF`, soft reset, same θ and start."""
        return IF(
            threshold=self.threshold,
            v_reset=self.v_reset,
            reset="soft",
            surrogate=self.surrogate,
            detach_reset=True,
        )

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma:g}, noise={self.noise!r}, noise_mean={self.noise_mean:g}, "
            f"grad={self.grad!r}, mode={self.mode!r}, " + super().extra_repr()
        )


class SingleStepInput:
    """Forward pre-hook: in train mode, hand the model one step instead of T.

    The trainer encodes every batch over ``config.steps`` (the conversion T). While training,
    this hook replaces the time-major input ``[T, B, ...]`` with ``[1, B, ...]``: the first step
    when all steps are the same (the direct encoder's repeated view), else the mean over steps
    (the expected input, e.g. the rate of a Poisson code). In eval mode the input passes through.
    """

    def __call__(self, module: nn.Module, args: tuple[Any, ...]):
        if not module.training or not args or not isinstance(args[0], torch.Tensor):
            return None
        x = args[0]
        if x.dim() < 2 or x.shape[0] == 1:
            return None
        single = x[:1] if x.stride(0) == 0 else x.mean(0, keepdim=True)
        return (single, *args[1:])


def noisy_neurons(model: nn.Module) -> list[NoisyIF]:
    """Every :class:`NoisyIF` in ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, NoisyIF)]


def set_noisy_mode(model: nn.Module, mode: str) -> nn.Module:
    """Set ``mode`` on every :class:`NoisyIF` of ``model`` (in place); returns the model."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    for m in noisy_neurons(model):
        m.mode = mode
    return model


def _replace_children(model: nn.Module, convert) -> int:
    """Replace every child module ``c`` for which ``convert(c)`` is not None; returns count."""
    count = 0
    for name, child in list(model.named_children()):
        new = convert(child)
        if new is not None:
            setattr(model, name, new)
            count += 1
        else:
            count += _replace_children(child, convert)
    return count


def _remove_single_step_hooks(model: nn.Module) -> None:
    hooks = model._forward_pre_hooks  # no public API lists hooks
    for key in [k for k, fn in hooks.items() if isinstance(fn, SingleStepInput)]:
        del hooks[key]


# ---------------------------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------------------------


def to_multistep(model: nn.Module, T: int) -> nn.Module:
    """The converted multi-step SNN: a deep copy of ``model`` with every :class:`NoisyIF`
    replaced by :class:`~spikeweave.neurons.IF` (soft reset, same θ, starting at ``μ``).

    The weights are copied unchanged (same ``state_dict`` keys and values). The result is an
    ordinary spikeweave model ``[T, B, ...] -> [T, B, classes]`` in eval mode: feed it the
    input repeated ``T`` times (``spikeweave.encoding.direct(x, T)``) and read the spike count
    / T (``.mean(0)``), or use :func:`multistep_rates`. ``T`` is stored as ``.steps``; it is
    rebuilt from a config by :func:`converted_config` and ``model_from_config``.
    """
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ConfigError(f"to_multistep: T must be a positive int, got {T!r}")
    net = copy.deepcopy(model)
    _remove_single_step_hooks(net)
    n = _replace_children(net, lambda m: m.to_if() if isinstance(m, NoisyIF) else None)
    if n == 0:
        raise ConfigError(
            "to_multistep: the model has no NoisyIF neurons; prepare it with NoisySingleStep "
            "(--method noisy) first"
        )
    net.steps = T
    return net.eval()


@torch.no_grad()
def multistep_rates(model: nn.Module, x: torch.Tensor, T: int) -> torch.Tensor:
    """Spike count / T of ``model`` run on the static batch ``x [B, ...]`` repeated T times."""
    from ..encoding import direct

    return model(direct(x, T)).mean(0)


def converted_config(config: Any, T: int | None = None, threshold: float | None = None) -> Any:
    """The :class:`~spikeweave.training.TrainConfig` of the converted model (IF, soft reset,
    start at the noise mean, ``steps=T``), so ``model_from_config`` rebuilds it and
    ``load_state_dict`` takes the noisy run's weights."""
    from dataclasses import replace

    opts = NoisySingleStep(config.method_options if config.method == "noisy" else None).options
    theta = float(config.threshold if threshold is None else threshold)
    mean = opts.noise_mean
    start = theta / 2.0 if mean is None else float(mean)
    return replace(
        config,
        neuron="if",
        reset="soft",
        v_reset=start,
        method="bptt",
        method_options={},
        steps=config.steps if T is None else T,
    )


# ---------------------------------------------------------------------------------------------
# the training method
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoisyOptions:
    """Options of ``--method noisy`` (a ``[method.noisy]`` table): noise ``sigma`` (membrane
    units), ``noise`` (gaussian | uniform), ``noise_mean`` (None: θ/2, the residual
    potential's mean) and ``grad`` (surrogate | expected)."""

    sigma: float = 0.3
    noise: str = "gaussian"
    noise_mean: float | None = None
    grad: str = "surrogate"

    def __post_init__(self) -> None:
        _check_noise(self.noise, self.sigma)
        if self.grad not in GRADS:
            raise ConfigError(
                f"[method.noisy] grad must be one of {', '.join(GRADS)}, got {self.grad!r}"
            )


@METHODS.register("noisy")
class NoisySingleStep(SurrogateBPTT):
    """``--method noisy``: train a single-step noisy SNN; evaluate it converted to multi-step.

    :meth:`build_model` builds the config's model and swaps every spiking neuron for a
    :class:`NoisyIF` (same θ and surrogate; LIF leak and reset settings are dropped: the
    converted network is IF with soft reset) and installs :class:`SingleStepInput`, so each
    training step runs at T = 1 whatever ``config.steps`` is; the train step itself is
    surrogate/expected-gradient backprop (:class:`~spikeweave.training.methods.SurrogateBPTT`'s
    step). In eval mode the neurons run as IF with soft reset over ``config.steps``: the
    trainer's test accuracy *is* the converted multi-step network's.
    """

    name = "noisy"
    Options = NoisyOptions

    def build_model(self, config: Any, task: Any) -> nn.Module:
        """The config's model with its neurons as :class:`NoisyIF`; the config must name the
        neuron the network really has (``if``), so runs are labelled truthfully."""
        if config.neuron != "if":
            raise ConfigError(
                f"method 'noisy' trains IF neurons (converted to IF with soft reset), not "
                f"{config.neuron!r}; use --neuron if"
            )
        return self.convert(default_model(config, task))

    def make_neuron(self, threshold: float = 1.0, surrogate: Surrogate | None = None) -> NoisyIF:
        """A :class:`NoisyIF` with this method's options."""
        o = self.options
        return NoisyIF(
            threshold=threshold,
            sigma=o.sigma,
            noise=o.noise,
            noise_mean=o.noise_mean,
            grad=o.grad,
            surrogate=surrogate,
        )

    def convert(self, model: nn.Module) -> nn.Module:
        """Swap spiking neurons for :class:`NoisyIF` in place; install :class:`SingleStepInput`."""

        def convert(m: nn.Module) -> nn.Module | None:
            if isinstance(m, SpikingNeuron):
                return self.make_neuron(m.threshold, m.surrogate)
            return None

        if _replace_children(model, convert) == 0:
            raise ConfigError(
                "method 'noisy' needs a spiking model; use neuron 'if' or 'lif' (not an ANN)"
            )
        _remove_single_step_hooks(model)
        model.register_forward_pre_hook(SingleStepInput())
        return model
