"""Figures for comparison reports: curves with seed bands, sweeps, per-arm bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..plots import _layer_color, _new_figure, _save, _style_axes

__all__ = ["plot_seed_bands", "plot_sweep", "plot_bars"]


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
            marker="o" if n < 15 else None,
            ms=3,
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
        ax.errorbar(xs, means, yerr=stds, color=color, marker="o", capsize=3, label=arm)
        for x, v in zip(xs, per_x, strict=True):
            ax.scatter([x] * len(v), v, color=color, alpha=0.3, s=10)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    return _finish(fig, ax, path, title, xlabel, ylabel)


def plot_bars(
    values: Mapping[str, Sequence[float]], path: str | Path, title: str, ylabel: str
) -> Path:
    """Mean ± std per arm as bars, the seeds as dots."""
    fig = _new_figure(5.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for i, vals in enumerate(values.values()):
        color = _layer_color(i)
        ax.bar(i, float(np.mean(vals)), yerr=_sd(vals), color=color, alpha=0.7, capsize=4)
        ax.scatter([i] * len(vals), vals, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(values)), list(values))
    return _finish(fig, ax, path, title, None, ylabel, legend=False)


def _finish(
    fig: Figure,
    ax: Any,
    path: str | Path,
    title: str,
    xlabel: str | None,
    ylabel: str,
    legend: bool = True,
) -> Path:
    """Title, axis labels (no x label with ``xlabel=None``), legend and style; save to ``path``."""
    ax.set_title(title)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend()
    _style_axes(ax)
    return _save(fig, path)
