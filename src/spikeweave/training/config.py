"""Training configuration: one flat dataclass, validated, loadable from TOML.

Every field can be set from ``spikeweave train --config FILE.toml`` (top-level keys with the
field names below) and overridden by command-line options. Unknown keys and values of the wrong
type are refused with a one-line error. A method's options go in a ``[method.NAME]`` table::

    [method]
    name = "na"
    [method.na]
    form = "code"
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..options import MAX_INT, check_value, json_ready

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "TrainConfig",
    "load_config",
    "fold_legacy",
    "SCHEDULES",
    "MODEL_FIELDS",
    "check_model_fields",
    "OPTIMIZER_FIELDS",
    "check_optimizer_fields",
]

SCHEDULES = ("cosine", "exponential", "constant")
MODEL_FIELDS = ("model", "hidden", "pool", "dropout", "population", "batch_norm", "readout")
"""The fields that shape the config's network (:func:`~.build.default_model`)."""
OPTIMIZER_FIELDS = ("lr", "weight_decay", "grad_clip", "schedule", "gamma")
"""The fields the default optimisation reads (:func:`~.methods.default_optimization`)."""
ANN_MODELS = {"ann": "convnet", "ann-mlp": "mlp"}
"""Model names that mean "this architecture with ReLU": the ANN baselines."""


MAX_THREADS = 1024
"""The most intra-op threads ``threads`` may ask for."""
TEST_EVALS = ("each-epoch", "best-val")
"""``test_eval`` values: the test split every epoch, or once at the best validation epoch."""
PRECISIONS = ("fp32", "bf16", "fp16")
"""``precision`` values: float32, or bfloat16 / float16 autocast (:mod:`~.device` applies them)."""
ACTIVATION_MEMORY = ("save", "pack", "checkpoint", "checkpoint+pack")
"""``activation_memory`` values (:mod:`~.activation` applies them)."""
_DEVICE_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_spec(spec: str) -> str:
    """``spec`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, else a one-line
    ``ConfigError`` (the syntax only; :func:`~.device.resolve_device` checks the machine)."""
    if not isinstance(spec, str) or not _DEVICE_SPEC.match(spec):
        raise ConfigError(f"unknown device {spec!r}; choose one of auto, cpu, cuda, cuda:N")
    return spec


@dataclass
class TrainConfig:
    """Everything that defines a training run. Times are in steps, rates in spikes/step.

    ``method_options`` holds the chosen method's typed options (a ``[method.NAME]`` TOML
    table); ``notes`` is a free-form table recorded with the run and never read.

    ``train_transforms`` maps a transform of the training split (a name registered in
    :data:`~.assembly.TRAIN_TRANSFORMS`, e.g. ``backdoor``, BadNets poisoning owned by
    :mod:`spikeweave.security.backdoor`) to its options (a ``[train_transforms.NAME]`` TOML
    table). The assembly resolves the names, checks the options and records every option, so
    the run reproduces; the transforms see the training split after the validation split is
    held out (validation stays clean). The config itself knows no transform.

    ``train_size`` (0: all) keeps that many training images after the validation split is
    held out: a uniform subset drawn with a fixed seed, the same for every seed and arm, so a
    CPU can train on a stated part of a large set while validation and test stay whole.

    ``dataset`` is a registered name or the path of your own data (an image folder or an
    ``.npz`` file, :mod:`spikeweave.data.own`); for a path the assembly records the resolved
    absolute path, ``dataset_digest`` (the data's SHA-256: a resumed or evaluated run refuses
    data that changed) and ``class_names`` (in index order, for ``predict``). Set by hand,
    they must match the data.

    ``pool`` is the conv net's pooling: ``max`` (default) or ``avg`` (linear in spike rates,
    so it suits noisy single-step training and conversion, and exports to NIR).

    ``flush_denormal`` (default on) flushes subnormal floats (|x| < 1.2e-38) to zero on the
    CPU while the run trains and evaluates: gradients that decay through many time steps, or
    surrogates far from threshold, fall into that range, where x86 arithmetic is 10–30×
    slower (a soft-XOR LIF net at lr 0.1 took 78 ms per step instead of 3.4 ms, with the same
    losses). It changes only values below 1.2e-38. It applies to the training thread (and
    threads started from it afterwards); the trainer turns it off again when ``fit`` ends.

    ``device`` is where the run computes: ``auto`` (CUDA when available, else the CPU),
    ``cpu``, ``cuda`` or ``cuda:N`` (:func:`~.device.resolve_device`; a GPU that is not there
    is an error). ``precision`` is ``fp32``, ``bf16`` (autocast, CPU and CUDA) or ``fp16``
    (autocast and a gradient scaler, CUDA only). ``num_workers`` is the data-loading worker
    processes (None: 0 on the CPU, ``min(4, cores // 2)`` on CUDA); the batches and their order
    are the same for any value. ``deterministic`` turns on PyTorch's deterministic algorithms
    (and ``CUBLAS_WORKSPACE_CONFIG``) while the run trains and evaluates (docs/training.md,
    "GPU", says what that makes bit-repeatable).
    ``sync_batchnorm`` (torchrun on GPUs): BatchNorm statistics over the global batch
    (``SyncBatchNorm``) instead of each process's share; refused on CPU processes, and changes
    nothing in one process. ``compile`` runs the stateless layers (convolutions, BatchNorm,
    pooling, linear layers) through ``torch.compile``; the neurons keep their fused kernels.

    ``threads`` is torch's intra-op thread count while the run trains and evaluates (None:
    torch's own choice; :func:`~.device.torch_threads` sets it and puts the old value back).

    ``early_stopping`` (epochs of patience, 0: off; needs ``val_fraction`` > 0) ends the run
    once the validation metric has not improved for that many epochs, and the run's final
    weights are those of its best validation epoch (:class:`~.callbacks.EarlyStopping`).
    ``tensorboard`` writes the epoch metrics as TensorBoard event files under
    ``RUN/tensorboard/`` (:class:`~.callbacks.TensorBoardLog`; needs the ``tensorboard``
    package).
    ``plots`` (default on) draws the run's PNGs (training curves, spike raster, firing rates,
    and a method's own, e.g. BioLeaF's apical mismatch) when the run ends. Off, the run still
    writes every file they are drawn from (``metrics.jsonl``, ``activity.safetensors``), so
    ``spikeweave plot RUN`` draws them later; it saves the drawing time of many small runs.

    ``test_eval`` is when the test split is evaluated: ``each-epoch`` (default; every epoch
    row has ``test_*``) or ``best-val`` (needs ``val_fraction`` > 0): each epoch evaluates
    validation only, the best validation epoch's weights are kept (as early stopping keeps
    them, :class:`~.callbacks.EarlyStopping`) and the run ends holding them; the test split is
    evaluated once, on those weights, for ``summary.json`` (``test_*``,
    ``test_<metric>_at_best_val``, ``weights_epoch``). It saves the per-epoch test pass (10,000
    images on Fashion-MNIST) and never lets test influence anything.

    ``activation_memory`` is what a training step keeps for its backward
    (:mod:`~.activation`): ``save`` (default: everything), ``pack`` (spikes at 1 bit),
    ``checkpoint`` (only each neuron block's input; the block runs again in backward) or
    ``checkpoint+pack``. Every mode gives the same losses and gradients; a method whose
    network cannot honour a mode refuses it.
    """

    dataset: str = "mnist5k"
    data_root: str = ""
    dataset_digest: str = ""
    class_names: list[str] = field(default_factory=list)
    task: str = ""
    model: str = "convnet"
    neuron: str = "lif"
    method: str = "bptt"
    method_options: dict[str, Any] = field(default_factory=dict)
    steps: int = 4
    encoder: str = "direct"
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    schedule: str = "cosine"
    gamma: float = 0.9
    grad_clip: float = 1.0
    loss: str = ""
    rate_scale: float = 8.0
    population: int = 10
    hidden: list[int] = field(default_factory=list)
    batch_norm: bool = True
    pool: str = "max"
    readout: str = ""
    tau: float = 2.0
    threshold: float = 1.0
    v_reset: float = 0.0
    reset: str = "hard"
    decay_input: bool = True
    surrogate: str = "atan"
    alpha: float | None = None
    detach_reset: bool = True
    osc_amplitude: float = 0.2
    osc_frequency: float = 0.25
    osc_form: str = "sine"
    osc_phase: float | None = None
    osc_fake_form: str = ""
    osc_fake_phase: float = 0.0
    dropout: float = 0.0
    seed: int = 0
    flush_denormal: bool = True
    sync_batchnorm: bool = False
    compile: bool = False
    threads: int | None = None
    early_stopping: int = 0
    test_eval: str = "each-epoch"
    tensorboard: bool = False
    plots: bool = True
    activation_memory: str = "save"
    eval_batch_size: int = 500
    val_fraction: float = 0.0
    train_size: int = 0
    train_transforms: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    precision: str = "fp32"
    num_workers: int | None = None
    deterministic: bool = False
    out_dir: str = "runs"
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def spiking(self) -> bool:
        """False for the ANN baselines (ReLU, no time dimension needed)."""
        return self.neuron != "relu" and self.model not in ANN_MODELS

    @property
    def architecture(self) -> str:
        """The layer layout: ``convnet`` or ``mlp``, whatever the neuron."""
        return ANN_MODELS.get(self.model, self.model)

    @property
    def effective_steps(self) -> int:
        """Steps actually simulated: an ANN needs only one."""
        return self.steps if self.spiking else 1

    @property
    def neuron_label(self) -> str:
        """The neuron the network really has (``relu`` for the ANN baselines)."""
        return self.neuron if self.spiking else "relu"

    def validate(self) -> TrainConfig:
        """Check every field's type and range; raise :class:`ConfigError` with a one-line fix
        for the first invalid one. Returns ``self`` (values coerced to their field types).

        Names (dataset, model, neuron, method, ...) are checked against their registries by
        :func:`~.assembly.check_config`, which calls this first: the config imports no
        registry, so any module can read and write configs.
        """
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            setattr(self, f.name, check_value(hints[f.name], getattr(self, f.name), f.name))
        check_plain_table(self.notes, "notes")
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("reset", self.reset, ("hard", "soft"))
        _choice("readout", self.readout, ("", "spikes", "linear"))
        _choice("pool", self.pool, ("max", "avg"))
        _choice("precision", self.precision, PRECISIONS)
        _choice("activation_memory", self.activation_memory, ACTIVATION_MEMORY)
        if self.sync_batchnorm and self.activation_memory.startswith("checkpoint"):
            # the recomputation would all-reduce the statistics again inside backward
            raise ConfigError(
                f"activation_memory = {self.activation_memory!r} cannot be combined with "
                "sync_batchnorm; use 'pack' or turn sync_batchnorm off"
            )
        check_device_spec(self.device)
        if self.dataset_digest and not re.fullmatch(r"[0-9a-f]{64}", self.dataset_digest):
            raise ConfigError(
                f"dataset_digest must be a SHA-256 in hex (64 characters), got "
                f"{self.dataset_digest!r}"
            )
        if len(set(self.class_names)) != len(self.class_names) or not all(self.class_names):
            raise ConfigError("class_names must be distinct, non-empty names")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(
                f"num_workers must be a non-negative integer (0: load in the training "
                f"process), got {self.num_workers}"
            )
        for name in ("steps", "epochs", "batch_size", "population", "eval_batch_size"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be positive integers, got {self.hidden}")
        for name in ("lr", "rate_scale", "tau"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("weight_decay", "grad_clip", "dropout"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"{name} must be a non-negative number (0 disables), got "
                    f"{getattr(self, name)!r}"
                )
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(
                f"val_fraction (share of the training data held out for validation) must be in "
                f"[0, 1), got {self.val_fraction}"
            )
        if self.train_size < 0:
            raise ConfigError(
                f"train_size (training images kept after validation is held out; 0: all) must "
                f"be a non-negative integer, got {self.train_size}"
            )
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(
                f"threads must be an integer in [1, {MAX_THREADS}] (or left out: torch's "
                f"choice), got {self.threads}"
            )
        if self.early_stopping < 0:
            raise ConfigError(
                f"early_stopping is a patience in epochs and must be >= 0 (0: off), got "
                f"{self.early_stopping}"
            )
        if self.early_stopping and not self.val_fraction:
            raise ConfigError(
                "early_stopping needs a validation split (it never looks at test): set "
                "val_fraction > 0, e.g. --val-fraction 0.1"
            )
        _choice("test_eval", self.test_eval, TEST_EVALS)
        if self.test_eval == "best-val" and not self.val_fraction:
            raise ConfigError(
                "test_eval = 'best-val' evaluates test at the best validation epoch, so it needs "
                "a validation split: set val_fraction > 0, e.g. --val-fraction 0.1"
            )
        if self.dropout >= 1:
            raise ConfigError(f"dropout must be below 1, got {self.dropout}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(
                f"gamma (exponential lr decay per epoch) must be in (0, 1], got {self.gamma!r}"
            )
        if self.tau < 1:
            raise ConfigError(f"tau is in steps and must be >= 1, got {self.tau}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed!r}")
        for name, options in self.train_transforms.items():
            if not isinstance(options, dict):
                raise ConfigError(
                    f"train_transforms.{name} must be a table of options, got {options!r}"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy of every field."""
        return json_ready(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys or wrongly typed values raise
        :class:`ConfigError` naming ``source``.

        ``method`` may be a name or a table ``{name = "na", na = {...options...}}`` (TOML:
        ``[method]`` with ``name``, and ``[method.na]``).
        """
        values = fold_legacy(values)
        method = values.get("method")
        if isinstance(method, dict):
            values.update(_method_table(method, source))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys are "
                f"{', '.join(sorted(known))}"
            )
        hints = typing.get_type_hints(cls)
        checked = {k: check_value(hints[k], v, f"{source}: {k}") for k, v in values.items()}
        if "notes" in checked:
            check_plain_table(checked["notes"], f"{source}: notes")
        return cls(**checked)


LEGACY_TRANSFORMS = {"poison_": ("backdoor", "fraction")}
"""Flat keys of configs written before ``train_transforms``: key prefix -> (transform name,
the option whose 0 meant "off"). Such a run wrote every key, at its default when off."""


def _refuse_switched_off(values: Mapping[str, Any], source: str) -> None:
    """A user's file that sets a legacy transform's options (``poison_target`` ...) without
    switching it on would have them dropped by :func:`fold_legacy`: refused instead."""
    for prefix, (name, switch) in LEGACY_TRANSFORMS.items():
        given = sorted(k for k in values if k.startswith(prefix) and k != prefix + switch)
        on = values.get(prefix + switch, 0)
        if given and (isinstance(on, bool) or not isinstance(on, int | float) or on <= 0):
            raise ConfigError(
                f"{source}: {', '.join(given)} only apply when {prefix}{switch} > 0; set it "
                f"(or use the [train_transforms.{name}] table) or leave them out"
            )


def fold_legacy(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with the flat keys of :data:`LEGACY_TRANSFORMS` (``poison_target``
    ...) folded into ``train_transforms`` (``{"backdoor": {"target": ...}}``), so every
    config.json and checkpoint written before the table loads and evaluates the same. A
    transform whose switch is 0 or absent was off: its keys are dropped."""
    out = dict(values)
    for prefix, (name, switch) in LEGACY_TRANSFORMS.items():
        old = {k[len(prefix) :]: out.pop(k) for k in list(out) if k.startswith(prefix)}
        if not old or old.get(switch, 0) == 0:
            continue
        tables = out.get("train_transforms", {})
        if not isinstance(tables, Mapping) or name in tables:
            raise ConfigError(
                f"{prefix}* keys and train_transforms.{name} both given; keep only the table"
            )
        out["train_transforms"] = {**tables, name: old}
    return out


MAX_NOTES_DEPTH = 32
"""Tables and lists in ``notes`` nest at most this deep (it is written to JSON as it is)."""


def check_plain_table(value: Any, where: str, depth: int = 0) -> None:
    """Refuse what JSON cannot hold: a TOML date or time, a non-finite number, a huge integer or
    nesting deeper than :data:`MAX_NOTES_DEPTH` (``notes`` is written to config.json)."""
    if depth > MAX_NOTES_DEPTH:
        raise ConfigError(f"{where} nests deeper than {MAX_NOTES_DEPTH} tables or lists")
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain_table(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_plain_table(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ConfigError(f"{where} must be at most 2**63 - 1 in magnitude, got {value}")
    elif not isinstance(value, str | int | float | bool):
        raise ConfigError(
            f"{where} must be a string, number, true/false, list or table, got "
            f"{type(value).__name__} {value!r} (quote a date to keep it)"
        )


def _method_table(table: dict[str, Any], source: str) -> dict[str, Any]:
    """``{name, NAME: {...}}`` -> ``{"method": name, "method_options": {...}}``."""
    name = table.get("name", "bptt")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: method.name must be a string, got {name!r}")
    others = {k: v for k, v in table.items() if k != "name"}
    wrong = sorted(k for k in others if k != name)
    if wrong:
        raise ConfigError(
            f"{source}: options given for method {wrong[0]!r} but the method is {name!r}; "
            f"put them under [method.{name}] or set method.name"
        )
    options = others.get(name, {})
    if not isinstance(options, dict):
        raise ConfigError(f"{source}: method.{name} must be a table of options")
    return {"method": name, "method_options": options}


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        shown = ", ".join(repr(c) if not c else c for c in choices)
        raise ConfigError(f"unknown {name} {value!r}; choose one of {shown}")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a dict of overrides (checked here, validated later); a
    ``[method]`` table becomes the ``method`` and ``method_options`` keys."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests arrays or tables too deeply") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    _refuse_switched_off(values, str(path))
    values = fold_legacy(values)
    if isinstance(values.get("method"), dict):
        values.update(_method_table(values["method"], str(path)))
    TrainConfig.from_dict(values, source=str(path))
    return values


def check_model_fields(config: TrainConfig, used: frozenset[str] | None, method: str) -> None:
    """Refuse network fields a method that builds its own network does not read.

    ``used`` is what :meth:`~.methods.TrainingMethod.model_fields` returns: None means the
    config's network is built (every field applies); otherwise a field of
    :data:`MODEL_FIELDS` outside ``used`` that is set away from its default raises a one-line
    :class:`ConfigError` instead of being ignored.
    """
    _refuse_unread(config, MODEL_FIELDS, used, method, "it builds its own network")


def check_optimizer_fields(config: TrainConfig, used: frozenset[str] | None, method: str) -> None:
    """Refuse optimisation fields a method without the default optimizer does not read.

    ``used`` is what :meth:`~.methods.TrainingMethod.optimizer_fields` returns: None means
    every field of :data:`OPTIMIZER_FIELDS` applies; otherwise one outside ``used`` that is
    set away from its default raises a one-line :class:`ConfigError` instead of being
    ignored (e.g. ``weight_decay`` for BioLeaF, whose local rules have no optimizer).
    """
    _refuse_unread(config, OPTIMIZER_FIELDS, used, method, "it has no optimizer that reads it")


def _refuse_unread(
    config: TrainConfig,
    fields: tuple[str, ...],
    used: frozenset[str] | None,
    method: str,
    why: str,
) -> None:
    """The first of ``fields`` outside ``used`` (None: all are read) set away from its
    default, as a one-line ``ConfigError`` saying ``why`` the method does not read it."""
    if used is None:
        return
    default = TrainConfig()
    for name in fields:
        value = getattr(config, name)
        if name not in used and value != getattr(default, name):
            raise ConfigError(
                f"{name} = {value!r} does not apply to method {method!r}: {why}; leave it out"
            )
