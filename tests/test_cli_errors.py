"""Bad input at the command line: one line ``error: ...``, exit status 2, no traceback, and no
option silently ignored."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeweave import cli
from spikeweave.errors import ConfigError, TrainingError
from spikeweave.training import SurrogateBPTT, TrainConfig, Trainer

TINY = ["--dataset", "digits", "--model", "mlp", "-T", "2", "--batch-size", "64"]


def run_main(*args: str) -> tuple[int, str, str]:
    """``spikeweave ARGS`` in this process, as the console script runs it."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["spikeweave", *args]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, match: str = "") -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]


def finished_run(tmp_path: Path, *extra: str) -> Path:
    code, out, err = run_main("train", *TINY, "--epochs", "1", "--no-progress",
                              "--out-dir", str(tmp_path), *extra)  # fmt: skip
    assert code == 0, err
    return Path(out.strip().splitlines()[-1].removeprefix("run written to "))


@pytest.mark.slow
def test_resume_with_more_epochs_extends_the_run_and_conflicting_options_are_refused(tmp_path):
    run = finished_run(tmp_path)
    code, _, err = run_main("train", "--resume", str(run), "--no-progress")
    assert_one_line_error(code, err, "already finished its 1 epochs; pass a larger --epochs")
    code, _, err = run_main("train", "--resume", str(run), "--epochs", "3", "--lr", "0.1")
    assert_one_line_error(code, err, "--lr 0.1 conflicts with the resumed run's lr = 0.002")
    code, out, err = run_main("train", "--resume", str(run), "--epochs", "2", "--no-progress")
    assert code == 0, err
    assert "resuming" in out and "after epoch 1 of 2" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["config"]["epochs"] == 2


def test_eval_refuses_an_unknown_split_and_leaves_eval_json_alone(tmp_path):
    run = finished_run(tmp_path)
    code, _, err = run_main("eval", str(run), "--split", "foo")
    assert_one_line_error(code, err, "unknown split 'foo'; choose one of test, train, val")
    assert not (run / "eval.json").exists()


def test_unknown_and_wrongly_typed_toml_values_are_one_line_errors(tmp_path):
    cases = {
        "[extra]\nwhatever = 1\n": "unknown key(s) 'extra'",
        'alpha = "big"\n': "alpha must be a number or none, got 'big'",
        'detach_reset = "no"\n': "detach_reset must be true/false, got 'no'",
        "seed = 100000000000000000000\n": "seed must be at most",
        '[method]\nname = "bptt"\n[method.bptt]\nlr = 1\n': "unknown option(s) 'lr'",
        'data_root = "/somewhere"\n': "data_root does not apply to the embedded dataset",
    }
    for text, match in cases.items():
        path = tmp_path / "c.toml"
        path.write_text(text)
        code, _, err = run_main("train", "--config", str(path))
        assert_one_line_error(code, err, match)


def test_typed_config_refuses_strings_for_booleans_in_python():
    with pytest.raises(ConfigError, match="detach_reset must be true/false, got 'no'"):
        TrainConfig(detach_reset="no").validate()


def test_any_seed_a_user_can_type_trains_or_is_refused_with_the_range(tmp_path):
    run = finished_run(tmp_path, "--seed", "100000000000000")
    assert json.loads((run / "summary.json").read_text())["seed"] == 100000000000000
    code, _, err = run_main("train", *TINY, "--seed", str(2**63))
    assert_one_line_error(code, err, "seed must be at most")
    code, _, err = run_main("train", *TINY, "--seed", "-1")
    assert_one_line_error(code, err, "seed must be an integer in [0, 2**63 - 1]")


def test_labels_say_which_neuron_and_method_a_run_really_has(tmp_path):
    code, out, err = run_main("train", *TINY, "--model", "ann-mlp", "--epochs", "1",
                              "--no-progress", "--out-dir", str(tmp_path))  # fmt: skip
    assert code == 0, err
    assert "ann-mlp / relu / bptt" in out
    assert "-relu-bptt-" in out
    code, _, err = run_main("train", *TINY, "--method", "noisy", "--neuron", "lif")
    assert_one_line_error(code, err, "method 'noisy' trains IF neurons")
    code, _, err = run_main("train", *TINY, "--neuron", "if", "--tau", "5")
    assert_one_line_error(code, err, "tau = 5.0 does not apply to neuron 'if'")


def test_out_dir_that_is_a_file_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    code, _, err = run_main("train", *TINY, "--out-dir", str(blocker))
    assert_one_line_error(code, err, "is a file")
    code, _, err = run_main("train", *TINY, "--out-dir", str(blocker / "sub"))
    assert_one_line_error(code, err, "a file is in the way")


def test_out_of_memory_names_the_options_to_lower(tmp_path):
    class Greedy(SurrogateBPTT):
        name = "greedy"

        def train_step(self, ctx, x, y):
            raise RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: 9 TB")

    cfg = TrainConfig(dataset="digits", model="mlp", steps=2, epochs=1, out_dir=str(tmp_path))
    trainer = Trainer(cfg, method=Greedy(), progress=False)
    with pytest.raises(TrainingError, match="out of memory .* lower --steps, --batch-size"):
        trainer.fit()
    assert not trainer.run_dir.exists()  # nothing to resume: the directory is removed


def test_a_diverging_snn_is_reported_as_training_not_data(tmp_path):
    code, _, err = run_main("train", *TINY, "--lr", "1e12", "--loss", "mse", "--epochs", "1",
                            "--out-dir", str(tmp_path), "--no-progress")  # fmt: skip
    cfg = TrainConfig(dataset="digits", model="mlp", lr=1e12, grad_clip=0.0, loss="mse")
    with pytest.raises(TrainingError, match="lower the lr") as info:
        Trainer(cfg, progress=False, run_dir=tmp_path / "r").fit()
    assert "check the data" not in str(info.value)
    assert code in (0, 2)  # with grad clipping the CLI run may survive; it never tracebacks
    assert "Traceback" not in err


@pytest.mark.slow
def test_progress_without_a_terminal_prints_one_plain_line_per_epoch(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spikeweave.cli",
            "train",
            *TINY,
            "--epochs",
            "2",
            "--out-dir",
            str(tmp_path),
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    epoch_lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch")]
    assert len(epoch_lines) == 2 and "epoch   1/2" in epoch_lines[0]
    assert "\x1b" not in proc.stdout and "━" not in proc.stdout


def test_data_list_shows_full_paths_in_a_narrow_pipe(tmp_path):
    root = tmp_path / ("a-long-folder-name-" * 6)
    proc = subprocess.run(
        [sys.executable, "-m", "spikeweave.cli", "data", "list", "--data-root", str(root)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "40"},
    )
    assert proc.returncode == 0, proc.stderr
    assert str(root) in proc.stdout
    assert all(len(line.split()) >= 3 for line in proc.stdout.splitlines())


def _train_process(tmp_path: Path, epochs: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spikeweave.cli",
            "train",
            "--dataset",
            "digits",
            "--model",
            "mlp",
            "-T",
            "4",
            "--epochs",
            str(epochs),
            "--batch-size",
            "16",
            "--no-progress",
            "--out-dir",
            str(tmp_path),
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a suite started in the background inherits SIGINT ignored, and Python keeps an
        # ignored SIGINT ignored; the child must see Ctrl-C as a terminal user's run would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.slow
def test_ctrl_c_after_a_checkpoint_prints_how_to_resume(tmp_path):
    proc = _train_process(tmp_path, 200)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("*/checkpoint.safetensors")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    run = next(tmp_path.iterdir())
    assert err.strip().splitlines()[-1].endswith(f"spikeweave train --resume {run}")
    assert "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_before_the_first_checkpoint_leaves_nothing_to_resume(tmp_path):
    proc = _train_process(tmp_path, 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob("*/config.json")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the one-epoch run finished before the signal arrived")
    assert proc.returncode == 130 and "nothing to resume" in err
    assert not list(tmp_path.iterdir())


# -- fuzzing: any option value or TOML value gives exit 0 or a one-line error ------------------

VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(min_value=-3, max_value=300), max_size=3),
)
KEYS = [f for f in TrainConfig.__dataclass_fields__ if f not in ("out_dir", "data_root")]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(
            value, "nan" if value != value else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


@pytest.fixture
def no_fit(monkeypatch):
    """Validation and construction run for real; training itself is skipped."""
    monkeypatch.setattr(Trainer, "fit", lambda self: sys.exit(0))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_fuzzed_toml_values_exit_0_or_2_with_one_error_line(tmp_path, no_fit, key, value):
    path = tmp_path / "fuzz.toml"
    text = f'dataset = "digits"\nmodel = "mlp"\nout_dir = {json.dumps(str(tmp_path))}\n'
    if key not in ("dataset", "model"):
        text += f"{key} = {_toml_value(value)}\n"
    path.write_text(text)
    code, _, err = run_main("train", "--config", str(path), "--no-progress")
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert_one_line_error(code, err)


OPTIONS = ["--steps", "--epochs", "--batch-size", "--lr", "--seed", "--alpha", "--tau",
           "--threshold", "--surrogate", "--reset", "--encoder", "--loss", "--task", "--model",
           "--neuron", "--method", "--dataset"]  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    option=st.sampled_from(OPTIONS),
    value=st.one_of(st.text(max_size=6), st.integers().map(str), st.floats().map(str)),
)
def test_fuzzed_cli_options_exit_0_or_2_without_traceback(tmp_path, no_fit, option, value):
    if value.startswith("-"):
        value = " " + value  # a value, not another option
    code, _, err = run_main("train", "--model", "mlp", "--dataset", "digits", option, value,
                            "--out-dir", str(tmp_path), "--no-progress")  # fmt: skip
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert_one_line_error(code, err)


def test_torch_is_left_in_a_usable_state():
    assert torch.get_default_dtype() == torch.float32


def test_experiment_workers_for_an_experiment_that_cannot_use_them_is_a_one_line_error(tmp_path):
    code, _, err = run_main("experiment", "na-vs-bptt", "--quick", "--workers", "2",
                            "--out-dir", str(tmp_path))  # fmt: skip
    assert_one_line_error(
        code, err, "--workers is for: klif-vs-lif, noisy-single-step, reset-dependency"
    )
    code, _, err = run_main("experiment", "reset-dependency", "--workers", "0",
                            "--out-dir", str(tmp_path))  # fmt: skip
    assert_one_line_error(code, err, "--workers must be at least 1")
    assert not list(tmp_path.iterdir())  # refused before any folder was made
