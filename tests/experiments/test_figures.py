"""Experiment figures read well: axis labels, titles and legends, checked on the Figure objects
(tests/figure_checks.py), for every figure function the experiments draw with."""

from __future__ import annotations

import pytest
import torch
from figure_checks import assert_readable, saved_figures

from spikeweave.errors import InputError
from spikeweave.experiments import oscillation_defense as od
from spikeweave.experiments.figures import (
    plot_accuracy_bands,
    plot_bars,
    plot_seed_bands,
    plot_step_times,
    plot_sweep,
)
from spikeweave.experiments.noisy_single_step import plot_accuracy_vs_time
from spikeweave.experiments.sampling_vs_random import _grid
from spikeweave.experiments.timing import ArmTiming


def test_seed_bands_sweep_and_bars_label_both_axes_and_key_every_arm(tmp_path):
    curves = {"klif": [[60.0, 80.0, 99.5], [62.0, 85.0, 99.9]], "lif": [[55.0, 70.0, 90.0]] * 2}
    with saved_figures() as figures:
        plot_seed_bands(curves, tmp_path / "a.png", "demo: test accuracy", "test accuracy (%)")
        plot_sweep(
            [2, 4, 8],
            {"na": [[1.0], [2.0], [4.0]], "bptt": [[1.5, 1.7], [3.0, 3.1], [6.0, 6.2]]},
            tmp_path / "b.png",
            "demo: cost vs T",
            "time steps T",
            "ms per batch",
            logx=False,
        )
        plot_bars({"na": [1.0, 1.2], "bptt": [2.0, 2.1]}, tmp_path / "c.png", "demo", "ms")
    assert_readable(figures, expected=3)
    assert figures[2].axes[0].get_xlabel() == "arm"


def test_percentage_axis_stops_at_100_even_when_a_seed_band_runs_past_it(tmp_path):
    curves = {"a": [[90.0, 99.0], [96.0, 100.0], [80.0, 100.0]]}
    with saved_figures() as figures:
        plot_seed_bands(curves, tmp_path / "a.png", "demo", "test accuracy (%)")
    assert figures[0].axes[0].get_ylim()[1] <= 101.0


def test_accuracy_bands_draw_fractions_in_percent_on_a_named_split_axis(tmp_path):
    curves = {"klif": [[0.5, 0.9], [0.7, 0.9]], "lif": [[0.4, 0.8], [0.6, 0.8]]}
    with saved_figures() as figures:
        plot_accuracy_bands(curves, tmp_path / "a.png", "demo", split="validation")
    assert_readable(figures, expected=1)
    ax = figures[0].axes[0]
    assert ax.get_ylabel() == "validation accuracy (%)"
    means = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert means["klif (n=2)"] == pytest.approx([60.0, 90.0])
    assert means["lif (n=2)"] == pytest.approx([50.0, 80.0])


def test_step_times_bar_the_chosen_clock_in_milliseconds(tmp_path):
    timed = {
        "a": ArmTiming("torch", {}, wall_s=[0.004, 0.006], cpu_s=[0.001, 0.003]),
        "b": ArmTiming("torch", {}, wall_s=[0.010, 0.010], cpu_s=[0.002, 0.002]),
    }
    with saved_figures() as figures:
        plot_step_times(timed, tmp_path / "cpu.png", "demo")
        plot_step_times(timed, tmp_path / "wall.png", "demo", clock="wall", xlabel="neuron")
    assert_readable(figures, expected=2)
    heights = [[bar.get_height() for bar in f.axes[0].patches] for f in figures]
    assert heights[0] == pytest.approx([2.0, 2.0]) and heights[1] == pytest.approx([5.0, 10.0])
    assert figures[1].axes[0].get_xlabel() == "neuron"
    with pytest.raises(InputError, match="clock"):
        plot_step_times(timed, tmp_path / "x.png", "demo", clock="gpu")


def test_a_long_title_is_wrapped_to_the_figure_width(tmp_path):
    title = "digits (convnet, T=4): validation accuracy (runs stop at their plateau; drawn " * 2
    with saved_figures() as figures:
        plot_bars({"a": [1.0], "b": [2.0]}, tmp_path / "a.png", title, "ms")
    lines = figures[0].axes[0].get_title().splitlines()
    assert len(lines) > 1 and all(len(line) <= 10 * figures[0].get_figwidth() for line in lines)


def test_accuracy_vs_time_is_readable(tmp_path):
    runs = {
        "noisy": [([1.0, 2.0, 3.0], [60.0, 70.0, 80.0])],
        "multi-step T=4": [([2.0, 4.0, 6.0], [55.0, 72.0, 81.0])],
    }
    with saved_figures() as figures:
        plot_accuracy_vs_time(runs, tmp_path / "t.png", "demo: accuracy vs time")
    assert_readable(figures, expected=1)


def test_oscillation_robust_accuracy_panels_share_a_labelled_y_axis_and_one_key(tmp_path):
    eps = [0.0, 0.1, 0.2]
    with saved_figures() as figures:
        path = od.OscillationDefense._plot(tmp_path, eps, lambda arm, attack: [0.9, 0.5, 0.1])
    assert path == tmp_path / "robust_accuracy.png" and path.is_file()
    assert_readable(figures, expected=1)
    assert [t.get_text() for t in figures[0].legends[0].get_texts()] == list(od.ARMS)


def test_the_defense_sweep_heatmap_labels_its_axes_with_units_and_frames_the_chosen_cell(
    tmp_path,
):
    grid = {"amplitude": [0.3, 0.6], "frequency": [0.25], "fake_form": ["square"],
            "fake_phase": [1.5, 3.0]}  # fmt: skip
    oscs, fakes = od._grid(grid)
    points = [
        {"amplitude": a, "frequency": f, "fake_form": form, "fake_phase": ph, "mean": m}
        for (a, f), (form, ph), m in zip(
            [(o) for o in oscs for _ in fakes], [f for _ in oscs for f in fakes],
            [0.1, 0.2, 0.6, 0.3], strict=True,
        )
    ]  # fmt: skip
    sweep = {"grid": grid, "points": points, "lif": [[0.1]], "eps": [0.1],
             "best": {"amplitude": 0.6, "frequency": 0.25, "fake_form": "square",
                      "fake_phase": 1.5}}  # fmt: skip
    with saved_figures() as figures:
        path = od.OscillationDefense._plot_sweep(tmp_path, sweep)
    assert path == tmp_path / "defense_sweep.png" and path.is_file()
    assert_readable(figures, expected=1)
    ax = figures[0].axes[0]
    assert "(rad)" in ax.get_xlabel() and "cycles/step" in ax.get_ylabel()
    assert [t.get_text() for t in ax.texts] == ["10.0", "20.0", "60.0", "30.0"]
    (frame,) = ax.patches  # the chosen setting: row A=0.6, first fake backward
    assert frame.get_xy() == (-0.5, 0.5)


def test_reconstruction_grid_is_an_image_grid_with_a_heading(tmp_path):
    images = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    masks = (images > 0.5).float()
    with saved_figures() as figures:
        _grid(images, {"10% spiking": (masks, images)}, tmp_path / "g.png", "demo: grid")
    assert_readable(figures, expected=1)
    assert all(ax.images for ax in figures[0].axes)
