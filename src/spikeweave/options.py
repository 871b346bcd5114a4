"""Typed option tables: a TOML/JSON mapping checked against a dataclass's annotated fields.

Used for :class:`~spikeweave.training.TrainConfig` and for every training method's options
(``[method.NAME]`` tables), so an unknown key or a value of the wrong type is a one-line
``ConfigError`` naming the key and the expected type, never a traceback and never ignored.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from .errors import ConfigError

__all__ = ["build_options", "check_value", "options_dict"]

D = TypeVar("D")

# Seeds, sizes and counts beyond this are refused rather than overflowing torch or numpy.
MAX_INT = 2**63 - 1


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "none"
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        inner = _describe(args[0]) if args else "value"
        return f"a list of {inner}s"
    if origin is dict or tp is dict:
        return "a table"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def check_value(tp: Any, value: Any, where: str) -> Any:
    """``value`` converted to the annotated type ``tp`` (int -> float, list -> tuple), or
    ``ConfigError`` naming ``where`` and the expected type."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return check_value(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}")
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:
                raise ConfigError(f"{where} must be at most 2**63 - 1 in magnitude, got {value}")
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise ConfigError(f"{where} must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple):
        if isinstance(value, list | tuple):
            args = [a for a in typing.get_args(tp) if a is not Ellipsis]
            inner = args[0] if args else Any
            items = [check_value(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
    elif origin is dict or tp is dict:
        if isinstance(value, Mapping):
            return dict(value)
    else:  # pragma: no cover - a field type this module does not know is a programming error
        raise TypeError(f"{where}: unsupported option type {tp!r}")
    raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}")


def build_options(cls: type[D], values: Mapping[str, Any] | None, where: str) -> D:
    """An instance of the dataclass ``cls`` from ``values``; missing keys keep their defaults.

    Unknown keys and wrongly typed values raise ``ConfigError`` naming ``where``. The
    dataclass's ``__post_init__`` (if any) then checks ranges.
    """
    if values is None:
        return cls()
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a table of options, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        valid = ", ".join(fields) or "none"
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; valid: {valid}"
        )
    kwargs = {k: check_value(hints[k], v, f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def options_dict(options: Any) -> dict[str, Any]:
    """A JSON-able dict of a dataclass's fields (tuples become lists)."""
    if options is None:
        return {}
    return json_ready(dataclasses.asdict(options))


def json_ready(value: Any) -> Any:
    """``value`` with tuples turned into lists, recursively (JSON and TOML round-trip)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
