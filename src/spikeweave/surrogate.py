"""Surrogate gradients: the Heaviside step forward, a smooth derivative backward.

Every surrogate ``g`` fires ``H(x) = 1 if x >= 0 else 0`` in the forward pass and uses
``g'(x)`` (which integrates to 1 over the real line) in the backward pass. ``alpha`` sets
the sharpness: larger ``alpha`` means a taller, narrower derivative. ``derivative`` is a pure
function of a tensor so fused kernels can call it directly.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from .errors import ConfigError
from .registry import Registry

__all__ = [
    "Surrogate",
    "Sigmoid",
    "Atan",
    "FastSigmoid",
    "Rectangular",
    "Triangle",
    "heaviside",
    "get_surrogate",
    "SURROGATES",
]


SURROGATES: Registry[type[Surrogate]] = Registry("surrogate")


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """``H(x) = 1`` where ``x >= 0``, else 0, in the dtype of ``x``."""
    return (x >= 0).to(x.dtype)


class _SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(x), None


class Surrogate(ABC):
    """A spike nonlinearity: Heaviside forward, ``derivative`` backward.

    Calling a surrogate on a tensor ``x`` (the membrane potential minus threshold) returns
    spikes in ``x``'s dtype whose gradient is ``derivative(x)``.
    """

    default_alpha: float = 1.0

    def __init__(self, alpha: float | None = None) -> None:
        if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, int | float)):
            raise ConfigError(
                f"{type(self).__name__}: alpha must be a positive number, got {alpha!r}"
            )
        alpha = self.default_alpha if alpha is None else float(alpha)
        if not math.isfinite(alpha) or alpha <= 0:
            raise ConfigError(
                f"{type(self).__name__}: alpha must be a positive finite number, got {alpha}"
            )
        self.alpha = alpha

    @abstractmethod
    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """``g'(x)``, elementwise, same shape and dtype as ``x``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _SpikeFunction.apply(x, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha:g})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.alpha == other.alpha  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.alpha))


@SURROGATES.register("sigmoid")
class Sigmoid(Surrogate):
    """``g'(x) = α·σ(αx)·(1 − σ(αx))``; default ``α = 4``."""

    default_alpha = 4.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        sg = torch.sigmoid(self.alpha * x)
        return self.alpha * sg * (1.0 - sg)


@SURROGATES.register("atan")
class Atan(Surrogate):
    """``g'(x) = (α/2) / (1 + (π/2·α·x)²)``; default ``α = 2``."""

    default_alpha = 2.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x).square())


@SURROGATES.register("fast-sigmoid")
class FastSigmoid(Surrogate):
    """SuperSpike's ``g'(x) = (α/2) / (1 + α|x|)²``; default ``α = 10``."""

    default_alpha = 10.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (self.alpha / 2) / (1 + self.alpha * x.abs()).square()


@SURROGATES.register("rectangular")
class Rectangular(Surrogate):
    """``g'(x) = α`` where ``|x| < 1/(2α)``, else 0; default ``α = 1``."""

    default_alpha = 1.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (x.abs() < 0.5 / self.alpha).to(x.dtype) * self.alpha


@SURROGATES.register("triangle")
class Triangle(Surrogate):
    """``g'(x) = α·max(0, 1 − α|x|)``; default ``α = 1``."""

    default_alpha = 1.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.alpha * (1 - self.alpha * x.abs()).clamp_min(0)


def get_surrogate(spec: str | Surrogate, alpha: float | None = None) -> Surrogate:
    """A surrogate from an instance or a name in ``SURROGATES`` (e.g. ``"atan"``)."""
    if isinstance(spec, Surrogate):
        return spec
    return SURROGATES.get(spec)(alpha)
