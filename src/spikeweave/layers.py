"""Stateless layers on time-major tensors, and spiking blocks built from them.

Stateless layers (Linear, Conv, BatchNorm, pooling, dropout) do not walk through time: they
run once on ``[T·B, ...]``, the single biggest speed win on any device. Folding a batch that
was never encoded (``[B, C, H, W]`` instead of ``[T, B, C, H, W]``) would either fail deep
inside the layer or, worse, treat the batch as time; :class:`TimeFolded` refuses it up front
wherever the wrapped layer's type fixes the rank it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ConfigError, InputError

__all__ = ["TimeFolded", "SpikingLinear", "SpikingConv2d", "NeuronFactory"]

NeuronFactory = Callable[[], nn.Module]


@dataclass(frozen=True)
class _Rank:
    """The ranks a time-major input to a layer may have: ``low`` to ``high`` (None: any)."""

    low: int
    high: int | None
    layout: str

    def allows(self, rank: int) -> bool:
        return self.low <= rank and (self.high is None or rank <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"rank >= {self.low}"
        if self.high == self.low:
            return f"rank {self.low}"
        return f"rank {self.low} to {self.high}"


_ANY = _Rank(2, None, "[T, B, ...]")


def _time_major_rank(module: nn.Module) -> _Rank:
    """The rank of time-major input ``module`` needs; rank >= 2 for layer types not listed.

    Only layer types whose input rank is fixed are listed. Pooling and dropout also accept
    unbatched inputs, so a missing axis does not make them fail: they are left unchecked.
    """
    if isinstance(module, nn.Sequential):
        return _time_major_rank(module[0]) if len(module) else _ANY
    if isinstance(module, nn.modules.conv._ConvNd):
        d = len(module.kernel_size)
        spatial = {1: "L", 2: "H, W", 3: "D, H, W"}.get(d)
        return _Rank(d + 3, d + 3, f"[T, B, C, {spatial}]") if spatial else _ANY
    if isinstance(module, nn.BatchNorm1d):
        return _Rank(3, 4, "[T, B, C] or [T, B, C, L]")
    if isinstance(module, nn.BatchNorm2d):
        return _Rank(5, 5, "[T, B, C, H, W]")
    if isinstance(module, nn.BatchNorm3d):
        return _Rank(6, 6, "[T, B, C, D, H, W]")
    if isinstance(module, nn.Linear):
        return _Rank(3, None, "[T, B, ..., features]")  # Linear maps the last axis
    if isinstance(module, nn.Flatten) and module.start_dim >= 0:
        return _Rank(module.start_dim + 2, None, "[T, B, ...]")
    return _ANY


class TimeFolded(nn.Module):
    """Run a stateless ``module`` on ``x [T, B, ...]`` by folding time into the batch.

    ``y = module(x.reshape(T·B, ...)).reshape(T, B, ...)``. Dropout therefore draws a fresh
    mask for every step; BatchNorm normalises over time and batch together.

    An input of the wrong rank for ``module`` (e.g. a 4-D ``[B, C, H, W]`` batch for a
    ``Conv2d``, which needs ``[T, B, C, H, W]``; ``[B, features]`` for a ``Linear`` or
    ``Flatten``) raises ``InputError``: the usual cause is a batch that was never encoded.

    Args:
        module: the stateless layer.
        sample_rank: the rank of one sample, e.g. 3 for ``[C, H, W]`` images, when the layer
            type alone does not fix it (a network's first ``Flatten``: ``[B, C, H, W]`` is
            otherwise read as ``T = B``). The input must then have rank ``sample_rank + 2``.
            None (default): only the layer type's own rule applies.
    """

    def __init__(self, module: nn.Module, sample_rank: int | None = None) -> None:
        super().__init__()
        if sample_rank is not None and (
            isinstance(sample_rank, bool) or not isinstance(sample_rank, int) or sample_rank < 0
        ):
            raise ConfigError(
                f"TimeFolded: sample_rank must be an int >= 0 or None, got {sample_rank!r}"
            )
        self.module = module
        self.sample_rank = sample_rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        self._check_rank(x)
        T, B = x.shape[:2]
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, (T, B))

    def _check_rank(self, x: torch.Tensor) -> None:
        who = f"TimeFolded({type(self.module).__name__})"
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{who}: expected a torch.Tensor [T, B, ...], got {type(x).__name__}")
        if self.sample_rank is None:
            need = _time_major_rank(self.module)
        else:
            rank = self.sample_rank + 2
            need = _Rank(rank, rank, "[T, B, *sample]")
        if need.allows(x.dim()):
            return
        # one axis short of what the layer needs: almost always a batch that was never encoded
        hint = (
            "; encode first (e.g. spikeweave.encoding.direct(x, T))"
            if x.dim() == need.low - 1 or x.dim() < 2
            else ""
        )
        raise InputError(
            f"{who}: expected {need.layout} ({need}, time-major), got shape {tuple(x.shape)}{hint}"
        )

    def extra_repr(self) -> str:
        extra = "" if self.sample_rank is None else f", sample_rank={self.sample_rank}"
        return "time folded into batch" + extra


class SpikingLinear(nn.Sequential):
    """``Linear(in, out)`` on every step, then a spiking neuron: ``[T, B, in] -> [T, B, out]``."""

    def __init__(
        self, in_features: int, out_features: int, neuron: NeuronFactory, bias: bool = True
    ) -> None:
        super().__init__(TimeFolded(nn.Linear(in_features, out_features, bias=bias)), neuron())


class SpikingConv2d(nn.Sequential):
    """Conv2d (+ BatchNorm2d) (+ MaxPool2d) on every step, then a spiking neuron.

    ``[T, B, C_in, H, W] -> [T, B, C_out, H', W']``. Pooling comes after the neuron so that
    max-pooling sees spikes, as in most SNN conv nets.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        neuron: NeuronFactory,
        padding: int | None = None,
        batch_norm: bool = True,
        pool: int | None = None,
    ) -> None:
        padding = kernel_size // 2 if padding is None else padding
        conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, bias=not batch_norm
        )
        stateless: list[nn.Module] = [conv]
        if batch_norm:
            stateless.append(nn.BatchNorm2d(out_channels))
        layers: list[nn.Module] = [TimeFolded(nn.Sequential(*stateless)), neuron()]
        if pool:
            layers.append(TimeFolded(nn.MaxPool2d(pool)))
        super().__init__(*layers)
