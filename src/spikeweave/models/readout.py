"""Population readout: several output neurons vote for each class."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PopulationReadout"]


class PopulationReadout(nn.Module):
    """Average groups of ``population`` consecutive outputs: ``[T, B, C·P] -> [T, B, C]``.

    With few steps a single output neuron per class can only fire ``0..T`` times, so classes
    tie often; a population per class makes the rate code finer (``0..T·P`` levels).
    """

    def __init__(self, num_classes: int, population: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.population = population

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.unflatten(-1, (self.num_classes, self.population)).mean(-1)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, population={self.population}"
