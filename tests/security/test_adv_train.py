"""``--method adv-train``: PGD-k adversarial training on the seam."""

from __future__ import annotations

import pytest
import torch

from spikeweave.errors import ConfigError
from spikeweave.security.adv_train import AdversarialTraining, AdvTrainOptions
from spikeweave.training import TrainConfig, Trainer, load_run
from spikeweave.training.methods import METHODS, make_method


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (see conftest): the shared CPU is oversubscribed."""


def test_registered_with_typed_options():
    assert METHODS.get("adv-train") is AdversarialTraining
    m = make_method("adv-train", {"eps": 0.2, "steps": 5})
    assert m.options == AdvTrainOptions(eps=0.2, steps=5)
    with pytest.raises(ConfigError, match="eps must be >= 0"):
        make_method("adv-train", {"eps": -0.1})
    with pytest.raises(ConfigError, match="unknown option"):
        make_method("adv-train", {"epsilon": 0.1})
    with pytest.raises(ConfigError, match="norm must be one of"):
        make_method("adv-train", {"norm": "l1"})


@pytest.mark.slow
def test_adversarial_training_runs_records_time_and_loads(tmp_path):
    base = TrainConfig(
        dataset="digits", model="mlp", steps=2, epochs=2, lr=1e-2, out_dir=str(tmp_path),
        plots=False,
    )  # fmt: skip
    calls = {}
    for name, method in {"bptt": "bptt", "adv": "adv-train"}.items():
        cfg = TrainConfig(**{**base.__dict__, "method": method})
        if method == "adv-train":
            cfg.method_options = {"eps": 0.1, "steps": 2}
        tr = Trainer(cfg, run_dir=tmp_path / name)
        calls[name] = 0
        calls[name + "-attack"] = 0

        def count(module, args, name=name):
            if module.training:
                calls[name] += 1
            elif torch.is_grad_enabled():  # eval mode with autograd: a PGD step
                calls[name + "-attack"] += 1

        tr.model.register_forward_pre_hook(count)
        tr.fit()
        assert all(r["train_time_s"] > 0 for r in tr.history)  # the cost is recorded
        assert tr.history[-1]["test_accuracy"] > 0.3
    # PGD-2 runs in eval mode: the training-mode forwards are one per batch in both
    assert calls["adv"] == calls["bptt"] > 0
    assert calls["bptt-attack"] == 0
    assert calls["adv-attack"] == 2 * calls["adv"]  # two PGD gradient steps per batch
    run = load_run(tmp_path / "adv")
    assert run.config.method == "adv-train"
    assert run.method.options.steps == 2
    assert run.predict(torch.rand(4, 1, 8, 8)).shape == (4,)
