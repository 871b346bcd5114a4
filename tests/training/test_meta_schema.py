"""Tests for spikeweave.training.meta_schema: a training checkpoint's metadata, field by field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from json_values import JSON_VALUES
from optimizer_steps import train_steps
from tiers import examples

from spikeweave.checkpoint_file import load_checkpoint, save_checkpoint
from spikeweave.errors import CheckpointError
from spikeweave.nested_state import flatten_state
from spikeweave.training.meta_schema import TRAINING_META_SCHEMA, validate_training_meta


def _training_state(epoch: int = 2) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata shaped as the Trainer writes them, after ``epoch`` epochs."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    train_steps(model, opt, 1)
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


@settings(max_examples=examples(300), deadline=None)
@given(
    key=st.sampled_from(sorted(TRAINING_META_SCHEMA)),
    value=JSON_VALUES,
)
def test_any_json_value_in_any_field_validates_or_raises_checkpoint_error(key, value) -> None:
    _, meta = _TRAINING_STATE
    meta = {**meta, key: value}
    try:
        validate_training_meta(meta, "c.safetensors")
    except CheckpointError as err:
        assert str(err).startswith(f"c.safetensors: training-state field '{key}'")
        assert "\n" not in str(err)


_TRAINING_STATE = _training_state()
