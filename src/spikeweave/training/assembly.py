"""A run's parts from its config, built in one place: names, data, task, model, optimizer.

:func:`assemble` is the only code that turns a :class:`~.config.TrainConfig` into working
parts; :class:`~.trainer.Trainer`, :func:`~.run.load_run`, :func:`~.build.model_from_config`
and NIR import all call it. In order:

1. :func:`check_config` -- the config's values (``TrainConfig.validate``, which needs no
   registry) and its names against the registries (dataset, task, model, neuron, method,
   encoder, surrogate);
2. the **method** (a name, an instance, or the config's) with every option recorded;
3. the **data** (the config's dataset or injected ``(train, test)``), the validation split,
   the :class:`~spikeweave.tasks.DataSpec` and the **task**; without data, the spec comes from
   the caller (a checkpoint's) or the dataset catalog;
4. the training-split transforms the config's ``train_transforms`` table names (e.g.
   ``backdoor``: poisoning, owned by :mod:`spikeweave.security`), found through
   :data:`TRAIN_TRANSFORMS` (:func:`transform_train`);
5. the **model**, seeded from ``config.seed`` and built on the CPU (the same initial weights
   on every device), then :func:`place` (moved to the run's device, the one spot that does),
   then the **optimizer and schedule** over the placed parameters. A model the config's
   ``activation_memory`` cannot apply to is refused here
   (:func:`~.activation.check_activation_memory`); the trainer applies it.

The device is resolved first (:func:`~.device.resolve_device`), so a GPU that is not there is
refused before any data is read. The precision is not a property of the model: weights stay
float32 and the trainer runs the steps under :func:`~.device.autocast`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import data as datasets
from .. import encoding, surrogate
from ..errors import ConfigError, InputError
from ..models import MODELS
from ..neurons import NEURONS
from ..registry import Registry
from ..tasks import TASKS, DataSpec, Task, make_task
from .activation import check_activation_memory
from .config import TrainConfig, check_model_fields, check_optimizer_fields
from .device import CUBLAS_WORKSPACE, check_precision, resolve_device
from .evaluation import split_training
from .methods import METHODS, SurrogateBPTT, TrainingMethod, make_method
from .weights_check import check_model_fits

__all__ = [
    "Assembly",
    "TRAIN_TRANSFORMS",
    "assemble",
    "check_config",
    "check_dataset",
    "catalog_spec",
    "data_options",
    "data_spec",
    "load_datasets",
    "model_from_config",
    "place",
    "resolve_method",
    "transform_train",
]

TRAIN_TRANSFORMS: Registry[Any] = Registry(
    "training-data transform", providers=("spikeweave.security.backdoor",)
)
"""Transforms of the training split a config can name in ``train_transforms``. An entry has
``check(options, where) -> dict`` (the options checked, one-line ConfigErrors naming ``where``,
every default filled in so the run records them) and ``apply(options, dataset, num_classes)
-> Dataset`` (``num_classes`` None outside classification). The config knows no entry; the
providers register theirs when a name is first looked up."""


@dataclass
class Assembly:
    """A run's parts. Data, optimizer and schedule are None when not asked for (a reloaded
    run) or not used (a local rule has no optimizer).

    Attributes:
        config: the validated config, ``method``/``method_options`` as the method records them.
        method: the training method.
        task: readout, loss and metrics for the data's :class:`DataSpec`.
        model: the network ``[T, B, ...] -> [T, B, outputs]``, initialised from ``config.seed``
            and placed by :func:`place`.
        train_set, val_set, test_set: the splits (``val_set`` None without ``val_fraction``);
            ``train_set`` carries the config's training-split transforms.
        optimizer, scheduler: from the method's ``configure_optimizers``.
        steps_per_epoch: batches per epoch and process (0 without data).
        injected: the datasets were given, not loaded from the config's name.
        device: where the model is and every batch goes (``config.device`` resolved, or the
            ``device`` given to :func:`assemble`).
    """

    config: TrainConfig
    method: TrainingMethod
    task: Task
    model: nn.Module
    train_set: Dataset | None = None
    val_set: Dataset | None = None
    test_set: Dataset | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    steps_per_epoch: int = 0
    injected: bool = False
    device: torch.device = torch.device("cpu")


def check_config(
    config: TrainConfig, method_given: bool = False, datasets_given: bool = False
) -> TrainConfig:
    """``config`` validated (:meth:`TrainConfig.validate`) and its names checked against the
    registries; ``ConfigError`` with a one-line fix for the first problem.

    ``method_given``: a method instance was passed, so the config's method name is not looked
    up; ``datasets_given``: the datasets were injected, so any dataset label is accepted.
    """
    config.validate()
    if not datasets_given:
        check_dataset(config)
    if config.task:
        TASKS.check(config.task)
    if config.architecture not in MODELS:
        MODELS.check(config.model)
    NEURONS.check(config.neuron)
    if not method_given:
        METHODS.check(config.method)
    encoding.ENCODERS.check(config.encoder)
    surrogate.get_surrogate(config.surrogate, config.alpha)
    config.train_transforms = {
        name: TRAIN_TRANSFORMS.get(name).check(options, f"train_transforms.{name}")
        for name, options in config.train_transforms.items()
    }
    return config


def check_dataset(config: TrainConfig) -> None:
    """The config's dataset checked against the catalog, or read when it is a path (your own
    data): then ``dataset`` becomes the resolved absolute path and ``dataset_digest`` and
    ``class_names`` are recorded (a recorded digest that differs is a DataError: the data
    changed; class names given by hand must be the data's)."""
    if config.dataset_digest and not datasets.is_path(config.dataset):
        raise ConfigError(
            f"dataset_digest applies to a dataset given as a path, not {config.dataset!r}"
        )
    found = datasets.info(config.dataset, config.dataset_digest)
    if found.kind == "embedded" and config.data_root:
        raise ConfigError(
            f"data_root does not apply to the embedded dataset {config.dataset!r} (it ships "
            "inside a package); leave it out"
        )
    if found.kind != "own":
        if config.class_names and len(config.class_names) != found.num_classes:
            raise ConfigError(
                f"class_names has {len(config.class_names)} names but {config.dataset} has "
                f"{found.num_classes} classes"
            )
        return
    if config.data_root:
        raise ConfigError(
            "data_root does not apply to a dataset given as a path (the path says where it is); "
            "leave it out"
        )
    if config.class_names and tuple(config.class_names) != found.classes:
        raise ConfigError(
            f"class_names {config.class_names} differ from the data's classes "
            f"{list(found.classes)} (sub-folder names, or the .npz 'classes' array)"
        )
    config.dataset, config.dataset_digest = found.name, found.digest
    config.class_names = list(found.classes)


def data_options(config: TrainConfig, temporal: bool) -> dict[str, Any]:
    """The options :func:`spikeweave.data.load` reads the config's dataset with: your own
    data with the digest the run recorded (changed data is refused); a named set from the data
    root, event recordings binned into ``config.steps`` frames (``temporal``)."""
    if config.dataset_digest:
        return {"digest": config.dataset_digest}
    options: dict[str, Any] = {"root": config.data_root or None}
    if temporal:
        options["frames"] = config.steps
    return options


def resolve_method(
    config: TrainConfig, method: TrainingMethod | str | None = None, datasets_given: bool = False
) -> tuple[TrainConfig, TrainingMethod]:
    """A checked copy of ``config`` (:func:`check_config`) and its method: ``method`` (an
    instance, whose name and options the config records, or a registered name) or the
    config's own. Every option is recorded, defaults included, so the run rebuilds the same
    method."""
    config = replace(config)
    if isinstance(method, TrainingMethod):
        config.method, config.method_options = method.name, method.options_dict()
    elif method is not None:
        config.method, config.method_options = method, {}
    given = isinstance(method, TrainingMethod)
    check_config(config, method_given=given, datasets_given=datasets_given)
    instance = method if isinstance(method, TrainingMethod) else None
    instance = instance or make_method(config.method, config.method_options)
    config.method_options = instance.options_dict()
    return config, instance


def load_datasets(
    config: TrainConfig, given: tuple[Dataset, Dataset] | None = None
) -> tuple[Dataset, Dataset]:
    """``(train, test)``: ``given`` (checked to be a pair) or the config's named dataset, event
    recordings binned into ``config.steps`` frames."""
    if given is not None:
        if not (isinstance(given, tuple | list) and len(given) == 2):
            raise InputError("datasets must be a pair (train, test) of map-style datasets")
        return given[0], given[1]
    options = data_options(config, datasets.info(config.dataset, config.dataset_digest).temporal)
    return (
        datasets.load(config.dataset, "train", **options),
        datasets.load(config.dataset, "test", **options),
    )


def data_spec(config: TrainConfig, task_name: str, train_set: Dataset, injected: bool) -> DataSpec:
    """Input shape and number of outputs for ``task_name``: shapes from the dataset catalog for
    a named dataset, else (injected data) from the first training sample; outputs are the
    classes (classification), the target's size (regression) or the pixels (reconstruction)."""
    info = datasets.DATASETS.get(config.dataset)
    if info is None and not injected and config.dataset_digest:  # your own data (a path)
        info = datasets.info(config.dataset, config.dataset_digest)
    if len(train_set) == 0:  # type: ignore[arg-type]
        raise InputError("the training dataset is empty")
    temporal = bool(info is not None and info.temporal)
    if info is not None and not injected:
        shape = tuple(info.input_shape)
    else:
        x0 = torch.as_tensor(train_set[0][0])
        shape = tuple(x0.shape[1:] if temporal else x0.shape)
    if task_name == "reconstruction":
        outputs = math.prod(shape)
    elif task_name == "regression":
        outputs = max(1, torch.as_tensor(train_set[0][1]).numel())
    elif info is not None and tuple(info.input_shape) == shape:
        outputs = info.num_classes
    else:
        labels = [int(train_set[i][1]) for i in range(len(train_set))]  # type: ignore[arg-type]
        outputs = max(labels) + 1
    return DataSpec(shape, outputs, temporal)


def catalog_spec(config: TrainConfig) -> DataSpec:
    """The :class:`DataSpec` of the config's named dataset, from the catalog (no files read)."""
    info = datasets.info(config.dataset)
    return DataSpec(tuple(info.input_shape), info.num_classes, info.temporal)


def transform_train(config: TrainConfig, task: Task, train: Dataset) -> Dataset:
    """The training split ``train`` (validation already held out) with the config's
    ``train_transforms`` applied in order (checked options, as :func:`check_config` left
    them): what the trainer trains on and :meth:`~.run.Run.dataset` rebuilds."""
    classes = task.spec.num_outputs if task.name == "classification" else None
    for name, options in config.train_transforms.items():
        train = TRAIN_TRANSFORMS.get(name).apply(options, train, classes)
    return train


def place(model: nn.Module, config: TrainConfig, device: torch.device | None = None) -> nn.Module:
    """Put the freshly built model where it runs, before the optimizer sees its parameters:
    on ``device`` (default: ``config.device`` resolved), weights in float32 whatever the
    precision (autocast lowers the computation, not the stored weights). The single place of
    device placement: the trainer, :func:`~.run.load_run` and every rebuilt model go through
    it."""
    if device is None:
        device = resolve_device(config.device)
    return model.to(device)


def _steps_per_epoch(config: TrainConfig, train: Dataset, test: Dataset, world: int) -> int:
    n, batch = len(train), config.batch_size  # type: ignore[arg-type]
    if batch % world:
        raise ConfigError(
            f"batch_size {batch} must split evenly over {world} processes (it is the global "
            "batch); choose a multiple of the process count"
        )
    if len(test) < world:  # type: ignore[arg-type]
        raise ConfigError(f"the test set has fewer samples than the {world} processes")
    return math.ceil(math.ceil(n / world) / (batch // world))


def assemble(
    config: TrainConfig,
    datasets: tuple[Dataset, Dataset] | None = None,
    method: TrainingMethod | str | None = None,
    *,
    with_data: bool = True,
    spec: DataSpec | None = None,
    task_name: str | None = None,
    world: int = 1,
    weights: tuple[Mapping[str, torch.Tensor], Path] | None = None,
    device: str | torch.device | None = None,
) -> Assembly:
    """Every part of the run ``config`` describes (steps in the module docstring).

    Args:
        config: the run's settings (not modified; the assembly holds a checked copy).
        datasets: ``(train, test)`` to use instead of the config's named dataset.
        method: None (the config's), a registered name, or a :class:`TrainingMethod`.
        with_data: False builds only method, task and model (a reloaded run): no dataset is
            read, no optimizer made.
        spec: the data's :class:`DataSpec` without data (default: the dataset catalog's).
        task_name: the task when the config leaves it empty (default ``classification``).
        world: processes of a distributed run (the batch is split over them).
        weights: ``(tensors, path)`` of a checkpoint the model must fit (a reloaded or resumed
            run): the config is the file's, so its model is first built on the meta device
            and checked against the weights (:func:`~.weights_check.check_model_fits`) before
            it is allocated.
        device: where to put the model (default ``config.device``): a reloaded run is placed
            where it is used, not where it was trained. The config records the device asked
            for (``device`` replaces it).
    """
    # A spec without data comes from a run trained on injected data: any dataset label goes.
    given = datasets is not None or spec is not None
    config, instance = resolve_method(config, method, datasets_given=given)
    if device is not None:
        config.device = str(device)
    where = resolve_device(config.device)  # refused before any data is read
    check_precision(config.precision, where)
    if config.deterministic and where.type == "cuda":
        # read by cuBLAS when its first handle is made: set before the model touches the GPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    name = config.task or task_name or "classification"
    train = val = test = None
    if with_data:
        train, test = load_datasets(config, datasets)
        train, val = split_training(train, config, name == "classification")
        spec = data_spec(config, name, train, datasets is not None)
    elif spec is None:
        spec = catalog_spec(config)
    task = make_task(name, spec, config.loss, config.spiking, config.rate_scale)
    if (
        config.class_names
        and name == "classification"
        and len(config.class_names) != spec.num_outputs
    ):
        raise ConfigError(
            f"class_names has {len(config.class_names)} names but the data has "
            f"{spec.num_outputs} classes"
        )
    if train is not None:  # only the training part is transformed (validation stays clean)
        train = transform_train(config, task, train)
    check_model_fields(config, instance.model_fields(), instance.name or "custom")
    check_optimizer_fields(config, instance.optimizer_fields(), instance.name or "custom")
    if weights is not None:
        check_model_fits(lambda: instance.build_model(config, task), weights[0], weights[1])
    torch.manual_seed(config.seed)
    model = place(instance.build_model(config, task), config, where)
    check_activation_memory(model, config.activation_memory, instance.name or "custom")
    parts = Assembly(
        config, instance, task, model, train, val, test, injected=datasets is not None,
        device=where,
    )  # fmt: skip
    if train is not None and test is not None:
        parts.steps_per_epoch = _steps_per_epoch(config, train, test, world)
        opt = instance.configure_optimizers(model, config, parts.steps_per_epoch)
        if opt is not None:
            parts.optimizer, parts.scheduler = opt.optimizer, opt.scheduler
    return parts


def model_from_config(cfg: TrainConfig) -> nn.Module:
    """The config's default model (:func:`~.build.default_model`, whatever its method) for its
    named dataset, initialised from ``cfg.seed``; no data is read.

    For a method's own network or injected data use :func:`assemble` with the method (as the
    trainer and :func:`~spikeweave.training.load_run` do).
    """
    return assemble(cfg, method=SurrogateBPTT(), with_data=False).model
