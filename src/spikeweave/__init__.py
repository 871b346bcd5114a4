"""spikeweave: spiking neural networks on PyTorch, time-major ``[T, B, ...]`` throughout."""

from . import encoding, functional, surrogate  # noqa: E402
from .errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    InputError,
    SpikeweaveError,
    TrainingError,
)
from .layers import SpikingConv2d, SpikingLinear, TimeFolded  # noqa: E402
from .models import MLP, ConvNet, build_model  # noqa: E402
from .neurons import IF, KLIF, LIF, OscillatingLIF, SpikingNeuron, TimeChunked  # noqa: E402
from .tasks import DataSpec, Task  # noqa: E402
from .training import (  # noqa: E402
    Callback,
    Run,
    TrainConfig,
    Trainer,
    TrainingMethod,
    load_run,
)
from .version import __version__  # noqa: E402

__all__ = [
    "IF",
    "KLIF",
    "LIF",
    "MLP",
    "OscillatingLIF",
    "Callback",
    "CheckpointError",
    "ConfigError",
    "ConvNet",
    "DataError",
    "DataSpec",
    "InputError",
    "SpikeweaveError",
    "SpikingConv2d",
    "SpikingLinear",
    "SpikingNeuron",
    "Run",
    "Task",
    "TimeChunked",
    "TimeFolded",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TrainingMethod",
    "__version__",
    "build_model",
    "encoding",
    "functional",
    "load_run",
    "surrogate",
]
