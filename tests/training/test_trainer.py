import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pytest
import torch

from spikeweave.errors import CheckpointError, TrainingError
from spikeweave.training import (
    Callback,
    PlateauStop,
    SurrogateBPTT,
    TrainConfig,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)


def tiny(tmp_path, **kw):
    values = dict(
        dataset="digits",
        model="mlp",
        steps=2,
        epochs=2,
        batch_size=32,
        population=2,
        out_dir=str(tmp_path),
        lr=5e-3,
    )
    # drawing the PNGs is most of a tiny run's time; a test of the plots passes plots=True
    values.setdefault("plots", False)
    values.update(kw)
    return TrainConfig(**values)


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_fit_writes_summary_metrics_checkpoint_and_plots(tmp_path):
    trainer = Trainer(tiny(tmp_path, plots=True), progress=False)
    summary = trainer.fit()
    run = trainer.run_dir
    for key in (
        "test_accuracy",
        "train_accuracy",
        "epochs",
        "wall_time_s",
        "seed",
        "config",
        "versions",
    ):
        assert key in summary
    assert summary["epochs"] == 2 and summary["test_accuracy"] > 0.5
    assert json.loads((run / "summary.json").read_text()) == summary
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert summary["versions"]["torch"] == torch.__version__
    assert set(summary["firing_rates"]) and all(
        0 <= r <= 1 for r in summary["firing_rates"].values()
    )
    for png in ("training_curves.png", "spike_raster.png", "firing_rates.png"):
        assert matplotlib.image.imread(run / png).shape[0] > 100
    _, meta = load_checkpoint(run / "checkpoint.safetensors")
    assert meta["epoch"] == 2


@pytest.mark.slow
def test_same_seed_gives_identical_weights_and_other_seed_does_not(tmp_path):
    a, b, c = (
        Trainer(tiny(tmp_path, seed=s, encoder="poisson"), progress=False) for s in (3, 3, 4)
    )
    for t in (a, b, c):
        t.fit()
    assert_same_weights(weights(a), weights(b))
    assert not torch.equal(weights(a)["fc1.module.0.weight"], weights(c)["fc1.module.0.weight"])


class _CrashError(Exception):
    pass


@pytest.mark.slow
def test_request_stop_ends_after_the_epoch_with_its_row_checkpoint_and_reason(tmp_path):
    class StopAtTwo(Callback):
        def on_epoch_end(self, trainer, epoch, row):
            if epoch == 2:
                trainer.request_stop("enough")

    trainer = Trainer(tiny(tmp_path, epochs=5), progress=False, callbacks=[StopAtTwo()])
    summary = trainer.fit()
    assert summary["epochs"] == 2 and [r["epoch"] for r in trainer.history] == [1, 2]
    assert summary["stopped_early"] == {"after_epoch": 2, "reason": "enough"}
    assert load_checkpoint(trainer.run_dir / "checkpoint.safetensors")[1]["epoch"] == 2
    saved = json.loads((trainer.run_dir / "summary.json").read_text())
    assert saved["stopped_early"]["reason"] == "enough"


def _subnormal_survives() -> bool:
    return float(torch.tensor([1e-39]) * 1.0) != 0.0


@pytest.mark.slow
@pytest.mark.parametrize("flush", [True, False])
def test_subnormals_are_flushed_while_fitting_only_when_configured(tmp_path, flush):
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals")

    class Probe(Callback):
        seen: list[bool] = []

        def on_epoch_end(self, trainer, epoch, row):
            self.seen.append(_subnormal_survives())

    probe = Probe()
    Trainer(tiny(tmp_path, epochs=1, flush_denormal=flush), progress=False,
            callbacks=[probe]).fit()  # fmt: skip
    assert probe.seen == [not flush]
    assert _subnormal_survives()  # the process is back to torch's default afterwards


@pytest.mark.slow
def test_plateau_stop_ends_a_run_patience_epochs_after_the_best_validation_epoch(tmp_path):
    class ScriptedVal(Callback):  # runs first and overwrites val_accuracy with a script
        values = [0.5, 0.7, 0.69, 0.7, 0.9, 0.95]

        def on_epoch_end(self, trainer, epoch, row):
            row["val_accuracy"] = self.values[epoch - 1]

    stop = PlateauStop(patience=2)  # a tie (0.7 again) is no improvement
    cfg = tiny(tmp_path, epochs=6, val_fraction=0.2)
    trainer = Trainer(cfg, progress=False, callbacks=[ScriptedVal(), stop])
    summary = trainer.fit()
    assert (stop.best_epoch, stop.stopped_after, summary["epochs"]) == (2, 4, 4)
    assert "validation accuracy" in summary["stopped_early"]["reason"]


def test_plateau_stop_refuses_a_run_without_a_validation_split(tmp_path):
    with pytest.raises(ValueError, match="val_fraction"):
        Trainer(tiny(tmp_path), progress=False, callbacks=[PlateauStop(2)]).fit()


@pytest.mark.slow
def test_run_crashed_mid_epoch_and_resumed_ends_with_same_weights(tmp_path):
    cfg = tiny(tmp_path, epochs=3, encoder="poisson", dropout=0.1)
    full = Trainer(cfg, run_dir=tmp_path / "full", progress=False)
    full.fit()

    class Crash(Callback):
        def on_batch_end(self, trainer, epoch, batch, loss):
            if epoch == 2 and batch == 5:
                raise _CrashError

    crashing = Trainer(cfg, run_dir=tmp_path / "crash", progress=False, callbacks=[Crash()])
    with pytest.raises(_CrashError):
        crashing.fit()
    resumed = Trainer.resume(tmp_path / "crash", progress=False)
    assert resumed.epoch == 1
    summary = resumed.fit()
    assert_same_weights(weights(full), weights(resumed))
    assert summary["epochs"] == 3
    lines = (tmp_path / "crash" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


@pytest.mark.slow
def test_a_run_killed_before_its_summary_is_completed_as_an_uninterrupted_one(tmp_path):
    cfg = tiny(tmp_path, epochs=1, plots=True)
    full = Trainer(cfg, run_dir=tmp_path / "full", progress=False).fit()

    class _KilledError(Exception):
        pass

    killed = Trainer(cfg, run_dir=tmp_path / "killed", progress=False)

    def die():
        raise _KilledError  # after the last checkpoint, before summary, activity and plots

    killed.finish = die
    with pytest.raises(_KilledError):
        killed.fit()
    run = tmp_path / "killed"
    assert (run / "checkpoint.safetensors").exists() and not (run / "summary.json").exists()
    ended = []

    class _Ends(Callback):
        def on_fit_end(self, trainer, summary):
            ended.append(summary["epochs"])

    resumed = Trainer.resume(run, progress=False, callbacks=[_Ends()])
    summary = resumed.complete()
    assert ended == [1]  # the callbacks end the run as fit would have
    assert json.loads((run / "summary.json").read_text()) == summary
    assert (run / "activity.safetensors").exists() and (run / "training_curves.png").exists()
    for key in ("epochs", "test_accuracy", "train_accuracy", "firing_rates"):
        assert summary[key] == full[key], key
    assert summary["wall_time_s"] == killed.wall_time_s  # the trained epochs' time, kept
    # a run with epochs left is trained by fit, not finished
    with pytest.raises(TrainingError, match="1 epochs left to train"):
        Trainer.resume(run, progress=False, epochs=2).complete()


@pytest.mark.slow
def test_a_run_with_a_silent_layer_says_so_in_its_summary(tmp_path):
    # a threshold no input current reaches: every layer stays silent, the run sits at chance
    silent = Trainer(tiny(tmp_path, epochs=1, threshold=1e3), progress=False).fit()
    assert [w.split(" is ")[0] for w in silent["activity_warnings"]] == [
        "layer 'spike1'", "layer 'spike2'", "layer 'spike_out'"
    ]  # fmt: skip
    assert all("is silent: not one spike" in w for w in silent["activity_warnings"])
    assert all(silent["firing_rates"][k] == 0 for k in ("spike1", "spike2", "spike_out"))
    written = json.loads((Path(silent["run_dir"]) / "summary.json").read_text())
    assert written["activity_warnings"] == silent["activity_warnings"]


@pytest.mark.slow
def test_cli_run_killed_with_sigkill_and_resumed_matches_uninterrupted(tmp_path):
    args = [
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "-T",
        "2",
        "--epochs",
        "6",
        "--batch-size",
        "32",
        "--no-progress",
    ]
    cli = [sys.executable, "-m", "spikeweave.cli", "train"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        cli + args + ["--out-dir", str(tmp_path / "a")], check=True, env=env, capture_output=True
    )
    proc = subprocess.Popen(
        cli + args + ["--out-dir", str(tmp_path / "b")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ckpts = list((tmp_path / "b").glob("*/checkpoint.safetensors"))
        if ckpts and proc.poll() is None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_b = ckpts[0].parent
    _, meta = load_checkpoint(ckpts[0])
    if meta["epoch"] == 6:
        pytest.skip("the run finished before it could be killed")
    subprocess.run(
        cli + ["--resume", str(run_b), "--no-progress"], check=True, env=env, capture_output=True
    )
    run_a = next((tmp_path / "a").iterdir())
    ta, _ = load_checkpoint(run_a / "checkpoint.safetensors")
    tb, _ = load_checkpoint(run_b / "checkpoint.safetensors")
    assert_same_weights(
        {k: v for k, v in ta.items() if k.startswith("model/")},
        {k: v for k, v in tb.items() if k.startswith("model/")},
    )


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    trainer = Trainer(tiny(tmp_path, epochs=1), run_dir=tmp_path / "r", progress=False)
    trainer.fit()
    tensors, meta = load_checkpoint(tmp_path / "r" / "checkpoint.safetensors")
    meta["config"]["population"] = 5
    save_checkpoint(tmp_path / "r" / "checkpoint.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="not written for this model"):
        Trainer.resume(tmp_path / "r", progress=False)


def test_resume_refuses_a_corrupt_checkpoint(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="checkpoint.safetensors"):
        Trainer.resume(run, progress=False)


@pytest.mark.slow
def test_a_method_instance_replaces_the_update_step(tmp_path):
    calls = []

    class Counting(SurrogateBPTT):
        name = "counting"

        def train_step(self, ctx, x, y):
            calls.append(len(y))
            return super().train_step(ctx, x, y)

    trainer = Trainer(tiny(tmp_path, epochs=1), method=Counting(), progress=False)
    summary = trainer.fit()
    assert sum(calls) == 1437
    assert summary["method"] == "counting" and summary["config"]["method"] == "counting"


@pytest.mark.slow
def test_ann_baseline_trains_with_one_step(tmp_path):
    summary = Trainer(tiny(tmp_path, model="ann-mlp", steps=8), progress=False).fit()
    assert summary["steps"] == 1 and not summary["spiking"] and summary["test_accuracy"] > 0.8


@pytest.mark.slow
def test_resume_refuses_optimizer_state_shaped_unlike_its_parameter(tmp_path):
    trainer = Trainer(tiny(tmp_path, epochs=1), progress=False, run_dir=tmp_path / "r")
    trainer.fit()
    path = tmp_path / "r" / "checkpoint.safetensors"
    tensors, meta = load_checkpoint(path)
    # Adam's moment of a weight matrix replaced by a short vector: torch loads it unchecked
    key = next(k for k in tensors if k.endswith("exp_avg") and tensors[k].dim() == 2)
    tensors[key] = torch.zeros(3)
    save_checkpoint(path, tensors, meta)
    with pytest.raises(CheckpointError, match="optimizer state 'exp_avg' has shape"):
        Trainer.resume(tmp_path / "r", progress=False, epochs=2)


@pytest.mark.parametrize("lr", [float("nan"), "abc", None])
def test_loaded_optimizer_settings_that_are_not_finite_numbers_are_refused(tmp_path, lr):
    from spikeweave.training.trainer import _check_optimizer_state

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    _check_optimizer_state(opt, tmp_path / "c")  # a sound optimizer passes
    opt.param_groups[0]["lr"] = lr
    with pytest.raises(CheckpointError, match="optimizer setting 'lr' is"):
        _check_optimizer_state(opt, tmp_path / "c")
