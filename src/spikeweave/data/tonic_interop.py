"""A Tonic dataset as a spikeweave data source (optional: ``pip install spikeweave[tonic]``).

Tonic (https://github.com/neuromorphs/tonic) downloads and reads many event datasets. It is not a
core dependency because it pulls an audio stack (librosa, numba, ...). When you already have a
Tonic dataset object, wrap it::

    import tonic
    from spikeweave.data.tonic_interop import TonicFrames

    ds = TonicFrames(tonic.datasets.NMNIST(save_to="data", train=True), frames=10)
    frames, label = ds[0]          # [10, 2, 34, 34] float32, int

The wrapper only relies on what every Tonic dataset provides: ``len(ds)``, ``ds[i] ->
(events, target)`` with a structured array with fields ``x, y, t, p``, and ``ds.sensor_size``
``(width, height, polarities)``. Binning is spikeweave's
(:class:`~spikeweave.data.binning.ToFrames`), so frames are the same as from spikeweave's readers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .event_datasets import _Binning
from .events import EVENT_DTYPE, check_events

__all__ = ["TonicFrames", "from_tonic_events", "tonic_available"]


def tonic_available() -> bool:
    """Whether the optional ``tonic`` package can be imported."""
    try:
        import tonic  # noqa: F401
    except ImportError:
        return False
    return True


def from_tonic_events(events: Any, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """Tonic's structured events (fields ``x, y, t, p``; ``t`` in µs) as :data:`EVENT_DTYPE`."""
    arr = np.asarray(events)
    names = set(arr.dtype.names or ())
    missing = {"x", "y", "t", "p"} - names
    if missing:
        raise DataError(
            f"Tonic events lack field(s) {', '.join(sorted(missing))} (have {sorted(names)}); "
            "only polarity events (x, y, t, p) can be binned to frames"
        )
    out = np.zeros(arr.shape[0], dtype=EVENT_DTYPE)
    t = arr["t"]
    out["t"] = np.rint(t).astype(np.int64) if t.dtype.kind == "f" else t.astype(np.int64)
    for name in ("x", "y"):
        v = arr[name]
        if len(v) and (v.min() < 0 or v.max() > np.iinfo(np.uint16).max):
            raise DataError(f"Tonic event {name} coordinates out of range: {v.min()}..{v.max()}")
        out[name] = v
    p = arr["p"].astype(np.int64)
    out["p"] = (p > 0).astype(np.uint8)  # Tonic uses 0/1 or -1/1 or bool
    return check_events("tonic events", out, sensor_size, strict=False)


class TonicFrames(Dataset):
    """A Tonic dataset binned to ``(frames [T, 2, H, W] float32, label int)``.

    Binning options are those of :class:`ToFrames` (``frames`` = ``n_frames``); the sensor size
    is taken from the Tonic dataset unless given as ``(width, height)``.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        frames: int | None = None,
        time_window: int | None = None,
        event_count: int | None = None,
        spatial_factor: int = 1,
        denoise_us: int | None = None,
        sensor_size: tuple[int, int] | None = None,
    ) -> None:
        if sensor_size is None:
            size = getattr(dataset, "sensor_size", None)
            if size is None or len(size) < 2:
                raise ConfigError(
                    "the Tonic dataset has no sensor_size; pass sensor_size=(width, height)"
                )
            sensor_size = (int(size[0]), int(size[1]))
        self.dataset = dataset
        binning = _Binning(frames, time_window, event_count, spatial_factor, denoise_us)
        self.transform = binning.to_frames(sensor_size, 10)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        events, target = self.dataset[i]
        ev = from_tonic_events(events, self.transform.sensor_size)
        if not len(ev):
            # Binned, it would be an all-zero sample that a model can fit by its label alone.
            raise DataError(
                f"Tonic sample {i}: empty recording (no events); remove it from the dataset"
            )
        return torch.from_numpy(self.transform(ev)), int(target)
