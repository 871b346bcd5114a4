"""The trained spiking sampler applied to event frames: which pixels sampled mode keeps.

A :class:`EventFrameSampler` wraps a trained :class:`~.sampler.SpikingSampler` (one LIF
sampling neuron per pixel). For a time window's event frame ``[2, H, W]`` (event counts per
polarity) it feeds ``min(count, FRAME_CAP) / FRAME_CAP`` directly for ``steps`` time steps
and ranks the pixels by :func:`~.sampler.keep_score` (spike count, ties by mean input
current); the ``k`` best pixels are kept, equal scores going to the lower pixel index. The
sampler is convolutional, so one trained on 34×34 frames runs on any sensor size.

Where the trained sampler comes from:

- **built in** (the default): a sampler shipped with spikeweave as package data,
  ``pretrained/event_sampler_r10.safetensors`` (trained at a 10 % rate), loaded with
  safetensors (no code runs on load). It was trained by
  ``python -m spikeweave.compression.pretrain`` (command and seed in the file's metadata and
  ``pretrained/README.md``) on event frames of *simulated* saccade events of mnist5k training
  images (:mod:`.saccades`), never on real recordings. Every rate uses it: top-k of its ranking
  gives the exact rate. (Samplers trained at other rates can be added to BUILTIN_RATES; a rate
  then uses the one trained at the nearest rate, in log scale.)
- **a user's run**: :meth:`EventFrameSampler.from_run` loads a ``--method sampler`` run
  (``arm = "spiking"``). A run trained on one-channel images sees the polarity-summed frame.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .sampler import SpikingSampler, keep_score

__all__ = [
    "FRAME_CAP",
    "BUILTIN_RATES",
    "EventFrameSampler",
    "builtin_path",
    "save_sampler",
    "normalise_frames",
]

FRAME_CAP = 2
"""Event counts per pixel and polarity are clipped here before scaling into [0, 1]: in 10 ms
windows of N-MNIST 96 % of active (pixel, polarity) cells hold 1 or 2 events."""

BUILTIN_RATES = (0.10,)
"""The rates the built-in samplers were trained at (one: CPU time to train was short)."""

_CHUNK_PIXELS = 1 << 19  # windows per forward pass bounded to ~0.5 M pixels (~130 MB at T=4)


def builtin_path(rate: float) -> Path:
    """The package file of the built-in sampler trained at ``rate`` (one of BUILTIN_RATES)."""
    name = f"event_sampler_r{round(100 * rate):02d}.safetensors"
    return Path(str(resources.files("spikeweave.compression") / "pretrained" / name))


def normalise_frames(frames: np.ndarray, channels: int) -> torch.Tensor:
    """Count frames ``[n, 2, H, W]`` -> float32 ``[n, channels, H, W]`` in [0, 1]: each
    polarity (``channels = 2``) or their sum (``channels = 1``), clipped at FRAME_CAP."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float()
    if channels == 1:
        x = x.sum(1, keepdim=True)
    elif channels != 2:
        raise ConfigError(f"an event-frame sampler needs 1 or 2 input channels, not {channels}")
    return x.clamp_(max=FRAME_CAP) / FRAME_CAP


def _digest(state: dict[str, torch.Tensor]) -> str:
    """First 16 hex digits of a SHA-256 over the weights (names, shapes and bytes), so a file
    can say exactly which sampler produced it."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode() + str(tuple(t.shape)).encode() + t.numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class EventFrameSampler:
    """A trained spiking sampler for event frames; ``info`` describes it for ``.sfev`` files."""

    sampler: SpikingSampler
    steps: int
    channels: int
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sampler.eval()
        self.info.setdefault("sampler_sha256", _digest(self.sampler.state_dict()))

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path, source: str | None = None) -> EventFrameSampler:
        """Load a sampler written by :func:`save_sampler` (safetensors: tensors + metadata)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such sampler file")
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable safetensors sampler ({exc})") from None
        try:
            channels, hidden, steps = (int(meta[k]) for k in ("channels", "hidden", "steps"))
            tau = float(meta["tau"])
            sampler = SpikingSampler(channels, hidden, tau)
            sampler.load_state_dict(state, strict=True)
        except (KeyError, ValueError, RuntimeError) as exc:
            msg = str(exc).splitlines()[0]
            raise DataError(f"{path}: not a spikeweave event sampler ({msg})") from None
        info = {
            "sampler_source": source or str(path),
            "sampler_trained_rate": float(meta.get("rate", "nan")),
            "sampler_steps": steps,
        }
        return cls(sampler, steps, channels, info)

    @classmethod
    def builtin(cls, rate: float) -> EventFrameSampler:
        """The shipped sampler trained at the rate nearest to ``rate`` (log scale)."""
        nearest = min(BUILTIN_RATES, key=lambda r: abs(math.log(r / rate)))
        path = builtin_path(nearest)
        if not path.is_file():
            raise DataError(
                f"the built-in event sampler {path.name} is missing from this installation; "
                "reinstall spikeweave or pass --sampler RUN_DIR"
            )
        return cls.from_file(path, source=f"builtin:{path.stem}")

    @classmethod
    def from_run(cls, run_dir: str | Path) -> EventFrameSampler:
        """The spiking sampler of a ``--method sampler`` run directory."""
        from ..training import load_run
        from .sampler import SamplingAutoencoder

        run = load_run(run_dir)
        model = run.model
        if not isinstance(model, SamplingAutoencoder):
            raise ConfigError(f"{run_dir}: not a --method sampler run")
        if model.sampler is None:
            raise ConfigError(f"{run_dir}: a {model.arm!r}-arm run has no spiking sampler")
        info = {
            "sampler_source": f"run:{Path(run_dir).resolve()}",
            "sampler_trained_rate": float(model.rate),
            "sampler_steps": int(run.config.effective_steps),
        }
        channels = int(model.input_shape[0])
        return cls(model.sampler, int(run.config.effective_steps), channels, info)

    # -- use ----------------------------------------------------------------------------------

    def to(self, device: str | torch.device) -> EventFrameSampler:
        """Run the sampler on ``device`` (frames are moved there chunk by chunk; scores come
        back to the CPU). Returns ``self``."""
        self.sampler.to(device)
        return self

    def scores(self, frames: np.ndarray) -> np.ndarray:
        """Keep scores float32 ``[n, H, W]`` (CPU) for count frames ``[n, 2, H, W]``, computed
        on the sampler's device."""
        n, _, h, w = frames.shape
        out = np.empty((n, h, w), dtype=np.float32)
        step = max(1, _CHUNK_PIXELS // (h * w))
        device = next(self.sampler.parameters()).device
        with torch.no_grad():
            for start in range(0, n, step):
                x = normalise_frames(frames[start : start + step], self.channels).to(device)
                seq = x.unsqueeze(0).expand(self.steps, *x.shape)  # direct encoding
                spikes, current = self.sampler(seq)
                out[start : start + step] = keep_score(spikes, current)[:, 0].cpu().numpy()
        return out

    def __call__(self, frames: np.ndarray, k: int) -> np.ndarray:
        """Bool mask ``[n, H, W]``: the ``k`` best-scored pixels of each window."""
        return topk_by_score(self.scores(frames), k)


def topk_by_score(score: np.ndarray, k: int) -> np.ndarray:
    """Bool ``[n, H, W]`` with the ``k`` highest ``score`` [n, H, W] entries of each window set;
    equal scores go to the lower pixel index (a stable sort), so the choice is reproducible."""
    n = score.shape[0]
    flat = score.reshape(n, -1)
    mask = np.zeros(flat.shape, dtype=bool)
    k = max(0, min(k, flat.shape[1]))
    if k:
        order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
        np.put_along_axis(mask, order, True, axis=1)
    return mask.reshape(score.shape)


def save_sampler(
    path: str | Path, sampler: SpikingSampler, steps: int, rate: float, meta: dict[str, Any]
) -> Path:
    """Write ``sampler``'s weights and metadata (channels, hidden, tau, steps, rate and
    ``meta``, e.g. the training command and seed) as safetensors, atomically."""
    from safetensors.torch import save

    from ..atomic import atomic_write_bytes

    conv1 = sampler.conv1.module
    header = {
        "format": "spikeweave-event-sampler",
        "channels": str(conv1.in_channels),
        "hidden": str(conv1.out_channels),
        "tau": repr(float(sampler.lif1.tau)),
        "steps": str(int(steps)),
        "rate": repr(float(rate)),
        **{k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()},
    }
    state = {k: v.detach().cpu().contiguous() for k, v in sampler.state_dict().items()}
    return atomic_write_bytes(path, save(state, metadata=header))
