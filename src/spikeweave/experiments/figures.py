"""Figures for comparison reports: curves with seed bands, sweeps, per-arm bars; and the two
figures several experiments draw alike: accuracy per epoch (:func:`plot_accuracy_bands`) and
step time per arm (:func:`plot_step_times`)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..errors import InputError
from ..plots import _layer_color, _new_figure, _save, _series_marker, _style_axes

__all__ = [
    "plot_seed_bands",
    "plot_sweep",
    "plot_bars",
    "plot_accuracy_bands",
    "plot_step_times",
]


def _sd(values) -> float:
    """Sample standard deviation (ddof=1, as every table's ``mean ± std``); 0 for one value."""
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1)) if v.size > 1 else 0.0


def plot_seed_bands(
    curves: Mapping[str, Sequence[Sequence[float]]],
    path: str | Path,
    title: str,
    ylabel: str,
    xlabel: str = "epoch",
    x: Sequence[float] | None = None,
) -> Path:
    """One line per arm: the mean over seeds, with a ±1 std band. ``curves[arm][seed][i]``."""
    fig = _new_figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for i, (arm, runs) in enumerate(curves.items()):
        n = min(len(r) for r in runs)
        data = np.array([list(r)[:n] for r in runs], dtype=float)
        xs = np.asarray(x[:n] if x is not None else np.arange(1, n + 1), dtype=float)
        mean = data.mean(0)
        std = data.std(0, ddof=1) if data.shape[0] > 1 else np.zeros_like(mean)
        color = _layer_color(i)
        ax.plot(
            xs,
            mean,
            color=color,
            marker=_series_marker(i) if n < 15 else None,
            ms=4,
            label=f"{arm} (n={len(runs)})",
        )
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    return _finish(fig, ax, path, title, xlabel, ylabel)


def plot_sweep(
    xs: Sequence[float],
    values: Mapping[str, Sequence[Sequence[float]]],
    path: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = True,
    logy: bool = False,
) -> Path:
    """One line per arm over a swept parameter; ``values[arm][i_x]`` holds one value per seed,
    drawn as mean with error bars (±1 std) and the individual seeds as faint dots."""
    fig = _new_figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for i, (arm, per_x) in enumerate(values.items()):
        color = _layer_color(i)
        means = [float(np.mean(v)) for v in per_x]
        stds = [_sd(v) for v in per_x]
        ax.errorbar(
            xs, means, yerr=stds, color=color, marker=_series_marker(i), capsize=3, label=arm
        )
        for x, v in zip(xs, per_x, strict=True):
            ax.scatter([x] * len(v), v, color=color, alpha=0.3, s=10)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    return _finish(fig, ax, path, title, xlabel, ylabel)


def plot_bars(
    values: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str,
    ylabel: str,
    xlabel: str = "arm",
) -> Path:
    """Mean ± std per arm as bars, the seeds as dots; the arms name the bars (no legend)."""
    fig = _new_figure(max(5.5, 1.5 + 0.9 * len(values)), 4.4)
    ax = fig.add_subplot(1, 1, 1)
    for i, vals in enumerate(values.values()):
        color = _layer_color(i)
        ax.bar(i, float(np.mean(vals)), yerr=_sd(vals), color=color, alpha=0.7, capsize=4)
        ax.scatter([i] * len(vals), vals, color="black", s=10, zorder=3)
    # Long or many arm names overlap when level; slant them instead.
    slant = len(values) > 4 or max((len(str(a)) for a in values), default=0) > 10
    ax.set_xticks(
        range(len(values)),
        list(values),
        rotation=30 if slant else 0,
        ha="right" if slant else "center",
    )
    return _finish(fig, ax, path, title, xlabel, ylabel, legend=False)


def plot_accuracy_bands(
    curves: Mapping[str, Sequence[Sequence[float]]],
    path: str | Path,
    title: str,
    split: str = "test",
) -> Path:
    """Accuracy per epoch, one seed band per arm: ``curves[arm][seed][epoch]`` as fractions
    (0-1, as the trainer's history holds them), drawn in percent; ``split`` names the axis."""
    percent = {a: [[100 * v for v in run] for run in runs] for a, runs in curves.items()}
    return plot_seed_bands(percent, path, title, f"{split} accuracy (%)")


def plot_step_times(
    timed: Mapping[str, Any],
    path: str | Path,
    title: str,
    clock: str = "cpu",
    xlabel: str = "arm",
) -> Path:
    """Forward+backward time per step, one bar per arm in ms: ``timed[arm]`` is a
    :class:`~.timing.ArmTiming` (per-round medians in seconds); ``clock`` picks its process
    CPU time (``"cpu"``) or its wall-clock time (``"wall"``)."""
    if clock not in ("cpu", "wall"):
        raise InputError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    ms = {
        a: [1000 * v for v in (t.cpu_s if clock == "cpu" else t.wall_s)] for a, t in timed.items()
    }
    return plot_bars(ms, path, title, "ms per step", xlabel)


def _finish(
    fig: Figure,
    ax: Any,
    path: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
    legend: bool = True,
) -> Path:
    """Title (wrapped to the figure's width), axis labels, legend and style; save to ``path``.

    A y label holding ``(%)`` marks a percentage: its axis is kept within 0-100 % (seed bands
    and error bars would otherwise run past what an accuracy can be).
    """
    width_chars = int(fig.get_figwidth() * 10)  # about 10 title characters per inch
    ax.set_title("\n".join(textwrap.wrap(title, width_chars)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if "(%)" in ylabel:
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, -1.0), min(hi, 101.0))
    if legend:
        ax.legend(fontsize=8)
    _style_axes(ax)
    fig.tight_layout()
    return _save(fig, path)
