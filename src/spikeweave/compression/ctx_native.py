"""The compiled block coders: ``ctx_native.c`` (the ``ctx`` decoder of format version 2),
``ctx3_native.c`` (the ``ctx3`` encoder and decoder of version 3) and ``rans_native.c`` (the
``rans`` encoder loop and decoder of version 4), each built once per machine and loaded by
ctypes.

Decoding a ``ctx`` block in Python costs one ``constriction`` call per context and sub-block
(~0.15 M events/s on N-MNIST); the C decoder reads the same bitstream symbol by symbol at
tens of M events/s. Nothing is compiled at install time: the first decode compiles the source
with the system C compiler (``$CC``, else ``cc``/``gcc``/``clang``, ~0.3 s) into ``kernels/``
under the spikeweave cache root (the same folder as :mod:`spikeweave.functional.kernel_build`,
whose module is not imported here since it loads PyTorch), keyed by a hash of the source and
flags. Without a compiler, with ``SPIKEWEAVE_CTX_NATIVE=0``, or on any build failure,
:func:`library` is None and :mod:`.ctxcode` decodes in Python: both read the same bitstream,
and the tests hold them equal.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import sys
import threading
from importlib import resources

from ..errors import DataError
from ..toolchain import build_library, c_compiler, cache_root

__all__ = ["ENV", "coder", "library", "unavailable_reason", "reset"]

ENV = "SPIKEWEAVE_CTX_NATIVE"
"""Set to ``0`` to decode ``ctx`` blocks in Python (constriction) only."""
_VERSION = {"ctx": 1, "ctx3": 1, "rans": 1}  # SF_*_VERSION in the C sources
_SOURCE = {"ctx": "ctx_native.c", "ctx3": "ctx3_native.c", "rans": "rans_native.c"}
_FLAGS = ["-O2", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math"]
_lock = threading.Lock()
_state: dict[str, object] = {}


def _load(name: str) -> ctypes.CDLL:
    if os.environ.get(ENV, "1").lower() in ("0", "false", "off", "no"):
        raise RuntimeError(f"disabled by {ENV}=0")
    if not sys.platform.startswith(("linux", "darwin")):
        raise RuntimeError(f"not supported on {sys.platform}")
    src = resources.files(__package__).joinpath(_SOURCE[name]).read_text()
    key = hashlib.sha256("\0".join([src, " ".join(_FLAGS), platform.machine()]).encode())
    stem = "sf_ctx" if name == "ctx" else f"sf_{name}"
    path = cache_root() / "kernels" / f"{stem}_{key.hexdigest()[:16]}.so"
    if not path.exists():
        cc = c_compiler()
        if cc is None:
            raise RuntimeError("no C compiler found (set $CC)")
        build_library(cc, src, path, [_FLAGS])
    lib = ctypes.CDLL(str(path))
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    if name == "ctx":
        if lib.sf_ctx_version() != _VERSION[name]:
            raise RuntimeError("stale ctx decoder library")
        lib.sf_ctx_decode.argtypes = [p, i64, i64, i64, i64, ctypes.c_int32, i64, p, p, p, p]
        lib.sf_ctx_decode.restype = ctypes.c_int
        return lib
    if name == "rans":
        if sys.byteorder != "little":  # the decoder writes little-endian event records
            raise RuntimeError("the compiled rans decoder needs a little-endian machine")
        if lib.sf_rans_version() != _VERSION[name]:
            raise RuntimeError("stale rans coder library")
        lib.sf_rans_encode.argtypes = [p, p, i64, ctypes.c_int32, p, i64]
        lib.sf_rans_encode.restype = ctypes.c_int64
        lib.sf_rans_workspace.argtypes = [i64]
        lib.sf_rans_workspace.restype = i64
        lib.sf_rans_decode.argtypes = [p, i64, i64, i64, i64, ctypes.c_int32, i64, p, p, i64]
        lib.sf_rans_decode.restype = ctypes.c_int
        return lib
    if lib.sf_ctx3_version() != _VERSION[name]:
        raise RuntimeError("stale ctx3 coder library")
    lib.sf_ctx3_encode.argtypes = [p, p, p, p, i64, i64, i64, ctypes.c_int32, p, i64]
    lib.sf_ctx3_encode.restype = ctypes.c_int64
    lib.sf_ctx3_decode.argtypes = [p, i64, i64, i64, i64, ctypes.c_int32, i64, p, p, p, p]
    lib.sf_ctx3_decode.restype = ctypes.c_int
    return lib


def library(name: str = "ctx") -> ctypes.CDLL | None:
    """The compiled coder ``name`` (``"ctx"``: the version-2 decoder; ``"ctx3"``: the
    version-3 encoder and decoder; ``"rans"``: version 4's), built on the first call; None
    when it cannot be had (then :func:`unavailable_reason` says why)."""
    if name in _state:
        return _state[name]  # type: ignore[return-value]
    with _lock:
        if name not in _state:
            try:
                _state[name] = _load(name)
            except Exception as exc:  # any failure means: code in Python
                _state[name] = None
                _state[f"{name}:reason"] = f"{type(exc).__name__}: {exc}"
    return _state[name]  # type: ignore[return-value]


def unavailable_reason(name: str = "ctx") -> str | None:
    """Why :func:`library` is None (None when it is available)."""
    library(name)
    return _state.get(f"{name}:reason")  # type: ignore[return-value]


def coder(name: str, native: bool | None) -> ctypes.CDLL | None:
    """The compiled coder ``name`` as a block codec asks for it: ``native`` False gives None
    (the Python reference), None the compiled coder when it can be had, True the compiled one
    or a :class:`DataError` saying why it cannot be had."""
    if native is False:
        return None
    lib = library(name)
    if lib is None and native:
        what = "decoder" if name == "ctx" else "coder"  # version 2's library only decodes
        raise DataError(f"no compiled {name} {what}: {unavailable_reason(name)}")
    return lib


def reset() -> None:
    """Forget the loaded libraries, so the next call loads (or refuses) them again (tests)."""
    with _lock:
        _state.clear()
