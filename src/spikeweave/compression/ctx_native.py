"""The compiled ``ctx`` block decoder: ``ctx_native.c`` built once per machine, loaded by ctypes.

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

from ..toolchain import build_library, c_compiler, cache_root

__all__ = ["ENV", "library", "unavailable_reason", "reset"]

ENV = "SPIKEWEAVE_CTX_NATIVE"
"""Set to ``0`` to decode ``ctx`` blocks in Python (constriction) only."""
_VERSION = 1  # SF_CTX_VERSION in the C source
_FLAGS = ["-O2", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math"]
_lock = threading.Lock()
_state: dict[str, object] = {}


def _load() -> ctypes.CDLL:
    if os.environ.get(ENV, "1").lower() in ("0", "false", "off", "no"):
        raise RuntimeError(f"disabled by {ENV}=0")
    if not sys.platform.startswith(("linux", "darwin")):
        raise RuntimeError(f"not supported on {sys.platform}")
    src = resources.files(__package__).joinpath("ctx_native.c").read_text()
    key = hashlib.sha256("\0".join([src, " ".join(_FLAGS), platform.machine()]).encode())
    path = cache_root() / "kernels" / f"sf_ctx_{key.hexdigest()[:16]}.so"
    if not path.exists():
        cc = c_compiler()
        if cc is None:
            raise RuntimeError("no C compiler found (set $CC)")
        build_library(cc, src, path, [_FLAGS])
    lib = ctypes.CDLL(str(path))
    if lib.sf_ctx_version() != _VERSION:
        raise RuntimeError("stale ctx decoder library")
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.sf_ctx_decode.argtypes = [p, i64, i64, i64, i64, ctypes.c_int32, i64, p, p, p, p]
    lib.sf_ctx_decode.restype = ctypes.c_int
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled decoder, built on the first call; None when it cannot be had (then
    :func:`unavailable_reason` says why)."""
    if "lib" in _state:
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if "lib" not in _state:
            try:
                _state["lib"] = _load()
            except Exception as exc:  # any failure means: decode in Python
                _state["lib"] = None
                _state["reason"] = f"{type(exc).__name__}: {exc}"
    return _state["lib"]  # type: ignore[return-value]


def unavailable_reason() -> str | None:
    """Why :func:`library` is None (None when it is available)."""
    library()
    return _state.get("reason")  # type: ignore[return-value]


def reset() -> None:
    """Forget the loaded library, so the next call loads (or refuses) it again (tests)."""
    with _lock:
        _state.clear()
