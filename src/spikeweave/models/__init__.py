"""Model builders that take a neuron factory; ``neuron=None`` gives the ReLU ANN twin.

``MODELS`` maps a model name to its class; every builder takes
``(input_shape, num_classes, neuron, **options)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..layers import NeuronFactory
from ..lazy import lazy_exports
from ..registry import Registry
from .convnet import ConvNet
from .mlp import MLP
from .readout import PopulationReadout

__all__ = [
    "MLP",
    "ConvNet",
    "PopulationReadout",
    "MODELS",
    "build_model",
    "StreamState",
    "stream",
    "streamed_outputs",
]

# Streaming a trained network step by step serves loaded runs, not training: imported on use.
__getattr__, __dir__ = lazy_exports(
    __name__, {name: ".streaming" for name in ("StreamState", "stream", "streamed_outputs")}
)

MODELS: Registry = Registry("model")
MODELS.register("convnet", ConvNet, help="conv3x3-BN-neuron-pool blocks, then two linear layers")
MODELS.register("mlp", MLP, help="linear-BN-neuron layers, then a linear output layer")


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    neuron: NeuronFactory | None,
    **kwargs,
) -> nn.Module:
    """Build the architecture ``name`` (one of ``MODELS``) for the given input and classes."""
    return MODELS.get(name)(input_shape, num_classes, neuron, **kwargs)
