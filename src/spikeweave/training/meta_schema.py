"""What a training checkpoint's metadata must hold: the schema the trainer writes and resumes.

A valid digest (:mod:`spikeweave.checkpoint_file`) proves a file is intact, not that whatever
wrote it wrote a training state this version can resume. :data:`TRAINING_META_SCHEMA` lists,
key by key, every field the trainer and :func:`~spikeweave.training.run.load_run` read, and
:func:`validate_training_meta` checks a file's metadata against it before any field is used,
so a wrong field is a one-line :class:`~spikeweave.errors.CheckpointError` naming the file and
the field, never a ``KeyError`` or a silently wrong resume.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from ..errors import CheckpointError, shown
from ..nested_state import DICT_MARKER, structure_problem, structure_tensors

__all__ = ["TRAINING_KIND", "TRAINING_META_SCHEMA", "MetaField", "validate_training_meta"]

TRAINING_KIND = "spikeweave-training-state"
"""The ``"kind"`` of the metadata that :class:`~spikeweave.training.Trainer` checkpoints carry."""

# A check gets (value, the whole metadata) and returns None when the value is good, else the
# problem as a phrase ("is 'abc' (str), expected ..."). Checks run in schema order, so a check may
# rely on any field listed above it (epoch on config, history on epoch).
_Check = Callable[[Any, Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class MetaField:
    """One key of the training-state metadata: whether it must be present, what it must be (in
    words, for readers of the schema) and the check that decides."""

    required: bool
    expected: str
    check: _Check


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _of_type(kind: type, expected: str) -> _Check:
    def check(value: Any, meta: Mapping[str, Any]) -> str | None:
        return None if isinstance(value, kind) else f"is {shown(value)}, expected {expected}"

    return check


def _check_kind(value: Any, meta: Mapping[str, Any]) -> str | None:
    if isinstance(value, str) and value == TRAINING_KIND:
        return None
    return f"is {shown(value)}, expected {TRAINING_KIND!r} (not a training checkpoint)"


def _check_config(value: Any, meta: Mapping[str, Any]) -> str | None:
    if not isinstance(value, dict):
        return f"is {shown(value)}, expected an object (the run's TrainConfig)"
    if "epochs" not in value:
        return "has no 'epochs'"
    epochs = value["epochs"]
    if not _is_int(epochs) or epochs < 1:
        return f"has epochs {shown(epochs)}, expected a positive int"
    return None


def _check_epoch(value: Any, meta: Mapping[str, Any]) -> str | None:
    epochs = meta["config"]["epochs"]
    if _is_int(value) and 0 <= value <= epochs:
        return None
    return f"is {shown(value)}, expected an int from 0 to config epochs ({epochs})"


def _check_history(value: Any, meta: Mapping[str, Any]) -> str | None:
    epoch = meta["epoch"]
    if not isinstance(value, list):
        return f"is {shown(value)}, expected a list of {epoch} per-epoch records"
    if len(value) != epoch:
        return f"has {len(value)} records, expected {epoch} (one per completed epoch)"
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            return f"item {i} is {shown(row)}, expected an object with an int 'epoch'"
        # The trainer appends the row of epoch i + 1 at index i; anything else means the
        # history and the weights are from different points of the run.
        if not _is_int(row.get("epoch")) or row["epoch"] != i + 1:
            return f"item {i} has epoch {shown(row.get('epoch'))}, expected {i + 1}"
    return None


def _check_wall_time(value: Any, meta: Mapping[str, Any]) -> str | None:
    if _is_number(value) and math.isfinite(value) and value >= 0:
        return None
    return f"is {shown(value)}, expected a finite number of seconds >= 0"


def _check_state_structure(value: Any, meta: Mapping[str, Any]) -> str | None:
    # None: the training method has no optimizer (or scheduler), e.g. a local learning rule.
    if value is None:
        return None
    # A state_dict() is a dict, so flatten_state turned it into {"__dict__": [...]}.
    if not (isinstance(value, dict) and set(value) == {DICT_MARKER}):
        return (
            f"is {shown(value)}, expected null or the flatten_state structure of a "
            "state_dict (an object {'__dict__': [...]})"
        )
    problem = structure_problem(value)
    return None if problem is None else f"is not a flatten_state structure ({problem})"


def _check_versions(value: Any, meta: Mapping[str, Any]) -> str | None:
    if not isinstance(value, dict):
        return f"is {shown(value)}, expected an object of version strings"
    for key, item in value.items():
        if not isinstance(item, str):
            return f"entry {key!r} is {shown(item)}, expected a version string"
    return None


TRAINING_META_SCHEMA: Mapping[str, MetaField] = MappingProxyType(
    {
        "kind": MetaField(True, repr(TRAINING_KIND), _check_kind),
        "config": MetaField(True, "object with a positive int 'epochs'", _check_config),
        "epoch": MetaField(True, "int, 0 <= epoch <= config['epochs']", _check_epoch),
        "history": MetaField(
            True, "list of epoch objects, history[i]['epoch'] == i + 1", _check_history
        ),
        "wall_time_s": MetaField(True, "finite number >= 0", _check_wall_time),
        "optimizer": MetaField(
            True, "null or flatten_state structure of a dict", _check_state_structure
        ),
        "scheduler": MetaField(
            True, "null or flatten_state structure of a dict", _check_state_structure
        ),
        "versions": MetaField(True, "object of str", _check_versions),
        "task": MetaField(False, "str", _of_type(str, "a str")),
        "method": MetaField(False, "str", _of_type(str, "a str")),
        "method_state": MetaField(False, "object", _of_type(dict, "an object")),
        # an fp16 run's GradScaler state (older files and other precisions have none)
        "grad_scaler": MetaField(
            False, "null or flatten_state structure of a dict", _check_state_structure
        ),
        "data_spec": MetaField(False, "object", _of_type(dict, "an object")),
    }
)
"""What :func:`validate_training_meta` checks, key by key, in this order."""

_NOT_TRAINING = (
    "it was not written by spikeweave's Trainer (or by an incompatible version); "
    "use another checkpoint"
)


def validate_training_meta(
    meta: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    tensors: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Check the metadata of a training checkpoint against :data:`TRAINING_META_SCHEMA`.

    ``meta`` is the metadata :func:`~spikeweave.checkpoint_file.load_checkpoint` returned for
    the file ``path`` (used only in messages). A valid digest proves the file is intact, not that
    whatever wrote it wrote a training state this version can resume, so every field the trainer
    reads is checked: ``kind`` is ``"spikeweave-training-state"``; ``config`` an object with a
    positive int ``epochs``; ``epoch`` an int from 0 to ``config["epochs"]``; ``history`` a list
    of ``epoch`` objects where ``history[i]["epoch"] == i + 1``; ``wall_time_s`` a finite number
    >= 0; ``optimizer`` and ``scheduler`` ``None`` (the method has none) or
    :func:`~spikeweave.nested_state.flatten_state` structures of a dict that
    :func:`~spikeweave.nested_state.unflatten_state` accepts; ``versions`` an object of
    strings. ``task`` (str), ``method`` (str), ``method_state``, ``grad_scaler`` and
    ``data_spec`` (objects) are optional and checked when present.
    With ``tensors`` (the file's tensors), every tensor the optimizer and scheduler
    structures refer to must be among them.

    Other keys are accepted and left alone, so a checkpoint written by a newer spikeweave that
    adds fields still resumes here; only the fields this version reads must be right.

    Returns ``meta`` itself.

    Raises:
        CheckpointError: one line naming the file and the first bad or missing field.
    """

    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: {problem}; {_NOT_TRAINING}")

    if not isinstance(meta, dict):
        raise refuse(f"its metadata is {shown(meta)}, expected an object")
    for key, field in TRAINING_META_SCHEMA.items():
        if key not in meta:
            if field.required:
                raise refuse(f"training-state field {key!r} is missing")
            continue
        problem = field.check(meta[key], meta)
        if problem is not None:
            raise refuse(f"training-state field {key!r} {problem}")
    if tensors is not None:
        for key in ("optimizer", "scheduler"):
            if meta[key] is None:
                continue
            for name in structure_tensors(meta[key]):
                if name not in tensors:
                    raise refuse(
                        f"training-state field {key!r} refers to tensor {name!r}, "
                        "which the file does not hold"
                    )
    return meta
