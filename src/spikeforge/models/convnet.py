"""A small conv net, spiking or (with ``neuron=None``) a ReLU ANN of the same shape."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..errors import ConfigError
from ..layers import NeuronFactory, TimeFolded
from .readout import PopulationReadout

__all__ = ["ConvNet"]


class ConvNet(nn.Sequential):
    """``[T, B, C, H, W] -> [T, B, num_classes]``.

    ``len(channels)`` blocks of Conv3x3-BatchNorm-neuron-MaxPool2, then Linear(hidden)-neuron,
    then Linear(num_classes·population)-neuron averaged per class. With ``neuron=None``: ReLU
    everywhere and a linear output (the ANN baseline of the same architecture).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        neuron: NeuronFactory | None,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        population: int = 10,
        dropout: float = 0.0,
    ) -> None:
        if len(input_shape) != 3:
            raise ConfigError(
                f"ConvNet needs image inputs shaped (C, H, W), got {tuple(input_shape)}; "
                "use the 'mlp' model for flat inputs"
            )
        act = neuron if neuron is not None else nn.ReLU
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            if min(h, w) < 2:
                raise ConfigError(
                    f"ConvNet: input {tuple(input_shape)} is too small for "
                    f"{len(channels)} pooling blocks"
                )
            layers += [
                TimeFolded(
                    nn.Sequential(nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out))
                ),
                act(),
                TimeFolded(nn.MaxPool2d(2)),
            ]
            c, h, w = out, h // 2, w // 2
        layers += [TimeFolded(nn.Flatten()), TimeFolded(nn.Linear(c * h * w, hidden)), act()]
        if dropout:
            layers.append(TimeFolded(nn.Dropout(dropout)))
        layers.append(TimeFolded(nn.Linear(hidden, num_classes * population)))
        if neuron is not None:
            layers.append(neuron())
        layers.append(PopulationReadout(num_classes, population))
        super().__init__(*layers)
