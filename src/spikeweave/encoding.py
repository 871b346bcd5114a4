"""Encoders: static inputs ``[B, ...]`` to time-major inputs ``[T, B, ...]``.

Pixel intensities are expected in ``[0, 1]`` for the rate and latency codes. Every encoder
refuses NaN and inf with an ``InputError``: a comparison with NaN is false, so the rate and
latency codes would otherwise turn a corrupt pixel into silence without a word.
"""

from __future__ import annotations

import torch

from .errors import ConfigError, InputError
from .registry import Registry

__all__ = ["direct", "poisson", "latency", "ENCODERS", "encode"]


def _check(x: torch.Tensor, T: int, who: str) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ConfigError(f"{who}: the number of steps T must be a positive int, got {T!r}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{who}: expected a floating-point tensor [B, ...], got {got}")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{who}: input contains NaN or inf; check the data before encoding")


def direct(x: torch.Tensor, T: int) -> torch.Tensor:
    """Repeat the analog input on every step: ``[B, ...] -> [T, B, ...]`` (a view, no copy)."""
    _check(x, T, "direct encoding")
    return x.unsqueeze(0).expand(T, *x.shape)


def _check_unit_range(x: torch.Tensor, who: str) -> None:
    if bool((x < 0).any()) or bool((x > 1).any()):
        raise InputError(f"{who}: intensities must lie in [0, 1]; rescale the input first")


def poisson(x: torch.Tensor, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rate code: at each step a neuron spikes with probability equal to its intensity."""
    _check(x, T, "poisson encoding")
    _check_unit_range(x, "poisson encoding")
    u = torch.rand((T, *x.shape), dtype=x.dtype, device=x.device, generator=generator)
    return (u < x).to(x.dtype)


def latency(x: torch.Tensor, T: int, threshold: float = 0.01) -> torch.Tensor:
    """Time-to-first-spike code: one spike per input, earlier for brighter inputs.

    Intensity 1 fires at step 0, intensity ``threshold`` at step ``T-1``, linearly in between;
    inputs below ``threshold`` never fire.
    """
    _check(x, T, "latency encoding")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0.0 <= threshold < 1.0
    ):
        raise ConfigError(
            f"latency encoding: threshold must be a number in [0, 1), got {threshold!r}"
        )
    _check_unit_range(x, "latency encoding")
    step = torch.round((1.0 - x) / (1.0 - threshold) * (T - 1)).clamp(0, T - 1).long()
    t = torch.arange(T, device=x.device).view(T, *([1] * x.dim()))
    return ((t == step.unsqueeze(0)) & (x >= threshold).unsqueeze(0)).to(x.dtype)


ENCODERS: Registry = Registry("encoder")
ENCODERS.register("direct", direct, help="the analog input repeated on every step")
ENCODERS.register("poisson", poisson, help="rate code: spike with probability = intensity")
ENCODERS.register("latency", latency, help="one spike per input, earlier when brighter")


def encode(name: str, x: torch.Tensor, T: int, **kwargs) -> torch.Tensor:
    """Encode with the encoder called ``name`` (one of ``ENCODERS``)."""
    return ENCODERS.get(name)(x, T, **kwargs)
