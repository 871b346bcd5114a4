"""Tests for spikeweave.plots: every plot writes a valid PNG, and bad run dirs fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from figure_checks import assert_readable, figure_problems, saved_figures
from safetensors.torch import save_file

from spikeweave.errors import DataError, OutputError
from spikeweave.plots import (
    firing_rates,
    plot_firing_rates,
    plot_run,
    plot_spike_raster,
    plot_training_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def _metrics(epochs: int) -> list[dict[str, float]]:
    return [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "train_accuracy": 0.5 + 0.04 * e,
            "test_loss": 2.2 / e,
            "test_accuracy": 0.45 + 0.04 * e,
            "lr": 1e-3 / e,
            "epoch_time_s": 1.5,
        }
        for e in range(1, epochs + 1)
    ]


def _spikes() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "conv1": (torch.rand(12, 3, 4, 5, 5, generator=gen) < 0.2).to(torch.uint8),
        "fc": torch.rand(12, 3, 10, generator=gen) < 0.3,
    }


def test_plot_training_curves_writes_png(tmp_path: Path) -> None:
    out = plot_training_curves(_metrics(5), tmp_path / "curves.png", title="demo")
    assert out == tmp_path / "curves.png"
    _assert_png(out)


@pytest.mark.slow  # an edge case of a path the fast tier draws; the full run keeps it
def test_plot_training_curves_works_with_single_epoch(tmp_path: Path) -> None:
    _assert_png(plot_training_curves(_metrics(1), tmp_path / "one.png"))


@pytest.mark.slow  # an edge case of a path the fast tier draws; the full run keeps it
def test_plot_training_curves_skips_missing_keys(tmp_path: Path) -> None:
    rows = _metrics(4)
    del rows[0]["test_loss"], rows[0]["test_accuracy"]
    del rows[2]["lr"]
    for row in rows:
        del row["epoch_time_s"]
    rows.append({"epoch": 5})
    _assert_png(plot_training_curves(rows, tmp_path / "partial.png"))


def test_plot_training_curves_handles_rows_without_any_metric(tmp_path: Path) -> None:
    _assert_png(plot_training_curves([{"epoch": 1}], tmp_path / "empty.png"))


def test_plot_spike_raster_writes_png_for_tensor_and_numpy_layers(tmp_path: Path) -> None:
    spikes: dict[str, torch.Tensor | np.ndarray] = dict(_spikes())
    spikes["readout"] = np.zeros((12, 3, 2), dtype=np.float32)
    _assert_png(plot_spike_raster(spikes, tmp_path / "raster.png", sample=1, max_neurons=20))


def test_plot_spike_raster_rejects_rank_below_two(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="rank"):
        plot_spike_raster({"fc": torch.zeros(10)}, tmp_path / "bad.png")


def test_plot_spike_raster_rejects_out_of_range_sample(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="sample 5"):
        plot_spike_raster(_spikes(), tmp_path / "bad.png", sample=5)


def test_plot_firing_rates_writes_png(tmp_path: Path) -> None:
    _assert_png(plot_firing_rates(_spikes(), tmp_path / "rates.png"))


def test_firing_rates_are_mean_spikes_per_neuron_per_step() -> None:
    a = torch.zeros(4, 2, 3, dtype=torch.uint8)  # 24 slots
    a[0, 0, 0] = 1
    a[1, 1, 2] = 1
    a[3, 0, 1] = 1  # 3 spikes / 24 = 0.125
    b = np.ones((2, 1, 2, 2), dtype=bool)  # all firing
    c = torch.zeros(5, 2, 4)  # silent float layer
    rates = firing_rates({"a": a, "b": b, "c": c})
    assert list(rates) == ["a", "b", "c"]
    assert rates == pytest.approx({"a": 0.125, "b": 1.0, "c": 0.0})


def test_firing_rates_rejects_rank_below_two() -> None:
    with pytest.raises(DataError, match="rank"):
        firing_rates({"x": np.ones(3)})


def _write_run(run: Path, *, activity: bool) -> None:
    run.mkdir()
    lines = [json.dumps(row) for row in _metrics(3)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if activity:
        spikes = {k: v.to(torch.uint8).contiguous() for k, v in _spikes().items()}
        save_file(spikes, str(run / "activity.safetensors"))


def test_plot_run_writes_three_pngs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, activity=True)
    written = plot_run(run)
    names = ["training_curves.png", "spike_raster.png", "firing_rates.png"]
    assert written == [run / name for name in names]
    for path in written:
        _assert_png(path)


@pytest.mark.slow  # an edge case of a path the fast tier draws; the full run keeps it
def test_plot_run_without_activity_writes_only_curves(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, activity=False)
    assert plot_run(run) == [run / "training_curves.png"]


def test_plot_run_missing_dir_raises_data_error_naming_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="spikeweave train") as info:
        plot_run(missing)
    assert str(missing) in str(info.value)


def test_plot_run_missing_metrics_raises_data_error_naming_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="spikeweave train") as info:
        plot_run(tmp_path)
    assert str(tmp_path / "metrics.jsonl") in str(info.value)


def test_plot_run_malformed_jsonl_raises_data_error_with_line_number(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, activity=False)
    with (run / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write("{not json\n")
    with pytest.raises(DataError) as info:
        plot_run(run)
    assert f"{run / 'metrics.jsonl'}:4" in str(info.value)


def test_plot_run_corrupt_activity_raises_data_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, activity=False)
    (run / "activity.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="activity.safetensors"):
        plot_run(run)


def test_plot_run_keeps_layer_order_from_metadata(tmp_path: Path) -> None:
    from spikeweave.plots import _read_activity

    path = tmp_path / "activity.safetensors"
    tensors = {"zeta": torch.zeros(2, 1, 3, dtype=torch.uint8)}
    tensors["alpha"] = torch.ones(2, 1, 2, dtype=torch.uint8)
    save_file(tensors, str(path), metadata={"layers": json.dumps(["zeta", "alpha"])})
    assert list(_read_activity(path)) == ["zeta", "alpha"]


def test_raster_shows_only_neurons_that_fired_and_names_label_and_prediction(
    tmp_path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    spikes = torch.zeros(4, 2, 25088, dtype=torch.uint8)
    active = torch.tensor([5, 700, 20000])
    spikes[1, 0, active] = 1
    from spikeweave import plots

    captured = {}
    original = plots._save

    def keep(fig, path):
        captured["fig"] = fig
        return original(fig, path)

    plots._save = keep
    try:
        out = plot_spike_raster({"conv": spikes}, tmp_path / "r.png", label=3, predicted=5)
    finally:
        plots._save = original
    _assert_png(out)
    fig = captured["fig"]
    ax = fig.axes[0]
    assert "3 active, 25085 of 25088 silent" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["5", "700", "20000"]
    assert "label 3, predicted 5" in fig._suptitle.get_text()


def test_nan_inf_and_huge_metrics_plot_as_gaps_not_tracebacks(tmp_path: Path) -> None:
    from spikeweave.plots import _series

    rows = _metrics(5)
    rows[1]["train_loss"] = float("nan")
    rows[2]["test_accuracy"] = float("inf")
    rows[3]["lr"] = 10**400  # an integer beyond the float range
    rows[4]["epoch"] = float("nan")
    _assert_png(plot_training_curves(rows, tmp_path / "gaps.png"))
    x, y = _series(rows, "train_loss")
    assert len(x) == 5 and np.isnan(y[1]) and np.isfinite(np.delete(y, 1)).all()
    assert x[4] == 5.0  # a NaN epoch falls back to the row number
    everything_nan = [{"epoch": 1, "train_loss": float("nan"), "test_accuracy": float("nan")}]
    _assert_png(plot_training_curves(everything_nan, tmp_path / "nan.png"))


@pytest.mark.slow  # an edge case of a path the fast tier draws; the full run keeps it
def test_plot_run_with_nan_in_metrics_jsonl_writes_the_curves(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps(r) for r in _metrics(3)]
    lines[1] = lines[1].replace('"train_loss": ', '"train_loss": NaN, "x": ', 1)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    paths = plot_run(run)
    assert [p.name for p in paths] == ["training_curves.png"]
    _assert_png(paths[0])


def test_plot_run_replaces_links_named_like_plots_and_leaves_their_targets_unchanged(
    tmp_path: Path,
) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"do not touch")
    run = tmp_path / "run"
    _write_run(run, activity=True)
    for name in ("training_curves.png", "spike_raster.png", "firing_rates.png"):
        (run / name).symlink_to(precious)
    for path in plot_run(run):
        assert not path.is_symlink()
        _assert_png(path)
    assert precious.read_bytes() == b"do not touch"


def test_plot_run_refuses_a_run_directory_that_is_a_link(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, activity=False)
    (tmp_path / "link").symlink_to(run)
    with pytest.raises(OutputError, match="is a symbolic link"):
        plot_run(tmp_path / "link")
    assert not (run / "training_curves.png").exists()


def test_a_plot_into_a_folder_in_the_way_is_a_one_line_output_error(tmp_path: Path) -> None:
    (tmp_path / "curves.png").mkdir()
    with pytest.raises(OutputError, match="curves.png: it is a folder"):
        plot_training_curves(_metrics(2), tmp_path / "curves.png")


@pytest.mark.slow
def test_run_plots_label_every_axis_title_every_panel_and_key_every_multi_series_panel(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    _write_run(run, activity=True)
    with saved_figures() as figures:
        plot_run(run)
    assert_readable(figures, expected=3)
    curves, raster, rates = figures
    assert [ax.get_ylabel() for ax in curves.axes] == [
        "Loss",
        "Accuracy (%)",
        "Learning rate",
    ]
    assert raster.axes[-1].get_xlabel().startswith("Time step")
    assert "T = 12 steps" in raster.axes[-1].get_xlabel()
    for fig in figures:  # each heading names the run the figure belongs to
        assert "run" in fig._suptitle.get_text().splitlines()[-1]


def test_accuracy_axis_stays_within_0_to_100_percent(tmp_path: Path) -> None:
    rows = _metrics(4)
    rows[-1]["test_accuracy"] = 1.0
    with saved_figures() as figures:
        plot_training_curves(rows, tmp_path / "c.png")
    low, high = figures[0].axes[1].get_ylim()
    assert low >= 0.0 and high <= 102.0


def test_readability_check_flags_missing_labels_title_and_legend(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label="a")
    ax.plot([0, 1], [1, 0], label="b")
    problems = figure_problems(fig)
    assert any("no x label" in p for p in problems)
    assert any("no y label" in p for p in problems)
    assert any("no title" in p for p in problems)
    assert any("no legend" in p for p in problems)
    ax.set(xlabel="time step", ylabel="neuron index", title="demo")
    ax.legend()
    assert figure_problems(fig) == []


def _labels(ax) -> list[str]:
    return [h.get_label() for h in ax.get_legend_handles_labels()[0]]


def test_validation_curves_are_drawn_and_the_star_marks_the_best_validation_epoch() -> None:
    from spikeweave.plots import training_figure

    rows = _metrics(4)
    # validation peaks at epoch 2, test keeps rising: the star must follow validation
    for row, val in zip(rows, (0.70, 0.80, 0.75, 0.72), strict=True):
        row["val_accuracy"], row["val_loss"] = val, 1.0 - val
    fig = training_figure(rows)
    ax_loss, ax_acc, _ = fig.axes
    assert "validation" in _labels(ax_loss)
    labels = _labels(ax_acc)
    assert "validation" in labels and "test" in labels
    assert [lab for lab in labels if lab.startswith("best")] == ["best validation 80.00% (epoch 2)"]


def test_without_validation_the_star_stays_on_the_highest_test_accuracy() -> None:
    from spikeweave.plots import training_figure

    labels = _labels(training_figure(_metrics(3)).axes[1])
    assert [lab for lab in labels if lab.startswith("best")] == ["best test 57.00% (epoch 3)"]


def test_a_best_val_run_shows_its_one_test_point_at_the_weights_epoch(tmp_path: Path) -> None:
    from spikeweave.plots import training_figure

    rows = [
        {"epoch": e, "train_accuracy": 0.6, "val_accuracy": v, "train_loss": 1.0, "val_loss": 1.0}
        for e, v in ((1, 0.7), (2, 0.9), (3, 0.8))
    ]
    ax_acc = training_figure(rows, test_at=(2.0, 0.85)).axes[1]
    test_line = next(line for line in ax_acc.get_lines() if line.get_label().startswith("test"))
    assert test_line.get_label() == "test 85.00% (once, epoch 2 weights)"
    assert list(test_line.get_xdata()) == [2.0] and list(test_line.get_ydata()) == [85.0]
    # plot_run reads it from the summary of a best-val run, and ignores other summaries
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    summary = {"test_eval": "best-val", "weights_epoch": 2, "test_accuracy": 0.85}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    from spikeweave.plots import _test_at

    assert _test_at(tmp_path) == (2.0, 0.85)
    _assert_png(plot_run(tmp_path)[0])
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "test_eval": None}))
    assert _test_at(tmp_path) is None
    (tmp_path / "summary.json").write_text("{not json")
    assert _test_at(tmp_path) is None
