"""Lazy re-exports for package ``__init__`` files: a name is imported on first use, so that
``import spikeweave`` (and the CLI's start) does not pay for torch, scikit-learn or matplotlib
before something needs them.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module-level ``__getattr__`` and ``__dir__`` for ``package``.

    ``exports`` maps each public name to the submodule that defines it, relative to
    ``package`` (``{"LIF": ".neurons"}``); a name equal to its submodule's last part
    (``{"encoding": ".encoding"}``) is the submodule itself, and so is any other submodule's
    name. The first access imports the submodule and stores the value in the package, so later
    accesses cost nothing.
    """
    module = sys.modules[package]

    def getattr_(name: str) -> Any:
        source = exports.get(name)
        if source is None and not name.startswith("__"):
            # any submodule too (``spikeweave.data``), as when the package imported it eagerly
            if importlib.util.find_spec(f"{package}.{name}") is not None:
                source = f".{name}"
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = importlib.import_module(source, package)
        value = target if source.rpartition(".")[2] == name else getattr(target, name)
        setattr(module, name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(module), *exports})

    return getattr_, dir_
