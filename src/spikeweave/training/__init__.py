"""Training: configuration, the trainer, the method seam, run directories and checkpoints."""

from .build import (
    Optimization,
    default_model,
    default_optimization,
    model_from_config,
    neuron_factory,
)
from .callbacks import Callback, EpochMetrics, PlateauStop
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config
from .denormal import flush_denormal
from .methods import (
    METHODS,
    NoOptions,
    StepContext,
    SurrogateBPTT,
    TrainingMethod,
    gradient_step,
    make_method,
)
from .run import Run, load_run
from .rundir import RunDir
from .trainer import Trainer, versions

__all__ = [
    "METHODS",
    "Callback",
    "EpochMetrics",
    "NoOptions",
    "Optimization",
    "PlateauStop",
    "Run",
    "RunDir",
    "StepContext",
    "SurrogateBPTT",
    "TrainConfig",
    "Trainer",
    "TrainingMethod",
    "default_model",
    "default_optimization",
    "flush_denormal",
    "gradient_step",
    "load_checkpoint",
    "load_config",
    "load_run",
    "make_method",
    "model_from_config",
    "neuron_factory",
    "save_checkpoint",
    "versions",
]
