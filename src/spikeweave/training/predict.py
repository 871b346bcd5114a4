"""Inference on files: ``spikeweave predict RUN INPUT...``.

Each input is one of:

- an image file (``.png``, ``.jpg``, ... :data:`~spikeweave.data.own.IMAGE_SUFFIXES`): one
  sample; its size must be the run's input size (images are not resized), grey images are
  repeated over an RGB run's channels and colour images made grey for a 1-channel run;
- an ``.npz`` file with an array ``x`` (as :mod:`spikeweave.data.own` reads it: ``[N, H, W]``
  or ``[N, C, H, W]``, uint8 or float in [0, 1]; a run on event frames takes float
  ``[N, T, C, H, W]``): N samples, named ``FILE[i]``;
- an event file (any other suffix, for a run trained on an event set): the whole recording
  binned into the run's ``steps`` frames as that set's samples are.

Samples are encoded as the run encodes them (:meth:`~.run.Run.forward`), with the run's
evaluation seed for random encoders, and the readout gives the class (:meth:`~.run.Run.predict`)
and the class probabilities (:meth:`~spikeweave.tasks.Classification.probabilities`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import data as datasets
from ..data import own
from ..errors import ConfigError, InputError
from .evaluation import eval_seed
from .run import Run, load_run

__all__ = ["read_inputs", "predict_files", "predict_samples", "format_predictions"]


def _image(run: Run, path: Path) -> np.ndarray:
    shape = run.task.spec.input_shape
    if run.task.spec.temporal or len(shape) != 3:
        raise InputError(f"{path}: an image, but {run.path} takes {shape} samples, not images")
    x = own.read_image(path, channels=shape[0])
    if x.shape != shape:
        raise InputError(
            f"{path}: {x.shape[2]}x{x.shape[1]} pixels, but the run takes {shape[2]}x{shape[1]} "
            "images; resize it first (images are not resized here)"
        )
    return x.astype(np.float32) / 255.0


def _npz(run: Run, path: Path) -> np.ndarray:
    raw = own.read_bounded(path, own.MAX_FILE_BYTES, ".npz file")
    arrays = own.read_npz_arrays(path, raw, allowed=own.NPZ_KEYS)
    if "x" not in arrays:
        raise InputError(f"{path}: needs an array 'x' of samples")
    x = arrays["x"]
    if run.task.spec.temporal:
        if x.ndim != 5 or x.dtype.kind != "f" or not np.isfinite(x).all():
            raise InputError(f"{path}: 'x' must be float frames [N, T, C, H, W] for this run")
        x = x.astype(np.float32)
    else:
        x = own.as_images(x, "x", path)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
    if len(x) == 0:
        raise InputError(f"{path}: 'x' holds no samples")
    return x


def read_inputs(run: Run, paths: Sequence[str | Path]) -> tuple[list[str], torch.Tensor]:
    """``(names, samples)``: one name per sample (the file, ``FILE[i]`` for an ``.npz``) and
    the samples as a float32 batch ``[N, ...]`` on the CPU, shapes as the run's dataset yields."""
    names: list[str] = []
    parts: list[np.ndarray] = []
    for given in paths:
        path = own.resolve(given)
        if path.is_dir():
            raise InputError(f"{given}: a folder; pass image, .npz or event files")
        suffix = path.suffix.lower()
        if suffix in own.IMAGE_SUFFIXES:
            parts.append(_image(run, path)[None])
            names.append(str(given))
        elif suffix == ".npz":
            x = _npz(run, path)
            parts.append(x)
            names += [f"{given}[{i}]" for i in range(len(x))]
        elif run.task.spec.temporal:
            frames = datasets.event_datasets.recording_frames(
                run.config.dataset, path, run.config.steps
            )
            parts.append(frames[None])
            names.append(str(given))
        else:
            raise InputError(
                f"{given}: not an image ({', '.join(own.IMAGE_SUFFIXES)}) or .npz file; event "
                "files are read only for runs trained on an event set"
            )
    x = torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0)
    if len(names) and tuple(x.shape[1:]) != _sample_shape(run):
        raise InputError(
            f"the inputs are samples of shape {tuple(x.shape[1:])}, the run takes "
            f"{_sample_shape(run)}"
        )
    return names, x


def _sample_shape(run: Run) -> tuple[int, ...]:
    shape = run.task.spec.input_shape
    return (run.config.steps, *shape) if run.task.spec.temporal else shape


def class_names(run: Run) -> list[str] | None:
    """The run's class names (recorded from your own data, or the catalog's), else None."""
    if run.config.class_names:
        return list(run.config.class_names)
    found = datasets.DATASETS.get(run.config.dataset)
    if found is not None and len(found.classes) == run.task.spec.num_outputs:
        return list(found.classes)
    return None


def predict_samples(run: Run, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(classes [N] int64, probabilities [N, classes] float32)`` on the CPU for a batch of
    samples, in batches of the run's ``eval_batch_size``; random encoders draw from the run's
    evaluation seed, so the same inputs give the same answer."""
    if run.task.name != "classification":
        raise ConfigError(f"predict needs a classification run; {run.path} is {run.task.name}")
    classes, probs = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(eval_seed(run.config))
        for start in range(0, len(x), run.config.eval_batch_size):
            out = run.forward(x[start : start + run.config.eval_batch_size])
            classes.append(run.task.predict(out).cpu())
            probs.append(run.task.probabilities(out).cpu())
    return torch.cat(classes), torch.cat(probs)


def predict_files(
    run_dir: str | Path, paths: Sequence[str | Path], device: str = "cpu"
) -> list[dict[str, Any]]:
    """One record per sample of the files ``paths`` for the run in ``run_dir``: ``input``,
    ``class`` (index), ``name`` (the class name, or None), ``probabilities`` (one per
    class, summing to 1) and ``tied`` (the top probability is shared by several classes, e.g.
    an output layer that did not fire: ``class`` is then the lowest of them, not a choice)."""
    run = load_run(run_dir, device=device)
    if run.task.name != "classification":
        raise ConfigError(f"predict needs a classification run; {run.path} is {run.task.name}")
    names, x = read_inputs(run, paths)
    classes, probs = predict_samples(run, x)
    labels = class_names(run)
    return [
        {
            "input": name,
            "class": int(k),
            "name": labels[int(k)] if labels else None,
            "probabilities": [round(float(p), 6) for p in row],
            "tied": bool((row == row.max()).sum() > 1),
        }
        for name, k, row in zip(names, classes, probs, strict=True)
    ]


_TABLE_CLASSES = 10
"""With more classes the table shows only the predicted class's probability."""


def format_predictions(rows: list[dict[str, Any]], fmt: str = "table") -> str:
    """``rows`` of :func:`predict_files` as JSON (a list of objects) or an aligned table (one
    probability column per class up to :data:`_TABLE_CLASSES` classes)."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt != "table":
        raise ConfigError(f"unknown format {fmt!r}; choose one of json, table")
    if not rows:
        return ""
    count = len(rows[0]["probabilities"])
    header = ["input", "class", "name"]
    wide = count <= _TABLE_CLASSES
    header += [f"p{i}" for i in range(count)] if wide else ["p"]
    body = []
    for r in rows:
        probs = r["probabilities"] if wide else [r["probabilities"][r["class"]]]
        shown = f"{r['class']}*" if r.get("tied") else str(r["class"])
        body.append([r["input"], shown, r["name"] or "-", *(f"{p:.3f}" for p in probs)])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = []
    for row in [header, *body]:
        cells = [
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    if any(r.get("tied") for r in rows):
        lines.append("* tied: several classes share the top output (all silent when every p is "
                     "equal); the lowest index is shown, not a choice")  # fmt: skip
    return "\n".join(lines)
