"""Your own data: a folder of images in class sub-folders, or an ``.npz`` file of arrays.

``spikeweave train --dataset PATH`` (and :func:`spikeweave.data.load` with a path) reads
either of:

- **an image folder** ``PATH/<class name>/*.png`` (also ``.jpg .jpeg .bmp .gif .tif .tiff
  .webp``; other files and hidden names are skipped). Classes are the sub-folders sorted by
  name (index 0 first). ``PATH/train/<class>/`` beside ``PATH/test/<class>/`` gives the split
  (the test classes must be among the training ones). Every image must have the same size;
  images are grey (1 channel) when all are ``1``/``L`` images, else RGB (3 channels; alpha is
  dropped). 16-bit and float images are refused. A link that leads out of ``PATH`` is refused.
- **an .npz file** (``numpy.savez``) with ``x`` (``[N, H, W]`` or ``[N, C, H, W]``; uint8 in
  [0, 255] or float in [0, 1]) and ``y`` (``[N]`` integer labels from 0), optionally
  ``x_test`` / ``y_test`` (both or neither, same sample shape) and ``classes`` (one string per
  class, e.g. ``np.array(["cat", "dog"])``). Any other array is refused.

Without a given test split, :data:`TEST_FRACTION` of every class (``round``, at least one
sample left for training) is held out as the test split, drawn with :data:`SPLIT_SEED`: the
same split on every machine.

Files are not trusted: ``.npz`` members are parsed without pickle, each ``.npy`` header's
shape and dtype are checked against the member's declared size and :data:`MAX_ARRAY_BYTES`
before anything is allocated; images are opened with Pillow, their size checked against
:data:`MAX_IMAGE_PIXELS` before decoding, and the decoded total against
:data:`MAX_DECODED_BYTES`. Every problem is a one-line :class:`~spikeweave.errors.DataError`.

A run records the resolved path, the data's SHA-256 :attr:`OwnData.digest` (of the ``.npz``
file's bytes; of a folder's file names and contents) and the class names; a run whose data
changed since is refused, not evaluated on different data.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from ..errors import DataError
from .static import ImageDataset

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_ARRAY_BYTES",
    "MAX_CLASSES",
    "MAX_DECODED_BYTES",
    "MAX_FILE_BYTES",
    "MAX_IMAGE_PIXELS",
    "NPZ_KEYS",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "OwnData",
    "read",
    "read_folder",
    "read_image",
    "read_npz",
    "read_npz_arrays",
    "read_bounded",
    "as_images",
    "hold_out",
    "resolve",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
MAX_FILE_BYTES = 4 << 30
"""Largest ``.npz`` file read (4 GiB)."""
MAX_ARRAY_BYTES = 2 << 30
"""Largest array inside an ``.npz`` (2 GiB decompressed; MNIST's 60000 images are 47 MB)."""
MAX_IMAGE_FILE_BYTES = 64 << 20
"""Largest single image file (64 MiB)."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Most pixels one image may have (checked from its header, before decoding)."""
MAX_DECODED_BYTES = 4 << 30
"""Most bytes a folder's images may take decoded (uint8, all of them together)."""
MAX_CLASSES = 10_000
"""Most classes (a label of 10**9 would otherwise ask for a 10**9-output network)."""
TEST_FRACTION = 0.2
"""Share of each class held out as the test split when the data gives none."""
SPLIT_SEED = 0
"""Seed of that held-out share."""
NPZ_KEYS = ("x", "y", "x_test", "y_test", "classes")
"""The arrays an ``.npz`` may hold."""
_MAX_NAME = 200


@dataclass(frozen=True)
class OwnData:
    """A user's dataset read into memory.

    Attributes:
        path: the resolved (absolute, links followed) file or folder.
        kind: ``npz`` or ``folder``.
        x_train, x_test: ``[N, C, H, W]`` uint8 (0-255) or float32 (0-1) on the CPU.
        y_train, y_test: ``[N]`` int64 labels in ``[0, len(classes))``.
        classes: one name per class, in index order.
        digest: SHA-256 (hex) of the data (see the module docstring).
        test_given: the data brought its own test split (else one was held out).
    """

    path: Path
    kind: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    digest: str
    test_given: bool

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape ``(C, H, W)``."""
        return tuple(int(v) for v in self.x_train.shape[1:])

    def describe(self) -> str:
        """One line: kind, sizes and how the test split was made."""
        how = "given" if self.test_given else f"held out {TEST_FRACTION:.0%}, seed {SPLIT_SEED}"
        return (
            f"your {'image folder' if self.kind == 'folder' else '.npz file'}, "
            f"{len(self.y_train)}/{len(self.y_test)} (test {how})"
        )

    def dataset(self, split: str) -> Dataset:
        """Split ``train`` or ``test``: ``(x [C, H, W] float32 in [0, 1], y int64)`` items."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        if x.dtype == np.uint8:
            return ImageDataset(x, y)
        return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def resolve(name: str | Path, what: str = "") -> Path:
    """``name`` as an absolute path with links followed; a missing one is a DataError (``what``
    says whose it is, e.g. "the run's dataset")."""
    path = Path(name).expanduser()
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        who = f"{what} " if what else ""
        raise DataError(
            f"{who}{path}: no such file or folder; give an image folder or an .npz file"
        ) from None
    except (OSError, RuntimeError) as exc:  # a loop of links, no permission
        raise DataError(f"{path}: cannot be resolved ({exc})") from None
    return real


# -- cache ------------------------------------------------------------------------------------

_last: tuple[tuple, OwnData] | None = None
"""The last dataset read, by its files' signature: the trainer asks for the train and the test
split (and the assembly for the shapes) of one dataset without reading it three times."""


def read(name: str | Path, digest: str = "", what: str = "") -> OwnData:
    """The dataset at ``name`` (an image folder or an ``.npz`` file); with ``digest`` (the one a
    run recorded), data whose digest differs is refused in one line."""
    global _last
    path = resolve(name, what)
    key = _signature(path)
    if _last is not None and _last[0] == key:
        data = _last[1]
    else:
        _last = None  # let the previous arrays go before reading new ones
        data = read_folder(path) if path.is_dir() else read_npz(path)
        _last = (key, data)
    if digest and digest != data.digest:
        raise DataError(
            f"{path} changed since the run was trained (its SHA-256 is now "
            f"{data.digest[:12]}..., the run recorded {digest[:12]}...); restore the data or "
            "train a new run"
        )
    return data


def _signature(path: Path) -> tuple:
    """What changes when the data does: the file's identity and times, or a folder's listing."""
    if not path.is_dir():
        st = path.stat()
        return (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    rows = []
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        for name in [*sorted(files), *dirs]:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            rows.append((root, name, st.st_ino, st.st_size, st.st_mtime_ns))
    return (str(path), tuple(rows))


# -- .npz -------------------------------------------------------------------------------------


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``), without following a link."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{path}: not a regular file")
        if st.st_size > limit:
            raise DataError(f"{path}: {st.st_size} bytes, more than the {limit} a {what} may have")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise DataError(f"{path}: grew past {limit} bytes while being read")
    return data


def _npy_member(zf: zipfile.ZipFile, key: str, path: Path) -> np.ndarray:
    """Array ``key`` of the open ``.npz``: its header checked against the member's declared size
    and :data:`MAX_ARRAY_BYTES` before the data is read; object (pickled) arrays refused."""
    info = zf.getinfo(f"{key}.npy")
    if info.file_size > MAX_ARRAY_BYTES + 65536:
        raise DataError(
            f"{path}: array {key!r} declares {info.file_size} bytes, more than {MAX_ARRAY_BYTES}"
        )
    try:
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise DataError(f"{path}: array {key!r} has .npy version {version}; save it again")
            if dtype.hasobject:
                raise DataError(
                    f"{path}: array {key!r} holds Python objects (it would need pickle, which "
                    "runs code); store numbers, or strings as a fixed-width str array"
                )
            count = 1
            for dim in shape:
                count *= int(dim)
            nbytes = count * dtype.itemsize
            if nbytes > MAX_ARRAY_BYTES:
                raise DataError(
                    f"{path}: array {key!r} is {tuple(shape)} {dtype} ({nbytes} bytes), more "
                    f"than {MAX_ARRAY_BYTES}"
                )
            if fh.tell() + nbytes != info.file_size:
                raise DataError(
                    f"{path}: array {key!r} declares {tuple(shape)} {dtype} ({nbytes} bytes) "
                    f"but its member holds {info.file_size - fh.tell()}"
                )
            raw = fh.read(nbytes + 1)
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: array {key!r} is corrupt ({msg})") from None
    if len(raw) != nbytes:
        raise DataError(f"{path}: array {key!r} is truncated")
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def read_npz_arrays(
    path: Path, data: bytes, allowed: tuple[str, ...] = NPZ_KEYS
) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` bytes ``data`` (read from ``path``), by name; names outside
    ``allowed`` and anything that is not a ``.npy`` member are refused."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise DataError(f"{path}: not an .npz file (numpy.savez writes one)") from None
    with zf:
        names = zf.namelist()
        bad = [n for n in names if not n.endswith(".npy") or n[:-4] not in allowed]
        if bad:
            raise DataError(
                f"{path}: unexpected member {bad[0]!r}; an .npz here holds only "
                f"{', '.join(allowed)}"
            )
        if len(set(names)) != len(names):
            raise DataError(f"{path}: an array name appears twice")
        return {n[:-4]: _npy_member(zf, n[:-4], path) for n in names}


def as_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Array ``key`` of ``path`` as ``[N, C, H, W]`` uint8 or float32 (in [0, 1], checked)."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or min(x.shape[1:], default=0) < 1:
        raise DataError(f"{path}: {key!r} is {x.shape}; expected [N, H, W] or [N, C, H, W]")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind != "f":
        raise DataError(
            f"{path}: {key!r} is {x.dtype}; expected uint8 in [0, 255] or float in [0, 1]"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise DataError(f"{path}: {key!r} is float but not all in [0, 1] (scale it, or use uint8)")
    return x


def _labels(y: np.ndarray, n: int, key: str, path: Path) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{path}: {key!r} is {y.dtype} {y.shape}; expected [N] integer labels")
    if len(y) != n:
        raise DataError(f"{path}: {n} samples but {len(y)} labels in {key!r}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= MAX_CLASSES):
        raise DataError(
            f"{path}: {key!r} labels must be in [0, {MAX_CLASSES}), found {y.min()}..{y.max()}"
        )
    return y.astype(np.int64)


def _class_names(names: np.ndarray | None, count: int, path: Path) -> tuple[str, ...]:
    if names is None:
        return tuple(str(i) for i in range(count))
    if names.ndim != 1 or names.dtype.kind != "U":
        raise DataError(f"{path}: 'classes' must be a 1-D str array, e.g. np.array(['a', 'b'])")
    out = tuple(str(v) for v in names)
    if len(out) < count:
        raise DataError(f"{path}: {len(out)} class names but labels up to {count - 1}")
    if len(set(out)) != len(out) or any(not v or len(v) > _MAX_NAME for v in out):
        raise DataError(f"{path}: class names must be distinct, non-empty and short")
    return out


def read_npz(path: Path) -> OwnData:
    """An ``.npz`` dataset (layout in the module docstring)."""
    raw = read_bounded(path, MAX_FILE_BYTES, ".npz file")
    digest = hashlib.sha256(raw).hexdigest()
    arrays = read_npz_arrays(path, raw)
    del raw
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{path}: needs arrays 'x' (images) and 'y' (labels)")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: give both 'x_test' and 'y_test' or neither")
    x = as_images(arrays["x"], "x", path)
    y = _labels(arrays["y"], len(x), "y", path)
    if len(x) == 0:
        raise DataError(f"{path}: 'x' holds no samples")
    given = "x_test" in arrays
    if given:
        xt = as_images(arrays["x_test"], "x_test", path)
        if xt.shape[1:] != x.shape[1:] or xt.dtype != x.dtype:
            raise DataError(
                f"{path}: 'x_test' is {xt.dtype} {xt.shape[1:]} per sample, 'x' "
                f"{x.dtype} {x.shape[1:]}; they must match"
            )
        yt = _labels(arrays["y_test"], len(xt), "y_test", path)
        if len(xt) == 0:
            raise DataError(f"{path}: 'x_test' holds no samples")
    top = max(int(y.max()), int(yt.max()) if given else 0) + 1
    classes = _class_names(arrays.get("classes"), top, path)
    if not given:
        train, test = hold_out(y, path)
        x, xt, y, yt = x[train], x[test], y[train], y[test]
    return OwnData(path, "npz", x, y, xt, yt, classes, digest, given)


def hold_out(y: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(train indices, test indices)``, both in order: :data:`TEST_FRACTION` of each class
    (at least one sample of each class stays for training), drawn with :data:`SPLIT_SEED`."""
    rng = np.random.default_rng(SPLIT_SEED)
    test: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(int(np.floor(len(idx) * TEST_FRACTION + 0.5)), len(idx) - 1)
        test.append(rng.permutation(idx)[:k])
    held = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    if len(held) == 0:
        raise DataError(
            f"{path}: too few samples to hold out a {TEST_FRACTION:.0%} test split; add "
            "samples or give the test split yourself"
        )
    mask = np.ones(len(y), bool)
    mask[held] = False
    return np.flatnonzero(mask), held


# -- image folders ----------------------------------------------------------------------------


def _listing(folder: str | Path, shown: str | Path) -> list[os.DirEntry]:
    """The entries of ``folder`` that are not hidden (no leading dot), sorted by name; one that
    cannot be listed is a DataError naming ``shown`` (the path as the user sees it)."""
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise DataError(f"{shown}: cannot list ({exc.strerror or exc})") from None
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _inside(entry_path: str, root: Path) -> Path:
    """The real path of ``entry_path``; a link that leads out of ``root`` is refused."""
    real = Path(os.path.realpath(entry_path))
    if real != root and not real.is_relative_to(root):
        raise DataError(
            f"{entry_path}: a link to {real}, outside the dataset folder {root}; copy the data "
            "in instead"
        )
    return real


def _scan(folder: Path, root: Path) -> list[tuple[str, list[Path]]]:
    """``[(class name, [image paths])]`` of the class folders in ``folder``, sorted by name."""
    classes = []
    for entry in _listing(folder, folder):
        real = _inside(entry.path, root)
        if not real.is_dir():
            continue  # a file beside the class folders (a README, a licence)
        images = []
        for f in _listing(real, entry.path):
            if f.name.lower().endswith(IMAGE_SUFFIXES):
                images.append(_inside(f.path, root))
        if not images:
            raise DataError(
                f"{entry.path}: class folder without images ({', '.join(IMAGE_SUFFIXES)})"
            )
        if len(entry.name) > _MAX_NAME:
            raise DataError(f"{entry.path}: class name longer than {_MAX_NAME} characters")
        classes.append((entry.name, images))
    if not classes:
        raise DataError(
            f"{folder}: no class folders; put images in {folder}/<class name>/ (one folder "
            "per class)"
        )
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{folder}: {len(classes)} class folders, more than {MAX_CLASSES}")
    return classes


_GREY = ("1", "L")
_REFUSED_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _open_image(path: Path, raw: bytes):  # noqa: ANN202 - a PIL image
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw), formats=_PIL_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{path}: the image is too large (a decompression bomb?)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow reports bad files through many types
        raise DataError(f"{path}: not a readable image ({type(exc).__name__})") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        raise DataError(f"{path}: {w}x{h} pixels, more than {MAX_IMAGE_PIXELS}")
    if im.mode in _REFUSED_MODES:
        raise DataError(f"{path}: {im.mode} images (16-bit or float) are not read; save 8-bit")
    return im


def _decode(path: Path, im, mode: str) -> np.ndarray:  # noqa: ANN001 - a PIL image
    """``im`` decoded to ``mode`` (``L`` or ``RGB``) as uint8 ``[C, H, W]``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. palette images with transparency
            arr = np.asarray(im.convert(mode), dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: corrupt image ({msg})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """One image file as uint8 ``[C, H, W]``: grey (C=1) or RGB (C=3); ``channels`` forces
    one of the two (a grey image given to an RGB run is repeated over the channels)."""
    path = Path(path)
    raw = read_bounded(path, MAX_IMAGE_FILE_BYTES, "image file")
    im = _open_image(path, raw)
    if channels is None:
        channels = 1 if im.mode in _GREY else 3
    if channels not in (1, 3):
        raise DataError(f"{path}: a run on {channels}-channel images cannot read image files")
    return _decode(path, im, "L" if channels == 1 else "RGB")


def read_folder(path: Path) -> OwnData:
    """An image-folder dataset (layout in the module docstring)."""
    root = path
    subdirs = {e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")}
    given = {"train", "test"} <= subdirs
    if given:
        others = sorted(subdirs - {"train", "test"})
        if others:
            raise DataError(
                f"{root}: has train/ and test/ beside {others[0]}/; keep only the two split "
                "folders (each with class folders) or only class folders"
            )
        train_classes = _scan(root / "train", root)
        test_classes = _scan(root / "test", root)
        names = [c for c, _ in train_classes]
        extra = [c for c, _ in test_classes if c not in names]
        if extra:
            raise DataError(f"{root}/test/{extra[0]}: a class with no training folder")
        splits = {"train": train_classes, "test": test_classes}
    else:
        classes = _scan(root, root)
        names = [c for c, _ in classes]
        splits = {"all": classes}
    index = {c: i for i, c in enumerate(names)}
    files = [
        (split, index[c], p) for split, classes in splits.items() for c, ps in classes for p in ps
    ]
    digest = hashlib.sha256()
    first: tuple[int, int] | None = None
    opened = []
    total = 0
    grey = True
    for split, label, p in files:
        raw = read_bounded(p, MAX_IMAGE_FILE_BYTES, "image file")
        digest.update(f"{p.relative_to(root)}\0{hashlib.sha256(raw).hexdigest()}\n".encode())
        im = _open_image(p, raw)
        if first is None:
            first = im.size
        elif im.size != first:
            raise DataError(
                f"{p}: {im.size[0]}x{im.size[1]} pixels, but the images before it are "
                f"{first[0]}x{first[1]}; every image must have the same size"
            )
        total += 3 * first[0] * first[1]
        if total > MAX_DECODED_BYTES:
            raise DataError(f"{root}: the images take more than {MAX_DECODED_BYTES} bytes decoded")
        grey = grey and im.mode in _GREY
        opened.append((split, label, p, im))
    mode = "L" if grey else "RGB"
    x = np.stack([_decode(p, im, mode) for _, _, p, im in opened])
    y = np.array([label for _, label, _, _ in opened], np.int64)
    split_of = np.array([s for s, _, _, _ in opened])
    if given:
        tr, te = np.flatnonzero(split_of == "train"), np.flatnonzero(split_of == "test")
    else:
        tr, te = hold_out(y, root)
    return OwnData(root, "folder", x[tr], y[tr], x[te], y[te], tuple(names), digest.hexdigest(),
                   given)  # fmt: skip
