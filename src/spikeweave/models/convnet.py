"""A small conv net, spiking or (with ``neuron=None``) a ReLU ANN of the same shape."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from ..errors import ConfigError
from ..layers import NeuronFactory, TimeFolded
from .readout import PopulationReadout

__all__ = ["ConvNet"]


class ConvNet(nn.Sequential):
    """``[T, B, C, H, W] -> [T, B, num_classes]``.

    ``len(channels)`` blocks of Conv3x3-BatchNorm-neuron-pool (2×2 max, or average with
    ``pool="avg"``), then Linear(hidden)-neuron,
    then Linear(num_classes·population)-neuron averaged per class. With ``neuron=None``: ReLU
    everywhere and a linear output (the ANN baseline of the same architecture). Layers are
    named ``conv1``, ``spike1``, ``pool1``, ..., ``fc1``, ``spike3``, ``fc_out``, ``spike_out``
    (``act*`` in the ANN).
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
        pool: str = "max",
    ) -> None:
        pools = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
        if pool not in pools:
            raise ConfigError(f"ConvNet: pool must be 'max' or 'avg', got {pool!r}")
        if len(input_shape) != 3:
            raise ConfigError(
                f"ConvNet needs image inputs shaped (C, H, W), got {tuple(input_shape)}; "
                "use the 'mlp' model for flat inputs"
            )
        act = neuron if neuron is not None else nn.ReLU
        tag = "spike" if neuron is not None else "act"
        c, h, w = input_shape
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, out in enumerate(channels, start=1):
            if min(h, w) < 2:
                raise ConfigError(
                    f"ConvNet: input {tuple(input_shape)} is too small for "
                    f"{len(channels)} pooling blocks"
                )
            layers[f"conv{i}"] = TimeFolded(
                nn.Sequential(nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out))
            )
            layers[f"{tag}{i}"] = act()
            layers[f"pool{i}"] = TimeFolded(pools[pool](2))
            c, h, w = out, h // 2, w // 2
        n = len(channels) + 1
        layers["flatten"] = TimeFolded(nn.Flatten())
        layers["fc1"] = TimeFolded(nn.Linear(c * h * w, hidden))
        layers[f"{tag}{n}"] = act()
        if dropout:
            layers["dropout"] = TimeFolded(nn.Dropout(dropout))
        layers["fc_out"] = TimeFolded(nn.Linear(hidden, num_classes * population))
        if neuron is not None:
            layers["spike_out"] = neuron()
        layers["readout"] = PopulationReadout(num_classes, population)
        super().__init__(layers)
