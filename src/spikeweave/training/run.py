"""Runs saved and loaded in one place: ``save_run`` writes a run directory, ``load_run`` reads
one back as a trained model, without datasets or optimizers.

>>> run = spikeweave.load_run("runs/mnist5k-convnet-lif-bptt-T4-s0-20261130-120000")
>>> run.predict(images)                  # [B, 1, 28, 28] -> class indices [B]
>>> run.evaluate("test")["accuracy"]     # equals summary.json's test_accuracy
>>> out_t, state = run.stream(images, state)   # one step at a time (see Run.stream)

The trainer (every epoch), NIR import and the backdoor defense write with :func:`save_run`;
``spikeweave eval``, attacks, export and anything else that needs a trained model read with
:func:`load_run`. Both rebuild parts only through :func:`~.assembly.assemble`.
"""

from __future__ import annotations

import math
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .. import data as datasets
from ..checkpoint_file import load_checkpoint, save_checkpoint
from ..errors import CheckpointError, DataError, InputError
from ..losses import Loss
from ..nested_state import flatten_state, unflatten_state
from ..tasks import DataSpec, Task
from ..version import __version__
from .assembly import Assembly, assemble, data_options, transform_train
from .config import TrainConfig
from .device import autocast, full_precision
from .evaluation import SPLITS, encode_batch, eval_precision, evaluate_model, split_training
from .meta_schema import validate_training_meta
from .methods import TrainingMethod
from .rundir import RunDir
from .weights_check import check_state_dtypes

if TYPE_CHECKING:
    from ..models.streaming import StreamState

__all__ = [
    "Run",
    "load_run",
    "save_run",
    "save_best_weights",
    "read_best_weights",
    "BEST_KIND",
    "write_checkpoint",
    "read_training_checkpoint",
    "load_model_state",
    "load_method_state",
    "load_scaler_state",
    "versions",
]


def versions() -> dict[str, str]:
    """Versions of everything that can change a run's numbers."""
    return {
        "spikeweave": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "torch_threads": str(torch.get_num_threads()),
    }


def write_checkpoint(
    path: str | Path,
    parts: Assembly | Run,
    epoch: int = 0,
    history: Sequence[dict[str, Any]] = (),
    wall_time_s: float = 0.0,
    carry: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> Path:
    """Write the training checkpoint of ``parts`` at ``epoch`` atomically to ``path``.

    It holds the model's weights, the optimizer's and scheduler's state (``None`` where the
    parts have none) and the method's :meth:`~.methods.TrainingMethod.state_dict` in
    ``method_state``; with an fp16 gradient scaler (``parts.scaler``, a trainer's), its
    ``state_dict()`` in ``grad_scaler`` (absent otherwise, so other files are unchanged).
    ``carry`` (a checkpoint read by :func:`read_training_checkpoint`) keeps that checkpoint's
    optimizer, scheduler, method and scaler state instead: for weights changed outside
    training (a defense), so the run still resumes where it was.
    """
    config, task, method = parts.config, parts.task, parts.method
    tensors = {f"model/{k}": v for k, v in parts.model.state_dict().items()}
    meta: dict[str, Any] = {
        "kind": "spikeweave-training-state",
        "epoch": epoch,
        "config": config.to_dict(),
        "history": list(history),
        "wall_time_s": wall_time_s,
        "optimizer": None,
        "scheduler": None,
        "method_state": None,
        "task": task.name,
        "method": config.method,
        "data_spec": task.spec.to_dict(),
        "versions": versions(),
    }
    if carry is not None:
        old_tensors, old_meta = carry
        for key in ("optimizer", "scheduler", "method_state"):
            meta[key] = old_meta.get(key)
        if old_meta.get(SCALER_KEY) is not None:
            meta[SCALER_KEY] = old_meta[SCALER_KEY]
        prefixes = ("optimizer/", "scheduler/", "method/")
        tensors.update({k: v for k, v in old_tensors.items() if k.startswith(prefixes)})
    else:
        states = {
            "optimizer": getattr(parts, "optimizer", None),
            "scheduler": getattr(parts, "scheduler", None),
        }
        for key, obj in states.items():
            if obj is not None:
                obj_tensors, meta[key] = flatten_state(key, obj.state_dict())
                tensors.update(obj_tensors)
        method_tensors, meta["method_state"] = flatten_state("method", method.state_dict())
        tensors.update(method_tensors)
        scaler = getattr(parts, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            # python numbers only (scale, growth tracker, ...): no tensors to store
            _, meta[SCALER_KEY] = flatten_state(SCALER_KEY, scaler.state_dict())
    # the file holds CPU tensors wherever the run trained: it loads on any device
    tensors = {k: v.detach().cpu() for k, v in tensors.items()}
    return save_checkpoint(Path(path), tensors, meta)


def save_run(
    run_dir: str | Path | RunDir,
    parts: Assembly | Run,
    epoch: int = 0,
    history: Sequence[dict[str, Any]] = (),
    wall_time_s: float = 0.0,
    records: Mapping[str, Any] | None = None,
    files: Mapping[str, str | Path] | None = None,
    carry: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> Path:
    """Write the run directory ``run_dir`` (created if needed) for ``parts`` at ``epoch``:
    ``config.json``, ``metrics.jsonl`` (``history``) and the checkpoint
    (:func:`write_checkpoint`, which ``carry`` is passed to), then each of ``records``
    (file name -> JSON value) and a copy of each of ``files`` (file name -> source path).
    Every file is written atomically; returns the directory's path. The caller holds the
    directory's lock when another process could train it.
    """
    rundir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    rundir.create()
    rundir.write_json(RunDir.CONFIG, parts.config.to_dict())
    write_checkpoint(rundir / RunDir.CHECKPOINT, parts, epoch, history, wall_time_s, carry)
    rundir.write_metrics(history)
    for name, value in (records or {}).items():
        rundir.write_json(name, value)
    for name, source in (files or {}).items():
        rundir.copy_in(name, source)
    return rundir.path


BEST_KIND = "spikeweave-best-val-weights"
"""``kind`` in the metadata of a run's ``best_val.safetensors``."""


def save_best_weights(
    run_dir: str | Path | RunDir, state: Mapping[str, torch.Tensor], epoch: int, metric: str
) -> Path:
    """Write ``state`` (a model's ``state_dict``) as the run's best validation weights
    (``best_val.safetensors``, kind :data:`BEST_KIND`, its ``epoch`` and ``metric``),
    atomically: early stopping and ``test_eval = "best-val"`` keep them there, so a run
    killed and resumed still ends with them."""
    rundir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    tensors = {f"model/{k}": v.detach().cpu() for k, v in state.items()}
    meta = {"kind": BEST_KIND, "epoch": epoch, "metric": metric}
    return save_checkpoint(rundir / RunDir.BEST_VAL, tensors, meta)


def read_best_weights(run_dir: str | Path | RunDir, epoch: int) -> dict[str, torch.Tensor]:
    """The ``state_dict`` saved by :func:`save_best_weights` for ``epoch``; a one-line
    ``CheckpointError`` when the file holds another kind or another epoch (the run directory
    was changed). Shapes and dtypes are checked by the caller against its model."""
    rundir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    path = rundir / RunDir.BEST_VAL
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != BEST_KIND or meta.get("epoch") != epoch:
        raise CheckpointError(
            f"{path} does not hold the weights of epoch {epoch}, the run's best validation "
            "epoch; the run directory was changed"
        )
    return {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}


def read_training_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a training checkpoint, the metadata checked against its schema."""
    tensors, meta = load_checkpoint(path)
    return tensors, validate_training_meta(meta, path, tensors=tensors)


def load_model_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Load the checkpoint's ``model/`` tensors into ``model``; refuse missing, extra, reshaped
    or re-typed weights (an int64 or float16 weight is never silently cast)."""
    state = {k: v for k, v in tensors.items() if k.startswith("model/")}
    check_state_dtypes({f"model/{k}": v for k, v in model.state_dict().items()}, state, path)
    model.load_state_dict({k[len("model/") :]: v for k, v in state.items()})


def load_method_state(
    method: TrainingMethod,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    path: Path,
    device: torch.device | None = None,
) -> None:
    """Restore the method's state from the checkpoint's ``method_state`` (its tensors moved to
    ``device``, the run's, when given); a checkpoint written before methods had state (no
    ``method_state``, or ``None``) leaves the method as built."""
    structure = meta.get("method_state")
    if structure is None:
        return
    try:
        state = unflatten_state(tensors, structure)
        method.load_state_dict(state if device is None else _on_device(state, device))
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path}: the method state does not match method {method.name!r}: {msg}"
        ) from None


SCALER_KEY = "grad_scaler"
"""Checkpoint metadata key of the fp16 gradient scaler's state (absent: a fresh scaler)."""

_SCALER_FIELDS = {
    "scale": float,
    "growth_factor": float,
    "backoff_factor": float,
    "growth_interval": int,
    "_growth_tracker": int,
}


def load_scaler_state(
    scaler: torch.amp.GradScaler | None, meta: dict[str, Any], path: Path
) -> None:
    """Restore an fp16 run's gradient scaler from the checkpoint's ``grad_scaler`` state.

    A checkpoint without it (written before scalers were saved, or by an fp32/bf16 run)
    leaves the scaler fresh; a run without a scaler ignores it. The state comes from a file:
    its fields are checked (finite positive scale and factors, non-negative integer counts)
    before the scaler takes them, or a one-line ``CheckpointError``.
    """
    structure = meta.get(SCALER_KEY)
    if scaler is None or structure is None or not scaler.is_enabled():
        return
    try:
        state = unflatten_state({}, structure)
    except (KeyError, CheckpointError, ValueError, TypeError):
        state = None
    problem = _scaler_problem(state)
    if problem is not None:
        raise CheckpointError(f"{path}: the gradient scaler state {problem}")
    scaler.load_state_dict(state)


def _scaler_problem(state: Any) -> str | None:
    if not isinstance(state, dict) or set(state) != set(_SCALER_FIELDS):
        return f"is not a GradScaler state (expected the keys {', '.join(_SCALER_FIELDS)})"
    for key, kind in _SCALER_FIELDS.items():
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"has {key} = {value!r}, expected a number"
        if kind is int and not float(value).is_integer():
            return f"has {key} = {value!r}, expected an integer"
        if not math.isfinite(value) or value < 0 or (key != "_growth_tracker" and value == 0):
            return f"has {key} = {value!r}, out of range"
    return None


def _on_device(value: Any, device: torch.device) -> Any:
    """``value`` (nested dicts/lists/tuples of tensors and plain values) with every tensor on
    ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _on_device(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_device(v, device) for v in value)
    return value


@dataclass
class Run:
    """A trained run: its config, model (weights loaded, eval mode) and task.

    Attributes:
        path: the run directory.
        config: the run's :class:`TrainConfig`.
        model: the network, ``[T, B, ...] -> [T, B, outputs]``, in eval mode.
        task: readout, loss and metrics of the run.
        method: the training method (for its loss and options; not used for inference).
        epoch: the epoch of the loaded checkpoint (the epochs trained).
        device: where the model is (:func:`load_run`'s ``device``); ``forward`` and ``predict``
            take batches from anywhere and return results on this device.
        weights_epoch: the epoch whose weights the model holds: ``epoch``, or the best
            validation epoch for a run that ended with those weights (early stopping,
            ``test_eval = "best-val"``; the summary's ``weights_epoch``).
    """

    path: Path
    config: TrainConfig
    model: nn.Module
    task: Task
    method: TrainingMethod
    epoch: int
    device: torch.device = torch.device("cpu")
    weights_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.weights_epoch is None:
            self.weights_epoch = self.epoch

    @property
    def loss(self) -> Loss:
        """The named loss the run trained on and reported."""
        return self.method.loss(self.task)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A dataset batch ``[B, ...]`` as the model's time-major input ``[T, B, ...]``.

        ``generator``: what a random encoder (Poisson) draws from, on the generator's device
        (default: torch's global RNG on ``x``'s device); deterministic encoders draw nothing.
        """
        return encode_batch(self.config, self.task.spec, x, generator)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The model's output ``[T, B, ...]`` (float32 or wider) for a dataset batch ``x``, in
        the run's precision (:func:`~.evaluation.eval_precision`) on :attr:`device`
        (``generator`` as for :meth:`encode`)."""
        self.model.eval()
        x = x.to(self.device)
        with autocast(self.device, eval_precision(self.config, self.device)):
            return full_precision(self.model(self.encode(x, generator)))

    def predict(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The task's prediction for a dataset batch (class indices for classification)."""
        return self.task.predict(self.forward(x, generator))

    @torch.no_grad()
    def stream(
        self,
        x: torch.Tensor,
        state: StreamState | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, StreamState]:
        """The model's output for the next steps of a dataset batch, and the state to pass on.

        Static data: ``x [B, *input_shape]`` is encoded with the run's encoder for ``steps``
        steps (default 1) from ``state.step`` on, within the run's ``T``. Temporal data:
        ``x [B, t, ...]`` is the next ``t`` frames (``steps``, if given, must be ``t``).
        Returns ``(output [steps, B, outputs]`` (float32 or wider, on :attr:`device`), state)``;
        ``state`` None starts at rest at step 0. The state (a
        :class:`~spikeweave.models.StreamState`) keeps the outputs, so after the last step
        :meth:`stream_predict` gives what :meth:`predict` gives for the whole sequence, bit for
        bit: chunk outputs concatenate to :meth:`forward`'s. For Poisson, pass generators
        seeded alike to both (on the CPU: a CUDA generator draws chunks differently).
        """
        # streaming serves loaded runs only: training never pays for importing it
        from ..models.streaming import StreamState, stream

        if state is not None and not isinstance(state, StreamState):
            raise InputError(
                f"stream: state must be a StreamState or None, got {type(state).__name__}"
            )
        start = 0 if state is None else state.step
        self.model.eval()
        x = x.to(self.device)
        if self.task.spec.temporal:
            if x.dim() < 2 or (steps is not None and steps != x.shape[1]):
                raise InputError(
                    f"stream: a temporal chunk must be [B, steps, ...]"
                    f"{'' if steps is None else f' with steps={steps}'}, got {tuple(x.shape)}"
                )
            seq = x.transpose(0, 1)
        else:
            steps = 1 if steps is None else steps
            total = self.config.effective_steps
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise InputError(f"stream: steps must be a positive int, got {steps!r}")
            if start + steps > total:
                raise InputError(
                    f"stream: the run encodes T={total} steps; the state is at step {start}, "
                    f"so {steps} more do not fit"
                )
            seq = encode_batch(
                self.config, self.task.spec, x, generator, window=(start, start + steps)
            )
        with autocast(self.device, eval_precision(self.config, self.device)):
            out, state = stream(self.model, seq, state, keep_outputs=True)
        return full_precision(out), state

    def stream_readout(self, state: StreamState) -> torch.Tensor:
        """The task's readout (``[B, ...]``; the time-averaged output) over the steps streamed
        into ``state`` by :meth:`stream`; after all steps, equal to the whole sequence's."""
        from ..models.streaming import streamed_outputs

        return self.task.readout(full_precision(streamed_outputs(state)))

    def stream_predict(self, state: StreamState) -> torch.Tensor:
        """The task's prediction (class indices for classification) over the steps streamed
        into ``state``; after all ``T`` steps, equal to :meth:`predict`'s."""
        from ..models.streaming import streamed_outputs

        return self.task.predict(full_precision(streamed_outputs(state)))

    def dataset(self, split: str = "test") -> Dataset:
        """Split ``train``, ``val`` or ``test`` of the run's named dataset, carved exactly as
        the trainer carved it (same validation split, same order; ``train`` with the run's
        ``train_transforms``, e.g. the same images poisoned)."""
        if split not in SPLITS or (split == "val" and not self.config.val_fraction):
            raise InputError(f"unknown split {split!r}; choose one of train, test (val "
                             "when the run held out val_fraction)")  # fmt: skip
        if not _named_data(self):
            raise DataError(
                f"{self.path} was trained on injected datasets; pass dataset= to evaluate"
            )
        options = data_options(self.config, self.task.spec.temporal)
        dataset = datasets.load(
            self.config.dataset, "test" if split == "test" else "train", **options
        )
        if split != "test":
            train, val = split_training(dataset, self.config, self.task.name == "classification")
            dataset = val if split == "val" else transform_train(self.config, self.task, train)
        return dataset

    def evaluate(self, split: str = "test", dataset: Dataset | None = None) -> dict[str, Any]:
        """``{"loss": ..., metric: ...}`` on ``split`` of the run's dataset, or on ``dataset``.

        The numbers equal those the trainer logged for the same checkpoint.
        """
        if dataset is None:
            dataset = self.dataset(split)
        return evaluate_model(self.model, self.task, self.loss, dataset, self.config)


def _named_data(run: Run) -> bool:
    if run.config.dataset_digest:  # your own data, recorded by its path and digest
        return True
    info = datasets.DATASETS.get(run.config.dataset)
    return info is not None and tuple(info.input_shape) == run.task.spec.input_shape


def load_run(
    run_dir: str | Path, method: TrainingMethod | None = None, device: str | torch.device = "cpu"
) -> Run:
    """The run in ``run_dir`` at its latest checkpoint (for a run that ended with its best
    validation epoch's weights, early stopping or ``test_eval = "best-val"``, those weights:
    :attr:`Run.weights_epoch`), its model on ``device`` (default the
    CPU, wherever the run trained; ``auto``, ``cuda``, ``cuda:N`` as for training; a GPU that
    is not there is a one-line ``ConfigError``). Checkpoints hold CPU tensors, so a run
    trained on a GPU loads on a CPU and the reverse. The returned config records ``device``.

    ``method`` is needed only for runs trained with an unregistered method instance.
    One-line errors for a missing directory or checkpoint, a corrupt checkpoint, or one whose
    weights do not fit the model its config describes.
    """
    rundir = RunDir(run_dir).require()
    path = rundir / RunDir.CHECKPOINT
    tensors, meta = read_training_checkpoint(path)
    config = TrainConfig.from_dict(meta["config"], source=str(path))
    spec_dict = meta.get("data_spec")
    spec = DataSpec.from_dict(spec_dict) if isinstance(spec_dict, dict) else None
    with torch.random.fork_rng(devices=[]):
        parts = assemble(
            config, None, method, with_data=False, spec=spec, task_name=meta.get("task"),
            weights=(tensors, path), device=device,
        )  # fmt: skip
    load_model_state(parts.model, tensors, path)
    load_method_state(parts.method, tensors, meta, path, parts.device)
    parts.model.eval()
    # the last row's weights_epoch: the run ended holding its best validation epoch's weights
    last = meta["history"][-1] if meta["history"] else {}
    held = last.get("weights_epoch") if isinstance(last, dict) else None
    return Run(
        rundir.path, parts.config, parts.model, parts.task, parts.method, int(meta["epoch"]),
        parts.device, int(held) if isinstance(held, int) and not isinstance(held, bool) else None,
    )  # fmt: skip
