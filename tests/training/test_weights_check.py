"""Tests for spikeweave.training.weights_check: weights of another model are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spikeweave.checkpoint_file import load_checkpoint, save_checkpoint
from spikeweave.errors import CheckpointError
from spikeweave.training.weights_check import check_state_dtypes


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
