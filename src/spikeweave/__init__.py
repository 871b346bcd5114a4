"""spikeweave: spiking neural networks on PyTorch, time-major ``[T, B, ...]`` throughout.

The public names below are imported on first use (``spikeweave.LIF``, ``from spikeweave import
Trainer``), so ``import spikeweave`` loads neither torch's training stack nor scikit-learn,
scipy or matplotlib until something needs them.
"""

from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    InputError,
    SpikeweaveError,
    TrainingError,
)
from .lazy import lazy_exports
from .version import __version__

_EXPORTS = {
    "encoding": ".encoding",
    "functional": ".functional",
    "surrogate": ".surrogate",
    "SpikingConv2d": ".layers",
    "SpikingLinear": ".layers",
    "TimeFolded": ".layers",
    "MLP": ".models",
    "ConvNet": ".models",
    "build_model": ".models",
    "StreamState": ".models",
    "stream": ".models",
    "IF": ".neurons",
    "KLIF": ".neurons",
    "LIF": ".neurons",
    "OscillatingLIF": ".neurons",
    "SpikingNeuron": ".neurons",
    "TimeChunked": ".neurons",
    "DataSpec": ".tasks",
    "Task": ".tasks",
    "Callback": ".training",
    "Run": ".training",
    "TrainConfig": ".training",
    "Trainer": ".training",
    "TrainingMethod": ".training",
    "load_run": ".training",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "__version__",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "InputError",
    "SpikeweaveError",
    "TrainingError",
    *_EXPORTS,
]
