"""Where natively compiled code is built and cached: the C compiler and the cache folder.

Torch-free and import-light, so that the neuron kernels (:mod:`.functional.kernel_build`), the
event codec's compiled decoder (:mod:`.compression.ctx_native`) and the frame cache
(:mod:`.data.cache`) share one definition without any of them loading another's
dependencies (decoding an event file never imports PyTorch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root", "c_compiler", "build_library"]

CACHE_ENV = "SPIKEWEAVE_CACHE"
"""The environment variable naming the one folder all of spikeweave's caches live under."""


def cache_root() -> Path:
    """The folder spikeweave caches under: ``$SPIKEWEAVE_CACHE``, else
    ``$XDG_CACHE_HOME/spikeweave``, else ``~/.cache/spikeweave``.

    Each cache has a subfolder: ``kernels/`` (compiled CPU kernels and the codec's decoder),
    ``frames/`` (binned event frames, :mod:`spikeweave.data.cache`). Deleting the folder is
    always safe.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # expanduser("~") rather than Path.home(): it never raises when HOME cannot be determined.
    base = Path(xdg).expanduser() if xdg else Path(os.path.expanduser("~")) / ".cache"
    return base / "spikeweave"


def c_compiler() -> str | None:
    """The C compiler to build with: ``$CC`` if it is on the PATH, else ``cc``, ``gcc`` or
    ``clang``; None where there is none (callers fall back to their pure-Python path)."""
    cc = os.environ.get("CC")
    if cc and shutil.which(cc):
        return cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


def build_library(
    cc: str, src: str, out: Path, flag_sets: Sequence[Sequence[str]], libs: Sequence[str] = ()
) -> None:
    """Compile the C source ``src`` into the shared library ``out`` with the first of
    ``flag_sets`` that ``cc`` accepts (e.g. ``-march=native`` first, then without), linking
    ``libs``. The library appears atomically: concurrent builders never see a partial file.
    ``RuntimeError`` with each attempt's last compiler line when none succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        c_file = Path(tmp) / (out.stem + ".c")
        c_file.write_text(src)
        so = Path(tmp) / out.name
        errors = []
        for flags in flag_sets:
            cmd = [cc, *flags, str(c_file), "-o", str(so), *libs]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if proc.returncode == 0:
                os.replace(so, out)
                return
            errors.append((proc.stderr.strip().splitlines() or ["?"])[-1])
        raise RuntimeError(f"{cc} failed: {errors}")
