"""Model builders that take a neuron factory; ``neuron=None`` gives the ReLU ANN twin."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from ..errors import ConfigError
from ..layers import NeuronFactory
from .convnet import ConvNet
from .mlp import MLP
from .readout import PopulationReadout

__all__ = ["MLP", "ConvNet", "PopulationReadout", "MODELS", "build_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "convnet": ConvNet}


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    neuron: NeuronFactory | None,
    **kwargs,
) -> nn.Module:
    """Build the architecture ``name`` (one of ``MODELS``) for the given input and classes."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return cls(input_shape, num_classes, neuron, **kwargs)
