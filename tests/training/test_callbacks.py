"""The config's callbacks: early stopping that keeps the best validation epoch's weights, and
TensorBoard logging of the epoch metrics."""

import json
import sys

import pytest
import torch

from spikeweave.errors import ConfigError
from spikeweave.training import (
    Callback,
    TensorBoardLog,
    TrainConfig,
    Trainer,
    load_checkpoint,
    load_run,
)


def tiny(tmp_path, **kw):
    values = dict(dataset="digits", model="mlp", hidden=[16], steps=2, epochs=5, batch_size=64,
                  population=2, out_dir=str(tmp_path), lr=5e-3, val_fraction=0.2)  # fmt: skip
    # drawing the PNGs is most of a tiny run's time; a test of the plots passes plots=True
    values.setdefault("plots", False)
    values.update(kw)
    return TrainConfig(**values)


class ScriptedVal(Callback):
    """Runs before the config's callbacks and replaces val_accuracy with a script."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, trainer, epoch, row):
        row["val_accuracy"] = self.values[epoch - 1]


class Weights(Callback):
    """The model's weights at the end of every epoch, before any callback restores others."""

    def __init__(self):
        self.seen = {}

    def on_epoch_end(self, trainer, epoch, row):
        self.seen[epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}


class CrashAtStart(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def checkpoint_weights(run):
    tensors, meta = load_checkpoint(run / "checkpoint.safetensors")
    return {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}, meta


def assert_same(a, b):
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


PLATEAU = [0.5, 0.7, 0.6, 0.7, 0.9]  # best at 2; 3 and 4 (a tie) do not improve


def test_early_stopping_ends_the_run_with_the_best_validation_epochs_weights(tmp_path):
    weights = Weights()
    # 256 training images (4 batches an epoch) move the weights every epoch, all this needs
    trainer = Trainer(tiny(tmp_path, early_stopping=2, train_size=256), progress=False,
                      callbacks=[ScriptedVal(PLATEAU), weights])  # fmt: skip
    summary = trainer.fit()
    run = trainer.run_dir
    assert summary["stopped_early"]["after_epoch"] == 4 and summary["epochs"] == 4
    assert summary["weights_epoch"] == 2 and summary["best_epoch_by_val"] == 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["weights_epoch"] == 2 and len(rows) == 4
    assert summary["test_accuracy"] == rows[1]["test_accuracy"]
    saved, meta = checkpoint_weights(run)
    assert meta["epoch"] == 4
    assert_same(saved, weights.seen[2])
    assert not all(torch.equal(saved[k], weights.seen[4][k]) for k in saved)
    # the reloaded model is the one the summary describes
    assert load_run(run).evaluate("test")["accuracy"] == pytest.approx(summary["test_accuracy"])


@pytest.mark.slow
def test_early_stopping_restores_the_best_weights_at_the_epochs_cap_too(tmp_path):
    weights = Weights()
    trainer = Trainer(tiny(tmp_path, epochs=3, early_stopping=5), progress=False,
                      callbacks=[ScriptedVal([0.5, 0.9, 0.6]), weights])  # fmt: skip
    summary = trainer.fit()
    assert "stopped_early" not in summary and summary["weights_epoch"] == 2
    assert_same(checkpoint_weights(trainer.run_dir)[0], weights.seen[2])
    # extending it would train on from epoch 2's weights with epoch 3's optimizer: refused
    with pytest.raises(ConfigError, match="cannot be extended"):
        Trainer.resume(trainer.run_dir, progress=False, epochs=5,
                       callbacks=[ScriptedVal([0.5, 0.9, 0.6, 0.7, 0.8])]).fit()  # fmt: skip


@pytest.mark.slow
def test_early_stopping_without_a_plateau_keeps_the_last_epoch(tmp_path):
    trainer = Trainer(tiny(tmp_path, epochs=2, early_stopping=1), progress=False,
                      callbacks=[ScriptedVal([0.5, 0.6])])  # fmt: skip
    summary = trainer.fit()
    assert summary["weights_epoch"] == 2 and "weights_epoch" not in trainer.history[-1]


@pytest.mark.slow
def test_a_run_killed_on_its_plateau_resumes_to_the_same_stop_and_best_weights(tmp_path):
    whole = Trainer(tiny(tmp_path / "a", early_stopping=2), progress=False,
                    callbacks=[ScriptedVal(PLATEAU)])  # fmt: skip
    expected = whole.fit()
    cfg = tiny(tmp_path / "b", early_stopping=2)
    cut = Trainer(cfg, progress=False, callbacks=[ScriptedVal(PLATEAU), CrashAtStart(4)])
    with pytest.raises(KeyboardInterrupt):
        cut.fit()  # epoch 3 checkpointed; the best weights (epoch 2) only in best_val
    resumed = Trainer.resume(cut.run_dir, progress=False, callbacks=[ScriptedVal(PLATEAU)])
    summary = resumed.fit()
    assert summary["stopped_early"] == expected["stopped_early"]
    assert summary["test_accuracy"] == expected["test_accuracy"]
    assert_same(checkpoint_weights(cut.run_dir)[0], checkpoint_weights(whole.run_dir)[0])
    # resuming the stopped run trains nothing more and reports the same
    again = Trainer.resume(cut.run_dir, progress=False, callbacks=[ScriptedVal(PLATEAU)])
    assert again.fit()["stopped_early"] == expected["stopped_early"]
    assert len(again.history) == 4


def test_early_stopping_needs_a_validation_split():
    with pytest.raises(ConfigError, match="val_fraction > 0"):
        TrainConfig(dataset="digits", early_stopping=3).validate()
    with pytest.raises(ConfigError, match=">= 0"):
        TrainConfig(dataset="digits", early_stopping=-1, val_fraction=0.2).validate()


def test_tensorboard_event_files_hold_every_epochs_metrics(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = Trainer(tiny(tmp_path, epochs=2, tensorboard=True), progress=False)
    trainer.fit()
    events = EventAccumulator(str(trainer.run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"accuracy/train", "accuracy/val", "accuracy/test", "loss/test", "lr"} <= tags
    for tag, key in (("accuracy/test", "test_accuracy"), ("loss/val", "val_loss")):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        expected = [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in trainer.history]
        assert logged == expected


def test_tensorboard_metric_names_group_the_splits():
    assert TensorBoardLog.tag("val_loss") == "loss/val"
    assert TensorBoardLog.tag("train_accuracy") == "accuracy/train"
    assert TensorBoardLog.tag("lr") == "lr" and TensorBoardLog.tag("data_wait_s") == "data_wait_s"


def test_tensorboard_without_the_package_is_a_one_line_error_before_any_file(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(ConfigError, match=r'pip install "spikeweave\[tensorboard\]"'):
        Trainer(tiny(tmp_path, tensorboard=True), progress=False)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_threads_apply_while_the_run_trains_and_are_restored_after(tmp_path):
    class Threads(Callback):
        seen = []

        def on_epoch_end(self, trainer, epoch, row):
            self.seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    want = 2 if before == 1 else 1
    probe = Threads()
    summary = Trainer(tiny(tmp_path, epochs=1, val_fraction=0.0, threads=want), progress=False,
                      callbacks=[probe]).fit()  # fmt: skip
    assert probe.seen == [want] and torch.get_num_threads() == before
    assert summary["config"]["threads"] == want
    assert summary["versions"]["torch_threads"] == str(want)


class Evaluations(Callback):
    """Records every split the trainer evaluates, in order."""

    def on_fit_start(self, trainer):
        self.splits = []
        evaluate = trainer.evaluate

        def counted(split="test"):
            self.splits.append(split)
            return evaluate(split)

        trainer.evaluate = counted


def test_best_val_run_tests_once_on_the_best_validation_weights_it_ends_with(tmp_path):
    weights, seen = Weights(), Evaluations()
    script = ScriptedVal([0.5, 0.7, 0.6, 0.6, 0.65])  # best at 2, never beaten
    trainer = Trainer(tiny(tmp_path, test_eval="best-val", train_size=256), progress=False,
                      callbacks=[seen, script, weights])  # fmt: skip
    summary = trainer.fit()
    run = trainer.run_dir
    assert seen.splits == ["val"] * 5 + ["test"]  # validation each epoch, test once
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert not any(k.startswith("test_") for r in rows for k in r)
    assert rows[-1]["weights_epoch"] == 2 and "stopped_early" not in summary
    assert summary["weights_epoch"] == summary["best_epoch_by_val"] == 2
    assert "best_test_accuracy" not in summary  # no per-epoch test to take a best of
    assert_same(checkpoint_weights(run)[0], weights.seen[2])
    # the summary's test accuracy is the best-val checkpoint evaluated on test
    loaded = load_run(run)
    assert (loaded.epoch, loaded.weights_epoch) == (5, 2)  # trained 5, holds epoch 2's
    tested = loaded.evaluate("test")
    assert summary["test_accuracy"] == summary["test_accuracy_at_best_val"]
    assert tested["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-12)
    assert tested["loss"] == pytest.approx(summary["test_loss"])


def test_best_val_run_killed_and_resumed_ends_with_the_same_weights_and_summary(tmp_path):
    script = [0.5, 0.7, 0.6, 0.65]
    whole = Trainer(tiny(tmp_path / "a", test_eval="best-val", epochs=4), progress=False,
                    callbacks=[ScriptedVal(script)])  # fmt: skip
    expected = whole.fit()
    cut = Trainer(tiny(tmp_path / "b", test_eval="best-val", epochs=4), progress=False,
                  callbacks=[ScriptedVal(script), CrashAtStart(4)])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        cut.fit()  # epoch 3 checkpointed with epoch 3's weights; epoch 2's only in best_val
    summary = Trainer.resume(cut.run_dir, progress=False, callbacks=[ScriptedVal(script)]).fit()
    assert_same(checkpoint_weights(cut.run_dir)[0], checkpoint_weights(whole.run_dir)[0])
    for key in ("test_accuracy", "test_loss", "test_accuracy_at_best_val", "weights_epoch",
                "best_epoch_by_val", "best_val_accuracy", "train_accuracy", "epochs"):  # fmt: skip
        assert summary[key] == expected[key], key


def test_each_epoch_is_the_default_and_keeps_test_in_every_row(tmp_path):
    assert TrainConfig().test_eval == "each-epoch"
    trainer = Trainer(tiny(tmp_path, epochs=2, train_size=128), progress=False)
    summary = trainer.fit()
    assert all("test_accuracy" in r and "test_loss" in r for r in trainer.history)
    best = max(r["test_accuracy"] for r in trainer.history)
    assert summary["best_test_accuracy"] == best


def test_best_val_needs_a_validation_split_and_a_known_value():
    with pytest.raises(ConfigError, match="test_eval = 'best-val'.*val_fraction > 0"):
        TrainConfig(dataset="digits", test_eval="best-val").validate()
    with pytest.raises(ConfigError, match="unknown test_eval 'never'"):
        TrainConfig(dataset="digits", test_eval="never", val_fraction=0.2).validate()


def test_the_trainer_has_everything_the_trainer_view_promises_a_callback(tmp_path):
    import typing

    from spikeweave.training import TrainerView

    trainer = Trainer(tiny(tmp_path), progress=False)
    members = [*typing.get_type_hints(TrainerView), "encode", "request_stop",
               "save_best_weights", "read_best_weights"]  # fmt: skip
    missing = [name for name in members if not hasattr(trainer, name)]
    assert not missing, missing
    for name in ("encode", "request_stop", "save_best_weights", "read_best_weights"):
        assert callable(getattr(trainer, name))
