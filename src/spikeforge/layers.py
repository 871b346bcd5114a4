"""Stateless layers on time-major tensors, and spiking blocks built from them.

Stateless layers (Linear, Conv, BatchNorm, pooling, dropout) do not walk through time: they
run once on ``[T·B, ...]``, the single biggest speed win on any device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .errors import InputError

__all__ = ["TimeFolded", "SpikingLinear", "SpikingConv2d", "NeuronFactory"]

NeuronFactory = Callable[[], nn.Module]


class TimeFolded(nn.Module):
    """Run a stateless ``module`` on ``x [T, B, ...]`` by folding time into the batch.

    ``y = module(x.reshape(T·B, ...)).reshape(T, B, ...)``. Dropout therefore draws a fresh
    mask for every step; BatchNorm normalises over time and batch together.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() < 2:
            raise InputError(
                f"TimeFolded({type(self.module).__name__}): expected [T, B, ...], got shape "
                f"{tuple(x.shape)}"
            )
        T, B = x.shape[:2]
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, (T, B))

    def extra_repr(self) -> str:
        return "time folded into batch"


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
