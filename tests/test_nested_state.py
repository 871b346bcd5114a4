"""Tests for spikeweave.nested_state: nested training state through tensors and JSON, exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from json_values import JSON_VALUES
from optimizer_steps import train_steps
from tiers import examples

from spikeweave.checkpoint_file import load_checkpoint, save_checkpoint
from spikeweave.errors import CheckpointError
from spikeweave.nested_state import (
    flatten_state,
    structure_problem,
    structure_tensors,
    unflatten_state,
)


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


def test_adamw_state_round_trip_continues_training_bitwise_identically(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    train_steps(model, opt, 2)

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

    train_steps(model, opt, 1)
    train_steps(model2, opt2, 1)
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


@settings(max_examples=examples(300), deadline=None)
@given(structure=JSON_VALUES)
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


@settings(max_examples=examples(300), deadline=None)
@given(structure=JSON_VALUES)
def test_structure_problem_is_none_exactly_when_unflatten_state_accepts_the_structure(
    structure,
) -> None:
    # A checker that accepted more (or less) than unflatten_state would let a resume fail late.
    problem = structure_problem(structure)
    try:
        names = structure_tensors(structure)
    except CheckpointError:
        assert problem is not None
        return
    assert problem is None
    unflatten_state(dict.fromkeys(names, torch.zeros(1)), structure)


def test_structure_tensors_names_every_tensor_reference_in_walk_order() -> None:
    state = {"state": {0: {"exp_avg": torch.ones(2), "step": torch.tensor(1.0)}}, "lr": 0.1}
    tensors, structure = flatten_state("optimizer", state)
    assert structure_tensors(structure) == list(tensors)
    assert structure_tensors(json.loads(json.dumps(structure))) == [
        "optimizer/state/0/exp_avg",
        "optimizer/state/0/step",
    ]
    assert structure_problem({"__dict__": [[{"x": 1}, 2]]}) == "invalid dict key {'x': 1}"
