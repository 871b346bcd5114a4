"""The checkpoint file: tensors and JSON metadata in one safetensors file, sealed by a digest.

A checkpoint is a plain safetensors file. Its header metadata holds one key, ``"spikeweave"``,
whose value is a JSON string::

    {"format": "spikeweave-checkpoint", "format_version": 1,
     "sha256": "<hex>", "metadata": {...user metadata...}}

The sha256 digest covers the canonical JSON of the user metadata and every tensor's name,
dtype, shape and bytes (tensors in sorted-name order), so corruption anywhere in the payload or
the metadata is detected on load. Loading never unpickles anything: no ``torch.load``, no
``pickle``. A file is read as hostile: its declared header and tensor sizes are checked against
the file's size before anything is allocated, and pickles and zip archives are named as such.
Writes are atomic (:mod:`spikeweave.atomic`) and never follow a link at the file's name.

Nothing here knows about training: the trainer's metadata schema is
:mod:`spikeweave.training.meta_schema`, and nested state (optimizer ``state_dict()``\\ s) is
split into tensors and JSON by :mod:`spikeweave.nested_state`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as _st_save

from spikeweave.atomic import atomic_write_bytes
from spikeweave.errors import CheckpointError, one_line
from spikeweave.nested_state import visiting

__all__ = ["FORMAT", "FORMAT_VERSION", "METADATA_KEY", "load_checkpoint", "save_checkpoint"]

FORMAT = "spikeweave-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "spikeweave"

# safetensors refuses headers larger than this; anything bigger is not a safetensors file.
_MAX_HEADER_BYTES = 100_000_000
_DIGEST_DOMAIN = b"spikeweave-checkpoint-digest-v1\x00"


# --------------------------------------------------------------------------------------------
# digest and JSON check
# --------------------------------------------------------------------------------------------


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


def _check_json_value(value: Any, where: str, active: set[int]) -> None:
    """Raise CheckpointError unless ``value`` is plain JSON data (str keys, no cycles)."""
    if value is None or isinstance(value, str | bool | int | float):
        return
    if isinstance(value, dict | list | tuple):
        cycle = f"metadata{where} contains a reference cycle; remove the cycle"
        with visiting(value, active, cycle):
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
                f"tensors[{name!r}] cannot be copied to the CPU ({one_line(err)}); "
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
        raise CheckpointError(f"metadata is not JSON-serialisable: {one_line(err)}") from err
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
            f"cannot serialise checkpoint '{path}': {one_line(err)}; check the tensors"
        ) from err

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, payload)
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoint '{path}': {one_line(err)}; check the directory exists, is "
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
        problem = f"cannot read the file ({one_line(err)})"
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
            path, f"it is not a valid safetensors file ({one_line(err)})", _CORRUPT_TODO
        ) from None

    if _digest(tensors, _canonical_json(user_metadata)) != expected:
        raise _refuse(
            path,
            "sha256 digest mismatch, the tensor data or metadata changed after saving",
            _CORRUPT_TODO,
        )
    return tensors, user_metadata
