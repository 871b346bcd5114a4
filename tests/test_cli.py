import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from spikeweave.cli import app

runner = CliRunner()
TINY = [
    "--dataset",
    "digits",
    "--model",
    "mlp",
    "-T",
    "2",
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "--no-progress",
]


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "spikeweave.cli", *args], capture_output=True, text=True
    )


def test_help_is_available_for_every_command():
    for cmd in ([], ["train"], ["eval"], ["plot"], ["data"], ["data", "list"]):
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.slow
def test_train_then_eval_then_plot(tmp_path):
    result = runner.invoke(app, ["train", *TINY, "--out-dir", str(tmp_path), "--seed", "7"])
    assert result.exit_code == 0, result.output
    run = next(tmp_path.iterdir())
    assert f"run written to {run}" in result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["seed"] == 7 and summary["config"]["dataset"] == "digits"

    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval.json").read_text())["test_accuracy"] == summary["test_accuracy"]

    (run / "training_curves.png").unlink()
    result = runner.invoke(app, ["plot", str(run)])
    assert result.exit_code == 0 and (run / "training_curves.png").exists()


def test_config_file_sets_options_and_command_line_overrides_it(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'dataset = "digits"\nmodel = "mlp"\nsteps = 3\nepochs = 1\nseed = 5\nplots = false\n'
    )
    result = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(cfg),
            "--seed",
            "6",
            "--no-progress",
            "--out-dir",
            str(tmp_path / "runs"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(next((tmp_path / "runs").iterdir()).joinpath("summary.json").read_text())
    assert summary["steps"] == 3 and summary["seed"] == 6


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--dataset", "imagenet"], "error: unknown dataset 'imagenet'; choose one of"),
        (["train", "--model", "resnet"], "error: unknown model 'resnet'; choose one of"),
        (["train", "--neuron", "hh"], "error: unknown neuron 'hh'; choose one of"),
        (["eval", "/nonexistent/run"], "error: "),
    ],
)
def test_bad_input_exits_2_with_a_one_line_error(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_unknown_config_key_and_corrupt_checkpoint_are_one_line_errors(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("learning_rate = 0.1\n")
    result = run_cli("train", "--config", str(cfg))
    assert result.returncode == 2 and "unknown key(s) 'learning_rate'" in result.stderr
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(b"not a checkpoint at all")
    result = run_cli("eval", str(run))
    assert result.returncode == 2 and "checkpoint.safetensors" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_plain_bioleaf_train_writes_the_apical_keys_and_plot_its_docs_name(tmp_path):
    result = runner.invoke(app, ["train", *TINY, "--method", "bioleaf", "--batch-size", "128",
                                 "--out-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = tmp_path.iterdir()
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"apical_train/h1", "apical_test/h1", "apical_test_rel/h1"} <= set(row)
    assert (run / "apical_mismatch.png").stat().st_size > 1000
