"""Resumable experiments: the folder records its settings at start; a resume continues it
(finished runs loaded, checkpointed ones resumed) and ends with the report an uninterrupted
run writes; other settings, or a finished folder, are refused."""

from __future__ import annotations

import json

import pytest

from spikeweave.errors import ConfigError
from spikeweave.experiments import ExperimentContext, run_experiment
from spikeweave.training import Callback


class _KilledError(Exception):
    pass


class _DieAtEpoch(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise _KilledError


def _kill_at_run(monkeypatch, n, epoch=None):
    """Make the n-th run of the experiment die: at its start (epoch None: the runs before it
    are finished, it has nothing) or at the start of its ``epoch`` (a checkpoint, no summary)."""
    train = ExperimentContext.train
    calls = []

    def dying(self, arm, cfg, seed, *args, callbacks=(), **kw):
        calls.append(arm)
        if len(calls) == n:
            if epoch is None:
                raise _KilledError
            callbacks = [*callbacks, _DieAtEpoch(epoch)]
        return train(self, arm, cfg, seed, *args, callbacks=callbacks, **kw)

    monkeypatch.setattr(ExperimentContext, "train", dying)


def _killed_folder(tmp_path, monkeypatch, n, epoch=None, **kw):
    kw = {"quick": True, "seeds": 1, "progress": False, **kw}
    with monkeypatch.context() as m:
        _kill_at_run(m, n, epoch)
        with pytest.raises(_KilledError):
            run_experiment("klif-vs-lif", out_dir=tmp_path, **kw)
    (folder,) = tmp_path.iterdir()
    return folder


def test_a_resume_with_other_settings_is_refused_and_settings_are_recorded(tmp_path, monkeypatch):
    folder = _killed_folder(tmp_path, monkeypatch, 1)
    settings = json.loads((folder / "settings.json").read_text())
    assert {k: settings[k] for k in ("name", "quick", "seeds", "device", "workers")} == {
        "name": "klif-vs-lif", "quick": True, "seeds": 1, "device": "cpu", "workers": 1,
    }  # fmt: skip
    assert len(settings["commits"]) == 1
    with pytest.raises(ConfigError, match="started with seeds 1 \\(now 2\\)"):
        run_experiment("klif-vs-lif", quick=True, seeds=2, resume=folder, progress=False)
    with pytest.raises(ConfigError, match="started with name 'klif-vs-lif'"):
        run_experiment("reset-dependency", quick=True, seeds=1, resume=folder, progress=False)
    with pytest.raises(ConfigError, match="no settings.json"):
        run_experiment("klif-vs-lif", quick=True, seeds=1, resume=tmp_path, progress=False)


def test_a_finished_experiment_folder_is_refused_for_resuming(tmp_path, monkeypatch):
    folder = _killed_folder(tmp_path, monkeypatch, 1)
    (folder / "report.json").write_text("{}")  # what a finished experiment leaves
    with pytest.raises(ConfigError, match="finished .*nothing to resume"):
        run_experiment("klif-vs-lif", quick=True, seeds=1, resume=folder, progress=False)


def _same_reports(a, b):
    ra, rb = (json.loads((f / "report.json").read_text()) for f in (a, b))
    assert ra["per_image"] == rb["per_image"]
    for key in ("test_accuracy_at_best_val", "best_epoch", "curves", "chosen", "n_test"):
        assert ra["results"][key] == rb["results"][key], key
    assert ra["verdict"] == rb["verdict"] and ra["held"] == rb["held"]
    accuracy = [(p["name"], p["status"], p["estimate"], p["interval"]) for p in ra["parts"]
                if p["unit"] == "points"]  # fmt: skip
    assert accuracy == [(p["name"], p["status"], p["estimate"], p["interval"])
                        for p in rb["parts"] if p["unit"] == "points"]  # fmt: skip
    return ra, rb


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    return run_experiment("klif-vs-lif", quick=True, seeds=1, out_dir=out, progress=False)[1]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_an_experiment_killed_mid_run_and_resumed_reports_as_an_uninterrupted_one(
    tmp_path, monkeypatch, uninterrupted, workers
):
    # run 4 dies at the start of its second epoch (a checkpoint, no summary). The two tuning
    # runs go one after another in the parent (one candidate per stage); with two workers the
    # evaluation runs are forked, each worker counting on from 2, so a worker's second run is
    # the one that dies, and the other worker is terminated wherever it was
    folder = _killed_folder(tmp_path, monkeypatch, 4, epoch=2, workers=workers)
    runs = folder / "runs"
    finished = sorted(p.name for p in runs.iterdir() if (p / "summary.json").exists())
    cut = [p.name for p in runs.iterdir() if not (p / "summary.json").exists()]
    assert len(finished) >= 3 and len(cut) >= 1
    before = {n: (runs / n / "checkpoint.safetensors").stat().st_mtime_ns for n in finished}
    _, again = run_experiment("klif-vs-lif", quick=True, seeds=1, resume=folder,
                              progress=False, workers=workers)  # fmt: skip
    assert again == folder
    # the finished runs were loaded, not trained again
    assert all((runs / n / "checkpoint.safetensors").stat().st_mtime_ns == t
               for n, t in before.items())  # fmt: skip
    _, resumed = _same_reports(uninterrupted, folder)
    command = json.loads((folder / "command.json").read_text())
    assert len(command["commits"]) == 2 and "resumed" in command
    assert resumed["setup"]["resumed"] == 1


def test_a_run_whose_method_filled_in_default_options_resumes_but_a_changed_option_is_refused(
    tmp_path,
):
    from spikeweave.experiments.base import _check_same_run
    from spikeweave.training import TrainConfig

    asked = TrainConfig(dataset="digits", method="adv-train", method_options={"eps": 0.1})
    saved = TrainConfig(dataset="digits", method="adv-train",
                        method_options={"eps": 0.1, "steps": 3, "norm": "linf"})  # fmt: skip
    _check_same_run(tmp_path, saved, asked)  # the defaults the run filled in are not compared
    other = TrainConfig(dataset="digits", method="adv-train", method_options={"eps": 0.2})
    with pytest.raises(ConfigError, match="method_options = .* asks for \\{'eps': 0.2\\}"):
        _check_same_run(tmp_path, saved, other)
    extra = TrainConfig(dataset="digits", method="adv-train",
                        method_options={"eps": 0.1, "eot": 2})  # fmt: skip
    with pytest.raises(ConfigError, match="1 field"):
        _check_same_run(tmp_path, saved, extra)  # an option the run never had
    # nested: a transform's options filled in by the run (mesa's backdoor)
    poisoned = {"backdoor": {"kind": "badnets", "fraction": 0.1, "target": 3}}
    asked = TrainConfig(dataset="digits", train_transforms=poisoned)
    filled = {"backdoor": {**poisoned["backdoor"], "position": [], "trigger_size": 3}}
    _check_same_run(tmp_path, TrainConfig(dataset="digits", train_transforms=filled), asked)
    moved = {"backdoor": {**filled["backdoor"], "target": 4}}
    with pytest.raises(ConfigError, match="train_transforms"):
        _check_same_run(tmp_path, TrainConfig(dataset="digits", train_transforms=moved), asked)
