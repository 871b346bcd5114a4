"""A checkpoint's config is checked against its weights before the model is built (issue 28):
a config asking for a 10^9-wide layer is refused in one line, without allocating the layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_run import run_main

from spikeweave.checkpoint_file import load_checkpoint, save_checkpoint
from spikeweave.errors import CheckpointError
from spikeweave.tasks import DataSpec, make_task
from spikeweave.training import TrainConfig, Trainer, load_run
from spikeweave.training import build as build_module
from spikeweave.training.methods import METHODS, make_method
from spikeweave.training.rundir import RunDir
from spikeweave.training.weights_check import check_model_fits


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A one-epoch digits MLP run (hidden [8])."""
    torch.set_num_threads(1)
    cfg = TrainConfig(
        dataset="digits",
        model="mlp",
        hidden=[8],
        steps=2,
        epochs=1,
        batch_size=128,
        out_dir=str(tmp_path_factory.mktemp("runs")),
        plots=False,
    )
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    return Path(trainer.run_dir)


def _tamper(run_dir: Path, tmp_path: Path, **config: object) -> Path:
    """A copy of ``run_dir`` whose checkpoint (re-signed, so intact) has ``config`` changed."""
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(run_dir, copy)
    path = copy / RunDir.CHECKPOINT
    tensors, meta = load_checkpoint(path)
    meta["config"].update(config)
    save_checkpoint(path, tensors, meta)
    return copy


@pytest.fixture
def devices_built_on(monkeypatch) -> list[str]:
    """The default device at every default_model call (``meta`` allocates nothing)."""
    seen: list[str] = []
    real = build_module.default_model

    def spy(cfg, task):
        seen.append(str(torch.get_default_device()))
        return real(cfg, task)

    monkeypatch.setattr(build_module, "default_model", spy)
    monkeypatch.setattr("spikeweave.training.methods.default_model", spy, raising=False)
    return seen


def test_a_config_with_a_huge_layer_is_refused_before_the_model_is_allocated(
    run_dir, tmp_path, devices_built_on
):
    bad = _tamper(run_dir, tmp_path, hidden=[10**9])
    with pytest.raises(CheckpointError) as excinfo:
        load_run(bad)
    msg = str(excinfo.value)
    assert "\n" not in msg and "1000000000" in msg and "not written for this model" in msg
    assert devices_built_on and all(d == "meta" for d in devices_built_on), devices_built_on


def test_resume_refuses_a_config_its_weights_do_not_fit_before_building(
    run_dir, tmp_path, devices_built_on
):
    bad = _tamper(run_dir, tmp_path, hidden=[10**9])
    with pytest.raises(CheckpointError, match="1000000000"):
        Trainer.resume(bad, progress=False)
    assert devices_built_on and all(d == "meta" for d in devices_built_on), devices_built_on


def test_eval_and_resume_of_a_tampered_config_exit_2_with_one_line(run_dir, tmp_path):
    bad = _tamper(run_dir, tmp_path, hidden=[10**9])
    for args in (["eval", str(bad)], ["train", "--resume", str(bad), "--no-progress"]):
        code, out, err = run_main(*args)
        assert code == 2, out + err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "Traceback" not in out + err and "1000000000" in lines[0]


def test_a_config_that_matches_its_weights_still_loads(run_dir):
    run = load_run(run_dir)
    assert run.model.fc1.module[0].weight.shape == (8, 64)


# Config fields a method requires (noisy trains IF neurons, sampler reconstructs).
_METHOD_FIELDS = {"noisy": {"neuron": "if"}, "sampler": {"task": "reconstruction"}}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_builds_on_the_meta_device(name):
    """Otherwise check_model_fits would skip the early check for that method."""
    fields = _METHOD_FIELDS.get(name, {})
    cfg = TrainConfig(dataset="digits", model="mlp", hidden=[10**9], method=name, **fields)
    method = make_method(name, cfg.method_options)
    task = make_task(
        cfg.task or "classification",
        DataSpec((1, 8, 8), 64 if cfg.task == "reconstruction" else 10, False),
        cfg.loss,
        cfg.spiking,
        cfg.rate_scale,
    )
    with torch.device("meta"):
        model = method.build_model(cfg, task)
    assert all(p.is_meta for p in model.parameters())
    with pytest.raises(CheckpointError, match="missing"):
        check_model_fits(lambda: method.build_model(cfg, task), {}, "x.safetensors")
