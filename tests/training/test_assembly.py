"""The assembly and the save_run/load_run pair: one place builds a run's parts and one place
writes and reads run directories; method state travels in the checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from spikeweave.errors import CheckpointError, ConfigError
from spikeweave.training import (
    Callback,
    SurrogateBPTT,
    TrainConfig,
    Trainer,
    assemble,
    load_checkpoint,
    load_run,
    save_checkpoint,
    save_run,
)


def tiny(tmp_path, **kw):
    values = dict(
        dataset="digits", model="mlp", steps=2, epochs=2, batch_size=32, population=2,
        out_dir=str(tmp_path), lr=5e-3,
    )  # fmt: skip
    # drawing the PNGs is most of a tiny run's time; a test of the plots passes plots=True
    values.setdefault("plots", False)
    values.update(kw)
    return TrainConfig(**values)


class CountingBPTT(SurrogateBPTT):
    """BPTT that counts its steps: state a resumed run must get back."""

    name = "counting"

    def __init__(self, options=None):
        super().__init__(options)
        self.steps_taken = 0

    def train_step(self, ctx, x, y):
        self.steps_taken += 1
        return super().train_step(ctx, x, y)

    def state_dict(self):
        return {"steps_taken": self.steps_taken, "marker": torch.arange(3.0)}

    def load_state_dict(self, state):
        assert torch.equal(state["marker"], torch.arange(3.0))
        self.steps_taken = state["steps_taken"]


def test_assemble_builds_the_same_parts_as_the_trainer(tmp_path):
    cfg = tiny(tmp_path, val_fraction=0.2)
    parts = assemble(cfg)
    trainer = Trainer(cfg, run_dir=tmp_path / "r", progress=False)
    assert parts.config == trainer.config and parts.task.spec == trainer.task.spec
    assert len(parts.train_set) == len(trainer.train_set) and len(parts.val_set) > 0
    assert parts.steps_per_epoch == trainer.steps_per_epoch
    pairs = zip(parts.model.state_dict().values(), trainer.model.state_dict().values(), strict=True)
    for a, b in pairs:
        assert torch.equal(a, b)
    assert type(parts.optimizer) is type(trainer.optimizer)


def test_assemble_without_data_reads_no_dataset_and_makes_no_optimizer(tmp_path):
    parts = assemble(tiny(tmp_path), with_data=False)
    assert parts.train_set is None and parts.optimizer is None and parts.steps_per_epoch == 0
    assert parts.task.spec.input_shape == (1, 8, 8)


def test_assemble_checks_names_against_the_registries(tmp_path):
    with pytest.raises(ConfigError, match="unknown neuron 'hh'"):
        assemble(tiny(tmp_path, neuron="hh"), with_data=False)


@pytest.mark.slow
def test_method_state_is_saved_in_the_checkpoint_and_restored_on_resume(tmp_path):
    trainer = Trainer(tiny(tmp_path, epochs=1), method=CountingBPTT(), run_dir=tmp_path / "r",
                      progress=False)  # fmt: skip
    trainer.fit()
    taken = trainer.method.steps_taken
    assert taken == trainer.steps_per_epoch
    _, meta = load_checkpoint(tmp_path / "r" / "checkpoint.safetensors")
    assert meta["method_state"] is not None
    resumed = Trainer.resume(tmp_path / "r", progress=False, method=CountingBPTT(), epochs=2)
    assert resumed.method.steps_taken == taken
    resumed.fit()
    assert resumed.method.steps_taken == 2 * taken


class _StopError(Exception):
    pass


class StopAfterOne(Callback):
    def on_epoch_start(self, trainer, epoch):
        if epoch == 2:
            raise _StopError


@pytest.mark.slow
def test_a_checkpoint_written_without_method_state_still_resumes_to_the_same_weights(tmp_path):
    cfg = tiny(tmp_path, epochs=2)
    full = Trainer(cfg, run_dir=tmp_path / "full", progress=False)
    full.fit()
    old = Trainer(cfg, run_dir=tmp_path / "old", progress=False, callbacks=[StopAfterOne()])
    with pytest.raises(_StopError):
        old.fit()
    path = tmp_path / "old" / "checkpoint.safetensors"
    tensors, meta = load_checkpoint(path)
    del meta["method_state"]  # as every checkpoint written before methods had state
    tensors = {k: v for k, v in tensors.items() if not k.startswith("method/")}
    save_checkpoint(path, tensors, meta)
    resumed = Trainer.resume(tmp_path / "old", progress=False)
    assert resumed.epoch == 1
    resumed.fit()
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_a_method_state_of_another_method_is_refused(tmp_path):
    # a few batches are enough: the refusal is about the checkpoint's method state
    Trainer(tiny(tmp_path, epochs=1, train_size=64), method=CountingBPTT(),
            run_dir=tmp_path / "r", progress=False).fit()  # fmt: skip
    with pytest.raises(CheckpointError, match="method state does not match"):
        Trainer.resume(tmp_path / "r", progress=False, method=SurrogateBPTT(), epochs=2)


def test_save_run_writes_a_directory_load_run_reads_back(tmp_path):
    parts = assemble(tiny(tmp_path))
    out = save_run(tmp_path / "saved", parts, records={"note.json": {"why": "test"}},
                   files={"extra.txt": __file__})  # fmt: skip
    assert json.loads((out / "config.json").read_text()) == parts.config.to_dict()
    assert (out / "metrics.jsonl").read_text() == ""
    assert json.loads((out / "note.json").read_text()) == {"why": "test"}
    run = load_run(out)
    assert run.epoch == 0 and run.task.spec == parts.task.spec
    for k, v in parts.model.state_dict().items():
        assert torch.equal(v, run.model.state_dict()[k]), k
