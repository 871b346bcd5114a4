"""Training: configuration, the trainer, the method seam and checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config
from .methods import (
    METHODS,
    StepContext,
    SurrogateBPTT,
    TrainingMethod,
    make_method,
    register_method,
)
from .trainer import Trainer, model_from_config, neuron_factory, record_activity, versions

__all__ = [
    "METHODS",
    "StepContext",
    "SurrogateBPTT",
    "TrainConfig",
    "Trainer",
    "TrainingMethod",
    "load_checkpoint",
    "make_method",
    "load_config",
    "model_from_config",
    "neuron_factory",
    "record_activity",
    "register_method",
    "save_checkpoint",
    "versions",
]
