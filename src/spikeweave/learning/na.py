"""Neighbourhood aggregation (NA) gradients (Yang, Zhang & Li, ICML 2021, arXiv 2107.06861).

NA replaces the (non-existent) derivative of a spike with finite differences of the loss over
*neighbouring membrane-potential waveforms*. See docs/methods/na.md for the derivation, the
two forms (the paper's and the authors' code's) and which choices are spikeweave's reading.

Model (time-major ``[T, B, ...]`` everywhere; ``λ = 1 - 1/τ_m``)::

    u[t] = λ·u[t-1]·(1 - s[t-1]) + I[t]          membrane, multiplicative reset, u[-1] = 0
    s[t] = H(u[t] - θ)                            spike (fires when u >= θ)
    a[t] = (1 - 1/τ_s)·a[t-1] + s[t]/τ_s          first-order synapse (post-synaptic current)

A layer's output to the next layer is its PSC ``a``; the next layer's input current is
``I = W·a`` (Linear, Conv, or the paper's fixed-weight sum pooling).

NA backward, for every neuron and step ``k`` (all at once, no loop over neurons): the neighbour
``k`` flips the spike at ``k`` and re-simulates steps ``k+1..T-1`` with the *original* input
currents, restarting from ``θ`` when a spike was removed and from the reset value 0 when one
was added. With ``g[t] = ∂L/∂s[t]`` (autograd delivers it through the PSC filter, so
``g[t] = e[t]/τ_s`` with ``e`` the PSC error accumulated backward), the first-order change of
the loss is ``n[k] = Σ_t g[t]·(s_k[t] - s[t])`` and the estimate of ``∂L/∂I[k]`` is

* paper form (default): ``δ[k] = n[k] / (θ - u[k])`` with the distance guarded to at least
  ``min_distance`` in magnitude, its sign kept (negative when a spike is removed);
* code form (option): ``δ[k] = n[k]·clamp((θ - u[k])^-3, -5, 5)``, then every hidden layer's
  ``δ`` is rescaled by ``1.2·ln(m_out/m_l + 1.02)`` with ``m`` the mean ``|δ|`` of the output
  layer and of the layer;
* later form (option): the authors' later weighting ``δ[k] = ±n[k]·c/((u[k] - θ)² + c)``,
  ``c = 0.2``, signed like the distance, with the code form's per-layer rescaling.

The network follows the authors' code (see docs/methods/na.md): the input is PSC-filtered
before the first layer, pooling is a non-spiking ``1.1·Σ`` of the PSCs, convolutions keep
PyTorch's default initialisation, linear layers are kaiming-normal, and there are no biases.

>>> net = na_network("na-mnist", (1, 28, 28), 10)          # 15C5-P2-40C5-P2-300-10
>>> out = net(x)                                            # x [T, B, 1, 28, 28] -> spikes
>>> loss = kernel_loss(out, y, tau_s=2.0); loss.backward()  # NA deltas reach the weights
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..functional.neuron import fire, reset
from ..functional.spec import torch_fire, torch_reset
from ..layers import TimeFolded
from ..losses import Loss
from ..neurons import IF, LIF, SpikingNeuron, check_number, check_time_major
from ..surrogate import Surrogate, get_surrogate
from ..training.build import default_model
from ..training.methods import METHODS, StepContext, TrainingMethod, gradient_step

__all__ = [
    "na_dynamics",
    "psc",
    "desired_spikes",
    "kernel_loss",
    "na_numerator",
    "guarded_distance",
    "na_delta",
    "layer_rescale",
    "NAOptions",
    "RescaleGroup",
    "NASpikeFunction",
    "NANeuron",
    "SumPool2d",
    "NANetwork",
    "NETWORKS",
    "na_network",
    "convert_to_na",
    "NAMethod",
    "NAMethodOptions",
    "FORMS",
    "RESCALED_FORMS",
    "POOLS",
    "INITS",
    "ESTIMATORS",
    "later_weight",
    "InputNormalize",
    "InputSynapse",
]

FORMS = ("paper", "code", "later")
RESCALED_FORMS = ("code", "later")
"""Forms whose hidden-layer δ is rescaled by ``1.2·ln(m_out/m_l + 1.02)``."""
POOLS = ("sum", "spiking")
INITS = ("authors", "default")
ESTIMATORS = ("na", "surrogate")

# The paper's networks: (layer spec without the output layer, conv padding).
# MNIST padding "valid" follows the TSSL-BP MNIST config the NA code builds on (28-24-12-8-4);
# CIFAR-10 padding "same" is spikeweave's reading (the paper does not say).
NETWORKS: dict[str, tuple[str, str]] = {
    "na-mnist": ("15C5-P2-40C5-P2-300", "valid"),
    "na-cifar10": ("96C3-256C3-P2-384C3-P2-384C3-256C3-1024-1024", "same"),
}


# --------------------------------------------------------------------------------------------
# Pure functions: dynamics, synapse, loss, NA backward
# --------------------------------------------------------------------------------------------
def later_weight(
    membrane: torch.Tensor, spikes: torch.Tensor, threshold: float, width: float = 0.2
) -> torch.Tensor:
    """The authors' later distance weighting ``c/((u - θ)² + c)`` (``c = width``), in
    ``(0, 1]`` and 1 at the threshold, signed like :func:`guarded_distance` (negative where
    the neuron fired: removing the spike means lowering the input). The sign is spikeweave's
    reading: the unsigned weight would push removals and additions the same way."""
    w = width / ((membrane - threshold).pow(2) + width)
    return torch.where(spikes.bool(), -w, w)


def _decay(tau_m: float) -> float:
    return 1.0 - 1.0 / tau_m if math.isfinite(tau_m) else 1.0


def na_dynamics(
    current: torch.Tensor, tau_m: float = 5.0, threshold: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the NA neuron on input currents ``I [T, ...]`` from rest.

    Returns ``(spikes, membrane)``, both ``[T, ...]`` in ``current``'s dtype; ``membrane`` is
    ``u[t]`` before the reset (the value compared with ``θ``). ``tau_m`` in steps
    (``math.inf``: no leak). No autograd graph is recorded through the spike.
    """
    lam = _decay(tau_m)
    spikes = torch.empty_like(current)
    membrane = torch.empty_like(current)
    carry = torch.zeros_like(current[0])
    for t in range(current.shape[0]):
        # the charge is NA's own (λ·u + I, not LIF's u + (x - u)/τ); fire and the
        # multiplicative reset (a hard reset to 0) are the shared ones of functional.spec
        u = torch.add(current[t], carry, alpha=lam)
        membrane[t] = u
        fired = torch_fire(u, threshold, out=spikes[t])
        carry = torch_reset(u, fired, threshold, 0.0, "hard", zero_shortcut=True)
    return spikes, membrane


def psc(spikes: torch.Tensor, tau_s: float = 2.0) -> torch.Tensor:
    """First-order synapse ``a[t] = (1 - 1/τ_s)·a[t-1] + s[t]/τ_s`` over ``[T, ...]`` (from 0).

    Differentiable (plain torch ops), so autograd turns ``∂L/∂a`` into
    ``∂L/∂s[t] = e[t]/τ_s`` with ``e[t] = ∂L/∂a[t] + (1 - 1/τ_s)·e[t+1]``.
    """
    keep = 1.0 - 1.0 / tau_s
    a = spikes[0] / tau_s
    out = [a]
    for t in range(1, spikes.shape[0]):
        a = torch.lerp(spikes[t], a, keep)  # keep·a + (1 - keep)·s
        out.append(a)
    return torch.stack(out)


def desired_spikes(labels: torch.Tensor, steps: int, num_classes: int) -> torch.Tensor:
    """The desired output spike train ``[T, B, classes]``: the label fires every step."""
    target = F.one_hot(labels, num_classes).to(torch.get_default_dtype())
    return target.unsqueeze(0).expand(steps, *target.shape)


def kernel_loss(out_spikes: torch.Tensor, labels: torch.Tensor, tau_s: float = 2.0) -> torch.Tensor:
    """The PSC ("kernel") loss: ``½·Σ_{t,i} (a[t,i] - a_d[t,i])²`` averaged over the batch.

    ``out_spikes [T, B, classes]`` (the network's output spikes, differentiable); ``a`` is their
    PSC and ``a_d`` the PSC of :func:`desired_spikes`.
    """
    T, B, C = out_spikes.shape
    target = psc(desired_spikes(labels, T, C).to(out_spikes), tau_s)
    return 0.5 * (psc(out_spikes, tau_s) - target).pow(2).sum() / B


def na_numerator(
    current: torch.Tensor,
    spikes: torch.Tensor,
    grad_spikes: torch.Tensor,
    tau_m: float = 5.0,
    threshold: float = 1.0,
) -> torch.Tensor:
    """First-order loss change of every one-flip neighbour: ``n [T, ...]`` with ``n[k]`` for
    the neighbour that flips the spike at step ``k``.

    The neighbour re-simulates steps ``k+1..T-1`` with the original ``current``; after the
    flip its membrane restarts at ``θ`` (spike removed) or at 0 (spike added, multiplicative
    reset). ``n[k] = Σ_t grad_spikes[t]·(s_k[t] - s[t])``. Vectorised over neurons, batch and
    flip positions; the only loop is over time (``T(T-1)/2`` neighbour-steps per neuron).
    """
    lam = _decay(tau_m)
    s = spikes.to(current.dtype)
    numer = grad_spikes * (1 - 2 * s)  # the flip itself
    carry = threshold * s  # carry[k]: neighbour k's membrane after its flip at step k
    for t in range(1, current.shape[0]):
        u = torch.add(current[t], carry[:t], alpha=lam)  # neighbours 0..t-1 at step t
        fired = torch_fire(u, threshold)
        numer[:t].addcmul_(grad_spikes[t], fired - s[t])
        carry[:t] = torch_reset(u, fired, threshold, 0.0, "hard", zero_shortcut=True)
    return numer


def guarded_distance(
    membrane: torch.Tensor, spikes: torch.Tensor, threshold: float, min_distance: float
) -> torch.Tensor:
    """``θ - u`` with its magnitude at least ``min_distance`` and its sign set by the spike
    (negative where the neuron fired — removing the spike means lowering the input — positive
    where it did not). The guard is spikeweave's reading; the paper does not give one."""
    mag = (threshold - membrane).abs().clamp_min(min_distance)
    return torch.where(spikes.bool(), -mag, mag)


def na_delta(
    current: torch.Tensor,
    membrane: torch.Tensor,
    spikes: torch.Tensor,
    grad_spikes: torch.Tensor,
    tau_m: float = 5.0,
    threshold: float = 1.0,
    form: str = "paper",
    min_distance: float = 0.2,
    code_clip: float = 5.0,
    later_width: float = 0.2,
) -> torch.Tensor:
    """NA's estimate of ``∂L/∂I`` ``[T, ...]`` from the neighbours' loss changes.

    ``form="paper"``: ``n / (θ - u)`` with :func:`guarded_distance`. ``form="code"``: the
    authors' code, ``n·clamp((θ - u)^-3, -code_clip, code_clip)``. ``form="later"``: the
    authors' later code, ``n·``:func:`later_weight` (``c = later_width``). The per-layer
    rescaling of the code and later forms is :func:`layer_rescale`, applied by the layer.
    """
    numer = na_numerator(current, spikes, grad_spikes, tau_m, threshold)
    if form == "paper":
        return numer / guarded_distance(membrane, spikes, threshold, min_distance)
    if form == "code":
        dist = guarded_distance(membrane, spikes, threshold, 1e-12)
        return numer * dist.pow(-3).clamp(-code_clip, code_clip)
    if form == "later":
        return numer * later_weight(membrane, spikes, threshold, later_width)
    raise ConfigError(f"NA form must be one of {', '.join(FORMS)}, got {form!r}")


def layer_rescale(delta: torch.Tensor, out_mean_abs: float) -> torch.Tensor:
    """The code form's per-layer rescaling: ``δ·1.2·ln(m_out/m_l + 1.02)``, ``m = mean |δ|``."""
    m_l = float(delta.abs().mean())
    if m_l == 0.0 or not math.isfinite(out_mean_abs):
        return delta
    return delta * (1.2 * math.log(out_mean_abs / m_l + 1.02))


# --------------------------------------------------------------------------------------------
# Autograd function and modules
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NAOptions:
    """Neuron constants and the backward's form.

    Attributes:
        tau_m: membrane time constant in steps (``math.inf``: no leak).
        threshold: ``θ``.
        form: ``"paper"`` (default), ``"code"`` or ``"later"`` (see the module docstring).
        min_distance: paper form's guard on ``|θ - u|`` (spikeweave's reading; 0.2 caps the
            amplification ``1/|θ - u|`` at 5, the same cap the authors' code puts on its
            cubed weight).
        code_clip: the code form's clamp on ``(θ - u)^-3``.
        later_width: ``c`` of the later form's weight ``c/((u - θ)² + c)`` (authors: 0.2).
    """

    tau_m: float = 5.0
    threshold: float = 1.0
    form: str = "paper"
    min_distance: float = 0.2
    code_clip: float = 5.0
    later_width: float = 0.2


@dataclass
class RescaleGroup:
    """Carries the output layer's mean ``|δ|`` to the hidden layers during one backward pass
    (code form only). The output layer writes it; backward runs output-first, so every hidden
    layer of the same network reads the current pass's value."""

    out_mean_abs: float | None = field(default=None)


class NASpikeFunction(torch.autograd.Function):
    """``current [T, ...] -> spikes [T, ...]`` forward; NA's ``δ`` backward.

    ``apply(current, options, is_output, group)``; ``group`` is a :class:`RescaleGroup` or None.
    """

    @staticmethod
    def forward(ctx, current, options: NAOptions, is_output: bool, group):  # noqa: D102
        spikes, membrane = na_dynamics(current.detach(), options.tau_m, options.threshold)
        ctx.save_for_backward(current.detach(), membrane, spikes.bool())
        ctx.options, ctx.is_output, ctx.group = options, is_output, group
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):  # noqa: D102
        current, membrane, spikes = ctx.saved_tensors
        o: NAOptions = ctx.options
        delta = na_delta(
            current,
            membrane,
            spikes,
            grad_spikes,
            o.tau_m,
            o.threshold,
            o.form,
            o.min_distance,
            o.code_clip,
            o.later_width,
        )
        group: RescaleGroup | None = ctx.group
        if o.form in RESCALED_FORMS and group is not None:
            if ctx.is_output:
                group.out_mean_abs = float(delta.abs().mean())
            elif group.out_mean_abs is not None:
                delta = layer_rescale(delta, group.out_mean_abs)
        return delta, None, None, None


def _surrogate_spikes(
    current: torch.Tensor, tau_m: float, threshold: float, surrogate: Surrogate
) -> torch.Tensor:
    """The same dynamics under autograd with a surrogate derivative (reset detached, the usual
    BPTT practice): the baseline on the identical network."""
    lam = _decay(tau_m)
    carry = torch.zeros_like(current[0])
    out = []
    for t in range(current.shape[0]):
        u = lam * carry + current[t]
        s = fire(u, threshold, surrogate)
        carry = reset(u, s, threshold, 0.0, "hard", detach_reset=True)
        out.append(s)
    return torch.stack(out)


class NANeuron(nn.Module):
    """NA neuron + first-order synapse on ``[T, B, ...]`` input currents.

    Args:
        tau_m: membrane time constant in steps (paper: 5; ``math.inf`` for no leak).
        tau_s: synaptic time constant in steps (paper: 2).
        threshold: ``θ`` (paper: 1).
        output: ``"psc"`` (hidden layers: the next layer's input) or ``"spikes"`` (the output
            layer; the loss applies the synapse).
        estimator: ``"na"`` (NA backward) or ``"surrogate"`` (surrogate-gradient BPTT through
            the same dynamics, for the baseline).
        form: NA's form, ``"paper"``, ``"code"`` or ``"later"`` (see :class:`NAOptions`).
        min_distance: the guard on ``|θ - u|`` of the paper form (see :class:`NAOptions`).
        code_clip: the clip of the code form (see :class:`NAOptions`).
        later_width: ``c`` of the later form (see :class:`NAOptions`).
        surrogate: for ``estimator="surrogate"``: a surrogate or its name (default atan, α=2).
        group: a shared :class:`RescaleGroup` (code form's per-layer rescaling); set by
            :class:`NANetwork` / :func:`convert_to_na`.
    """

    def __init__(
        self,
        tau_m: float = 5.0,
        tau_s: float = 2.0,
        threshold: float = 1.0,
        output: str = "psc",
        estimator: str = "na",
        form: str = "paper",
        min_distance: float = 0.2,
        code_clip: float = 5.0,
        later_width: float = 0.2,
        surrogate: Surrogate | str | None = None,
        group: RescaleGroup | None = None,
    ) -> None:
        super().__init__()
        tau_m = check_number(tau_m, "NANeuron: tau_m", "steps")
        tau_s = check_number(tau_s, "NANeuron: tau_s", "steps")
        threshold = check_number(threshold, "NANeuron: threshold")
        min_distance = check_number(min_distance, "NANeuron: min_distance")
        code_clip = check_number(code_clip, "NANeuron: code_clip")
        later_width = check_number(later_width, "NANeuron: later_width")
        if not tau_m >= 1:
            raise ConfigError(f"NANeuron: tau_m is in steps and must be >= 1, got {tau_m}")
        if not (math.isfinite(tau_s) and tau_s >= 1):
            raise ConfigError(f"NANeuron: tau_s is in steps and must be >= 1, got {tau_s}")
        if output not in ("psc", "spikes"):
            raise ConfigError(f"NANeuron: output must be 'psc' or 'spikes', got {output!r}")
        if estimator not in ESTIMATORS:
            raise ConfigError(
                f"NANeuron: estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}"
            )
        if form not in FORMS:
            raise ConfigError(f"NANeuron: form must be one of {', '.join(FORMS)}, got {form!r}")
        if not min_distance > 0:
            raise ConfigError(f"NANeuron: min_distance must be > 0, got {min_distance}")
        if not later_width > 0:
            raise ConfigError(f"NANeuron: later_width must be > 0, got {later_width}")
        self.options = NAOptions(
            float(tau_m), float(threshold), form, min_distance, code_clip, later_width
        )
        self.tau_s = float(tau_s)
        self.output = output
        self.estimator = estimator
        self.surrogate = get_surrogate(surrogate if surrogate is not None else "atan")
        self.group = group

    def spikes(self, current: torch.Tensor) -> torch.Tensor:
        """Spikes ``[T, B, ...]`` for input currents ``[T, B, ...]`` (gradient: NA or surrogate)."""
        check_time_major(current, "NANeuron")
        o = self.options
        if self.estimator == "surrogate":
            return _surrogate_spikes(current, o.tau_m, o.threshold, self.surrogate)
        return NASpikeFunction.apply(current, o, self.output == "spikes", self.group)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """``[T, B, ...]`` currents -> PSC (``output="psc"``) or spikes (``"spikes"``)."""
        s = self.spikes(current)
        return s if self.output == "spikes" else psc(s, self.tau_s)

    def extra_repr(self) -> str:
        o = self.options
        return (
            f"tau_m={o.tau_m:g}, tau_s={self.tau_s:g}, threshold={o.threshold:g}, "
            f"output={self.output!r}, estimator={self.estimator!r}, form={o.form!r}"
        )


class SumPool2d(nn.Module):
    """The authors' pooling: a fixed-weight sum over ``kernel×kernel`` windows of the incoming
    PSCs, ``weight·Σ a`` (their ``PoolLayer`` returns 1.1 × the summed PSCs). In the authors'
    network (``pool="sum"``) its output feeds the next layer directly, with no neuron after
    it; ``pool="spiking"`` uses it as the input current of a spiking pooling layer (the
    TSSL-BP form spikeweave used before). Stateless: wrap in
    :class:`~spikeweave.layers.TimeFolded`."""

    def __init__(self, kernel: int = 2, weight: float = 1.1) -> None:
        super().__init__()
        self.kernel = int(kernel)
        self.weight = float(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.avg_pool2d(x, self.kernel) * (self.kernel**2 * self.weight)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, weight={self.weight:g}"


class InputNormalize(nn.Module):
    """``(x - mean)/std`` elementwise: the authors' mean/std normalisation of the image,
    applied to every step of ``[T, B, ...]`` (with direct encoding, the same as normalising
    the image once)."""

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        if not std > 0:
            raise ConfigError(f"InputNormalize: std must be > 0, got {std}")
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean:g}, std={self.std:g}"


class InputSynapse(nn.Module):
    """The first-order synapse on the network input, ``[T, B, ...] -> [T, B, ...]`` PSC
    (:func:`psc`): in the authors' code the input passes through it before the first layer,
    like every other layer's spikes."""

    def __init__(self, tau_s: float = 2.0) -> None:
        super().__init__()
        self.tau_s = float(check_number(tau_s, "InputSynapse: tau_s", "steps"))
        if not (math.isfinite(self.tau_s) and self.tau_s >= 1):
            raise ConfigError(f"InputSynapse: tau_s is in steps and must be >= 1, got {tau_s}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        check_time_major(x, "InputSynapse")
        return psc(x, self.tau_s)

    def extra_repr(self) -> str:
        return f"tau_s={self.tau_s:g}"


_LAYER = re.compile(r"^(?:(\d+)C(\d+)|P(\d+)|(\d+))$")


class NANetwork(nn.Sequential):
    """A feed-forward NA network from a spec such as ``"15C5-P2-40C5-P2-300"``, built as the
    authors' code builds it (the defaults).

    ``nC k``: conv with ``n`` channels, kernel ``k``; ``Pk``: sum pooling (:class:`SumPool2d`);
    ``n``: fully connected. The output layer (``num_classes`` neurons) is appended. Every conv
    and fully connected layer is a stateless map (time folded) followed by an
    :class:`NANeuron`; the last neuron returns spikes, so
    ``[T, B, *input_shape] -> spikes [T, B, num_classes]``.

    Args:
        spec: the hidden layers.
        input_shape: ``(C, H, W)`` or ``(features,)``.
        num_classes: output neurons.
        padding: ``"valid"`` or ``"same"`` for the convolutions.
        pool: ``"sum"`` (authors: ``weight·Σ`` of the PSCs straight into the next layer, no
            neuron) or ``"spiking"`` (the sum is the current of a spiking pooling layer).
        pool_weight: weight of :class:`SumPool2d`.
        input_psc: pass the input through the synapse (:class:`InputSynapse`) first, as the
            authors do; False feeds the (encoded) input straight to the first layer.
        input_mean: the input is normalised to ``(x - input_mean)/input_std`` first
            (:class:`InputNormalize`; the defaults leave it unchanged).
        input_std: see ``input_mean``.
        init: ``"authors"`` (PyTorch's default for convolutions, kaiming-normal for linear
            layers) or ``"default"`` (PyTorch's default everywhere).
        bias: give conv and linear layers biases (authors: none).
        init_scale: multiplies the initial weights (authors: 1).
        neuron: keyword arguments for every :class:`NANeuron`.
    """

    def __init__(
        self,
        spec: str,
        input_shape: Sequence[int],
        num_classes: int,
        padding: str = "valid",
        pool: str = "sum",
        pool_weight: float = 1.1,
        input_psc: bool = True,
        input_mean: float = 0.0,
        input_std: float = 1.0,
        init: str = "authors",
        bias: bool = False,
        init_scale: float = 1.0,
        **neuron: Any,
    ) -> None:
        if padding not in ("valid", "same"):
            raise ConfigError(f"NANetwork: padding must be 'valid' or 'same', got {padding!r}")
        if pool not in POOLS:
            raise ConfigError(f"NANetwork: pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if init not in INITS:
            raise ConfigError(f"NANetwork: init must be one of {', '.join(INITS)}, got {init!r}")
        self.spec = spec
        group = RescaleGroup()
        shape = list(input_shape)
        layers: list[nn.Module] = []
        if input_mean != 0.0 or input_std != 1.0:
            layers.append(InputNormalize(input_mean, input_std))
        if input_psc:
            layers.append(InputSynapse(neuron.get("tau_s", 2.0)))
        linears: list[nn.Linear] = []
        tokens = [t for t in spec.split("-") if t] + [str(num_classes)]
        for i, token in enumerate(tokens):
            m = _LAYER.match(token)
            if m is None:
                raise ConfigError(
                    f"NANetwork: cannot read layer {token!r} in {spec!r}; use nCk (conv), "
                    "Pk (pooling) or n (fully connected), e.g. 15C5-P2-40C5-P2-300"
                )
            conv_c, conv_k, pool_k, fc = m.groups()
            if conv_c is not None or pool_k is not None:
                if len(shape) != 3:
                    raise ConfigError(
                        f"NANetwork: layer {token!r} needs image input (C, H, W); the input "
                        f"there is {tuple(shape)}"
                    )
            spiking = True
            if conv_c is not None:
                k = int(conv_k)
                pad = k // 2 if padding == "same" else 0
                h, w = shape[1] + 2 * pad - k + 1, shape[2] + 2 * pad - k + 1
                if min(h, w) < 1:
                    raise ConfigError(f"NANetwork: input {tuple(shape)} too small for {token}")
                stateless: nn.Module = nn.Conv2d(shape[0], int(conv_c), k, padding=pad, bias=bias)
                shape = [int(conv_c), h, w]
            elif pool_k is not None:
                k = int(pool_k)
                if min(shape[1], shape[2]) < k:
                    raise ConfigError(f"NANetwork: input {tuple(shape)} too small for {token}")
                stateless = SumPool2d(k, pool_weight)
                shape = [shape[0], shape[1] // k, shape[2] // k]
                spiking = pool == "spiking"
            else:
                width = math.prod(shape)
                lin = nn.Linear(width, int(fc), bias=bias)
                linears.append(lin)
                stateless = lin if len(shape) == 1 else nn.Sequential(nn.Flatten(), lin)
                shape = [int(fc)]
            last = i == len(tokens) - 1
            layers.append(TimeFolded(stateless))
            if spiking:
                layers.append(NANeuron(output="spikes" if last else "psc", group=group, **neuron))
        super().__init__(*layers)
        with torch.no_grad():
            if init == "authors":
                for lin in linears:
                    nn.init.kaiming_normal_(lin.weight)  # fan-in, gain √2, as the authors' code
            if init_scale != 1.0:
                for p in self.parameters():
                    if p.dim() > 1:
                        p.mul_(init_scale)

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"


def na_network(name: str, input_shape: Sequence[int], num_classes: int, **kwargs: Any) -> NANetwork:
    """One of the paper's networks by name (``NETWORKS``: ``na-mnist``, ``na-cifar10``) or a
    spec string; ``kwargs`` as :class:`NANetwork` (neuron options included)."""
    spec = name
    if name in NETWORKS:
        spec, padding = NETWORKS[name]
        kwargs.setdefault("padding", padding)
    return NANetwork(spec, input_shape, num_classes, **kwargs)


def convert_to_na(model: nn.Module, **neuron: Any) -> nn.Module:
    """Replace every spiking neuron (LIF, IF) of ``model`` in place with an :class:`NANeuron`
    and return the model.

    ``tau_m`` and ``θ`` come from the neuron it replaces (LIF's ``tau``; IF: no leak) unless
    given; hidden neurons output their PSC, the last one its spikes. Stateless layers, pooling
    and readout are kept (e.g. max pooling then acts on PSCs: spikeweave's reading for models
    that are not the paper's).
    """
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, SpikingNeuron)
    ]
    if not targets:
        raise ConfigError(
            f"convert_to_na: {type(model).__name__} has no spiking neurons to convert; "
            "NA needs a spiking model (neuron lif or if)"
        )
    group = RescaleGroup()
    for i, (parent, name, child) in enumerate(targets):
        kw = dict(neuron)
        if isinstance(child, LIF):
            kw.setdefault("tau_m", child.tau)
        elif isinstance(child, IF):
            kw.setdefault("tau_m", math.inf)
        kw.setdefault("threshold", child.threshold)
        out = "spikes" if i == len(targets) - 1 else "psc"
        setattr(parent, name, NANeuron(output=out, group=group, **kw))
    return model


# --------------------------------------------------------------------------------------------
# The training method
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NAMethodOptions:
    """Options of ``--method na`` (a ``[method.na]`` table).

    Attributes:
        network: a name from ``NETWORKS`` or a spec string such as ``"15C5-P2-40C5-P2-300"``
            (then the config's ``model`` is not used); None converts the config's model's
            neurons (:func:`convert_to_na`).
        estimator: ``"na"`` or ``"surrogate"`` (the same network, loss and step with
            surrogate-gradient BPTT: the baseline of the ``na-vs-bptt`` experiment).
        form, min_distance, code_clip, later_width: NA's form (see :class:`NAOptions`);
            ``form="later"`` is the authors' later weighting ``c/((u - θ)² + c)``.
        tau_m: membrane time constant in steps (None: 5 for a paper network, the converted
            neurons' ``tau`` otherwise); ``tau_s``: synaptic time constant in steps (paper 2).
        weight_clamp: weights are clamped to ``±weight_clamp`` after every step (paper 4;
            0 disables).
        pool, pool_weight, input_psc, input_mean, input_std, init, bias, init_scale: the
            network's construction (see :class:`NANetwork`; the defaults are the authors').
        surrogate, alpha: the ``"surrogate"`` estimator's surrogate and its width (None: the
            config's ``surrogate`` / ``alpha``).
    """

    network: str | None = None
    estimator: str = "na"
    form: str = "paper"
    tau_m: float | None = None
    tau_s: float = 2.0
    min_distance: float = 0.2
    code_clip: float = 5.0
    later_width: float = 0.2
    weight_clamp: float = 4.0
    pool: str = "sum"
    pool_weight: float = 1.1
    input_psc: bool = True
    input_mean: float = 0.0
    input_std: float = 1.0
    init: str = "authors"
    bias: bool = False
    init_scale: float = 1.0
    surrogate: str | None = None
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ConfigError(
                f"[method.na] estimator must be one of {', '.join(ESTIMATORS)}, got "
                f"{self.estimator!r}"
            )
        if self.form not in FORMS:
            raise ConfigError(
                f"[method.na] form must be one of {', '.join(FORMS)}, got {self.form!r}"
            )
        if self.pool not in POOLS:
            raise ConfigError(
                f"[method.na] pool must be one of {', '.join(POOLS)}, got {self.pool!r}"
            )
        if self.init not in INITS:
            raise ConfigError(
                f"[method.na] init must be one of {', '.join(INITS)}, got {self.init!r}"
            )
        if self.weight_clamp < 0 or self.init_scale <= 0:
            raise ConfigError("[method.na] weight_clamp must be >= 0 and init_scale > 0")
        if self.later_width <= 0 or self.input_std <= 0:
            raise ConfigError("[method.na] later_width and input_std must be > 0")


@METHODS.register("na")
class NAMethod(TrainingMethod):
    """``--method na``: the PSC kernel loss and NA gradients, AdamW step, weights clamped.

    ``build_model`` builds one of the paper's networks (``network`` set) or converts the
    config's model's neurons; the run's loss is :func:`kernel_loss` (train and test), and the
    prediction is the output neuron with the most spikes.
    """

    name = "na"
    Options = NAMethodOptions

    def _neuron_kwargs(self, config: Any) -> dict[str, Any]:
        o = self.options
        kw: dict[str, Any] = dict(
            tau_s=o.tau_s,
            estimator=o.estimator,
            form=o.form,
            min_distance=o.min_distance,
            code_clip=o.code_clip,
            later_width=o.later_width,
            # the config's alpha applies unless the method sets its own, so a config-level
            # sweep (experiments.tuning.sweep_lr_alpha) reaches the surrogate baseline
            surrogate=get_surrogate(
                o.surrogate or config.surrogate, o.alpha if o.alpha is not None else config.alpha
            ),
            threshold=config.threshold,
        )
        if o.tau_m is not None:
            kw["tau_m"] = o.tau_m
        return kw

    def model_fields(self) -> frozenset[str] | None:
        """All of them when converting the config's model; none for a paper network."""
        return None if self.options.network is None else frozenset()

    def build_model(self, config: Any, task: Any) -> nn.Module:  # noqa: D102
        kw = self._neuron_kwargs(config)
        if self.options.network is None:
            kw.pop("threshold")  # converted neurons keep their own threshold
            return convert_to_na(default_model(config, task), **kw)
        kw.setdefault("tau_m", 5.0)
        return na_network(
            self.options.network,
            task.spec.input_shape,
            task.spec.num_outputs,
            pool=self.options.pool,
            pool_weight=self.options.pool_weight,
            input_psc=self.options.input_psc,
            input_mean=self.options.input_mean,
            input_std=self.options.input_std,
            init=self.options.init,
            bias=self.options.bias,
            init_scale=self.options.init_scale,
            **kw,
        )

    def loss(self, task: Any) -> Loss:
        """The PSC kernel loss of output spikes ``[T, B, classes]`` (methods.md §2)."""
        tau_s = self.options.tau_s
        return Loss(f"PSC kernel loss (τ_s={tau_s:g})", lambda out, y: kernel_loss(out, y, tau_s))

    def train_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor):  # noqa: D102
        out = ctx.forward(x)
        loss = ctx.loss(out, y)
        gradient_step(ctx, loss)
        clamp = self.options.weight_clamp
        if clamp > 0:
            with torch.no_grad():
                for p in ctx.model.parameters():
                    if p.dim() > 1:
                        p.clamp_(-clamp, clamp)
        return out.detach(), loss.detach()
