"""Plots of training runs: loss/accuracy curves, spike rasters and firing rates.

Every function renders with matplotlib's object-oriented ``Figure`` API on an Agg canvas, so no
pyplot state is created or leaked, and writes a PNG file atomically (never through a link).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from spikeweave.atomic import atomic_write_bytes, make_folder, refuse_linked_folder
from spikeweave.errors import DataError

__all__ = [
    "firing_rates",
    "plot_firing_rates",
    "plot_run",
    "plot_spike_raster",
    "plot_training_curves",
    "training_figure",
]

DPI = 120
# The Okabe-Ito palette: its colours stay apart under the common colour-vision deficiencies
# (matplotlib's default puts green next to red). Series also differ by marker (_series_marker).
TRAIN_COLOR = "#0072B2"  # blue
TEST_COLOR = "#D55E00"  # vermillion
VAL_COLOR = "#E69F00"  # orange
LR_COLOR = "#009E73"  # bluish green
_LAYER_COLORS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#000000",
    "#F0E442",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

SpikeArray = torch.Tensor | np.ndarray


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    """Render to bytes, then write them atomically: ``savefig`` on a path would write through
    a link named like the plot."""
    out = Path(path)
    make_folder(out.parent)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png", facecolor="white")
    return atomic_write_bytes(out, buf.getvalue())


def _style_axes(ax: Any) -> None:
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)


def _layer_color(i: int) -> str:
    return _LAYER_COLORS[i % len(_LAYER_COLORS)]


def _series_marker(i: int) -> str:
    """A marker per series, so lines stay distinguishable without colour."""
    return _MARKERS[i % len(_MARKERS)]


def _to_numpy(name: str, value: SpikeArray) -> np.ndarray:
    """Convert one layer's spikes to a float32 numpy array ``[T, B, ...]``, validating rank."""
    if isinstance(value, torch.Tensor):
        arr = value.detach().to("cpu")
        arr = arr.float().numpy() if arr.dtype != torch.bool else arr.numpy()
    elif isinstance(value, np.ndarray):
        arr = value
    else:
        raise DataError(
            f"spikes[{name!r}] is a {type(value).__name__}; pass a torch.Tensor or numpy array "
            "shaped [T, B, ...]"
        )
    if arr.ndim < 2:
        raise DataError(
            f"spikes[{name!r}] has shape {tuple(arr.shape)} (rank {arr.ndim}); expected a "
            "time-major tensor of rank >= 2 shaped [T, B, ...]"
        )
    return np.asarray(arr, dtype=np.float32)


def _per_neuron_rates(arr: np.ndarray) -> np.ndarray:
    """Per-neuron firing rate (spikes per step), averaged over time and batch."""
    T, B = arr.shape[0], arr.shape[1]
    flat = arr.reshape(T, B, -1)
    if flat.shape[-1] == 0 or T == 0 or B == 0:
        return np.zeros(flat.shape[-1], dtype=np.float64)
    return flat.mean(axis=(0, 1), dtype=np.float64)


def _check_spikes(spikes: Mapping[str, SpikeArray]) -> dict[str, np.ndarray]:
    if not spikes:
        raise DataError("spikes is empty; pass a mapping of layer name -> [T, B, ...] spikes")
    return {str(name): _to_numpy(str(name), value) for name, value in spikes.items()}


# ---------------------------------------------------------------------------------------------
# firing rates
# ---------------------------------------------------------------------------------------------


def firing_rates(spikes: Mapping[str, SpikeArray]) -> dict[str, float]:
    """Mean firing rate per layer, in spikes per neuron per time step (0 for an empty layer)."""
    rates: dict[str, float] = {}
    for name, arr in _check_spikes(spikes).items():
        rates[name] = float(arr.mean(dtype=np.float64)) if arr.size else 0.0
    return rates


def plot_firing_rates(
    spikes: Mapping[str, SpikeArray], path: str | Path, title: str | None = None
) -> Path:
    """Bar chart of mean firing rate per layer plus the per-neuron rate distribution.

    ``title`` (e.g. the run's name) leads the heading, which also gives the samples and steps
    the rates are averaged over.
    """
    arrays = _check_spikes(spikes)
    names = list(arrays)
    per_neuron = [_per_neuron_rates(a) for a in arrays.values()]
    means = [float(a.mean(dtype=np.float64)) if a.size else 0.0 for a in arrays.values()]
    silent = [float((r == 0).mean()) if r.size else 0.0 for r in per_neuron]
    colors = [_layer_color(i) for i in range(len(names))]
    positions = np.arange(len(names))

    width = max(9.0, 2.0 + 1.4 * len(names))
    fig = _new_figure(width, 4.4)
    ax_bar, ax_dist = fig.subplots(1, 2)

    bars = ax_bar.bar(positions, means, color=colors, edgecolor="black", linewidth=0.6)
    top = max(means) if means else 0.0
    ax_bar.set_ylim(0, top * 1.2 if top > 0 else 1.0)
    for rect, mean in zip(bars, means, strict=True):
        ax_bar.annotate(
            f"{mean:.3f}",
            (rect.get_x() + rect.get_width() / 2, rect.get_height()),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax_bar.set_xticks(
        positions,
        names,
        rotation=30 if len(names) > 4 else 0,
        ha="right" if len(names) > 4 else "center",
    )
    ax_bar.set_xlabel("Layer")
    ax_bar.set_ylabel("Mean firing rate (spikes / neuron / step)")
    ax_bar.set_title("Mean firing rate per layer")
    _style_axes(ax_bar)
    ax_bar.grid(False, axis="x")

    # Distribution: violin where a layer has spread, a plain marker otherwise.
    for i, rates in enumerate(per_neuron):
        if rates.size == 0:
            continue
        if rates.size > 1 and float(rates.std()) > 0:
            parts = ax_dist.violinplot(
                [rates], positions=[i], widths=0.8, showmeans=False, showextrema=False
            )
            for body in parts["bodies"]:
                body.set_facecolor(colors[i])
                body.set_edgecolor("black")
                body.set_linewidth(0.6)
                body.set_alpha(0.55)
        q1, med, q3 = np.percentile(rates, [25, 50, 75])
        ax_dist.vlines(i, q1, q3, color="black", linewidth=3)
        ax_dist.scatter([i], [med], color="white", edgecolor="black", zorder=3, s=22)
    ax_dist.set_xticks(
        positions,
        names,
        rotation=30 if len(names) > 4 else 0,
        ha="right" if len(names) > 4 else "center",
    )
    hi = max((float(r.max()) for r in per_neuron if r.size), default=0.0)
    ax_dist.set_ylim(-0.02 * max(hi, 0.05), max(hi, 0.05) * 1.18)
    ax_dist.set_xlim(-0.6, len(names) - 0.4)
    y_text = max(hi, 0.05) * 1.1
    for i, frac in enumerate(silent):
        ax_dist.text(
            i, y_text, f"silent {frac:.0%}", ha="center", va="center", fontsize=8, color="0.25"
        )
    ax_dist.set_xlabel("Layer")
    ax_dist.set_ylabel("Per-neuron firing rate (spikes / step)")
    # The key goes in the title: drawn inside the axes it covered the last layer's violin.
    ax_dist.set_title("Per-neuron firing rates\n(shape = distribution, bar = IQR, dot = median)")
    _style_axes(ax_dist)
    ax_dist.grid(False, axis="x")

    first = next(iter(arrays.values()))
    heading = f"Firing rates over {first.shape[1]} test samples x {first.shape[0]} time steps"
    if title:  # on its own line: a run's name is long enough to clip beside the rest
        heading += f"\n{title}"
    fig.suptitle(heading, fontweight="bold")
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# spike raster
# ---------------------------------------------------------------------------------------------


def _pick_neurons(n: int, max_neurons: int) -> np.ndarray:
    if n <= max_neurons:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_neurons).round().astype(np.int64))


def plot_spike_raster(
    spikes: Mapping[str, SpikeArray],
    path: str | Path,
    sample: int = 0,
    max_neurons: int = 200,
    label: int | None = None,
    predicted: int | None = None,
    title: str | None = None,
) -> Path:
    """Raster of one sample's spikes, one panel per layer (x = time step, y = neuron index).

    Each panel shows the neurons that fired for this sample (evenly subsampled to
    ``max_neurons`` if more did), one row each, and says how many stayed silent; rates in the
    titles are this sample's. The panels share the time axis, labelled once at the bottom.
    ``label`` / ``predicted`` (classification) and ``title`` (e.g. the run's name) go in the
    heading.
    """
    if max_neurons < 1:
        raise ValueError(f"max_neurons must be >= 1, got {max_neurons}")
    arrays = _check_spikes(spikes)
    panels: list[tuple[str, np.ndarray, np.ndarray, int, float, int]] = []
    for name, arr in arrays.items():
        T, B = arr.shape[0], arr.shape[1]
        if not -B <= sample < B:
            raise DataError(
                f"sample {sample} is out of range for layer {name!r} with batch size {B}; "
                f"pass 0 <= sample < {B}"
            )
        one = arr[:, sample].reshape(T, -1)
        n = one.shape[1]
        active = np.flatnonzero(one.sum(0) > 0)
        idx = active[_pick_neurons(len(active), max_neurons)] if len(active) else active
        rate = float(one.mean(dtype=np.float64)) if one.size else 0.0
        panels.append((name, one[:, idx], idx, n, rate, len(active)))

    heights = [1.0 + 1.8 * min(max(len(p[2]), 1), max_neurons) / max_neurons for p in panels]
    fig = _new_figure(9.0, min(2.2 + sum(heights) * 1.1, 40.0))
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights, sharex=True)[:, 0]
    for i, (ax, (name, sub, idx, n, rate, n_active)) in enumerate(zip(axes, panels, strict=True)):
        T = sub.shape[0]
        t_pos, k_pos = np.nonzero(sub > 0)
        ax.scatter(t_pos, k_pos, marker="|", color=_layer_color(i), s=16)
        ax.set_xlim(-0.5, max(T, 1) - 0.5)
        ax.set_ylim(-0.5, max(len(idx), 1) - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(idx):
            ticks = np.unique(np.linspace(0, len(idx) - 1, min(5, len(idx))).round().astype(int))
            ax.set_yticks(ticks, [str(int(idx[t])) for t in ticks])
        else:
            ax.set_yticks([])
            ax.text(
                0.5,
                0.5,
                "no neuron fired",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="0.5",
            )
        shown = f"{len(idx)} of {n_active} active" if len(idx) < n_active else f"{n_active} active"
        ax.set_title(
            f"{name}: {rate:.3f} spikes/neuron/step; {shown}, {n - n_active} of {n} silent",
            fontsize=10,
        )
        ax.set_ylabel("Neuron index\n(active only)")
        _style_axes(ax)
    steps = max(p[1].shape[0] for p in panels)
    axes[-1].set_xlabel(f"Time step t (0 to {steps - 1}; T = {steps} steps)")
    heading = f"Spike raster of one test sample (#{sample})"
    if label is not None:
        heading += f": label {label}"
        if predicted is not None:
            heading += f", predicted {predicted}"
    if title:  # on its own line: a run's name is long enough to clip beside the rest
        heading += f"\n{title}"
    fig.suptitle(heading, fontweight="bold")
    fig.tight_layout()
    # Size each tick to about one neuron row tall and a fraction of a time step wide.
    for ax, (_, sub, idx, _, _, _) in zip(axes, panels, strict=True):
        box = ax.get_window_extent()
        row_pt = box.height * 72.0 / DPI / max(len(idx), 1)
        step_pt = box.width * 72.0 / DPI / max(sub.shape[0], 1)
        length = float(np.clip(0.9 * row_pt, 2.0, 14.0))
        for coll in ax.collections:
            coll.set_sizes([length**2])
            coll.set_linewidths([float(np.clip(0.5 * step_pt, 0.4, 2.5))])
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# training curves
# ---------------------------------------------------------------------------------------------


# Values beyond this magnitude (a diverged loss, a corrupt file) are drawn as gaps: scaled or
# subtracted for axis limits they would overflow to inf, which matplotlib refuses.
_PLOTTABLE = 1e150


def _is_number(value: Any) -> bool:
    """A finite int or float of plottable magnitude (not a bool, not a huge integer)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value)) and abs(float(value)) <= _PLOTTABLE
    except OverflowError:  # an integer beyond the float range
        return False


def _series(metrics: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epoch, value) pairs for the rows where ``key`` is a number; NaN, inf or absurdly large
    values become NaN, which draws as a gap in the line (rows without ``key`` are skipped)."""
    xs: list[float] = []
    ys: list[float] = []
    for i, row in enumerate(metrics):
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        epoch = row.get("epoch")
        xs.append(float(epoch) if _is_number(epoch) else float(i + 1))
        ys.append(float(value) if _is_number(value) else math.nan)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def _plot_line(
    ax: Any, x: np.ndarray, y: np.ndarray, label: str, color: str, marker: str = "o"
) -> bool:
    if not np.isfinite(y).any():
        return False
    ax.plot(
        x,
        y,
        color=color,
        label=label,
        marker=marker if x.size <= 30 else None,
        markersize=4,
        linewidth=1.8,
    )
    return True


def _no_data(ax: Any) -> None:
    ax.text(
        0.5,
        0.5,
        "no data",
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="0.5",
        fontsize=11,
    )
    ax.set_yticks([])


def plot_training_curves(
    metrics: Sequence[Mapping[str, float]],
    path: str | Path,
    title: str | None = None,
    test_at: tuple[float, float] | None = None,
) -> Path:
    """Loss, accuracy (%) and learning rate vs epoch, one panel each; absent keys are skipped.
    See :func:`training_figure` for what is drawn."""
    return _save(training_figure(metrics, title, test_at), path)


def training_figure(
    metrics: Sequence[Mapping[str, float]],
    title: str | None = None,
    test_at: tuple[float, float] | None = None,
) -> Figure:
    """The figure of :func:`plot_training_curves`: train, validation (``val_*``, when the run
    holds a split out) and test curves per epoch. With validation, the star marks the best
    validation epoch, the one a run reports; without, the highest test accuracy.
    ``test_at`` = ``(epoch, accuracy in [0, 1])`` draws one test point: a run with
    ``test_eval = "best-val"`` evaluates test once, on the weights of that epoch."""
    fig = _new_figure(14.0, 4.3)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)

    drew = _plot_line(ax_loss, *_series(metrics, "train_loss"), "train", TRAIN_COLOR)
    drew |= _plot_line(ax_loss, *_series(metrics, "val_loss"), "validation", VAL_COLOR, "^")
    drew |= _plot_line(ax_loss, *_series(metrics, "test_loss"), "test", TEST_COLOR, "s")
    names = {str(r["loss_name"]) for r in metrics if isinstance(r.get("loss_name"), str)}
    ax_loss.set_title("Loss")
    ax_loss.set_ylabel(f"Loss ({names.pop()})" if len(names) == 1 else "Loss")
    if drew:
        ax_loss.legend(frameon=False)
    else:
        _no_data(ax_loss)

    x_tr, y_tr = _series(metrics, "train_accuracy")
    x_va, y_va = _series(metrics, "val_accuracy")
    x_te, y_te = _series(metrics, "test_accuracy")
    test_label = "test"
    if test_at is not None and not np.isfinite(y_te).any() and _is_number(test_at[1]):
        x_te = np.asarray([float(test_at[0])])
        y_te = np.asarray([float(test_at[1])])
        test_label = f"test {100 * y_te[0]:.2f}% (once, epoch {x_te[0]:g} weights)"
    drew = _plot_line(ax_acc, x_tr, 100.0 * y_tr, "train", TRAIN_COLOR)
    drew |= _plot_line(ax_acc, x_va, 100.0 * y_va, "validation", VAL_COLOR, "^")
    drew |= _plot_line(ax_acc, x_te, 100.0 * y_te, test_label, TEST_COLOR, "s")
    # Selection is on validation when the run has it: star its best epoch, not test's.
    if np.isfinite(y_va).any():
        sx, sy, color, what = x_va, y_va, VAL_COLOR, "best validation"
    else:
        sx, sy, color, what = x_te, y_te, TEST_COLOR, "best test"
    if np.isfinite(sy).any():
        best = int(np.nanargmax(sy))
        bx, by = float(sx[best]), 100.0 * float(sy[best])
        ax_acc.scatter(
            [bx],
            [by],
            marker="*",
            s=160,
            color=color,
            edgecolor="black",
            zorder=4,
            label=f"{what} {by:.2f}% (epoch {bx:g})",
        )
        ax_acc.annotate(
            f"{by:.2f}%",
            (bx, by),
            xytext=(0, 10) if by < 95.0 else (0, -12),
            textcoords="offset points",
            ha="center",
            va="bottom" if by < 95.0 else "top",
            fontsize=9,
            fontweight="bold",
            color=color,
        )
    ax_acc.set_title("Accuracy")
    ax_acc.set_ylabel("Accuracy (%)")
    if drew:
        ax_acc.legend(frameon=False, loc="best")
        lo = min(
            float(np.nanmin(y))
            for y in (100.0 * y_tr, 100.0 * y_va, 100.0 * y_te)
            if np.isfinite(y).any()
        )
        ax_acc.set_ylim(max(0.0, lo - 8.0), 102.0)
    else:
        _no_data(ax_acc)

    x_lr, y_lr = _series(metrics, "lr")
    if _plot_line(ax_lr, x_lr, y_lr, "learning rate", LR_COLOR):
        y_lr = y_lr[np.isfinite(y_lr)]
        if np.all(y_lr > 0) and float(y_lr.max()) / float(y_lr.min()) > 50:
            ax_lr.set_yscale("log")
        else:
            ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    else:
        _no_data(ax_lr)
    ax_lr.set_title("Learning rate")
    ax_lr.set_ylabel("Learning rate")

    for ax in (ax_loss, ax_acc, ax_lr):
        ax.set_xlabel("Epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        _style_axes(ax)

    epochs = [
        x
        for k in ("train_loss", "val_loss", "test_loss", "train_accuracy", "val_accuracy",
                  "test_accuracy", "lr")
        for x in _series(metrics, k)[0]
    ]  # fmt: skip
    if epochs:
        lo, hi = min(epochs), max(epochs)
        pad = 0.5 if hi == lo else 0.03 * (hi - lo)
        for ax in (ax_loss, ax_acc, ax_lr):
            ax.set_xlim(lo - pad, hi + pad)

    total_time = sum(float(r["epoch_time_s"]) for r in metrics if _is_number(r.get("epoch_time_s")))
    heading = f"{title}: training curves" if title else "Training curves"
    if total_time > 0:
        n = len(metrics)
        heading += f"  ({n} epoch{'s' if n != 1 else ''}, {total_time:.1f} s)"
    fig.suptitle(heading, fontweight="bold")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# run directory
# ---------------------------------------------------------------------------------------------


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read {path}: {exc}; pass a directory written by `spikeweave train`"
        ) from exc
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{lineno}: malformed JSON ({exc.msg}); each line of "
                "metrics.jsonl must be one JSON object"
            ) from exc
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _read_activity(path: Path) -> dict[str, torch.Tensor]:
    """The recorded spikes of a run, in network order."""
    from .monitor import load_activity

    return load_activity(path).spikes


_SUMMARY_LIMIT = 16 * 2**20
"""A summary.json larger than this is not read for the plot (ours are a few kB)."""


def _test_at(root: Path) -> tuple[float, float] | None:
    """``(weights epoch, test accuracy)`` of a run that evaluated test once (``test_eval =
    "best-val"``), from its summary.json; None otherwise, and when the summary is missing,
    a link, oversized or unreadable (the plot then simply has no test point)."""
    path = root / "summary.json"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _SUMMARY_LIMIT:
            return None
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("test_eval") != "best-val":
        return None
    epoch, acc = summary.get("weights_epoch"), summary.get("test_accuracy")
    return (float(epoch), float(acc)) if _is_number(epoch) and _is_number(acc) else None


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write training_curves.png (+ spike_raster.png, firing_rates.png if activity) to run_dir."""
    root = refuse_linked_folder(run_dir)
    if not root.is_dir():
        raise DataError(
            f"run directory {root} does not exist; pass a directory written by `spikeweave train`"
        )
    metrics_path = root / "metrics.jsonl"
    if not metrics_path.is_file():
        raise DataError(f"{metrics_path} not found; pass a directory written by `spikeweave train`")
    metrics = _read_metrics(metrics_path)
    written = [
        plot_training_curves(
            metrics, root / "training_curves.png", title=root.name, test_at=_test_at(root)
        )
    ]

    activity_path = root / "activity.safetensors"
    if activity_path.is_file():
        from .monitor import load_activity

        activity = load_activity(activity_path)
        if activity.spikes:
            label = predicted = None
            if activity.labels and activity.predictions:
                label, predicted = activity.labels[0], activity.predictions[0]
            written.append(
                plot_spike_raster(
                    activity.spikes,
                    root / "spike_raster.png",
                    label=label,
                    predicted=predicted,
                    title=root.name,
                )
            )
            written.append(
                plot_firing_rates(activity.spikes, root / "firing_rates.png", title=root.name)
            )
    return written
