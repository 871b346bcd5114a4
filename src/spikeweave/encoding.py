"""Encoders: static inputs ``[B, ...]`` to time-major inputs ``[T, B, ...]``.

Pixel intensities are expected in ``[0, 1]`` for the rate and latency codes. Every encoder
refuses NaN and inf with an ``InputError``: a comparison with NaN is false, so the rate and
latency codes would otherwise turn a corrupt pixel into silence without a word.
"""

from __future__ import annotations

import torch

from .errors import ConfigError, InputError
from .registry import Registry

__all__ = ["direct", "poisson", "latency", "ENCODERS", "encode", "encode_window"]


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
    _check_latency(x, T, threshold)
    return _latency_steps(x, T, threshold, 0, T)


def _check_latency(x: torch.Tensor, T: int, threshold: float) -> None:
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


def _latency_steps(x: torch.Tensor, T: int, threshold: float, start: int, stop: int):
    """Steps ``start..stop-1`` of the latency code over ``T`` steps (checked inputs)."""
    step = torch.round((1.0 - x) / (1.0 - threshold) * (T - 1)).clamp(0, T - 1).long()
    t = torch.arange(start, stop, device=x.device).view(stop - start, *([1] * x.dim()))
    return ((t == step.unsqueeze(0)) & (x >= threshold).unsqueeze(0)).to(x.dtype)


ENCODERS: Registry = Registry("encoder")
ENCODERS.register("direct", direct, help="the analog input repeated on every step")
ENCODERS.register("poisson", poisson, help="rate code: spike with probability = intensity")
ENCODERS.register("latency", latency, help="one spike per input, earlier when brighter")


def encode(name: str, x: torch.Tensor, T: int, **kwargs) -> torch.Tensor:
    """Encode with the encoder called ``name`` (one of ``ENCODERS``)."""
    return ENCODERS.get(name)(x, T, **kwargs)


def encode_window(
    name: str, x: torch.Tensor, T: int, start: int, stop: int, **kwargs
) -> torch.Tensor:
    """Steps ``start .. stop-1`` of encoding ``x [B, ...]`` over ``T`` steps with the encoder
    ``name``: ``[stop - start, B, ...]``, for streaming a sequence in chunks.

    Consecutive windows concatenate to ``encode(name, x, T)`` bit for bit: ``direct`` and
    ``latency`` are deterministic (latency's spike step depends on ``T``, hence the argument);
    ``poisson`` draws ``stop - start`` steps from ``generator``, and a CPU generator advances
    one number per element, so windows from 0 to ``T`` drawn in order from a generator give
    the same spikes as one call seeded alike (a CUDA generator does not: draw on the CPU).
    Other encoders are refused: whether they carry anything from step to step is unknown.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ConfigError(f"encode_window: the number of steps T must be a positive int, got {T!r}")
    for value, what in ((start, "start"), (stop, "stop")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"encode_window: {what} must be an int, got {value!r}")
    if not 0 <= start < stop <= T:
        raise InputError(
            f"encode_window: need 0 <= start < stop <= T={T}, got start={start}, stop={stop}"
        )
    fn = ENCODERS.get(name)
    if fn is direct:
        return direct(x, stop - start, **kwargs)
    if fn is poisson:
        return poisson(x, stop - start, **kwargs)
    if fn is latency:
        return _latency_window(x, T, start, stop, **kwargs)
    raise ConfigError(
        f"encoder {name!r} cannot be encoded in windows; stream the encoded sequence instead"
    )


def _latency_window(
    x: torch.Tensor, T: int, start: int, stop: int, threshold: float = 0.01
) -> torch.Tensor:
    _check_latency(x, T, threshold)
    return _latency_steps(x, T, threshold, start, stop)
