"""Tests for spikeforge.training.checkpoint: round trips, atomic writes and refusals."""

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

from spikeforge.errors import CheckpointError
from spikeforge.training import checkpoint as ckpt
from spikeforge.training.checkpoint import (
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)


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


def _assert_same_structure(a, b) -> None:
    """Exact equality of nested state, including container and key types, tensors bitwise."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys())
        for ka, kb in zip(a.keys(), b.keys(), strict=True):
            assert type(ka) is type(kb)
            _assert_same_structure(a[ka], b[kb])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same_structure(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


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
        envelope = json.loads(f.metadata()["spikeforge"])
    assert envelope["format"] == "spikeforge-checkpoint"
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


def test_flatten_unflatten_keeps_int_keys_tuples_and_nonfinite_floats_exactly() -> None:
    state = {
        0: {"step": torch.tensor(2.0), "buf": torch.ones(2)},
        "nested": [1, 2.5, (True, None, "s"), {(1, "a"): math.inf, None: -math.inf}],
        1.5: math.nan,
        (False, 2): "tuple key holding a bool",
    }
    tensors, structure = flatten_state("opt", state)
    assert set(tensors) == {"opt/0/step", "opt/0/buf"}
    # The structure survives JSON (as it does inside checkpoint metadata).
    rebuilt = unflatten_state(tensors, json.loads(json.dumps(structure)))
    _assert_same_structure(state, rebuilt)


def test_flatten_gives_clashing_paths_distinct_tensor_names() -> None:
    tensors, structure = flatten_state("p", {1: torch.zeros(1), "1": torch.ones(1)})
    assert len(tensors) == 2
    rebuilt = unflatten_state(tensors, structure)
    assert torch.equal(rebuilt[1], torch.zeros(1)) and torch.equal(rebuilt["1"], torch.ones(1))


def test_flatten_refuses_unsupported_leaves_and_empty_prefix() -> None:
    with pytest.raises(CheckpointError, match="flatten_state"):
        flatten_state("p", {"dtype": torch.float32})
    with pytest.raises(CheckpointError, match="prefix"):
        flatten_state("", {})


def test_unflatten_refuses_missing_tensor_and_malformed_structure() -> None:
    with pytest.raises(CheckpointError, match="missing"):
        unflatten_state({}, {"__tensor__": "opt/0/step"})
    with pytest.raises(CheckpointError, match="flatten_state"):
        unflatten_state({}, {"not": "a marker"})


def _train_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=g)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


def test_adamw_state_round_trip_continues_training_bitwise_identically(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    _train_steps(model, opt, 2)

    opt_tensors, opt_structure = flatten_state("optim", opt.state_dict())
    model_tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    path = save_checkpoint(
        tmp_path / "run.safetensors", {**model_tensors, **opt_tensors}, {"optim": opt_structure}
    )

    tensors, meta = load_checkpoint(path)
    model2 = torch.nn.Linear(4, 3)
    model2.load_state_dict(
        {k.removeprefix("model/"): v for k, v in tensors.items() if k in model_tensors}
    )
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.5, weight_decay=0.0)
    restored = unflatten_state(tensors, meta["optim"])
    _assert_same_structure(opt.state_dict(), restored)
    opt2.load_state_dict(restored)

    _train_steps(model, opt, 1)
    _train_steps(model2, opt2, 1)
    for p1, p2 in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p1, p2)


def test_cosine_scheduler_state_round_trip_gives_same_learning_rates(tmp_path: Path) -> None:
    def make() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.CosineAnnealingLR]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=1e-4)

    opt, sched = make()
    for _ in range(3):
        opt.step()
        sched.step()
    # CosineAnnealingLR updates the optimizer's lr recursively, so both states are saved.
    sched_tensors, sched_structure = flatten_state("sched", sched.state_dict())
    opt_tensors, opt_structure = flatten_state("optim", opt.state_dict())
    path = save_checkpoint(
        tmp_path / "s",
        {**sched_tensors, **opt_tensors},
        {"sched": sched_structure, "optim": opt_structure},
    )
    tensors, meta = load_checkpoint(path)
    restored = unflatten_state(tensors, meta["sched"])
    _assert_same_structure(sched.state_dict(), restored)

    opt2, sched2 = make()
    opt2.load_state_dict(unflatten_state(tensors, meta["optim"]))
    sched2.load_state_dict(restored)
    assert sched.get_last_lr() == sched2.get_last_lr()
    for _ in range(4):
        opt.step()
        sched.step()
        opt2.step()
        sched2.step()
        assert sched.get_last_lr() == sched2.get_last_lr()


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
    monkeypatch.setattr(ckpt.os, target, _boom)
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

    monkeypatch.setattr(ckpt.os, "fdopen", HalfWriter)
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
    _assert_refused(path, "not written by spikeforge")


def _rewrite_envelope(src: Path, dst: Path, **changes) -> None:
    from safetensors import safe_open

    with safe_open(src, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        envelope = json.loads(f.metadata()["spikeforge"])
    envelope.update(changes)
    save_file(tensors, str(dst), metadata={"spikeforge": json.dumps(envelope)})


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / "good", {"w": torch.ones(2)}, {})
    path = tmp_path / "future.safetensors"
    _rewrite_envelope(good, path, format_version=2)
    _assert_refused(path, "upgrade spikeforge")


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
    max_examples=300,
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
