"""Run directories: written in one place, atomically, locked, and cleaned up on early failure."""

from __future__ import annotations

import os
import stat
from datetime import datetime

import pytest

from spikeweave.errors import ConfigError, OutputError
from spikeweave.training import Callback, RunDir, TrainConfig, Trainer
from spikeweave.training import rundir as rundir_module


def tiny(tmp_path, **kw):
    values = dict(dataset="digits", model="mlp", steps=2, epochs=1, out_dir=str(tmp_path))
    # drawing the PNGs is most of a tiny run's time; a test of the plots passes plots=True
    values.setdefault("plots", False)
    values.update(kw)
    return TrainConfig(**values)


@pytest.mark.slow
def test_every_run_file_is_written_with_mode_0644(tmp_path):
    trainer = Trainer(tiny(tmp_path, plots=True), progress=False)
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


# ----------------------------------------------------------------- unique names, links, lock


def test_two_trainers_built_in_the_same_second_get_different_run_directories(tmp_path, monkeypatch):
    class FrozenClock:
        @staticmethod
        def now():
            return datetime(2024, 1, 2, 3, 4, 5)

    monkeypatch.setattr(rundir_module, "datetime", FrozenClock)
    first = Trainer(tiny(tmp_path), progress=False)
    second = Trainer(tiny(tmp_path), progress=False)
    assert first.run_dir != second.run_dir
    assert first.run_dir.is_dir() and second.run_dir.is_dir()  # made at construction
    assert second.run_dir.name == first.run_dir.name + "-2"


def test_a_run_directory_made_at_construction_is_removed_when_fit_fails_early(tmp_path):
    class Fail(Callback):
        def on_fit_start(self, trainer):
            raise RuntimeError("boom")

    trainer = Trainer(tiny(tmp_path), callbacks=[Fail()], progress=False)
    assert trainer.run_dir.is_dir()
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit()
    assert not trainer.run_dir.exists()


def test_run_directory_creation_errors_are_one_line(tmp_path):
    with pytest.raises(OutputError, match="file name too long"):
        RunDir.new(tmp_path, "n" * 300)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create folder .*a file is in the way"):
        RunDir.new(tmp_path / "file" / "below", "run")


def test_a_run_directory_that_is_a_link_is_refused_for_writing(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OutputError, match="is a symbolic link"):
        RunDir(tmp_path / "link").create()
    assert list((tmp_path / "real").iterdir()) == []


def sentinel(tmp_path):
    path = tmp_path / "precious.txt"
    path.write_bytes(b"do not touch")
    return path


def test_a_lock_link_is_refused_and_its_target_is_not_truncated(tmp_path):
    precious = sentinel(tmp_path)
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    (rundir / ".lock").symlink_to(precious)
    with pytest.raises(ConfigError, match=r"\.lock is a symbolic link, not a lock file"):
        with rundir.lock():
            pass
    assert precious.read_bytes() == b"do not touch"


def test_a_lock_with_other_hard_links_is_refused_and_not_truncated(tmp_path):
    precious = sentinel(tmp_path)
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    os.link(precious, rundir / ".lock")
    with pytest.raises(ConfigError, match="has other hard links"):
        with rundir.lock():
            pass
    assert precious.read_bytes() == b"do not touch"


@pytest.mark.parametrize(
    ("make", "what"), [(os.mkfifo, "not a regular file"), (os.mkdir, "a folder")]
)
def test_a_lock_that_is_a_fifo_or_folder_is_a_one_line_error(tmp_path, make, what):
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    make(rundir / ".lock")
    with pytest.raises(ConfigError, match=what):
        with rundir.lock():
            pass


def test_the_lock_records_its_owner_in_place_without_truncating(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    (rundir / ".lock").write_text("process 123456789012")
    inode = os.stat(rundir / ".lock").st_ino
    with rundir.lock():
        assert (rundir / ".lock").read_text().strip() == f"process {os.getpid()}"
    assert os.stat(rundir / ".lock").st_ino == inode


def test_taking_the_lock_removes_temporaries_a_killed_write_left(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    stale = rundir / ".checkpoint.safetensors.0123456789abcdef.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    with rundir.lock():
        assert not stale.exists()
