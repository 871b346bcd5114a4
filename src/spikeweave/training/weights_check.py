"""Do a checkpoint's weights fit a model: names, dtypes and shapes, checked before loading.

``load_state_dict`` would copy an int64, bool or float16 tensor into a float32 parameter without
complaint, so weights written for another model would load silently wrong; and a config read
from a file could describe a model far larger than the file. :func:`check_model_fits` builds the
model the config describes on PyTorch's ``meta`` device (no memory) and compares it with the
file's tensors before the real model is allocated; :func:`check_state_dtypes` is the comparison.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import torch

from ..errors import CheckpointError, shown

__all__ = ["check_model_fits", "check_state_dtypes"]

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
            raise refuse(f"{key} is {shown(have)}, not a tensor")
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
