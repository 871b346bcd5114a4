"""Simulated N-MNIST-like events: a static image seen by an event camera during three saccades.

There is no N-MNIST training set on this machine, so the event sampler and the report's
classifier are trained on events *simulated* from mnist5k images. This is spikeweave's own,
simple model of how N-MNIST was recorded (an event camera on a pan-tilt unit making three
~100 ms saccades in front of a monitor showing the digit); it is not a reproduction of the
real recordings, and results on it are labelled "simulated" everywhere.

The model (an idealised DVS pixel, as in event-camera simulators):

- The 28×28 image sits in the middle of a 34×34 canvas (3 pixels of margin) and moves along
  a triangle of side ``amplitude`` pixels: three saccades of ``saccade_us`` µs each, with a
  smooth (cubic ease-in/ease-out) velocity profile; sub-pixel shifts are bilinear.
- The displayed brightness is ``floor + (1 - floor) · image`` (a monitor's black is not 0)
  and each pixel sees its log.
- Every pixel keeps a reference log level. When the log level moves ``n`` contrast
  thresholds ``C`` away from it, the pixel fires ``n`` events (ON if brighter, OFF if darker)
  and the reference moves by ``n · C``. ``C`` varies per pixel (log-normal mismatch), as
  real pixels' thresholds do.
- Time runs in steps of ``step_us`` µs; an event's timestamp is uniform within its step.
  Background noise events (random pixel, polarity and time) arrive at ``noise_hz`` per pixel.

Events come back time-ordered, as :data:`~spikeweave.data.events.EVENT_DTYPE` arrays with
``t`` in µs from 0, on the 34×34 N-MNIST sensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..data.events import EVENT_DTYPE
from ..errors import ConfigError

__all__ = ["SaccadeModel", "SENSOR_SIZE", "saccade_path", "simulate_saccades"]

SENSOR_SIZE = (34, 34)
"""``(width, height)`` of the simulated sensor: N-MNIST's."""
_MARGIN = 3


@dataclass(frozen=True)
class SaccadeModel:
    """Parameters of the simulation (units in the field names).

    ``threshold`` (log units) was set once so that the mean event count of a simulated digit
    falls in the range of N-MNIST samples (a few thousand events per ~300 ms recording).
    """

    threshold: float = 0.35
    mismatch: float = 0.1
    floor: float = 0.05
    amplitude_px: float = 3.0
    saccade_us: int = 100_000
    step_us: int = 1000
    noise_hz: float = 0.5

    def as_dict(self) -> dict[str, float]:
        """The parameters, for metadata and reports."""
        return asdict(self)


def saccade_path(model: SaccadeModel) -> tuple[np.ndarray, np.ndarray]:
    """Image shift ``(dx [S], dy [S])`` in pixels at the end of each of the ``S = 3 ·
    saccade_us / step_us`` steps: a triangle centred on the canvas, cubic ease per side."""
    a = model.amplitude_px
    # an isosceles triangle centred on 0: down-left, up, down-right, back to the start
    corners = np.array([[-a / 2, a / 3], [0.0, -2 * a / 3], [a / 2, a / 3], [-a / 2, a / 3]])
    n = model.saccade_us // model.step_us
    u = (np.arange(1, n + 1) / n)[:, None]
    ease = 3 * u**2 - 2 * u**3
    path = np.concatenate([corners[i] + (corners[i + 1] - corners[i]) * ease for i in range(3)])
    return path[:, 0], path[:, 1]


def _shifted(canvas: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``canvas`` [B, H, W] moved by (dx, dy) pixels, bilinear; the 3-pixel zero margin means
    the wrap-around of ``np.roll`` only ever moves zeros (|shift| < 3)."""
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy
    base = np.roll(canvas, (iy, ix), axis=(1, 2))
    right = np.roll(base, 1, axis=2)
    down = np.roll(base, 1, axis=1)
    both = np.roll(down, 1, axis=2)
    return (
        (1 - fx) * (1 - fy) * base + fx * (1 - fy) * right + (1 - fx) * fy * down + fx * fy * both
    )


def simulate_saccades(
    images: np.ndarray,
    seed: int,
    model: SaccadeModel | None = None,
    *,
    chunk: int = 64,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """One time-ordered event array (``EVENT_DTYPE``, 34×34) per image.

    ``images``: [B, 28, 28] or [B, 1, 28, 28] intensities in [0, 1]. ``seed`` fixes the
    threshold mismatch, the timestamps within steps and the noise; the same ``(images, seed,
    model)`` give the same events. ``progress(n)`` is called after each ``n`` images.
    """
    model = model or SaccadeModel()
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ConfigError(f"saccade simulation needs [B, 28, 28] images, got {images.shape}")
    if model.amplitude_px >= 2 * _MARGIN or model.threshold <= 0:
        raise ConfigError("saccade model: amplitude_px must be < 6 and threshold > 0")
    rng = np.random.default_rng(seed)
    dxs, dys = saccade_path(model)
    width, height = SENSOR_SIZE
    out: list[np.ndarray] = []
    for start in range(0, images.shape[0], chunk):
        batch = images[start : start + chunk]
        b = batch.shape[0]
        canvas = np.zeros((b, height, width))
        canvas[:, _MARGIN : _MARGIN + 28, _MARGIN : _MARGIN + 28] = batch
        c_pix = model.threshold * np.exp(model.mismatch * rng.standard_normal((b, height, width)))

        def log_level(dx: float, dy: float, canvas: np.ndarray = canvas) -> np.ndarray:
            lit = model.floor + (1 - model.floor) * _shifted(canvas, dx, dy)
            return np.log(lit)

        ref = log_level(-model.amplitude_px / 2, model.amplitude_px / 3)  # the start position
        counts = np.zeros((2, len(dxs), b, height, width), dtype=np.int16)  # [OFF/ON, S, B, H, W]
        for s, (dx, dy) in enumerate(zip(dxs, dys, strict=True)):
            diff = log_level(dx, dy) - ref
            n = np.floor(np.abs(diff) / c_pix)
            ref += np.sign(diff) * n * c_pix
            counts[1, s] = np.where(diff > 0, n, 0)
            counts[0, s] = np.where(diff < 0, n, 0)
        duration = len(dxs) * model.step_us
        for j in range(b):
            pol, step, y, x = np.nonzero(counts[:, :, j])
            reps = counts[pol, step, j, y, x].astype(np.int64)
            pol, step, y, x = (np.repeat(v, reps) for v in (pol, step, y, x))
            t = step * model.step_us + rng.integers(0, model.step_us, step.size)
            n_noise = rng.poisson(model.noise_hz * width * height * duration * 1e-6)
            ev = np.zeros(t.size + n_noise, dtype=EVENT_DTYPE)
            ev["t"] = np.concatenate([t, rng.integers(0, duration, n_noise)])
            ev["x"] = np.concatenate([x, rng.integers(0, width, n_noise)])
            ev["y"] = np.concatenate([y, rng.integers(0, height, n_noise)])
            ev["p"] = np.concatenate([pol, rng.integers(0, 2, n_noise)])
            out.append(ev[np.argsort(ev["t"], kind="stable")])
        if progress is not None:
            progress(b)
    return out
