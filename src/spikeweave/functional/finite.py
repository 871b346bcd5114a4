"""The finite-input check: immediate on the CPU, deferred and sync-free on a GPU.

Every neuron refuses an input holding NaN or inf with an ``InputError`` naming the neuron.

- **CPU:** checked in the call, so the error comes from the call itself. The compiled kernel
  flags non-finite values in its own pass; the PyTorch path sums the input once (a NaN or inf
  always makes the sum non-finite) and looks element by element only if the sum is not finite.
- **CUDA:** reading a flag back to the host would stall the GPU on every neuron call, so the
  flag is computed on the device (the Triton kernel raises it in its own pass), copied
  asynchronously into pinned host memory, and a CUDA event marks when it is there. The error is
  raised by the first later neuron call (or :func:`check_deferred`) that finds the event done,
  without waiting for it: usually within the same training step. :func:`check_deferred` waits
  for every pending flag and raises if any was set; call it where a step already synchronises
  (e.g. after ``loss.item()``) to get the error at a fixed point.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError

__all__ = ["check_deferred", "defer", "has_nonfinite", "nonfinite_error", "poll"]

_pending: list[tuple[str, torch.Tensor, torch.cuda.Event]] = []


def nonfinite_error(who: str) -> InputError:
    """The one-line error for an input holding NaN or inf."""
    return InputError(
        f"{who}: input contains NaN or inf; check the data and the layer before this neuron"
    )


def has_nonfinite(x: torch.Tensor) -> bool:
    """Whether ``x`` (on the CPU) holds a NaN or inf: one summing pass, and an elementwise
    look only when the sum is not finite (an overflow of finite values is not blamed)."""
    if x.numel() == 0:
        return False
    if math.isfinite(float(x.detach().sum())):
        return False
    return not bool(torch.isfinite(x).all())


def defer(flag: torch.Tensor, who: str) -> None:
    """Queue a device flag (a 0-dim tensor, nonzero = non-finite input seen by ``who``)."""
    host = torch.empty((), dtype=flag.dtype, pin_memory=True)
    host.copy_(flag, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    _pending.append((who, host, event))
    poll()


def poll() -> None:
    """Raise for the first pending flag that has arrived and is set; never waits."""
    while _pending and _pending[0][2].query():
        who, host, _ = _pending.pop(0)
        if bool(host):
            _pending.clear()
            raise nonfinite_error(who)


def check_deferred() -> None:
    """Wait for every pending GPU flag; ``InputError`` if a neuron saw NaN or inf."""
    while _pending:
        who, host, event = _pending.pop(0)
        event.synchronize()
        if bool(host):
            _pending.clear()
            raise nonfinite_error(who)
