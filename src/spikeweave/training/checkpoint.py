"""Safe, atomic, self-verifying training checkpoints in one safetensors file.

A checkpoint is a plain safetensors file. Its header metadata holds one key, ``"spikeweave"``,
whose value is a JSON string::

    {"format": "spikeweave-checkpoint", "format_version": 1,
     "sha256": "<hex>", "metadata": {...user metadata...}}

The sha256 digest covers the canonical JSON of the user metadata and every tensor's name,
dtype, shape and bytes (tensors in sorted-name order), so corruption anywhere in the payload or
the metadata is detected on load. Loading never unpickles anything: no ``torch.load``, no
``pickle``.

Training state that is not a flat ``{name: tensor}`` dict (optimizer and LR-scheduler
``state_dict()``\\ s, counters, RNG seeds) goes through :func:`flatten_state`, which splits it into
tensors and a JSON-able structure that :func:`unflatten_state` turns back into the exact original.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as _st_save

from spikeweave.atomic import atomic_write_bytes
from spikeweave.errors import CheckpointError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "TRAINING_KIND",
    "TRAINING_META_SCHEMA",
    "MetaField",
    "check_model_fits",
    "check_state_dtypes",
    "flatten_state",
    "load_checkpoint",
    "save_checkpoint",
    "unflatten_state",
    "validate_training_meta",
]

FORMAT = "spikeweave-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "spikeweave"

_TENSOR = "__tensor__"
_DICT = "__dict__"
_TUPLE = "__tuple__"
_MARKERS = (_TENSOR, _DICT, _TUPLE)

# safetensors refuses headers larger than this; anything bigger is not a safetensors file.
_MAX_HEADER_BYTES = 100_000_000
_DIGEST_DOMAIN = b"spikeweave-checkpoint-digest-v1\x00"


# --------------------------------------------------------------------------------------------
# digest and JSON helpers
# --------------------------------------------------------------------------------------------


def _one_line(text: object) -> str:
    """Collapse an arbitrary message to one short line."""
    line = " ".join(str(text).split())
    return line if len(line) <= 200 else line[:197] + "..."


def _canonical_json(value: Any) -> str:
    """Deterministic JSON text of ``value`` (sorted keys; NaN/inf allowed as Python's json does)."""
    return json.dumps(value, sort_keys=True, allow_nan=True, separators=(",", ":"))


def _update_framed(h: Any, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _digest(tensors: Mapping[str, torch.Tensor], metadata_json: str) -> str:
    """sha256 over the metadata JSON and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(_DIGEST_DOMAIN)
    _update_framed(h, metadata_json.encode("utf-8", "surrogatepass"))
    h.update(len(tensors).to_bytes(8, "little"))
    for name in sorted(tensors):
        t = tensors[name]
        _update_framed(h, name.encode("utf-8", "surrogatepass"))
        _update_framed(h, str(t.dtype).encode())
        _update_framed(h, json.dumps(list(t.shape)).encode())
        raw = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        h.update(raw.nbytes.to_bytes(8, "little"))
        h.update(memoryview(raw))
    return h.hexdigest()


@contextlib.contextmanager
def _visiting(container: Any, active: set[int], cycle: str) -> Iterator[None]:
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


def _check_json_value(value: Any, where: str, active: set[int]) -> None:
    """Raise CheckpointError unless ``value`` is plain JSON data (str keys, no cycles)."""
    if value is None or isinstance(value, str | bool | int | float):
        return
    if isinstance(value, dict | list | tuple):
        cycle = f"metadata{where} contains a reference cycle; remove the cycle"
        with _visiting(value, active, cycle):
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise CheckpointError(
                            f"metadata{where} has a {type(key).__name__} key {key!r}; JSON "
                            "metadata needs str keys (pass such state through flatten_state)"
                        )
                    _check_json_value(item, f"{where}[{key!r}]", active)
            else:
                for i, item in enumerate(value):
                    _check_json_value(item, f"{where}[{i}]", active)
        return
    if isinstance(value, torch.Tensor):
        hint = "put tensors in `tensors` or pass the state through flatten_state"
    else:
        hint = "convert it to str/int/float/bool/None/list/dict first"
    raise CheckpointError(
        f"metadata{where} is a {type(value).__module__}.{type(value).__qualname__}, which is "
        f"not JSON-serialisable; {hint}"
    )


# --------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------


def _prepare_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Validate names and return detached, dense, contiguous CPU tensors that share no memory."""
    if not isinstance(tensors, Mapping):
        raise CheckpointError(
            f"tensors must be a mapping of str to torch.Tensor, got {type(tensors).__name__}"
        )
    out: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise CheckpointError(
                f"tensor name {name!r} is invalid; use a non-empty str other than '__metadata__'"
            )
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"tensors[{name!r}] is a {type(tensor).__name__}, not a torch.Tensor; "
                "put non-tensor values in metadata"
            )
        if tensor.layout != torch.strided:
            raise CheckpointError(
                f"tensors[{name!r}] has layout {tensor.layout}; call .to_dense() before saving"
            )
        try:
            t = tensor.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
        except (RuntimeError, NotImplementedError) as err:
            raise CheckpointError(
                f"tensors[{name!r}] cannot be copied to the CPU ({_one_line(err)}); "
                "save a materialised tensor"
            ) from err
        if t.numel() > 0:
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen_storages:
                # safetensors refuses tensors that share memory (tied weights, views, the same
                # tensor under two names); store an independent copy instead.
                t = t.clone()
                ptr = t.untyped_storage().data_ptr()
            seen_storages.add(ptr)
        out[name] = t
    return out


def save_checkpoint(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
) -> Path:
    """Atomically write ``tensors`` and JSON ``metadata`` to one safetensors file at ``path``.

    Tensors are detached, moved to the CPU and made contiguous; tensors sharing memory are
    stored as independent copies. ``metadata`` must be JSON data with str keys (tuples come back
    as lists). Missing parent directories are created. The file is written to a temporary file
    in the same directory, fsync'ed and renamed over ``path``, so a crash or error never leaves a
    half-written checkpoint and never damages an existing one. Returns the path written.

    Raises:
        CheckpointError: invalid tensors, non-JSON metadata, or an OS error while writing.
    """
    path = Path(path)
    prepared = _prepare_tensors(tensors)
    if not isinstance(metadata, Mapping):
        raise CheckpointError(f"metadata must be a mapping, got {type(metadata).__name__}")
    user_metadata = dict(metadata)
    _check_json_value(user_metadata, "", set())
    try:
        metadata_json = _canonical_json(user_metadata)
    except (TypeError, ValueError) as err:  # pragma: no cover - _check_json_value catches these
        raise CheckpointError(f"metadata is not JSON-serialisable: {_one_line(err)}") from err
    envelope = json.dumps(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sha256": _digest(prepared, metadata_json),
            "metadata": json.loads(metadata_json),
        },
        allow_nan=True,
        separators=(",", ":"),
    )
    try:
        payload = _st_save(prepared, metadata={METADATA_KEY: envelope})
    except Exception as err:  # safetensors raises ValueError/RuntimeError/SafetensorError
        raise CheckpointError(
            f"cannot serialise checkpoint '{path}': {_one_line(err)}; check the tensors"
        ) from err

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, payload)
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoint '{path}': {_one_line(err)}; check the directory exists, is "
            "writable and has free space (any previous checkpoint there is unchanged)"
        ) from err
    return path


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------


def _refuse(path: Path, problem: str, todo: str) -> CheckpointError:
    return CheckpointError(f"cannot load checkpoint '{path}': {problem}; {todo}")


_RESAVE = "re-save it with spikeweave.training.checkpoint.save_checkpoint"
_NOT_ST_TODO = (
    "pass a file written by spikeweave.training.checkpoint.save_checkpoint "
    "(if it was one, it is corrupt: use an earlier checkpoint)"
)
_CORRUPT_TODO = "the file is corrupt; restore it from a backup or use an earlier checkpoint"


def _read_header(path: Path) -> tuple[dict[str, Any], int, int]:
    """Check the file looks like a complete safetensors file; return (header, n, size)."""
    if not path.exists():
        raise _refuse(path, "file not found", "check the path, or save a checkpoint there first")
    if not path.is_file():
        raise _refuse(path, "not a regular file", "pass the path of a checkpoint file")
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            # A safetensors header is JSON right after the 8-byte length; checking for its "{"
            # keeps a header length whose low byte is 0x80 (or whose bytes spell "PK\3\4")
            # from being taken for a pickle or a zip file.
            header_follows = f.read(1) == b"{"
            f.seek(8)
            if size == 0:
                raise _refuse(
                    path,
                    "the file is empty (0 bytes), the write never completed",
                    "use an earlier checkpoint",
                )
            if prefix.startswith(b"PK\x03\x04") and not header_follows:
                raise _refuse(
                    path,
                    "it is a zip archive (such as a torch.save file), not safetensors; "
                    "spikeweave never unpickles files",
                    f"if you trust its origin, load it with torch.load and {_RESAVE}",
                )
            if prefix[:1] == b"\x80" and not header_follows:
                raise _refuse(
                    path,
                    "it is a Python pickle, not safetensors; spikeweave never unpickles files",
                    f"if you trust its origin, unpickle it yourself and {_RESAVE}",
                )
            if size < 8:
                raise _refuse(path, f"the file is truncated ({size} bytes)", _CORRUPT_TODO)
            n = int.from_bytes(prefix, "little")
            if n < 2 or n > _MAX_HEADER_BYTES:
                raise _refuse(
                    path, "it is not a safetensors file (bad header length)", _NOT_ST_TODO
                )
            if n > size - 8:
                raise _refuse(
                    path,
                    f"the file is truncated or not safetensors (header needs {n} bytes, "
                    f"only {size - 8} present)",
                    _CORRUPT_TODO,
                )
            raw = f.read(n)
    except OSError as err:
        problem = f"cannot read the file ({_one_line(err)})"
        raise _refuse(path, problem, "check its permissions") from err
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        problem = "it is not a safetensors file (header is not a JSON object)"
        raise _refuse(path, problem, _NOT_ST_TODO)
    return header, n, size


def _parse_envelope(path: Path, header: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Return (user metadata, expected digest) from the header, checking marker and version."""
    st_meta = header.get("__metadata__")
    envelope_text = st_meta.get(METADATA_KEY) if isinstance(st_meta, dict) else None
    if not isinstance(envelope_text, str):
        raise _refuse(
            path,
            "it is a safetensors file but was not written by spikeweave (no 'spikeweave' metadata; "
            "checkpoints from before the project's rename in 0.2.0 are not read)",
            "load it with safetensors.torch.load_file instead, or " + _RESAVE,
        )
    try:
        envelope = json.loads(envelope_text)
    except (ValueError, RecursionError):
        envelope = None
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise _refuse(
            path,
            "its 'spikeweave' metadata is not a spikeweave checkpoint marker "
            "(corrupt, or written by another tool)",
            _CORRUPT_TODO,
        )
    version = envelope.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _refuse(path, f"invalid format_version {version!r}", _CORRUPT_TODO)
    if version > FORMAT_VERSION:
        raise _refuse(
            path,
            f"it has format_version {version}, newer than the {FORMAT_VERSION} this spikeweave "
            "reads",
            "upgrade spikeweave to load it",
        )
    digest = envelope.get("sha256")
    user_metadata = envelope.get("metadata")
    if not isinstance(digest, str) or not isinstance(user_metadata, dict):
        raise _refuse(path, "its spikeweave metadata lacks 'sha256' or 'metadata'", _CORRUPT_TODO)
    return user_metadata, digest


def _data_end(path: Path, header: dict[str, Any]) -> int:
    """Largest end offset of the tensor data declared in the header."""
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise _refuse(path, f"tensor entry {name!r} in the header is malformed", _CORRUPT_TODO)
        end = max(end, offsets[1])
    return end


def _is_panic(err: BaseException) -> bool:
    # A Rust panic inside safetensors surfaces as pyo3's PanicException (a BaseException).
    return type(err).__name__ == "PanicException"


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load and verify a checkpoint written by :func:`save_checkpoint`.

    Returns ``(tensors, metadata)`` with CPU tensors and the JSON metadata as saved (tuples in
    metadata come back as lists). Never unpickles anything.

    Raises:
        CheckpointError: one line naming the file, for a missing, empty, truncated or
            non-safetensors file (including torch.save/pickle files), a safetensors file not
            written by spikeweave, a newer format_version, or a digest mismatch (corruption).
    """
    path = Path(path)
    header, n, size = _read_header(path)
    user_metadata, expected = _parse_envelope(path, header)
    available = size - 8 - n
    needed = _data_end(path, header)
    if needed > available:
        raise _refuse(
            path,
            f"the file is truncated (tensor data needs {needed} bytes, only {available} present)",
            _CORRUPT_TODO,
        )

    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            for name in f.keys():
                tensors[name] = f.get_tensor(name)
    except BaseException as err:
        if not isinstance(err, Exception) and not _is_panic(err):
            raise  # KeyboardInterrupt, SystemExit, ...
        raise _refuse(
            path, f"it is not a valid safetensors file ({_one_line(err)})", _CORRUPT_TODO
        ) from None

    if _digest(tensors, _canonical_json(user_metadata)) != expected:
        raise _refuse(
            path,
            "sha256 digest mismatch, the tensor data or metadata changed after saving",
            _CORRUPT_TODO,
        )
    return tensors, user_metadata


# --------------------------------------------------------------------------------------------
# nested training state
# --------------------------------------------------------------------------------------------


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
        return {_TUPLE: [_encode_key(k, where) for k in key]}
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
            return {_TENSOR: name}
        if value is None or isinstance(value, bool | int | float | str):
            return _plain_scalar(value)
        if isinstance(value, dict | list | tuple):
            with _visiting(value, active, f"state{where} contains a reference cycle"):
                if isinstance(value, dict):
                    return {
                        _DICT: [
                            [_encode_key(k, where), walk(v, [*parts, str(k)])]
                            for k, v in value.items()
                        ]
                    }
                items = [walk(v, [*parts, str(i)]) for i, v in enumerate(value)]
                return {_TUPLE: items} if isinstance(value, tuple) else items
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


def _short(value: Any, limit: int = 60) -> str:
    text = _one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _decode_key(key: Any) -> Any:
    if key is None or isinstance(key, str | bool | int | float):
        return key
    if isinstance(key, dict) and set(key) == {_TUPLE} and isinstance(key[_TUPLE], list | tuple):
        return tuple(_decode_key(k) for k in key[_TUPLE])
    raise _StructureError(f"invalid dict key {_short(key)}")


def _rebuild(structure: Any, tensor: Callable[[str], Any]) -> Any:
    """Walk a flatten_state structure, resolving each tensor reference with ``tensor(name)``.

    Shared by :func:`unflatten_state` and :func:`validate_training_meta`, so the validator
    accepts exactly what unflatten_state accepts.
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
            if marker == _TENSOR:
                if not isinstance(body, str):
                    raise _StructureError(f"tensor reference {_short(body)} is not a str")
                return tensor(body)
            if not isinstance(body, list | tuple):
                raise _StructureError(f"{marker} body is a {type(body).__name__}, not a list")
            if marker == _TUPLE:
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


# --------------------------------------------------------------------------------------------
# what a training checkpoint must hold
# --------------------------------------------------------------------------------------------

TRAINING_KIND = "spikeweave-training-state"
"""The ``"kind"`` of the metadata that :class:`~spikeweave.training.Trainer` checkpoints carry."""

# A check gets (value, the whole metadata) and returns None when the value is good, else the
# problem as a phrase ("is 'abc' (str), expected ..."). Checks run in schema order, so a check may
# rely on any field listed above it (epoch on config, history on epoch).
_Check = Callable[[Any, Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class MetaField:
    """One key of the training-state metadata: whether it must be present, what it must be (in
    words, for readers of the schema) and the check that decides."""

    required: bool
    expected: str
    check: _Check


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    return f"{_short(value)} ({type(value).__name__})"


def _of_type(kind: type, expected: str) -> _Check:
    def check(value: Any, meta: Mapping[str, Any]) -> str | None:
        return None if isinstance(value, kind) else f"is {_shown(value)}, expected {expected}"

    return check


def _check_kind(value: Any, meta: Mapping[str, Any]) -> str | None:
    if isinstance(value, str) and value == TRAINING_KIND:
        return None
    return f"is {_shown(value)}, expected {TRAINING_KIND!r} (not a training checkpoint)"


def _check_config(value: Any, meta: Mapping[str, Any]) -> str | None:
    if not isinstance(value, dict):
        return f"is {_shown(value)}, expected an object (the run's TrainConfig)"
    if "epochs" not in value:
        return "has no 'epochs'"
    epochs = value["epochs"]
    if not _is_int(epochs) or epochs < 1:
        return f"has epochs {_shown(epochs)}, expected a positive int"
    return None


def _check_epoch(value: Any, meta: Mapping[str, Any]) -> str | None:
    epochs = meta["config"]["epochs"]
    if _is_int(value) and 0 <= value <= epochs:
        return None
    return f"is {_shown(value)}, expected an int from 0 to config epochs ({epochs})"


def _check_history(value: Any, meta: Mapping[str, Any]) -> str | None:
    epoch = meta["epoch"]
    if not isinstance(value, list):
        return f"is {_shown(value)}, expected a list of {epoch} per-epoch records"
    if len(value) != epoch:
        return f"has {len(value)} records, expected {epoch} (one per completed epoch)"
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            return f"item {i} is {_shown(row)}, expected an object with an int 'epoch'"
        # The trainer appends the row of epoch i + 1 at index i; anything else means the
        # history and the weights are from different points of the run.
        if not _is_int(row.get("epoch")) or row["epoch"] != i + 1:
            return f"item {i} has epoch {_shown(row.get('epoch'))}, expected {i + 1}"
    return None


def _check_wall_time(value: Any, meta: Mapping[str, Any]) -> str | None:
    if _is_number(value) and math.isfinite(value) and value >= 0:
        return None
    return f"is {_shown(value)}, expected a finite number of seconds >= 0"


def _check_state_structure(value: Any, meta: Mapping[str, Any]) -> str | None:
    # None: the training method has no optimizer (or scheduler), e.g. a local learning rule.
    if value is None:
        return None
    # A state_dict() is a dict, so flatten_state turned it into {"__dict__": [...]}.
    if not (isinstance(value, dict) and set(value) == {_DICT}):
        return (
            f"is {_shown(value)}, expected null or the flatten_state structure of a "
            "state_dict (an object {'__dict__': [...]})"
        )
    try:
        _rebuild(value, lambda name: None)
    except _StructureError as err:
        return f"is not a flatten_state structure ({err.what})"
    return None


def _check_versions(value: Any, meta: Mapping[str, Any]) -> str | None:
    if not isinstance(value, dict):
        return f"is {_shown(value)}, expected an object of version strings"
    for key, item in value.items():
        if not isinstance(item, str):
            return f"entry {key!r} is {_shown(item)}, expected a version string"
    return None


TRAINING_META_SCHEMA: Mapping[str, MetaField] = MappingProxyType(
    {
        "kind": MetaField(True, repr(TRAINING_KIND), _check_kind),
        "config": MetaField(True, "object with a positive int 'epochs'", _check_config),
        "epoch": MetaField(True, "int, 0 <= epoch <= config['epochs']", _check_epoch),
        "history": MetaField(
            True, "list of epoch objects, history[i]['epoch'] == i + 1", _check_history
        ),
        "wall_time_s": MetaField(True, "finite number >= 0", _check_wall_time),
        "optimizer": MetaField(
            True, "null or flatten_state structure of a dict", _check_state_structure
        ),
        "scheduler": MetaField(
            True, "null or flatten_state structure of a dict", _check_state_structure
        ),
        "versions": MetaField(True, "object of str", _check_versions),
        "task": MetaField(False, "str", _of_type(str, "a str")),
        "method": MetaField(False, "str", _of_type(str, "a str")),
        "method_state": MetaField(False, "object", _of_type(dict, "an object")),
        # an fp16 run's GradScaler state (older files and other precisions have none)
        "grad_scaler": MetaField(
            False, "null or flatten_state structure of a dict", _check_state_structure
        ),
        "data_spec": MetaField(False, "object", _of_type(dict, "an object")),
    }
)
"""What :func:`validate_training_meta` checks, key by key, in this order."""

_NOT_TRAINING = (
    "it was not written by spikeweave's Trainer (or by an incompatible version); "
    "use another checkpoint"
)


def _structure_tensors(structure: Any) -> list[str]:
    names: list[str] = []

    def collect(name: str) -> None:
        names.append(name)

    _rebuild(structure, collect)
    return names


def validate_training_meta(
    meta: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    tensors: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Check the metadata of a training checkpoint against :data:`TRAINING_META_SCHEMA`.

    ``meta`` is the metadata :func:`load_checkpoint` returned for the file ``path`` (used only in
    messages). A valid digest proves the file is intact, not that whatever wrote it wrote a
    training state this version can resume, so every field the trainer reads is checked:
    ``kind`` is ``"spikeweave-training-state"``; ``config`` an object with a positive int
    ``epochs``; ``epoch`` an int from 0 to ``config["epochs"]``; ``history`` a list of ``epoch``
    objects where ``history[i]["epoch"] == i + 1``; ``wall_time_s`` a finite number >= 0;
    ``optimizer`` and ``scheduler`` ``None`` (the method has none) or :func:`flatten_state`
    structures of a dict that :func:`unflatten_state` accepts; ``versions`` an object of
    strings. ``task`` (str), ``method`` (str), ``method_state``, ``grad_scaler`` and
    ``data_spec`` (objects) are optional and checked when present.
    With ``tensors`` (the file's tensors), every tensor the optimizer and scheduler
    structures refer to must be among them.

    Other keys are accepted and left alone, so a checkpoint written by a newer spikeweave that
    adds fields still resumes here; only the fields this version reads must be right.

    Returns ``meta`` itself.

    Raises:
        CheckpointError: one line naming the file and the first bad or missing field.
    """

    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: {problem}; {_NOT_TRAINING}")

    if not isinstance(meta, dict):
        raise refuse(f"its metadata is {_shown(meta)}, expected an object")
    for key, field in TRAINING_META_SCHEMA.items():
        if key not in meta:
            if field.required:
                raise refuse(f"training-state field {key!r} is missing")
            continue
        problem = field.check(meta[key], meta)
        if problem is not None:
            raise refuse(f"training-state field {key!r} {problem}")
    if tensors is not None:
        for key in ("optimizer", "scheduler"):
            if meta[key] is None:
                continue
            for name in _structure_tensors(meta[key]):
                if name not in tensors:
                    raise refuse(
                        f"training-state field {key!r} refers to tensor {name!r}, "
                        "which the file does not hold"
                    )
    return meta


# --------------------------------------------------------------------------------------------
# do the weights fit the model
# --------------------------------------------------------------------------------------------

_NOT_THIS_MODEL = "the checkpoint was not written for this model"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _and_more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


def check_state_dtypes(
    expected: Mapping[str, torch.Tensor],
    got: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
) -> None:
    """Raise CheckpointError unless ``got`` has exactly the keys, dtypes and shapes of ``expected``.

    ``expected`` is what the model holds (e.g. its ``state_dict()``), ``got`` the tensors read
    from the checkpoint ``path`` for it, under the same names (pass only the model's part of
    the file). ``load_state_dict`` would copy an int64, bool or float16 tensor into a float32
    parameter without complaint, so a checkpoint written for another model would load silently
    wrong; this refuses it first, naming the tensor.

    Raises:
        CheckpointError: one line naming the file and the first missing, unexpected,
            non-tensor, wrongly typed or wrongly shaped entry.
    """

    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: {problem}; {_NOT_THIS_MODEL}")

    missing = [k for k in expected if k not in got]
    if missing:
        raise refuse(f"{missing[0]} is missing{_and_more(missing)}")
    unexpected = [k for k in got if k not in expected]
    if unexpected:
        raise refuse(f"{unexpected[0]} is not in this model{_and_more(unexpected)}")
    for key, want in expected.items():
        have = got[key]
        if not isinstance(have, torch.Tensor):
            raise refuse(f"{key} is {_shown(have)}, not a tensor")
        if have.dtype != want.dtype:
            raise refuse(f"{key} is {_dtype_name(have.dtype)}, expected {_dtype_name(want.dtype)}")
        if have.shape != want.shape:
            raise refuse(f"{key} has shape {list(have.shape)}, expected {list(want.shape)}")


def check_model_fits(
    build: Callable[[], torch.nn.Module],
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    prefix: str = "model/",
) -> None:
    """Refuse a checkpoint whose config describes another model, before that model is allocated.

    ``build`` makes the model the checkpoint's config describes (e.g.
    ``lambda: method.build_model(config, task)``); it runs on PyTorch's ``meta`` device, where
    parameters have shapes but no memory, so a config that asks for a 10^9-wide layer costs
    nothing here. The model's state must then match the checkpoint's ``prefix`` tensors
    exactly (:func:`check_state_dtypes`): since those tensors were read from the file, the real
    model built afterwards is no bigger than the file.

    A model that cannot be built on the meta device (a custom method computing on its
    parameters at construction) skips this early check; the loader's own
    :func:`check_state_dtypes` after the real build still refuses a mismatch.

    Raises:
        CheckpointError: one line naming the file and the first tensor that does not fit.
    """
    state = {k: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = build()
    except (NotImplementedError, RuntimeError):
        return
    expected = {f"{prefix}{k}": v for k, v in model.state_dict().items()}
    check_state_dtypes(expected, state, path)
