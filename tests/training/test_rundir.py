"""Run directories: written in one place, atomically, locked, and cleaned up on early failure."""

from __future__ import annotations

import os
import stat

import pytest

from spikeweave.errors import ConfigError
from spikeweave.training import Callback, RunDir, TrainConfig, Trainer


def tiny(tmp_path, **kw):
    values = dict(dataset="digits", model="mlp", steps=2, epochs=1, out_dir=str(tmp_path))
    values.update(kw)
    return TrainConfig(**values)


def test_every_run_file_is_written_with_mode_0644(tmp_path):
    trainer = Trainer(tiny(tmp_path), progress=False)
    trainer.fit()
    files = [p for p in trainer.run_dir.iterdir() if not p.name.startswith(".")]
    names = {p.name for p in files}
    assert {"config.json", "metrics.jsonl", "summary.json", "checkpoint.safetensors"} <= names
    assert {"activity.safetensors", *RunDir.PLOTS} <= names
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path.name
    assert "bptt" in trainer.run_dir.name and "lif" in trainer.run_dir.name


def test_a_second_process_on_the_same_run_directory_is_refused(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    with rundir.lock():
        other = RunDir(tmp_path / "run")
        with pytest.raises(ConfigError, match="is being trained by process"), other.lock():
            pass


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_directory(tmp_path):
    class Fail(Callback):
        def on_batch_end(self, trainer, epoch, batch, loss):
            raise RuntimeError("boom")

    trainer = Trainer(tiny(tmp_path), callbacks=[Fail()], progress=False)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit()
    assert not trainer.run_dir.exists()


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        Trainer(tiny(tmp_path, out_dir=str(blocker)), progress=False)
