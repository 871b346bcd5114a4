"""Where each file-based dataset's files go under the data root, and how they are found.

The data root is ``root`` when given (``--data-root``), else ``$SPIKEWEAVE_DATA``, else
``~/.spikeweave/data``. Each dataset has one canonical folder under it (listed first) and
accepts a few common alternative names (torchvision's, the archives' own). A dataset that a
system package installs (Fashion-MNIST: ``apt-get install dataset-fashion-mnist``) is also found
in that package's folder under :data:`SYSTEM_DATA`, after the data root.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FILES",
    "IDX_FILES",
    "LAYOUTS",
    "SYSTEM_DATA",
    "FileLayout",
    "default_root",
    "find_idx_file",
    "resolve_root",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def default_root() -> Path:
    """``$SPIKEWEAVE_DATA`` when set, else ``~/.spikeweave/data``."""
    env = os.environ.get("SPIKEWEAVE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".spikeweave" / "data"


def resolve_root(root: str | Path | None) -> Path:
    """The data root to use: ``root`` if given (and not empty), else :func:`default_root`."""
    if root is None or str(root) == "":
        return default_root()
    return Path(root).expanduser()


IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""File names of the IDX datasets per split (each may also end in ``.gz``)."""

CIFAR10_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """The IDX file ``stem`` in ``folder``: raw or ``.gz``, ``-idx`` or ``.idx`` spelling."""
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        path = folder / name
        if path.is_file():
            return path
    return None


def _idx_complete(folder: Path) -> bool:
    stems = IDX_FILES["train"] + IDX_FILES["test"]
    return all(find_idx_file(folder, s) is not None for s in stems)


def _idx_any(folder: Path) -> bool:
    stems = IDX_FILES["train"] + IDX_FILES["test"]
    return any(find_idx_file(folder, s) is not None for s in stems)


def _cifar_complete(folder: Path) -> bool:
    return all((folder / n).is_file() for n in CIFAR10_FILES["train"] + CIFAR10_FILES["test"])


def _cifar_any(folder: Path) -> bool:
    return any((folder / n).is_file() for n in CIFAR10_FILES["train"] + CIFAR10_FILES["test"])


def split_dir(folder: Path, split: str) -> Path | None:
    """``Train``/``Test`` (any letter case) inside an N-MNIST folder."""
    wanted = "train" if split == "train" else "test"
    if not folder.is_dir():
        return None
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name.lower() == wanted:
            return child
    return None


def _nmnist_complete(folder: Path) -> bool:
    return split_dir(folder, "train") is not None and split_dir(folder, "test") is not None


def _nmnist_any(folder: Path) -> bool:
    return split_dir(folder, "train") is not None or split_dir(folder, "test") is not None


def _gesture_complete(folder: Path) -> bool:
    return (folder / "trials_to_train.txt").is_file() and (folder / "trials_to_test.txt").is_file()


def _gesture_any(folder: Path) -> bool:
    return (folder / "trials_to_train.txt").is_file() or (folder / "trials_to_test.txt").is_file()


def _c10dvs_complete(folder: Path) -> bool:
    return all((folder / c).is_dir() for c in CIFAR10_CLASSES)


def _c10dvs_any(folder: Path) -> bool:
    return any((folder / c).is_dir() for c in CIFAR10_CLASSES)


SYSTEM_DATA = Path("/usr/share/datasets")
"""Debian's shared dataset folder, searched after the data root for the layouts that name a
folder in it (``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST's four IDX files in
``fashion-mnist/`` there). Files in the user's data root always win."""


@dataclass(frozen=True)
class FileLayout:
    """Candidate folders (relative to the data root, canonical first) and what goes inside.

    ``system`` names folders under :data:`SYSTEM_DATA` searched after the data root, and
    ``install`` says how to put the files there (a system package), for the error message.
    """

    dirs: tuple[str, ...]
    contents: str
    """What to put in the canonical folder, in words."""
    complete: Callable[[Path], bool]
    partial: Callable[[Path], bool]
    system: tuple[str, ...] = ()
    install: str = ""

    def candidates(self, root: Path) -> list[Path]:
        """Every folder searched, in order: under the data root, then the system folders."""
        return [root / d for d in self.dirs] + [SYSTEM_DATA / d for d in self.system]

    def locate(self, root: Path) -> Path | None:
        """The first candidate folder holding any of the dataset's files."""
        for folder in self.candidates(root):
            if folder.is_dir() and self.partial(folder):
                return folder
        return None

    def found(self, root: Path) -> bool:
        folder = self.locate(root)
        return folder is not None and self.complete(folder)

    def where(self, root: Path) -> str:
        """One line: the canonical folder and what goes in it (and the system package)."""
        also = f" (or: {self.install})" if self.install else ""
        return f"{root / self.dirs[0]}/  {self.contents}{also}"

    def require(self, name: str, root: Path) -> Path:
        """The dataset's folder, or a :class:`DataError` saying exactly what to put where."""
        folder = self.locate(root)
        if folder is not None:
            return folder
        looked = ", ".join(str(p) for p in self.candidates(root))
        also = f", or {self.install}" if self.install else ""
        raise DataError(
            f"{name}: files not found under the data root {root}. Put them here: "
            f"{root / self.dirs[0]}/  {self.contents}{also}. (Looked in: {looked}. Choose the "
            "data root with --data-root or the SPIKEWEAVE_DATA environment variable; see "
            "docs/data.md.)"
        )


_IDX_CONTENTS = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte (each raw or .gz)"
)

LAYOUTS: dict[str, FileLayout] = {
    "mnist": FileLayout(("mnist", "MNIST/raw", "MNIST"), _IDX_CONTENTS, _idx_complete, _idx_any),
    "fashion-mnist": FileLayout(
        ("fashion-mnist", "FashionMNIST/raw", "FashionMNIST", "fashion_mnist"),
        _IDX_CONTENTS,
        _idx_complete,
        _idx_any,
        system=("fashion-mnist",),
        install="apt-get install dataset-fashion-mnist",
    ),
    "cifar10": FileLayout(
        ("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"),
        "data_batch_1 ... data_batch_5, test_batch (the python version, cifar-10-python.tar.gz "
        "unpacked)",
        _cifar_complete,
        _cifar_any,
    ),
    "nmnist": FileLayout(
        ("nmnist", "N-MNIST", "NMNIST"),
        "Train/<digit 0-9>/*.bin and Test/<digit 0-9>/*.bin (Train.zip and Test.zip unpacked)",
        _nmnist_complete,
        _nmnist_any,
    ),
    "dvs-gesture": FileLayout(
        ("DvsGesture", "dvs-gesture/DvsGesture", "dvs-gesture"),
        "user*_*.aedat, user*_*_labels.csv, trials_to_train.txt, trials_to_test.txt "
        "(DvsGesture.tar.gz unpacked)",
        _gesture_complete,
        _gesture_any,
    ),
    "cifar10-dvs": FileLayout(
        ("cifar10-dvs", "CIFAR10-DVS", "CIFAR10DVS"),
        f"one folder per class ({', '.join(CIFAR10_CLASSES)}) holding its AEDAT 2.0 "
        "*.aedat recordings",
        _c10dvs_complete,
        _c10dvs_any,
    ),
}
