"""Multi-layer perceptron, spiking or (with ``neuron=None``) a ReLU ANN of the same shape."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from ..errors import ConfigError
from ..layers import NeuronFactory, TimeFolded
from .readout import PopulationReadout

__all__ = ["MLP"]


class MLP(nn.Sequential):
    """``[T, B, *input_shape] -> [T, B, num_classes]``.

    Hidden layers are Linear (+ BatchNorm, which keeps spiking layers from starting silent)
    + neuron; the output layer is Linear + neuron over ``num_classes·population`` units averaged
    per class. With ``neuron=None`` the hidden neurons are ReLU and the output is linear
    (logits), giving the ANN baseline. ``readout="linear"`` drops the output neuron: the
    output is a linear function of the last hidden layer's spikes at each step (regression).
    Layers are named ``fc1``, ``spike1``, ..., ``fc_out``, ``spike_out`` (``act*`` in the ANN).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        neuron: NeuronFactory | None,
        hidden: Sequence[int] = (256, 128),
        population: int = 10,
        dropout: float = 0.0,
        batch_norm: bool = True,
        readout: str = "spikes",
    ) -> None:
        if readout not in ("spikes", "linear"):
            raise ConfigError(f"MLP: readout must be 'spikes' or 'linear', got {readout!r}")
        act = neuron if neuron is not None else nn.ReLU
        tag = "spike" if neuron is not None else "act"
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            flatten=TimeFolded(nn.Flatten(), sample_rank=len(input_shape))
        )
        width = math.prod(input_shape)
        for i, h in enumerate(hidden, start=1):
            linear = nn.Linear(width, h, bias=not batch_norm)
            layers[f"fc{i}"] = TimeFolded(
                nn.Sequential(linear, nn.BatchNorm1d(h)) if batch_norm else linear
            )
            layers[f"{tag}{i}"] = act()
            if dropout:
                layers[f"dropout{i}"] = TimeFolded(nn.Dropout(dropout))
            width = h
        layers["fc_out"] = TimeFolded(nn.Linear(width, num_classes * population))
        if neuron is not None and readout == "spikes":
            layers["spike_out"] = neuron()
        layers["readout"] = PopulationReadout(num_classes, population)
        super().__init__(layers)
