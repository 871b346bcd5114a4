"""Event datasets as torch datasets of ``(frames [T, 2, H, W] float32, label int)``.

- ``nmnist``: ``<root>/nmnist/{Train,Test}/<digit>/*.bin``, 34×34, 10 classes.
- ``dvs-gesture``: ``<root>/DvsGesture/``: AEDAT 3.1 recordings ``user*_*.aedat``, each cut into
  its labelled gestures by ``<recording>_labels.csv`` (``class,startTime_usec,endTime_usec``,
  classes 1-11 → labels 0-10; a gesture holds the events with ``start <= t < end``);
  ``trials_to_train.txt`` / ``trials_to_test.txt`` list the recordings of each split. 128×128.
- ``cifar10-dvs``: ``<root>/cifar10-dvs/<class>/*.aedat`` (AEDAT 2.0), 128×128, 10 classes.
  The dataset has no official split: the first ``train_fraction`` (0.9) of each class's files in
  numeric order are ``train``, the rest ``test`` (the common 9:1 split).

Frames are binned by :class:`~spikeweave.data.binning.ToFrames` (default: a fixed number of
frames over each sample's own time span — a gesture's span is its labelled window) and cached
on disk (:class:`~spikeweave.data.cache.FrameCache`). A recording, or a gesture window, without
events raises :class:`~spikeweave.errors.DataError` when its sample is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .binning import ToFrames
from .cache import FrameCache, default_cache_dir
from .events import SENSOR_SIZES, read_events
from .layouts import CIFAR10_CLASSES, LAYOUTS, split_dir

__all__ = [
    "Sample",
    "EventOptions",
    "EventFrameDataset",
    "nmnist",
    "dvs_gesture",
    "cifar10_dvs",
    "read_gesture_labels",
    "DEFAULT_FRAMES",
    "RECORDINGS",
    "recording_frames",
]

DEFAULT_FRAMES = {"nmnist": 10, "dvs-gesture": 16, "cifar10-dvs": 10}
"""Frames per sample when neither ``frames``, ``time_window`` nor ``event_count`` is given."""
RECORDINGS: dict[str, tuple[tuple[int, int], str]] = {
    "nmnist": (SENSOR_SIZES["nmnist"], "nmnist"),
    "dvs-gesture": (SENSOR_SIZES["dvs128"], "aedat3"),
    "cifar10-dvs": (SENSOR_SIZES["dvs128"], "aedat2"),
}
"""Each event set's sensor size ``(width, height)`` and file format."""


@dataclass(frozen=True)
class Sample:
    """One sample: the events of ``path`` (within ``[t_start, t_end)`` µs when given)."""

    path: Path
    label: int
    t_start: int | None = None
    t_end: int | None = None


def _numeric_key(path: Path) -> tuple:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


class EventFrameDataset(Dataset):
    """Samples of event files, binned to frames by ``transform`` and cached.

    ``fmt`` and ``strict`` are passed to :func:`~spikeweave.data.events.read_events`;
    ``sensor_size`` ``(width, height)`` bounds the coordinates and sizes the frames.
    """

    def __init__(
        self,
        name: str,
        samples: list[Sample],
        transform: ToFrames,
        cache: FrameCache,
        fmt: str | None = None,
        strict: bool = True,
    ) -> None:
        self.name = name
        self.samples = samples
        self.transform = transform
        self.cache = cache
        self.fmt = fmt
        self.strict = strict
        self._decoded: tuple[Path, np.ndarray] | None = None
        self._siblings: dict[Path, list[int]] = {}
        for i, s in enumerate(samples):
            if s.t_start is not None or s.t_end is not None:
                self._siblings.setdefault(s.path, []).append(i)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def events(self, path: Path) -> np.ndarray:
        """Decoded events of ``path`` (the last file decoded is kept in memory)."""
        if self._decoded is not None and self._decoded[0] == path:
            return self._decoded[1]
        events = read_events(
            path, format=self.fmt, sensor_size=self.transform.sensor_size, strict=self.strict
        )
        self._decoded = (path, events)
        return events

    def params(self, sample: Sample) -> dict:
        """Everything the frames of ``sample`` depend on besides the file itself."""
        return {
            "transform": self.transform.params(),
            "window": [sample.t_start, sample.t_end],
            "format": self.fmt,
            "strict": self.strict,
        }

    def compute(self, i: int) -> np.ndarray:
        """Frames of sample ``i``, binned from the file (no cache)."""
        s = self.samples[i]
        events = self.events(s.path)  # sorted by time (read_events checks or sorts)
        t_end = None if s.t_end is None else s.t_end - 1  # [start, end) in whole µs
        if s.t_start is not None or s.t_end is not None:
            # Slice the window out by binary search instead of masking the whole recording;
            # keep the denoise filter's look-back so the filter decides as on the full stream.
            look_back = self.transform.denoise_us or 0
            t = events["t"]
            first = 0 if s.t_start is None else int(np.searchsorted(t, s.t_start, "left"))
            lo = 0 if s.t_start is None else np.searchsorted(t, s.t_start - look_back, "left")
            hi = len(t) if t_end is None else np.searchsorted(t, t_end, "right")
            if hi <= first:
                # Binned, an empty window is an all-zero sample whose label alone can be fitted;
                # it means the label file does not belong to this recording.
                raise DataError(
                    f"{s.path}: the window {s.t_start}..{s.t_end} us of sample {i} (label "
                    f"{s.label}) holds no events; check that its label file belongs to this "
                    "recording"
                )
            events = events[lo:hi]
        return self.transform(events, s.t_start, t_end)

    def frames(self, i: int) -> np.ndarray:
        """Frames ``[T, 2, H, W]`` float32 of sample ``i`` (from the cache when present).

        On a miss every sample cut from the same file is binned and cached at once, so a
        shuffled epoch decodes each recording once."""
        if not self.cache.enabled:
            return self.compute(i)
        s = self.samples[i]
        key = self.cache.key(s.path, self.params(s))
        frames = self.cache.load(key)
        if frames is not None:
            return frames
        frames = self.compute(i)
        self.cache.save(key, frames)
        for j in self._siblings.get(s.path, ()):
            if j != i:
                kj = self.cache.key(self.samples[j].path, self.params(self.samples[j]))
                if not self.cache.path(kj).is_file():
                    self.cache.save(kj, self.compute(j))
        return frames

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}: index {i} out of range for {len(self)} samples")
        return torch.from_numpy(np.ascontiguousarray(self.frames(i))), self.samples[i].label


@dataclass(frozen=True)
class _Binning:
    """The binning options of :class:`ToFrames` (``frames`` = ``n_frames``)."""

    frames: int | None = None
    time_window: int | None = None
    event_count: int | None = None
    spatial_factor: int = 1
    denoise_us: int | None = None

    def to_frames(self, sensor_size: tuple[int, int], default_frames: int) -> ToFrames:
        """:class:`ToFrames` for these options; ``default_frames`` frames when none of
        ``frames``, ``time_window`` and ``event_count`` is given."""
        frames = self.frames
        if frames is None and self.time_window is None and self.event_count is None:
            frames = default_frames
        return ToFrames(
            sensor_size,
            n_frames=frames,
            time_window=self.time_window,
            event_count=self.event_count,
            spatial_factor=self.spatial_factor,
            denoise_us=self.denoise_us,
        )


@dataclass(frozen=True)
class EventOptions(_Binning):
    """The options every event dataset takes (``**options`` of :func:`nmnist`,
    :func:`dvs_gesture` and :func:`cifar10_dvs`; see :func:`spikeweave.data.load`)."""

    transform: ToFrames | None = None
    cache: bool = True
    cache_dir: str | Path | None = None
    strict: bool = True

    def dataset(
        self, name: str, samples: list[Sample], sensor_size: tuple[int, int], fmt: str
    ) -> EventFrameDataset:
        """``samples`` of dataset ``name`` binned by these options and cached."""
        given = (self.frames, self.time_window, self.event_count, self.denoise_us)
        if self.transform is not None:
            if any(v is not None for v in given):
                raise ConfigError(f"{name}: give either transform= or binning options, not both")
            transform = self.transform
        else:
            transform = self.to_frames(sensor_size, DEFAULT_FRAMES[name])
        cache_dir = self.cache_dir if self.cache_dir is not None else default_cache_dir()
        cache = FrameCache(cache_dir, self.cache)
        return EventFrameDataset(name, samples, transform, cache, fmt, self.strict)


def recording_frames(name: str, path: str | Path, frames: int) -> np.ndarray:
    """Frames ``[frames, 2, H, W]`` float32 of the whole recording ``path``, read and binned as
    event set ``name``'s samples are (its format and sensor, ``frames`` frames over the
    recording's time span, no cache): one sample for inference."""
    if name not in RECORDINGS:
        raise ConfigError(
            f"{name!r} is not an event dataset; event files are read for runs trained on "
            f"{', '.join(RECORDINGS)}"
        )
    sensor, fmt = RECORDINGS[name]
    transform = EventOptions(frames=frames).to_frames(sensor, frames)
    return transform(read_events(Path(path), format=fmt, sensor_size=sensor))


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")


# -- N-MNIST ----------------------------------------------------------------------------------


def nmnist(
    root: Path,
    split: str = "train",
    **options: Any,
) -> EventFrameDataset:
    """N-MNIST from ``<root>/nmnist/{Train,Test}/<digit>/*.bin``; ``options``: :class:`EventOptions`
    fields."""
    opts = EventOptions(**options)
    _check_split(split)
    folder = LAYOUTS["nmnist"].require("nmnist", Path(root))
    sub = split_dir(folder, split)
    if sub is None:
        raise DataError(
            f"nmnist: no {'Train' if split == 'train' else 'Test'} folder in {folder}; put the "
            f"{split} samples in {folder / ('Train' if split == 'train' else 'Test')}/<digit>/*.bin"
        )
    samples: list[Sample] = []
    for digit in range(10):
        d = sub / str(digit)
        if d.is_dir():
            files = sorted((p for p in d.iterdir() if p.suffix.lower() == ".bin"), key=_numeric_key)
            samples += [Sample(p, digit) for p in files if p.is_file()]
    if not samples:
        raise DataError(
            f"nmnist: no .bin files in {sub}/<digit 0-9>/; put the {split} samples there"
        )
    return opts.dataset("nmnist", samples, *RECORDINGS["nmnist"])


# -- DVS128 Gesture ---------------------------------------------------------------------------


def read_gesture_labels(path: str | Path) -> list[tuple[int, int, int]]:
    """``(label 0-10, start µs, end µs)`` per gesture of a DVS128 Gesture ``*_labels.csv``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise DataError(f"{path}: label file missing (it belongs beside its recording)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the label file ({exc})") from None
    rows: list[tuple[int, int, int]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or (n == 1 and line.lower().startswith("class")):
            continue
        parts = line.split(",")
        try:
            cls, start, end = (int(v) for v in parts)
        except ValueError:
            raise DataError(
                f"{path}, line {n}: expected 'class,startTime_usec,endTime_usec', got {line!r}"
            ) from None
        if not 1 <= cls <= 11:
            raise DataError(f"{path}, line {n}: class {cls} is not 1-11")
        if not 0 <= start < end:
            raise DataError(f"{path}, line {n}: window {start}..{end} us is empty or negative")
        rows.append((cls - 1, start, end))
    if not rows:
        raise DataError(f"{path}: no gestures listed")
    return rows


def dvs_gesture(
    root: Path,
    split: str = "train",
    **options: Any,
) -> EventFrameDataset:
    """DVS128 Gesture from ``<root>/DvsGesture/`` (see the module docstring); ``options``:
    :class:`EventOptions` fields."""
    opts = EventOptions(**options)
    _check_split(split)
    folder = LAYOUTS["dvs-gesture"].require("dvs-gesture", Path(root))
    listing = folder / f"trials_to_{split}.txt"
    if not listing.is_file():
        raise DataError(f"dvs-gesture: {listing} is missing; it lists the {split} recordings")
    names = [ln.strip() for ln in listing.read_text(errors="replace").splitlines() if ln.strip()]
    inside = folder.resolve()
    for n in names:
        # A listing is data, not a path to follow: resolved (links too), every recording
        # and its label file must lie inside the dataset folder.
        rec = folder / n
        for target in (rec, rec.with_name(rec.stem + "_labels.csv")):
            resolved = target.resolve()
            if resolved != inside and inside not in resolved.parents:
                raise DataError(
                    f"dvs-gesture: {listing.name} lists {n!r}, which is outside {folder}"
                )
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"dvs-gesture: {len(missing)} recording(s) listed in {listing.name} are not in "
            f"{folder}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    samples: list[Sample] = []
    for n in names:
        rec = folder / n
        labels = rec.with_name(rec.stem + "_labels.csv")
        for label, start, end in read_gesture_labels(labels):
            samples.append(Sample(rec, label, start, end))
    return opts.dataset("dvs-gesture", samples, *RECORDINGS["dvs-gesture"])


# -- CIFAR10-DVS ------------------------------------------------------------------------------


def cifar10_dvs(
    root: Path,
    split: str = "train",
    *,
    train_fraction: float = 0.9,
    **options: Any,
) -> EventFrameDataset:
    """CIFAR10-DVS from ``<root>/cifar10-dvs/<class>/*.aedat`` (see the module docstring);
    ``options``: :class:`EventOptions` fields."""
    opts = EventOptions(**options)
    _check_split(split)
    if not 0 < train_fraction < 1:
        raise ConfigError(f"train_fraction must be in (0, 1), got {train_fraction}")
    folder = LAYOUTS["cifar10-dvs"].require("cifar10-dvs", Path(root))
    absent = [c for c in CIFAR10_CLASSES if not (folder / c).is_dir()]
    if absent:
        raise DataError(
            f"cifar10-dvs: class folder(s) {', '.join(absent)} missing in {folder}; it needs one "
            f"folder per class ({', '.join(CIFAR10_CLASSES)}) of *.aedat files"
        )
    samples: list[Sample] = []
    for label, cls in enumerate(CIFAR10_CLASSES):
        files = sorted(
            (p for p in (folder / cls).iterdir() if p.suffix.lower() == ".aedat" and p.is_file()),
            key=_numeric_key,
        )
        if not files:
            raise DataError(f"cifar10-dvs: no .aedat files in {folder / cls}")
        cut = int(round(train_fraction * len(files)))
        chosen = files[:cut] if split == "train" else files[cut:]
        samples += [Sample(p, label) for p in chosen]
    return opts.dataset("cifar10-dvs", samples, *RECORDINGS["cifar10-dvs"])
