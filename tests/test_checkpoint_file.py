"""Tests for spikeweave.checkpoint_file: round trips, atomic writes and refusals."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from tiers import examples

from spikeweave.checkpoint_file import load_checkpoint, save_checkpoint
from spikeweave.errors import CheckpointError


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 4, generator=g),
        "f64": torch.randn(5, generator=g, dtype=torch.float64),
        "bf16": torch.randn(2, 3, generator=g).to(torch.bfloat16),
        "i64": torch.randint(-(2**40), 2**40, (4,), generator=g, dtype=torch.int64),
        "u8": torch.randint(0, 256, (2, 2), generator=g, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 3),
    }


def _meta() -> dict:
    return {"epoch": 3, "lr": 1e-3, "name": "lif-net", "tags": ["a", "b"], "best": None}


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------- round trips


def test_tensors_of_every_dtype_and_metadata_round_trip_exactly(tmp_path: Path) -> None:
    tensors = _tensors()
    out = save_checkpoint(tmp_path / "c.safetensors", tensors, _meta())
    assert out == tmp_path / "c.safetensors"
    loaded, meta = load_checkpoint(out)
    _assert_same_tensors(tensors, loaded)
    assert meta == _meta()


def test_saved_file_is_plain_safetensors_with_marker_version_and_digest(tmp_path: Path) -> None:
    from safetensors import safe_open

    path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(2)}, {"k": 1})
    with safe_open(path, framework="pt") as f:
        envelope = json.loads(f.metadata()["spikeweave"])
    assert envelope["format"] == "spikeweave-checkpoint"
    assert envelope["format_version"] == 1
    assert len(envelope["sha256"]) == 64
    assert envelope["metadata"] == {"k": 1}


def test_noncontiguous_shared_and_grad_tensors_are_saved_as_independent_copies(
    tmp_path: Path,
) -> None:
    base = torch.arange(12.0).reshape(3, 4).requires_grad_()
    tensors = {"t": base.detach().t(), "same": base, "alias": base, "row": base.detach()[1]}
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "c", tensors, {}))
    _assert_same_tensors({k: v.detach().contiguous() for k, v in tensors.items()}, loaded)


def test_metadata_tuples_come_back_as_lists_and_nonfinite_floats_survive(tmp_path: Path) -> None:
    meta = {"betas": (0.9, 0.999), "inf": math.inf, "nan": math.nan}
    _, loaded = load_checkpoint(save_checkpoint(tmp_path / "c", {}, meta))
    assert loaded["betas"] == [0.9, 0.999]
    assert loaded["inf"] == math.inf and math.isnan(loaded["nan"])


@pytest.mark.parametrize(
    "meta",
    [
        {"x": {1, 2}},
        {"x": torch.ones(1)},
        {"x": object()},
        {"nested": {1: "int key"}},
    ],
    ids=["set", "tensor", "object", "int-key"],
)
def test_non_json_metadata_is_refused_with_checkpoint_error(tmp_path: Path, meta: dict) -> None:
    with pytest.raises(CheckpointError, match="metadata"):
        save_checkpoint(tmp_path / "c", {}, meta)
    assert list(tmp_path.iterdir()) == []


def test_cyclic_metadata_is_refused(tmp_path: Path) -> None:
    loop: list = []
    loop.append(loop)
    with pytest.raises(CheckpointError, match="cycle"):
        save_checkpoint(tmp_path / "c", {}, {"loop": loop})


# ----------------------------------------------------------------------------- atomic writes


def test_successful_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.safetensors", _tensors(), _meta())
    save_checkpoint(tmp_path / "c.safetensors", _tensors(), {"again": True})
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_save_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "runs" / "a" / "c", {"w": torch.ones(1)}, {})
    assert load_checkpoint(path)[0]["w"].item() == 1.0


def _boom(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("target", ["replace", "fsync"])
def test_failed_save_keeps_previous_checkpoint_and_removes_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    path = save_checkpoint(tmp_path / "c.safetensors", _tensors(), _meta())
    before = path.read_bytes()
    monkeypatch.setattr(os, target, _boom)
    with pytest.raises(CheckpointError, match="c.safetensors"):
        save_checkpoint(path, {"other": torch.zeros(10)}, {"epoch": 99})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]
    _assert_same_tensors(load_checkpoint(path)[0], _tensors())


def test_save_interrupted_midway_through_writing_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "c.safetensors", _tensors(), _meta())
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, fd: int, mode: str) -> None:
            self._f = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self._f.close()

        def write(self, data: bytes) -> int:
            self._f.write(data[: len(data) // 2])
            raise KeyboardInterrupt  # e.g. Ctrl-C while writing

    monkeypatch.setattr(os, "fdopen", HalfWriter)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"other": torch.zeros(100)}, {})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_non_json_metadata_leaves_previous_checkpoint_intact(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.safetensors", _tensors(), _meta())
    before = path.read_bytes()
    with pytest.raises(CheckpointError):
        save_checkpoint(path, _tensors(), {"bad": object()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


# ----------------------------------------------------------------------------------- refusals


def _assert_refused(path: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    _assert_refused(tmp_path / "nope.safetensors", "not found")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    _assert_refused(path, "empty")


@pytest.mark.parametrize("keep", [3, 20, -1, -7])
def test_truncated_file_is_refused(tmp_path: Path, keep: int) -> None:
    good = save_checkpoint(tmp_path / "good", _tensors(), _meta()).read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(good[:keep])
    _assert_refused(path, "truncated")


def test_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_text("epoch: 3\nloss: 0.25\n")
    _assert_refused(path, "not a safetensors file")


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.safetensors"
    path.write_bytes(
        bytes(
            torch.randint(
                0, 256, (4096,), generator=torch.Generator().manual_seed(3), dtype=torch.uint8
            ).tolist()
        )
    )
    _assert_refused(path, "safetensors")


def test_torch_save_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(3)}, path)
    _assert_refused(path, "never unpickles")


def test_legacy_torch_save_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    _assert_refused(path, "never unpickles")


class _Exploit:
    """Unpickling this creates the file named by ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickles_are_refused_without_running_code(tmp_path: Path) -> None:
    # The payload is live: unpickling it really creates its marker file.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Exploit(probe))).close()
    assert probe.exists()

    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"w": _Exploit(marker)}))
    zipped = tmp_path / "zipped.pt"
    torch.save({"w": _Exploit(marker)}, zipped)
    for path in (raw, zipped):
        _assert_refused(path, "never unpickles")
    assert not marker.exists()


def test_foreign_safetensors_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hf.safetensors"
    save_file({"w": torch.ones(2)}, str(path), metadata={"format": "pt"})
    _assert_refused(path, "not written by spikeweave")


def _rewrite_envelope(src: Path, dst: Path, **changes) -> None:
    from safetensors import safe_open

    with safe_open(src, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        envelope = json.loads(f.metadata()["spikeweave"])
    envelope.update(changes)
    save_file(tensors, str(dst), metadata={"spikeweave": json.dumps(envelope)})


@pytest.mark.parametrize("low_byte", [0x80, 0x50])
def test_header_length_that_looks_like_a_pickle_or_zip_still_loads(
    tmp_path: Path, low_byte: int
) -> None:
    # The 8-byte header length is little-endian: a length of 128 + 256k starts the file with
    # 0x80, the first byte of a pickle (0x50 is the "P" of a zip file's "PK").
    path = tmp_path / "c.safetensors"
    for pad in range(300):
        save_checkpoint(path, {"w": torch.ones(2)}, {"pad": "x" * pad})
        if path.read_bytes()[0] == low_byte:
            break
    else:
        pytest.fail("no padding gave the wanted header length")
    tensors, meta = load_checkpoint(path)
    assert meta == {"pad": "x" * pad} and torch.equal(tensors["w"], torch.ones(2))


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / "good", {"w": torch.ones(2)}, {})
    path = tmp_path / "future.safetensors"
    _rewrite_envelope(good, path, format_version=2)
    _assert_refused(path, "upgrade spikeweave")


def test_edited_metadata_fails_digest(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / "good", {"w": torch.ones(2)}, {"epoch": 1})
    path = tmp_path / "edited.safetensors"
    _rewrite_envelope(good, path, metadata={"epoch": 2})
    _assert_refused(path, "digest mismatch")


def test_bit_flip_in_tensor_data_fails_digest(tmp_path: Path) -> None:
    data = bytearray(save_checkpoint(tmp_path / "good", _tensors(), _meta()).read_bytes())
    data[-30] ^= 0x01
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(data))
    _assert_refused(path, "digest mismatch")


# ------------------------------------------------------------------------- corruption fuzzing

_FUZZ_TENSORS = {
    "a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
    "b": torch.tensor([True, False]),
    "c": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
    "d": torch.tensor([7, -8], dtype=torch.int64),
}
_FUZZ_META = {"epoch": 12, "lr": 0.001, "name": "net", "flags": [True, None]}


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def fuzz_original(fuzz_dir: Path) -> bytes:
    return save_checkpoint(fuzz_dir / "orig", _FUZZ_TENSORS, _FUZZ_META).read_bytes()


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=4),
    cut=st.one_of(st.none(), st.floats(0, 1, exclude_max=True)),
)
def test_corrupted_checkpoint_loads_identically_or_raises_checkpoint_error(
    fuzz_dir: Path, fuzz_original: bytes, flips: list[tuple[float, int]], cut: float | None
) -> None:
    data = bytearray(fuzz_original)
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    if cut is not None:
        data = data[: int(cut * len(data))]
    path = fuzz_dir / "corrupt.safetensors"
    path.write_bytes(bytes(data))
    try:
        tensors, meta = load_checkpoint(path)
    except CheckpointError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    _assert_same_tensors(tensors, _FUZZ_TENSORS)
    assert meta == _FUZZ_META


# ------------------------------------------------------------------ training-state metadata


def test_a_checkpoint_written_under_the_former_package_name_is_refused_saying_so(
    tmp_path: Path,
) -> None:
    # Before 0.2.0 the marker key, format and digest domain carried the package's former name;
    # any producer name other than "spikeweave" stands in for it here.
    from safetensors import safe_open

    path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(2)}, {"k": 1})
    with safe_open(path, framework="pt") as f:
        envelope = json.loads(f.metadata()["spikeweave"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    envelope["format"] = "formername-checkpoint"
    old = tmp_path / "old.safetensors"
    save_file(tensors, old, metadata={"formername": json.dumps(envelope)})
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(old)
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert "not written by spikeweave" in msg
    assert "before the project's rename in 0.2.0 are not read" in msg


def test_the_temporary_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path: Path) -> None:
    # what kill -9 mid-write leaves: the writer's own temporary name, untouched since
    stale = tmp_path / ".c.safetensors.0123456789abcdef.tmp"
    stale.write_bytes(b"half a checkpoint")
    os.utime(stale, (0, 0))
    save_checkpoint(tmp_path / "c.safetensors", _tensors(), _meta())
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_save_replaces_a_link_at_the_checkpoint_and_leaves_its_target_unchanged(
    tmp_path: Path,
) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"do not touch")
    (tmp_path / "c.safetensors").symlink_to(precious)
    save_checkpoint(tmp_path / "c.safetensors", _tensors(), _meta())
    assert precious.read_bytes() == b"do not touch"
    assert not (tmp_path / "c.safetensors").is_symlink()
    _assert_same_tensors(load_checkpoint(tmp_path / "c.safetensors")[0], _tensors())
