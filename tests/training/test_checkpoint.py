"""Tests for spikeweave.training.checkpoint: round trips, atomic writes and refusals."""

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

from spikeweave.errors import CheckpointError
from spikeweave.training import checkpoint as ckpt
from spikeweave.training.checkpoint import (
    check_state_dtypes,
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
    validate_training_meta,
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


# ------------------------------------------------------------------ training-state metadata


def _training_state(epoch: int = 2) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata shaped as the Trainer writes them, after ``epoch`` epochs."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    _train_steps(model, opt, 1)
    sched.step()
    opt_tensors, opt_struct = flatten_state("optimizer", opt.state_dict())
    sched_tensors, sched_struct = flatten_state("scheduler", sched.state_dict())
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    tensors.update(opt_tensors)
    tensors.update(sched_tensors)
    meta = {
        "kind": "spikeweave-training-state",
        "epoch": epoch,
        "config": {"epochs": 5, "lr": 1e-2},
        "history": [{"epoch": i + 1, "test_accuracy": 0.5} for i in range(epoch)],
        "wall_time_s": 3.25,
        "optimizer": opt_struct,
        "scheduler": sched_struct,
        "versions": {"spikeweave": "0.1", "torch": torch.__version__},
    }
    return tensors, meta


def _saved_and_loaded(tmp_path: Path, meta: dict) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """Write ``meta`` with a valid digest and read it back, as a resume would."""
    tensors, _ = _training_state()
    path = save_checkpoint(tmp_path / "checkpoint.safetensors", tensors, meta)
    loaded, loaded_meta = load_checkpoint(path)
    return path, loaded, loaded_meta


def test_trainer_shaped_metadata_validates_and_is_returned(tmp_path: Path) -> None:
    tensors, meta = _training_state()
    path, loaded, loaded_meta = _saved_and_loaded(tmp_path, meta)
    assert validate_training_meta(loaded_meta, path, tensors=loaded) is loaded_meta
    _, fresh = _training_state(epoch=0)
    assert validate_training_meta(fresh, path) is fresh  # epoch 0: nothing trained yet


def test_optional_and_unknown_keys_are_accepted(tmp_path: Path) -> None:
    _, meta = _training_state()
    meta.update(task="classification", method="bptt", method_state={"k": [1, 2]})
    meta["data_spec"] = {"input_shape": [1, 28, 28], "num_classes": 10}
    meta["written_by_a_newer_spikeweave"] = {"anything": True}  # forward compatibility
    _, _, loaded_meta = _saved_and_loaded(tmp_path, meta)
    assert validate_training_meta(loaded_meta, "c.safetensors") is loaded_meta


_NAN = float("nan")
_BAD_FIELDS = [
    ("kind", "spikeweave-model", "'kind' is 'spikeweave-model'"),
    ("kind", None, "'kind' is None"),
    ("config", [1], "'config' is \\[1\\] \\(list\\), expected an object"),
    ("config", {"lr": 1}, "'config' has no 'epochs'"),
    ("config", {"epochs": "5"}, "'config' has epochs '5' \\(str\\), expected a positive int"),
    ("epoch", "abc", "'epoch' is 'abc' \\(str\\), expected an int from 0 to config epochs \\(5\\)"),
    ("epoch", -5, "'epoch' is -5 \\(int\\), expected an int from 0 to config epochs \\(5\\)"),
    ("epoch", 10**6, "'epoch' is 1000000 \\(int\\), expected an int from 0"),
    ("epoch", 2.0, "'epoch' is 2.0 \\(float\\)"),
    ("epoch", True, "'epoch' is True \\(bool\\)"),
    ("history", 5, "'history' is 5 \\(int\\), expected a list of 2 per-epoch records"),
    ("history", {"epoch": 1}, "'history' is {'epoch': 1} \\(dict\\)"),
    ("history", [{"epoch": 1}], "'history' has 1 records, expected 2"),
    ("history", [{"epoch": 1}, 7], "'history' item 1 is 7 \\(int\\), expected an object"),
    ("history", [{"epoch": 1}, {"loss": 1}], "'history' item 1 has epoch None"),
    ("history", [{"epoch": 1}, {"epoch": "2"}], "'history' item 1 has epoch '2' \\(str\\)"),
    ("history", [{"epoch": 2}, {"epoch": 1}], "'history' item 0 has epoch 2 \\(int\\), expected 1"),
    ("wall_time_s", "3", "'wall_time_s' is '3' \\(str\\), expected a finite number"),
    ("wall_time_s", -1.0, "'wall_time_s' is -1.0"),
    ("wall_time_s", _NAN, "'wall_time_s' is nan"),
    ("wall_time_s", float("inf"), "'wall_time_s' is inf"),
    ("wall_time_s", False, "'wall_time_s' is False"),
    ("optimizer", 5, "'optimizer' is 5 \\(int\\), expected null or the flatten_state"),
    ("optimizer", [], "'optimizer' is \\[\\] \\(list\\), expected null or the flatten_state"),
    (
        "optimizer",
        {"state": {}},
        "'optimizer' is {'state': {}} \\(dict\\), expected null or the flatten",
    ),
    ("optimizer", {"__dict__": 5}, "'optimizer' is not a flatten_state structure"),
    ("optimizer", {"__dict__": [[1]]}, "'optimizer' is not a flatten_state structure"),
    ("optimizer", {"__dict__": [["k", {"x": 1}]]}, "'optimizer' is not a flatten_state"),
    ("optimizer", {"__dict__": [[[1], 2]]}, "'optimizer' is not a flatten_state structure"),
    ("optimizer", {"__dict__": [["s", {"__tensor__": 3}]]}, "tensor reference 3 is not a str"),
    ("scheduler", "sched", "'scheduler' is 'sched' \\(str\\), expected null or the flatten_state"),
    ("scheduler", {"__tuple__": []}, "'scheduler' is {'__tuple__': \\[\\]} \\(dict\\)"),
    ("versions", ["2.13"], "'versions' is \\['2.13'\\] \\(list\\), expected an object"),
    ("versions", {"torch": 2}, "'versions' entry 'torch' is 2 \\(int\\), expected a version"),
    ("task", 5, "'task' is 5 \\(int\\), expected a str"),
    ("method", ["bptt"], "'method' is \\['bptt'\\] \\(list\\), expected a str"),
    ("method_state", "x", "'method_state' is 'x' \\(str\\), expected an object"),
    ("data_spec", [1], "'data_spec' is \\[1\\] \\(list\\), expected an object"),
]


@pytest.mark.parametrize(("key", "value", "match"), _BAD_FIELDS)
def test_bad_training_field_is_one_line_error_naming_file_and_field(
    tmp_path: Path, key: str, value, match: str
) -> None:
    _, meta = _training_state()
    meta[key] = value
    path, loaded, loaded_meta = _saved_and_loaded(tmp_path, meta)  # the digest is valid
    with pytest.raises(CheckpointError, match=match) as info:
        validate_training_meta(loaded_meta, path, tensors=loaded)
    message = str(info.value)
    assert message.startswith(f"{path}: training-state field '{key}'")
    assert "\n" not in message


@pytest.mark.parametrize(
    "key",
    ["kind", "config", "epoch", "history", "wall_time_s", "optimizer", "scheduler", "versions"],
)
def test_missing_training_field_is_named(tmp_path: Path, key: str) -> None:
    _, meta = _training_state()
    del meta[key]
    path, _, loaded_meta = _saved_and_loaded(tmp_path, meta)
    with pytest.raises(CheckpointError, match=f"^{path}: training-state field '{key}' is missing"):
        validate_training_meta(loaded_meta, path)


def test_method_without_optimizer_or_scheduler_validates(tmp_path: Path) -> None:
    # A local learning rule trains without either; the trainer then writes null for them.
    tensors, meta = _training_state()
    meta["optimizer"] = meta["scheduler"] = None
    path, loaded, loaded_meta = _saved_and_loaded(tmp_path, meta)
    assert validate_training_meta(loaded_meta, path, tensors=loaded) is loaded_meta


def test_metadata_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(CheckpointError, match=r"^c\.st: its metadata is \[\] \(list\)"):
        validate_training_meta([], "c.st")  # type: ignore[arg-type]


def test_structure_referring_to_a_tensor_the_file_lacks_is_refused(tmp_path: Path) -> None:
    tensors, meta = _training_state()
    lacking = {k: v for k, v in tensors.items() if not k.startswith("optimizer/state/")}
    with pytest.raises(
        CheckpointError, match=r"field 'optimizer' refers to tensor 'optimizer/state/0/\w+'"
    ):
        validate_training_meta(meta, "c.safetensors", tensors=lacking)
    assert validate_training_meta(meta, "c.safetensors", tensors=tensors) is meta


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(["t", "u", ""]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["__dict__", "__tuple__", "__tensor__", "k"]),
            inner,
            min_size=1,
            max_size=2,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(sorted(ckpt.TRAINING_META_SCHEMA)),
    value=_JSON,
)
def test_any_json_value_in_any_field_validates_or_raises_checkpoint_error(key, value) -> None:
    _, meta = _TRAINING_STATE
    meta = {**meta, key: value}
    try:
        validate_training_meta(meta, "c.safetensors")
    except CheckpointError as err:
        assert str(err).startswith(f"c.safetensors: training-state field '{key}'")
        assert "\n" not in str(err)


@settings(max_examples=300, deadline=None)
@given(structure=_JSON)
def test_unflatten_state_gives_a_value_or_checkpoint_error_for_any_json(structure) -> None:
    try:
        unflatten_state({"t": torch.zeros(1)}, structure)
    except CheckpointError as err:
        assert str(err).startswith("unflatten_state: ") and "\n" not in str(err)


def test_unflatten_state_refuses_deep_nesting_and_non_mapping_tensors() -> None:
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(CheckpointError, match="nested too deeply"):
        unflatten_state({}, deep)
    with pytest.raises(CheckpointError, match="tensors must be a mapping"):
        unflatten_state(None, {"__tensor__": "x"})  # type: ignore[arg-type]


_TRAINING_STATE = _training_state()


# ------------------------------------------------------------------------- weights vs model


def _model_state() -> dict[str, torch.Tensor]:
    net = torch.nn.Sequential()
    net.add_module("fc1", torch.nn.Linear(784, 10))
    return {f"model/{k}": v for k, v in net.state_dict().items()}


def test_matching_weights_pass(tmp_path: Path) -> None:
    expected = _model_state()
    path = save_checkpoint(tmp_path / "checkpoint.safetensors", expected, {})
    tensors, _ = load_checkpoint(path)
    check_state_dtypes(expected, tensors, path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.float16, torch.float64])
def test_weights_of_another_dtype_are_refused_naming_the_tensor(
    tmp_path: Path, dtype: torch.dtype
) -> None:
    expected = _model_state()
    wrong = dict(expected)
    wrong["model/fc1.weight"] = torch.zeros(10, 784).to(dtype)
    path = save_checkpoint(tmp_path / "checkpoint.safetensors", wrong, {})
    tensors, _ = load_checkpoint(path)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(CheckpointError) as info:
        check_state_dtypes(expected, tensors, path)
    assert str(info.value) == (
        f"{path}: model/fc1.weight is {name}, expected float32; "
        "the checkpoint was not written for this model"
    )


def test_weights_of_another_shape_are_refused() -> None:
    expected = _model_state()
    wrong = {**expected, "model/fc1.weight": torch.zeros(10, 5)}
    with pytest.raises(
        CheckpointError,
        match=r"^c\.st: model/fc1\.weight has shape \[10, 5\], expected \[10, 784\]; the",
    ):
        check_state_dtypes(expected, wrong, "c.st")


def test_missing_unexpected_and_non_tensor_entries_are_refused() -> None:
    expected = _model_state()
    with pytest.raises(CheckpointError, match=r"^c\.st: model/fc1\.weight is missing; the"):
        check_state_dtypes(expected, {"model/fc1.bias": expected["model/fc1.bias"]}, "c.st")
    with pytest.raises(CheckpointError, match=r"model/fc1\.weight is missing \(and 1 more\)"):
        check_state_dtypes(expected, {}, "c.st")
    extra = {**expected, "model/fc2.weight": torch.zeros(1), "model/fc2.bias": torch.zeros(1)}
    with pytest.raises(
        CheckpointError, match=r"^c\.st: model/fc2\.weight is not in this model \(and 1 more\)"
    ):
        check_state_dtypes(expected, extra, "c.st")
    with pytest.raises(CheckpointError, match=r"model/fc1\.bias is 0 \(int\), not a tensor"):
        check_state_dtypes(expected, {**expected, "model/fc1.bias": 0}, "c.st")


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
