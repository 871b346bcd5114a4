"""Named choices: one registry pattern for neurons, surrogates, encoders, models, tasks, methods
and experiments.

Each entry registers beside its definition (``@MODELS.register("mlp")``). Modules that
register entries but are too heavy or too late to import eagerly are listed as the registry's
``providers``: they are imported on the first lookup, so ``names()`` is always complete without
a hand-kept list of names anywhere else. CLI help ("lif | klif | if") and "choose one of" errors
are generated from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from .errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table with generated help and one-line errors.

    Args:
        kind: what the entries are, as a user would say it ("neuron", "training method").
        providers: dotted module names imported on first lookup (they register entries).
    """

    def __init__(self, kind: str, providers: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}
        self._providers = providers
        self._loaded = not providers

    def register(self, name: str, obj: T | None = None, *, help: str = "") -> Any:
        """Register ``obj`` as ``name``; without ``obj``, return a decorator that does.

        ``help`` is a few words for the CLI (default: the first line of the docstring).
        """

        def add(value: T) -> T:
            if name in self._entries and self._entries[name] is not value:
                raise ConfigError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = value
            doc = (getattr(value, "__doc__", None) or "").strip().splitlines()
            self._help[name] = help or (doc[0].rstrip(".") if doc else "")
            return value

        return add(obj) if obj is not None else add

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._providers:
            importlib.import_module(module)

    def get(self, name: str) -> T:
        """The entry called ``name``; ``ConfigError`` listing the choices if there is none.

        A name registered beside the registry is found without importing the providers (a
        provider cannot take a registered name), so looking up a built-in stays cheap."""
        if not isinstance(name, str) or name not in self._entries:
            self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}"
            ) from None

    def check(self, name: str) -> str:
        """``name`` if registered, else the same ``ConfigError`` as :meth:`get`."""
        self.get(name)
        return name

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        self._load()
        return tuple(self._entries)

    def describe(self, name: str) -> str:
        """The one-line description of ``name``."""
        self._load()
        return self._help.get(name, "")

    def choices(self) -> str:
        """``"a | b | c"`` for help texts."""
        return " | ".join(self.names())

    def values(self) -> list[T]:
        """Every registered entry, in registration order."""
        return [self._entries[n] for n in self.names()]

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, in registration order."""
        return [(n, self._entries[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self.names())})"
