"""Training: configuration, the trainer, the method seam, run directories and checkpoints."""

from ..checkpoint_file import load_checkpoint, save_checkpoint
from .assembly import Assembly, assemble, model_from_config
from .build import (
    Optimization,
    default_model,
    default_optimization,
    neuron_factory,
)
from .callbacks import (
    Callback,
    EarlyStopping,
    EpochMetrics,
    PlateauStop,
    TensorBoardLog,
    TrainerView,
)
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
from .run import Run, load_run, save_run, versions
from .rundir import RunDir
from .trainer import Trainer

__all__ = [
    "METHODS",
    "Assembly",
    "Callback",
    "TrainerView",
    "EarlyStopping",
    "EpochMetrics",
    "NoOptions",
    "Optimization",
    "PlateauStop",
    "Run",
    "RunDir",
    "StepContext",
    "SurrogateBPTT",
    "TensorBoardLog",
    "TrainConfig",
    "Trainer",
    "TrainingMethod",
    "assemble",
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
    "save_run",
    "versions",
]
