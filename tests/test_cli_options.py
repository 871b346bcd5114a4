"""`spikeweave train`'s common options: hidden sizes, weight decay, schedule, threads, early
stopping, TensorBoard and plots; options that do not apply are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import run_main

from spikeweave.training import load_checkpoint
from spikeweave.training.checkpoint import unflatten_state

TINY = ["--dataset", "digits", "--model", "mlp", "-T", "2", "--batch-size", "64", "--no-progress"]


def assert_one_line_error(code: int, err: str, match: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0], lines[0]


def train(tmp_path: Path, *extra: str) -> Path:
    code, out, err = run_main("train", *TINY, "--out-dir", str(tmp_path), *extra)
    assert code == 0, err
    return Path(out.strip().splitlines()[-1].removeprefix("run written to "))


@pytest.mark.slow
def test_hidden_weight_decay_schedule_gamma_and_threads_reach_the_run(tmp_path):
    run = train(tmp_path, "--epochs", "1", "--hidden", "24, 12", "--weight-decay", "0.05",
                "--schedule", "exponential", "--gamma", "0.5", "--threads", "1")  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["hidden"] == [24, 12] and config["weight_decay"] == 0.05
    assert (config["schedule"], config["gamma"], config["threads"]) == ("exponential", 0.5, 1)
    tensors, meta = load_checkpoint(run / "checkpoint.safetensors")
    shapes = [tuple(v.shape) for k, v in tensors.items() if k.endswith("weight") and v.dim() == 2]
    assert [s[0] for s in shapes][:2] == [24, 12]
    # one epoch of the exponential schedule: the lr fell by gamma
    assert meta["history"][0]["lr"] == pytest.approx(2e-3 * 0.5)
    optimizer = unflatten_state(tensors, meta["optimizer"])
    assert optimizer["param_groups"][0]["weight_decay"] == 0.05


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--gamma", "0.5"], "--gamma (gamma = 0.5) applies to the exponential schedule only"),
        (["--schedule", "constant", "--gamma", "0.5"], "not 'constant'"),
        (["--schedule", "linear"], "unknown schedule 'linear'"),
        (["--hidden", "256,x"], "--hidden '256,x': give the layer sizes as integers"),
        (["--hidden", ""], "give the layer sizes as integers"),
        (["--hidden", "16,0"], "hidden sizes must be positive integers"),
        (["--model", "convnet", "--hidden", "64,32"], "more than one hidden size"),
        (["--weight-decay", "-1"], "weight_decay must be a non-negative number"),
        (["--threads", "0"], "threads must be an integer in [1, 1024]"),
        (["--early-stopping", "2"], "early_stopping needs a validation split"),
        (["--early-stopping", "-1", "--val-fraction", "0.2"], "must be >= 0"),
    ],
)
def test_options_that_do_not_apply_or_are_out_of_range_are_one_line_errors(tmp_path, extra, match):
    code, _, err = run_main("train", *TINY, "--out-dir", str(tmp_path), *extra)
    assert_one_line_error(code, err, match)
    assert not list(tmp_path.iterdir())


def test_gamma_in_a_toml_is_refused_when_the_command_line_picks_another_schedule(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('schedule = "exponential"\ngamma = 0.9\n')
    code, _, err = run_main("train", *TINY, "--config", str(cfg), "--schedule", "cosine",
                            "--out-dir", str(tmp_path / "runs"))  # fmt: skip
    assert_one_line_error(code, err, "applies to the exponential schedule only, not 'cosine'")


def test_train_help_lists_the_common_options():
    code, out, _ = run_main("train", "--help")
    assert code == 0
    for flag in ("--hidden", "--weight-decay", "--schedule", "--gamma", "--threads",
                 "--early-stopping", "--tensorboard", "--no-plots"):  # fmt: skip
        assert flag in out, flag


@pytest.mark.slow
def test_no_plots_skips_only_the_drawing_and_plot_draws_the_pngs_later(tmp_path):
    run = train(tmp_path, "--epochs", "1", "--no-plots")
    assert json.loads((run / "config.json").read_text())["plots"] is False
    assert not list(run.glob("*.png"))
    # the files the plots are drawn from are all written
    assert (run / "summary.json").is_file() and (run / "activity.safetensors").is_file()
    code, out, err = run_main("plot", str(run))
    assert code == 0, err
    names = ("training_curves.png", "spike_raster.png", "firing_rates.png")
    assert out.split() == [str(run / name) for name in names]
    for name in names:
        assert (run / name).read_bytes()[:4] == b"\x89PNG", name
    # a resumed run keeps the setting, like every other
    code, _, err = run_main("train", "--resume", str(run), "--epochs", "2", "--plots")
    assert_one_line_error(code, err, "--plots True conflicts with the resumed run's plots = False")


@pytest.mark.slow
def test_an_early_stopped_run_is_finished_and_a_killed_one_resumes_to_its_summary(tmp_path):
    # lr 1e-12: validation accuracy cannot move, so epoch 2 ties epoch 1 and patience 1 stops
    run = train(tmp_path, "--epochs", "4", "--val-fraction", "0.2", "--early-stopping", "1",
                "--lr", "1e-12")  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"]["after_epoch"] == 2 and summary["weights_epoch"] == 1
    code, _, err = run_main("train", "--resume", str(run), "--no-progress")
    assert_one_line_error(code, err, "is finished: early stopping ended it after epoch 2")
    code, _, err = run_main("train", "--resume", str(run), "--epochs", "6", "--no-progress")
    assert_one_line_error(code, err, "is finished")
    code, _, err = run_main("train", "--resume", str(run), "--early-stopping", "3")
    assert_one_line_error(code, err, "--early-stopping 3 conflicts with the resumed run's")
    (run / "summary.json").unlink()  # as if killed after the last checkpoint
    code, out, err = run_main("train", "--resume", str(run), "--no-progress", "--threads", "1")
    assert code == 0, err
    again = json.loads((run / "summary.json").read_text())
    assert again["stopped_early"] == summary["stopped_early"] and again["epochs"] == 2
    assert again["test_accuracy"] == summary["test_accuracy"]


@pytest.mark.slow
def test_tensorboard_flag_writes_event_files_in_the_run(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
    run = train(tmp_path, "--epochs", "1", "--tensorboard")
    assert json.loads((run / "config.json").read_text())["tensorboard"] is True
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
