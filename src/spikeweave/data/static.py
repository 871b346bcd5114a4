"""Readers for the static image datasets: MNIST and Fashion-MNIST (IDX), CIFAR-10 (python batches).

- IDX (LeCun's format, raw or gzip-compressed, detected from the gzip magic, not the suffix):
  bytes 0-1 zero, byte 2 the element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
  0x0D float32, 0x0E float64), byte 3 the number of dimensions, then one big-endian uint32 per
  dimension, then the data, big-endian, row-major. Nothing may follow the data.
- CIFAR-10 python batches: pickles of a dict with ``b"data"`` (uint8 ``[N, 3072]``, 1024 red,
  1024 green then 1024 blue values per image, row-major 32×32) and ``b"labels"`` (N ints 0-9).
  They are read with a *restricted* unpickler that can only rebuild numpy arrays: a pickle can
  run arbitrary code, and a file found on disk is not trusted.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..atomic import atomic_write_bytes
from ..errors import DataError
from .events import read_file
from .layouts import CIFAR10_FILES, IDX_FILES, LAYOUTS, find_idx_file

__all__ = [
    "IDX_TYPES",
    "MAX_IDX_BYTES",
    "read_idx",
    "write_idx",
    "read_cifar_batch",
    "ImageDataset",
    "load_idx_dataset",
    "load_cifar10",
    "IDX_FILES",
    "CIFAR10_FILES",
]

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# -- IDX --------------------------------------------------------------------------------------


MAX_IDX_BYTES = 1 << 31
"""Most data bytes an IDX file may declare (2 GiB; MNIST's training images are 47 MB)."""
_DEFLATE_MAX_RATIO = 1032
"""Deflate (gzip) expands a byte to at most 1032 (zlib's documented limit: a 258-byte match
costs at least 2 bits), so a .gz file cannot hold more than 1032 times its size."""


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed or not), in native byte order.

    The header is read first (from the gzip stream, without inflating the rest); its shape is
    checked against :data:`MAX_IDX_BYTES` and against what the file's size can hold before
    the data is read, and at most one byte past the declared data is inflated."""
    path = Path(path)
    data = read_file(path)
    where = ""
    gz = data[:2] == b"\x1f\x8b"
    if gz:
        where = " of the decompressed data"
        stream = gzip.GzipFile(fileobj=io.BytesIO(data))

        def take(n: int) -> bytes:
            try:
                return stream.read(n)
            except (OSError, EOFError, zlib.error) as exc:
                raise DataError(f"{path}: corrupt or truncated gzip file ({exc})") from None

    else:
        pos = 0

        def take(n: int) -> bytes:
            nonlocal pos
            out = data[pos : pos + n]
            pos += len(out)
            return out

    head = take(4)
    if len(head) < 4:
        raise DataError(f"{path}: truncated: {len(head)} bytes, an IDX header needs at least 4")
    if head[0] != 0 or head[1] != 0:
        raise DataError(
            f"{path}: not an IDX file: bytes 0-1{where} are {head[:2].hex()}, expected 0000"
        )
    code, ndim = head[2], head[3]
    if code not in IDX_TYPES:
        raise DataError(f"{path}: unknown IDX element type 0x{code:02x} at byte offset 2{where}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header at byte offset 3{where} declares 0 dimensions")
    header = 4 + 4 * ndim
    raw_dims = take(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(
            f"{path}: truncated header: {ndim} dimensions need {header} bytes, the file{where} "
            f"has {4 + len(raw_dims)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    dtype = IDX_TYPES[code]
    expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
    room = _DEFLATE_MAX_RATIO * len(data) if gz else len(data) - header
    if expected > MAX_IDX_BYTES or (gz and expected > room):
        raise DataError(
            f"{path}: the header's shape {dims} declares {expected} bytes of data, more than "
            f"{'this ' + str(len(data)) + '-byte file can hold' if gz else 'allowed'} "
            f"(at most {MAX_IDX_BYTES})"
        )
    body = take(expected + 1)  # one byte more shows whether anything follows the data
    present = len(body)
    if present < expected:
        raise DataError(
            f"{path}: truncated: shape {dims} needs {expected} bytes of data from byte offset "
            f"{header}{where}, only {present} are there (cut at byte offset {header + present})"
        )
    if present > expected:
        extra = f"{len(data) - header - expected} " if not gz else ""
        raise DataError(
            f"{path}: {extra}unexpected byte(s) after the data, from byte offset "
            f"{header + expected}{where}: the header's shape {dims} does not match the file"
        )
    arr = np.frombuffer(body, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip when ``compress`` or the name ends in ``.gz``),
    atomically."""
    path = Path(path)
    arr = np.asarray(array)
    codes = {v.newbyteorder("=").str.lstrip("<>|="): k for k, v in IDX_TYPES.items()}
    key = arr.dtype.newbyteorder("=").str.lstrip("<>|=")
    if key not in codes:
        raise DataError(f"IDX cannot store dtype {arr.dtype}")
    code = codes[key]
    head = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    blob = head + arr.astype(IDX_TYPES[code]).tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        blob = gzip.compress(blob)
    return atomic_write_bytes(path, blob)


# -- CIFAR-10 ---------------------------------------------------------------------------------


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


class _NdarrayName:
    """What ``numpy.ndarray`` unpickles to: only a name for :func:`_checked_reconstruct`.
    Calling it (``ndarray(shape)``) is refused, since it allocates whatever shape it is told."""


def _checked_reconstruct(subtype: object, shape: object, dtype: object) -> np.ndarray:
    """numpy's ``_reconstruct`` as numpy pickles arrays: an empty ndarray that ``__setstate__``
    then fills, and which numpy checks against the pickled bytes. Any other shape would be
    allocated from the file's say-so, so it is refused."""
    if subtype is not _NdarrayName or shape not in ((0,), [0]):
        raise pickle.UnpicklingError("refusing an array not rebuilt from its own data")
    return _numpy_reconstruct()(np.ndarray, (0,), dtype)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; refuses every other global. Arrays are
    only built from the bytes they carry (numpy checks them against the shape), never
    allocated from a declared shape."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR-10 batch holds only numpy arrays"
            )
        if name == "_reconstruct":
            return _checked_reconstruct
        if name == "ndarray":
            return _NdarrayName
        if module == "_codecs":
            import codecs

            return codecs.encode
        return getattr(np, name)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, 3, 32, 32]`` and labels ``int64 [N]`` of one CIFAR-10 python batch."""
    path = Path(path)
    data = read_file(path)
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except RecursionError:
        raise DataError(f"{path}: corrupt CIFAR-10 batch (nesting too deep)") from None
    except Exception as exc:  # pickle reports corruption through many exception types
        raise DataError(
            f"{path}: not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a CIFAR-10 batch is a dict, found {type(obj).__name__}")
    images = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if not isinstance(images, np.ndarray) or labels is None:
        raise DataError(f"{path}: a CIFAR-10 batch needs 'data' (an array) and 'labels' entries")
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise DataError(
            f"{path}: 'data' is {images.dtype} {images.shape}, expected uint8 [N, 3072]"
        )
    try:
        y = np.asarray(labels)
    except Exception:  # noqa: BLE001 - ragged or odd objects
        raise DataError(f"{path}: 'labels' is not a list of integers") from None
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{path}: 'labels' is not a list of integers")
    if len(y) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{path}: labels must be 0-9, found {y.min()}..{y.max()}")
    return images.reshape(-1, 3, 32, 32).copy(), y.astype(np.int64)


# -- datasets ---------------------------------------------------------------------------------


class ImageDataset(Dataset):
    """uint8 images ``[N, C, H, W]`` kept compact; items are ``(float32 image in [0, 1], y)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels")
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i].float() / 255.0, self.labels[i]


def load_idx_dataset(name: str, folder: Path, split: str) -> ImageDataset:
    """MNIST-style IDX images (``[N, 28, 28]`` uint8) and labels (0-9) from ``folder``."""
    img_stem, lbl_stem = IDX_FILES[split]
    paths = [find_idx_file(folder, s) for s in (img_stem, lbl_stem)]
    missing = [s for s, p in zip((img_stem, lbl_stem), paths, strict=True) if p is None]
    if missing:
        raise DataError(
            f"{name}: {', '.join(missing)} (raw or .gz) not found in {folder}; put the four IDX "
            f"files {', '.join(IDX_FILES['train'] + IDX_FILES['test'])} there"
        )
    img_path, lbl_path = paths
    assert img_path is not None and lbl_path is not None
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{img_path}: holds {images.dtype} {images.shape}, expected uint8 [N, 28, 28]"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{lbl_path}: holds {labels.dtype} {labels.shape}, expected uint8 [N]")
    if len(images) != len(labels):
        raise DataError(f"{img_path} has {len(images)} images but {lbl_path} {len(labels)} labels")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{lbl_path}: labels must be 0-9, found up to {labels.max()}")
    return ImageDataset(images[:, None], labels.astype(np.int64))


def load_cifar10(folder: Path, split: str) -> ImageDataset:
    """CIFAR-10 from the python batch files in ``folder``."""
    names = CIFAR10_FILES[split]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"cifar10: {', '.join(missing)} not found in {folder}; put the python batches "
            f"({', '.join(CIFAR10_FILES['train'] + CIFAR10_FILES['test'])}) there"
        )
    parts = [read_cifar_batch(folder / n) for n in names]
    return ImageDataset(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    )


def mnist(root: Path, split: str) -> ImageDataset:
    """MNIST from ``<root>/mnist/`` (IDX files, raw or .gz)."""
    return load_idx_dataset("mnist", LAYOUTS["mnist"].require("mnist", root), split)


def fashion_mnist(root: Path, split: str) -> ImageDataset:
    """Fashion-MNIST from ``<root>/fashion-mnist/`` (IDX files, raw or .gz)."""
    name = "fashion-mnist"
    return load_idx_dataset(name, LAYOUTS[name].require(name, root), split)


def cifar10(root: Path, split: str) -> ImageDataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py/`` (python batches)."""
    return load_cifar10(LAYOUTS["cifar10"].require("cifar10", root), split)
