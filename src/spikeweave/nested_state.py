"""The nested-state codec: training state that is not a flat ``{name: tensor}`` dict, stored as
tensors plus JSON.

Optimizer and LR-scheduler ``state_dict()``\\ s, counters and RNG seeds are nests of dicts,
lists and tuples with tensors among the leaves, and their dict keys are often ints. A
checkpoint file (:mod:`spikeweave.checkpoint_file`) holds flat tensors and JSON metadata, so
:func:`flatten_state` splits such a nest into ``(tensors, structure)``: every tensor goes into
``tensors`` and is replaced in ``structure`` by a reference, and dicts and tuples become marked
objects so that non-str keys and tuples survive JSON. :func:`unflatten_state` turns the pair back
into the exact original. The markers (:data:`TENSOR_MARKER`, :data:`DICT_MARKER`,
:data:`TUPLE_MARKER`) are part of the file format. A structure read back from a file is data we
did not write: :func:`unflatten_state` and :func:`structure_problem` accept exactly the same
structures and refuse anything else in one line, however deep or malformed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from spikeweave.errors import CheckpointError, one_line

__all__ = [
    "DICT_MARKER",
    "TENSOR_MARKER",
    "TUPLE_MARKER",
    "flatten_state",
    "structure_problem",
    "structure_tensors",
    "unflatten_state",
    "visiting",
]

TENSOR_MARKER = "__tensor__"
"""``{"__tensor__": name}`` stands for the tensor ``name`` of the tensors saved beside it."""
DICT_MARKER = "__dict__"
"""``{"__dict__": [[key, value], ...]}`` is a dict (keys of any supported type, in order)."""
TUPLE_MARKER = "__tuple__"
"""``{"__tuple__": [...]}`` is a tuple (a plain JSON list is a list)."""
_MARKERS = (TENSOR_MARKER, DICT_MARKER, TUPLE_MARKER)


@contextlib.contextmanager
def visiting(container: Any, active: set[int], cycle: str) -> Iterator[None]:
    """Mark ``container`` as being walked (``active`` holds the ids on the current path) for
    the ``with`` block; meeting it again on the path is a reference cycle: ``cycle`` is the
    CheckpointError message."""
    if id(container) in active:
        raise CheckpointError(cycle)
    active.add(id(container))
    try:
        yield
    finally:
        active.discard(id(container))


def _plain_scalar(value: None | bool | int | float | str) -> Any:
    """``value`` with a subclass of int, float or str turned into that base type (None and
    bools as they are)."""
    if value is None or isinstance(value, bool):
        return value
    for base in (int, float, str):
        if isinstance(value, base):
            return base(value)
    raise TypeError(f"not a scalar: {value!r}")  # pragma: no cover - callers check the type


def _encode_key(key: Any, where: str) -> Any:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return _plain_scalar(key)
    if isinstance(key, tuple):
        return {TUPLE_MARKER: [_encode_key(k, where) for k in key]}
    raise CheckpointError(
        f"state{where} has a dict key of type {type(key).__name__} ({key!r}); "
        "only str/int/float/bool/None/tuple keys can be stored"
    )


def flatten_state(prefix: str, state: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split nested training state into ``(tensors, structure)`` for :func:`save_checkpoint`.

    Walks dicts, lists and tuples (e.g. an optimizer or LR-scheduler ``state_dict()``); every
    tensor goes into ``tensors`` under ``f"{prefix}/{path}"`` (``path`` joins the dict keys and
    list indices with ``/``; a clashing name gets a ``~N`` suffix) and is replaced in
    ``structure`` by ``{"__tensor__": name}``. Dicts become ``{"__dict__": [[key, value], ...]}``
    and tuples ``{"__tuple__": [...]}``, so int/float/bool/None/tuple keys and tuples survive a
    JSON round trip; ``structure`` is JSON data that can go into checkpoint metadata.
    ``unflatten_state(tensors, structure)`` rebuilds the original (tensor subclasses such as
    ``nn.Parameter`` come back as plain tensors, subclasses of int/float/str as the base type).
    Leaves must be tensors, None, bool, int, float or str.

    Raises:
        CheckpointError: an empty prefix, an unsupported leaf or key type, or a reference cycle.
    """
    if not isinstance(prefix, str) or not prefix:
        raise CheckpointError(f"flatten_state prefix must be a non-empty str, got {prefix!r}")
    tensors: dict[str, torch.Tensor] = {}
    active: set[int] = set()

    def tensor_name(parts: list[str]) -> str:
        base = "/".join([prefix, *parts])
        name, n = base, 1
        while name in tensors:
            n += 1
            name = f"{base}~{n}"
        return name

    def walk(value: Any, parts: list[str]) -> Any:
        where = "".join(f"[{p!r}]" for p in parts)
        if isinstance(value, torch.Tensor):
            name = tensor_name(parts)
            tensors[name] = value
            return {TENSOR_MARKER: name}
        if value is None or isinstance(value, bool | int | float | str):
            return _plain_scalar(value)
        if isinstance(value, dict | list | tuple):
            with visiting(value, active, f"state{where} contains a reference cycle"):
                if isinstance(value, dict):
                    return {
                        DICT_MARKER: [
                            [_encode_key(k, where), walk(v, [*parts, str(k)])]
                            for k, v in value.items()
                        ]
                    }
                items = [walk(v, [*parts, str(i)]) for i, v in enumerate(value)]
                return {TUPLE_MARKER: items} if isinstance(value, tuple) else items
        raise CheckpointError(
            f"state{where} is a {type(value).__module__}.{type(value).__qualname__}; "
            "flatten_state stores only tensors, None, bool, int, float, str, dict, list, tuple"
        )

    structure = walk(state, [])
    return tensors, structure


class _StructureError(Exception):
    """What is wrong with a structure; each caller words the CheckpointError for its context."""

    def __init__(self, what: str, missing_tensor: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.missing_tensor = missing_tensor


def _short(value: Any) -> str:
    return one_line(repr(value), 60)


def _decode_key(key: Any) -> Any:
    if key is None or isinstance(key, str | bool | int | float):
        return key
    if (
        isinstance(key, dict)
        and set(key) == {TUPLE_MARKER}
        and isinstance(key[TUPLE_MARKER], list | tuple)
    ):
        return tuple(_decode_key(k) for k in key[TUPLE_MARKER])
    raise _StructureError(f"invalid dict key {_short(key)}")


def _rebuild(structure: Any, tensor: Callable[[str], Any]) -> Any:
    """Walk a flatten_state structure, resolving each tensor reference with ``tensor(name)``.

    Shared by :func:`unflatten_state` and :func:`structure_problem`, so a checker of
    structures accepts exactly what unflatten_state accepts.
    """

    def walk(node: Any) -> Any:
        if node is None or isinstance(node, str | bool | int | float):
            return node
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, dict):
            if len(node) != 1 or next(iter(node)) not in _MARKERS:
                keys = _short(sorted(map(str, node)))
                raise _StructureError(f"unexpected object with keys {keys}")
            ((marker, body),) = node.items()
            if marker == TENSOR_MARKER:
                if not isinstance(body, str):
                    raise _StructureError(f"tensor reference {_short(body)} is not a str")
                return tensor(body)
            if not isinstance(body, list | tuple):
                raise _StructureError(f"{marker} body is a {type(body).__name__}, not a list")
            if marker == TUPLE_MARKER:
                return tuple(walk(v) for v in body)
            out: dict[Any, Any] = {}
            for pair in body:
                if not isinstance(pair, list | tuple) or len(pair) != 2:
                    raise _StructureError(f"dict entry {_short(pair)} is not a [key, value] pair")
                out[_decode_key(pair[0])] = walk(pair[1])
            return out
        raise _StructureError(f"unexpected {type(node).__name__} {_short(node)}")

    try:
        return walk(structure)
    except RecursionError:
        raise _StructureError("it is nested too deeply to be a training state") from None


def unflatten_state(tensors: Mapping[str, torch.Tensor], structure: Any) -> Any:
    """Inverse of :func:`flatten_state`: rebuild the nested state from tensors and structure.

    Works on the structure as returned by ``flatten_state`` or after a JSON round trip
    (e.g. through checkpoint metadata). Tensors are taken from ``tensors`` as they are, not
    copied.

    Raises:
        CheckpointError: a malformed structure or a tensor name missing from ``tensors``.
    """
    if not isinstance(tensors, Mapping):
        raise CheckpointError(
            f"unflatten_state: tensors must be a mapping of str to torch.Tensor, "
            f"got {type(tensors).__name__}"
        )

    def tensor(name: str) -> torch.Tensor:
        if name not in tensors:
            raise _StructureError(f"tensor {_short(name)} is missing from the tensors", True)
        return tensors[name]

    try:
        return _rebuild(structure, tensor)
    except _StructureError as err:
        todo = (
            "pass the tensors saved together with this structure"
            if err.missing_tensor
            else "pass the structure returned by flatten_state unchanged"
        )
        raise CheckpointError(f"unflatten_state: {err.what}; {todo}") from None


def structure_problem(structure: Any) -> str | None:
    """``None`` when :func:`unflatten_state` accepts ``structure`` (given the tensors it names),
    else what is wrong with it, as a phrase (e.g. ``"invalid dict key 3.5"``)."""
    try:
        _rebuild(structure, lambda name: None)
    except _StructureError as err:
        return err.what
    return None


def structure_tensors(structure: Any) -> list[str]:
    """The names of the tensors a structure refers to, in walk order.

    Raises:
        CheckpointError: ``structure`` is malformed (check it with :func:`structure_problem`
            first for a message of your own).
    """
    names: list[str] = []

    def collect(name: str) -> None:
        names.append(name)

    try:
        _rebuild(structure, collect)
    except _StructureError as err:
        raise CheckpointError(f"structure_tensors: {err.what}") from None
    return names
