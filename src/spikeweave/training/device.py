"""Where a run computes and in which precision: one resolution for every command and method.

``device`` (a :class:`~.config.TrainConfig` field and ``--device`` on every command that
computes) is ``auto`` (CUDA when ``torch.cuda.is_available()``, else the CPU), ``cpu``, ``cuda``
or ``cuda:N``. Asking for a GPU that is not there is a one-line :class:`ConfigError`, never a
silent CPU run. ``precision`` is ``fp32``, ``bf16`` (autocast, CPU and CUDA) or ``fp16``
(autocast and a gradient scaler, CUDA only). ``deterministic`` turns on PyTorch's deterministic
algorithms (and the cuBLAS workspace setting they need on CUDA) while a run trains;
``threads`` sets torch's intra-op threads for the run (:func:`torch_threads`).

This module is a leaf of :mod:`spikeweave.training` (torch and errors only), so the config,
the assembly, the trainer and the sub-packages (security, compression, experiments) share it.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .config import PRECISIONS, check_device_spec

__all__ = [
    "PRECISIONS",
    "autocast",
    "check_device_spec",
    "check_precision",
    "default_num_workers",
    "describe_device",
    "full_precision",
    "deterministic_algorithms",
    "grad_scaler",
    "model_device",
    "resolve_device",
    "synchronize",
    "to_device",
    "torch_threads",
]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CUBLAS_WORKSPACE = ":4096:8"
"""``CUBLAS_WORKSPACE_CONFIG`` for deterministic cuBLAS (PyTorch's documented value)."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The :class:`torch.device` for ``spec`` on this machine.

    ``auto`` is ``cuda`` (the current GPU) when CUDA is available, else ``cpu``. ``cuda`` or
    ``cuda:N`` without CUDA, or with ``N`` beyond the GPU count, raises a one-line
    ``ConfigError``: a run asked for a GPU never trains on the CPU instead.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    check_device_spec(spec)
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {spec!r} asked for, but CUDA is not available here (torch "
            f"{torch.__version__}); use --device cpu or auto"
        )
    count = torch.cuda.device_count()
    index = int(spec.split(":")[1]) if ":" in spec else torch.cuda.current_device()
    if index >= count:
        raise ConfigError(
            f"device {spec!r} asked for, but this machine has {count} GPU(s) (cuda:0 to "
            f"cuda:{count - 1})"
        )
    return torch.device("cuda", index)


def check_precision(precision: str, device: torch.device) -> None:
    """One-line ``ConfigError`` for an unknown precision or fp16 off CUDA (the CPU has no
    fp16 training path: use bf16)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of fp32, bf16, fp16")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"precision fp16 needs a CUDA device (this run is on {device}); use bf16 on the CPU"
        )


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast region for ``precision`` on ``device`` (a no-op for ``fp32``).

    Inside it, convolutions and linear layers run in bf16/fp16 and hand the neurons a bf16/fp16
    input: the Triton kernels take it directly on CUDA (computing in float32 inside); on the CPU
    the compiled kernel takes float32/float64 only, so a bf16 neuron runs the torch backend.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 on CUDA (small fp16 gradients would underflow), else None."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when autocast left it in bf16/fp16 (losses and metrics are summed in
    float32); any other tensor unchanged."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (the CPU for one with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; from pinned host memory to a GPU the copy is asynchronous."""
    return x.to(device, non_blocking=device.type == "cuda" and x.is_pinned())


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued CUDA work on ``device`` (every device when None) before reading a
    clock; a no-op on the CPU or without CUDA."""
    if device is not None and torch.device(device).type != "cuda":
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize(device)


def default_num_workers(device: torch.device) -> int:
    """Data-loading worker processes when the config leaves ``num_workers`` out: 0 on the CPU
    (the workers would compete with training for the same cores, and the datasets are
    in-memory tensors or frame caches), ``min(4, cores // 2)`` on CUDA (the host prepares the
    next batches while the GPU trains)."""
    if device.type != "cuda":
        return 0
    return max(0, min(4, (os.cpu_count() or 1) // 2))


def describe_device(device: torch.device) -> dict[str, str]:
    """``{"device": "cuda:0", "device_name": "NVIDIA H100 ..."}`` (the GPU's name, or the
    CPU's processor name) for ``summary.json``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"device": f"cuda:{index}", "device_name": torch.cuda.get_device_name(index)}
    return {"device": "cpu", "device_name": platform.processor() or platform.machine() or "cpu"}


@contextlib.contextmanager
def deterministic_algorithms(on: bool) -> Iterator[None]:
    """Deterministic algorithms for the ``with`` block when ``on`` (restored after).

    Sets ``CUBLAS_WORKSPACE_CONFIG`` (when unset) before any cuBLAS call of the block, turns
    off cuDNN's benchmark autotuning and asks for deterministic cuDNN kernels; an operation with
    no deterministic implementation raises instead of running nondeterministically.
    """
    if not on:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2:]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the ``with`` block (restored
    after); None leaves torch's own choice. The run's config records the value, and
    ``versions()["torch_threads"]`` in its summary the count in force."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
