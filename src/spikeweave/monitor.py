"""Monitors: the spikes of every spiking layer of a model, recorded and stored in one place.

A module counts as spiking if it is a :class:`~spikeweave.neurons.SpikingNeuron` (its output
is its spikes) or if it has a ``spikes(input)`` method whose result is its spikes (e.g. NA's
neuron, whose forward returns the synaptic current). The trainer, ``spikeweave eval`` and the
plots all go through :func:`record_spikes`, :func:`save_activity` and :func:`load_activity`.

Stored activity is bit-packed (one bit per neuron and step), so a run's record of a test batch
stays far smaller than its checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import atomic_write_bytes
from .errors import DataError
from .neurons import SpikingNeuron

__all__ = [
    "Activity",
    "activity_warnings",
    "spiking_modules",
    "record_spikes",
    "save_activity",
    "load_activity",
]


def spiking_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every spiking layer, in forward order of registration."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, SpikingNeuron) or callable(getattr(module, "spikes", None)):
            found.append((name, module))
    return found


@torch.no_grad()
def record_spikes(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model`` on the time-major input ``x`` and return each spiking layer's spikes
    ``[T, B, ...]`` as uint8 on the CPU, keyed by layer name in network order."""
    spikes: dict[str, torch.Tensor] = {}
    handles = []
    patched: list[nn.Module] = []

    def keep(name: str, s: torch.Tensor) -> None:
        spikes[name] = s.detach().to(torch.uint8).cpu()

    for name, module in spiking_modules(model):
        if isinstance(module, SpikingNeuron):

            def hook(_m, _inp, out, name=name):
                keep(name, out[0] if isinstance(out, tuple) else out)

            handles.append(module.register_forward_hook(hook))
        else:
            original = module.spikes

            def recording(*args, _orig=original, name=name, **kwargs):
                s = _orig(*args, **kwargs)
                keep(name, s)
                return s

            module.spikes = recording  # type: ignore[method-assign]
            patched.append(module)
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
        for module in patched:
            del module.spikes  # the instance attribute; the class method shows again
    return spikes


@dataclass
class Activity:
    """Recorded spikes (uint8 ``[T, B, ...]`` per layer, in network order) and, when known,
    each sample's true label and prediction."""

    spikes: dict[str, torch.Tensor]
    labels: list[int] | None = None
    predictions: list[int] | None = None
    meta: dict = field(default_factory=dict)


def activity_warnings(spikes: dict[str, torch.Tensor]) -> list[str]:
    """One line per layer that is silent (no spike anywhere in ``spikes[name]``, ``[T, B,
    ...]``) or saturated (every neuron spikes at every step): such a layer passes on nothing
    about its input, so a run with one usually sits at chance (e.g. a silent output layer of a
    10-class net: loss ln 10, accuracy 10%)."""
    lines = []
    for name, s in spikes.items():
        if s.numel() == 0:
            continue
        t, b = s.shape[0], s.shape[1] if s.dim() > 1 else 1
        count = int(s.to(torch.int64).sum())
        if count == 0:
            state = "is silent: not one spike"
            advice = "train longer, raise the lr, lower the threshold or use more time steps"
        elif count == s.numel():
            state = "is saturated: every neuron spikes at every step"
            advice = "raise the threshold, lower the input scale or the lr"
        else:
            continue
        lines.append(
            f"layer {name!r} {state} in the recorded activity ({b} test samples x {t} steps); "
            f"it carries no information about the input ({advice})"
        )
    return lines


def save_activity(path: str | Path, activity: Activity) -> Path:
    """Write ``activity`` to a safetensors file, spikes bit-packed, atomically (mode 0644)."""
    from safetensors.torch import save

    tensors, shapes = {}, {}
    for name, s in activity.spikes.items():
        arr = s.to(torch.uint8).numpy().astype(bool)
        shapes[name] = list(arr.shape)
        tensors[name] = torch.from_numpy(np.packbits(arr.reshape(-1)))
    meta = {
        "layers": json.dumps(list(activity.spikes)),
        "shapes": json.dumps(shapes),
        "packed": "bits",
        "labels": json.dumps(activity.labels),
        "predictions": json.dumps(activity.predictions),
    }
    out = Path(path)
    atomic_write_bytes(out, save(tensors, metadata=meta))
    return out


def load_activity(path: str | Path) -> Activity:
    """Read a file written by :func:`save_activity` (or a plain safetensors file of uint8/bool
    spikes ``[T, B, ...]``); ``DataError`` naming the file if it is not one."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except (OSError, SafetensorError) as exc:
        raise DataError(
            f"cannot read spike activity {path}: {exc}; re-run `spikeweave train` to rewrite it"
        ) from None
    try:
        order = json.loads(meta["layers"]) if "layers" in meta else list(tensors)
        order = [str(n) for n in order if str(n) in tensors] + [
            n for n in tensors if n not in order
        ]
        if meta.get("packed") == "bits":
            shapes = json.loads(meta["shapes"])
            spikes = {}
            for name in order:
                shape = [int(v) for v in shapes[name]]
                packed = tensors[name].numpy()
                count = int(np.prod(shape, dtype=object))
                # The shape is declared in the metadata: it must match the stored bits, or a
                # 200-byte file could unpack into gigabytes of zeros.
                if min(shape, default=0) < 0 or packed.dtype != np.uint8 or packed.ndim != 1:
                    raise ValueError(f"layer {name!r}: invalid packed spikes")
                if (count + 7) // 8 != packed.size:
                    raise ValueError(
                        f"layer {name!r}: shape {shape} needs {(count + 7) // 8} bytes of "
                        f"packed spikes, the file holds {packed.size}"
                    )
                bits = np.unpackbits(packed, count=count)
                spikes[name] = torch.from_numpy(bits.reshape(shape).copy())
        else:
            spikes = {name: tensors[name] for name in order}
        labels = json.loads(meta.get("labels", "null"))
        predictions = json.loads(meta.get("predictions", "null"))
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(
            f"spike activity {path} has malformed metadata ({exc}); re-run `spikeweave train`"
        ) from None
    return Activity(spikes, labels, predictions, dict(meta))
