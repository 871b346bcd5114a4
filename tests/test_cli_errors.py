"""Bad input at the command line: one line ``error: ...``, exit status 2, no traceback, and no
option silently ignored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_run import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiers import examples

from spikeweave.errors import ConfigError, TrainingError
from spikeweave.training import SurrogateBPTT, TrainConfig, Trainer

TINY = ["--dataset", "digits", "--model", "mlp", "-T", "2", "--batch-size", "64"]


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


@pytest.mark.slow
def test_resume_finishes_a_run_killed_after_its_last_checkpoint_before_its_summary(tmp_path):
    run = finished_run(tmp_path)
    written = json.loads((run / "summary.json").read_text())
    for name in ("summary.json", "activity.safetensors", "spike_raster.png"):
        (run / name).unlink()  # as if killed between the last checkpoint and the summary
    code, out, err = run_main("train", "--resume", str(run), "--no-progress")
    assert code == 0, err
    assert "finishing" in out and "its 1 epochs are trained" in out and "test accuracy" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["test_accuracy"] == written["test_accuracy"]
    assert (run / "activity.safetensors").exists() and (run / "spike_raster.png").exists()
    code, _, err = run_main("train", "--resume", str(run), "--no-progress")
    assert_one_line_error(code, err, "already finished its 1 epochs; pass a larger --epochs")


@pytest.mark.slow
def test_a_run_whose_layers_never_spike_warns_in_one_line_per_layer(tmp_path):
    code, out, err = run_main("train", *TINY, "--epochs", "1", "--threshold", "1000",
                              "--no-progress", "--out-dir", str(tmp_path))  # fmt: skip
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert [w.split(" is ")[0] for w in warnings] == [
        "warning: layer 'spike1'", "warning: layer 'spike2'", "warning: layer 'spike_out'"
    ]  # fmt: skip
    assert "test accuracy" in out and "Traceback" not in err


@pytest.mark.slow
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


@pytest.mark.slow
def test_any_seed_a_user_can_type_trains_or_is_refused_with_the_range(tmp_path):
    run = finished_run(tmp_path, "--seed", "100000000000000")
    assert json.loads((run / "summary.json").read_text())["seed"] == 100000000000000
    code, _, err = run_main("train", *TINY, "--seed", str(2**63))
    assert_one_line_error(code, err, "seed must be at most")
    code, _, err = run_main("train", *TINY, "--seed", "-1")
    assert_one_line_error(code, err, "seed must be an integer in [0, 2**63 - 1]")


@pytest.mark.slow
def test_labels_say_which_neuron_and_method_a_run_really_has(tmp_path):
    code, out, err = run_main("train", "--dataset", "digits", "--model", "ann-mlp", "--epochs",
                              "1", "--no-progress", "--out-dir", str(tmp_path))  # fmt: skip
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


@pytest.mark.slow
@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
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


@pytest.mark.slow
@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
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
    code, _, err = run_main("experiment", "sampling-vs-random", "--quick", "--workers", "2",
                            "--out-dir", str(tmp_path))  # fmt: skip
    assert_one_line_error(
        code,
        err,
        "--workers is for: bioleaf-vs-bp, klif-vs-lif, mesa, na-vs-bptt, noisy-single-step, "
        "oscillation-defense, reset-dependency",
    )
    code, _, err = run_main("experiment", "reset-dependency", "--workers", "0",
                            "--out-dir", str(tmp_path))  # fmt: skip
    assert_one_line_error(code, err, "--workers must be at least 1")
    assert not list(tmp_path.iterdir())  # refused before any folder was made


# -- options a run would ignore are refused (issue 28, defect 8) -------------------------------

ANN = ["--dataset", "digits", "--model", "ann-mlp"]


@pytest.mark.parametrize(
    "option",
    [
        ["--tau", "3"],
        ["--threshold", "0.5"],
        ["--surrogate", "sigmoid"],
        ["--alpha", "4"],
        ["--reset", "soft"],
        ["--keep-reset-grad"],
        ["--detach-reset"],
        ["--neuron", "lif"],
        ["-T", "8"],
        ["--steps", "1"],
    ],  # fmt: skip
)
def test_spiking_options_given_to_an_ann_are_refused_not_ignored(tmp_path, option):
    code, _, err = run_main("train", *ANN, *option, "--out-dir", str(tmp_path))
    assert_one_line_error(code, err, "does not apply to model 'ann-mlp'")
    assert option[0].lstrip("-") in err or option[0] == "-T"
    assert not list(tmp_path.iterdir())  # refused before a run directory was made


def test_spiking_options_in_the_toml_of_an_ann_are_refused_and_defaults_do_not_count(
    tmp_path, no_fit
):
    path = tmp_path / "ann.toml"
    path.write_text('dataset = "digits"\nmodel = "ann"\ntau = 3.0\n')
    code, _, err = run_main("train", "--config", str(path), "--out-dir", str(tmp_path))
    assert_one_line_error(code, err, "tau = 3.0) does not apply to model 'ann'")
    path.write_text('dataset = "digits"\nmodel = "ann"\nneuron = "relu"\n')
    code, _, err = run_main("train", "--config", str(path), "--out-dir", str(tmp_path))
    assert code == 0, err  # neuron relu is what an ANN has; nothing is ignored


def test_spiking_options_with_neuron_relu_are_refused(tmp_path):
    code, _, err = run_main("train", *TINY, "--neuron", "relu", "--out-dir", str(tmp_path))
    assert_one_line_error(code, err, "-T/--steps (steps = 2) does not apply to neuron 'relu'")


@pytest.mark.parametrize(
    "option", [["--poison-target", "3"], ["--poison-trigger", "grey"], ["--poison-seed", "4"],
               ["--poison-trigger-size", "4"], ["--poison-fraction", "0", "--poison-target", "3"]],
)  # fmt: skip
def test_poison_options_without_a_poison_fraction_are_refused(tmp_path, option):
    code, _, err = run_main("train", *TINY, *option, "--out-dir", str(tmp_path))
    assert_one_line_error(code, err, "needs --poison-fraction > 0")


def test_a_toml_date_in_notes_is_a_one_line_error_not_a_traceback(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('dataset = "digits"\n[notes]\nwhen = 1979-05-27T07:32:00Z\n')
    code, _, err = run_main("train", "--config", str(path), "--out-dir", str(tmp_path))
    assert_one_line_error(code, err, "notes.when must be a string, number")
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


# -- fuzzing every command: malformed values are exit 2 with one `error:` line (defect 9) -------

BAD_COUNTS = ["0", "-1", "abc", "", "1.5", str(2**70)]
BAD_POSITIVE = ["0", "-1", "nan", "inf", "-inf", "abc", ""]
BAD_UNIT = ["-0.1", "1.5", "nan", "inf", "abc", ""]


def _cases(prefix: list[str], table: dict[str, list[str]]) -> list[list[str]]:
    return [[*prefix, option, value] for option, values in table.items() for value in values]


TRAIN_BAD = {
    "--steps": BAD_COUNTS, "--epochs": BAD_COUNTS, "--batch-size": BAD_COUNTS,
    "--lr": BAD_POSITIVE, "--tau": [*BAD_POSITIVE, "0.5"], "--alpha": ["nan", "inf", "x"],
    "--threshold": ["nan", "inf", "x"], "--val-fraction": [*BAD_UNIT, "1"],
    "--poison-fraction": BAD_UNIT, "--seed": ["-1", str(2**64), "x"],
    "--surrogate": ["", "nope"], "--reset": ["", "x"], "--pool": ["", "x"], "--encoder": [""],
    "--loss": ["x"], "--task": ["x"], "--dataset": ["", "../x", "nope"], "--model": ["", "x"],
    "--neuron": ["", "x"], "--method": ["", "x"], "--poison-trigger": ["", "x"],
}  # fmt: skip


def _all_cases(run: Path, tmp: Path) -> list[list[str]]:
    afile = tmp / "a-file"
    afile.write_text("x")
    missing = str(tmp / "missing")
    r = str(run)
    cases = _cases(["train", *TINY, "--out-dir", str(tmp)], TRAIN_BAD)
    cases += _cases(
        ["train", *TINY, "--poison-fraction", "0.1"],
        {"--poison-target": ["-1", "99", "x"], "--poison-trigger-size": BAD_COUNTS},
    )
    cases += [["train", "--config", missing], ["train", "--config", str(tmp)],
              ["train", "--resume", missing], ["train", "--resume", str(afile)],
              ["train", "--resume", r, "--epochs", "0"], ["train", "--resume", r, "--tau", "9"],
              ["eval", missing], ["eval", str(afile)], ["eval", r, "--split", ""],
              ["plot", missing], ["plot", str(afile)], ["data", "list", "--data-root", str(afile)],
              ["experiment", "nope"], ["experiment", "na-vs-bptt", "--seeds", "0"],
              ["experiment", "na-vs-bptt", "--seeds", "-1"],
              ["experiment", "reset-dependency", "--workers", "-1"]]  # fmt: skip
    attack = ["attack", r, "--attack", "pgd", "--eps", "0.1"]
    cases += _cases(["attack", r, "--attack", "pgd"], {"--eps": ["", "nan", "-1", "inf", "x,"]})
    cases += _cases(attack, {"--steps": BAD_COUNTS, "--samples": BAD_COUNTS,
                             "--norm": ["", "l3"]})  # fmt: skip
    cases += _cases(["attack", r, "--eps", "0.1"], {"--attack": ["", "cw"]})
    fgsm = ["attack", r, "--attack", "fgsm", "--eps", "0.1"]
    cases += [[*fgsm, "--steps", "5"], [*fgsm, "--norm", "l2"], [*fgsm, "--source", r],
              [*fgsm, "--samples", "0"], [*fgsm, "--samples", "-1"],
              ["attack", r, "--attack", "square", "--eps", "0.1", "--steps", "3"],
              ["attack", r, "--attack", "transfer", "--eps", "0.1", "--source", missing],
              ["attack", missing, "--attack", "fgsm", "--eps", "0.1"]]  # fmt: skip
    bad_seeds = ["-1", str(2**70)]
    cases += _cases(["backdoor", "scan", r, "--no-progress"],
                    {"--steps": BAD_COUNTS, "--samples": BAD_COUNTS,
                     "--seed": bad_seeds})  # fmt: skip
    cases += _cases(["backdoor", "defend", r, "--no-progress"], {
        "--target": ["", "x", "-1", "99"], "--defense": ["", "x"],
        "--betas": ["", "1", "0", "nan", "x"], "--alpha": ["-1", "nan", "inf"],
        "--mesa-steps": ["-1", "x"], "--scan-steps": BAD_COUNTS,
        "--finetune-epochs": BAD_COUNTS, "--finetune-lr": BAD_POSITIVE,
        "--trigger-fraction": BAD_UNIT, "--samples": BAD_COUNTS, "--seed": bad_seeds,
    })  # fmt: skip
    cases += [["backdoor", "defend", r, "--defense", "true", "--target", "0"]]
    rec = tmp / "rec.bin"
    rec.write_bytes(bytes(5 * 40))
    out = str(tmp / "o.sfev")
    cases += _cases(["compress", str(rec), out], {"--rate": ["0", "-1", "nan", "1.5", "x"],
                                                  "--codec": ["", "gzip"]})  # fmt: skip
    cases += [
        ["compress", str(rec), out, "--window-us", "5000"],
        ["compress", str(rec), out, "--rate", "0.1", "--window-us", "0"],
        ["compress", str(rec), out, "--rate", "0.1", "--window-us", "-7"],
        ["compress", str(rec), out, "--rate", "0.1", "--sampler", "nope"],
        ["compress", missing, out],
        ["compress", str(rec)],
        ["decompress", missing, str(tmp / "x.npz")],
        ["decompress", str(rec), out],
    ]
    cases += [["export", r, str(tmp / "m.nir"), "--dt", v] for v in ("0", "-1", "nan", "x")]
    cases += [["import", missing, str(tmp / "imp")], ["import", str(afile), str(tmp / "imp")]]
    return cases


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory.mktemp("fuzz-run"))


@pytest.mark.slow
def test_every_command_refuses_malformed_option_values_with_one_error_line(
    tmp_path, fuzz_run, monkeypatch
):
    monkeypatch.setattr(Trainer, "fit", lambda self: sys.exit(0))  # exit 0 fails the case
    before = sorted(p.name for p in fuzz_run.iterdir())
    failures = []
    for args in _all_cases(fuzz_run, tmp_path):
        code, _, err = run_main(*args)
        lines = err.strip().splitlines()
        if code != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
            failures.append(f"{args[:2]}..{args[-2:]} -> {code}: {err.strip()[-300:]}")
    assert not failures, "\n".join(failures)
    assert sorted(p.name for p in fuzz_run.iterdir()) == before  # nothing written to the run


TOML_BAD = [
    'steps = 1979-05-27', 'lr = 07:32:00', 'notes = 1979-05-27', '[notes]\nx = [1979-05-27]',
    '[notes.a.b]\nwhen = 1979-05-27T07:32:00', 'notes = { x = nan }', 'notes = { x = inf }',
    'steps = 1e999', 'steps = 99999999999999999999', 'batch_size = -5', 'epochs = 0',
    'hidden = [-1]', 'hidden = [[1]]', 'hidden = 3', 'population = 0', 'dataset = ""',
    'model = ""', 'neuron = ""', 'encoder = ""', 'lr = nan', 'lr = inf', 'lr = -inf',
    'tau = nan', 'dropout = 1.0', 'gamma = 0', 'val_fraction = nan', 'seed = -1',
    'poison_fraction = 0.5\npoison_position = [1, 2, 3]', 'poison_position = [-1, 0]',
    '[model]\nname = "mlp"', '[dataset]', '[method]\nname = 3', '[method]\nname = "bptt"\n'
    '[method.na]\nform = "code"', '[method.bptt]\nx = 1', 'method = []', 'whatever = 1',
    '"" = 1', 'steps = "4"', 'detach_reset = 1', 'alpha = true', 'model = ["mlp"]',
    'model = { name = "mlp" }', 'notes = "text"', 'notes = ' + '[' * 3000 + ']' * 3000,
    'x = ' + '{a = ' * 2000 + '1' + '}' * 2000, 'model = "ann"\nreset = "soft"',
    'model = "ann-mlp"\nkeep_reset_grad = true', 'model = "ann"\nsteps = 4',
    'poison_target = 2', 'steps = 4\nsteps = 5', '\x00', 'steps = ',
]  # fmt: skip


@pytest.mark.slow
def test_malformed_config_toml_files_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "fit", lambda self: sys.exit(0))  # exit 0 fails the case
    failures = []
    for i, text in enumerate(TOML_BAD):
        path = tmp_path / f"c{i}.toml"
        head = "" if text.lstrip("[").startswith("dataset") else 'dataset = "digits"\n'
        path.write_text(f"{head}out_dir = {json.dumps(str(tmp_path / 'o'))}\n{text}\n")
        code, _, err = run_main("train", "--config", str(path))
        lines = err.strip().splitlines()
        if code != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
            failures.append(f"{text[:60]!r} -> {code}: {err.strip()[-300:]}")
    path = tmp_path / "bytes.toml"
    path.write_bytes(b"\xff\xfe = 1\n")
    code, _, err = run_main("train", "--config", str(path))
    if code != 2 or "Traceback" in err:
        failures.append(f"non-UTF-8 -> {code}: {err[-300:]}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


@pytest.mark.parametrize("args", [(), ("data",), ("backdoor",)])
def test_a_command_group_with_no_arguments_shows_its_usage_not_a_bare_error(args):
    code, out, err = run_main(*args)
    assert code == 2
    assert "Usage:" in out and "Commands" in out
    assert "error:" not in err and "Traceback" not in err
