"""The method seam: typed options, method-owned models and optimizers, local rules, named
losses, injected datasets and callbacks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from spikeweave import data
from spikeweave.errors import ConfigError
from spikeweave.losses import Loss
from spikeweave.training import (
    METHODS,
    Callback,
    TrainConfig,
    Trainer,
    TrainingMethod,
    load_config,
    make_method,
)


def tiny(tmp_path, **kw):
    values = dict(
        dataset="digits",
        model="mlp",
        steps=2,
        epochs=1,
        batch_size=64,
        population=2,
        out_dir=str(tmp_path),
    )
    # drawing the PNGs is most of a tiny run's time; a test of the plots passes plots=True
    values.setdefault("plots", False)
    values.update(kw)
    return TrainConfig(**values)


class DeltaRule(TrainingMethod):
    """A local rule: the output layer learns by the delta rule on rates, no autograd, no
    optimizer; hidden layers stay fixed."""

    name = "delta-rule"

    @dataclass(frozen=True)
    class Options:
        rate: float = 0.05

    def configure_optimizers(self, model, config, steps_per_epoch):
        return None

    def train_step(self, ctx, x, y):
        assert ctx.optimizer is None
        with torch.no_grad():
            seen = {}

            def keep(_m, inp, _out):
                seen["pre"] = inp[0]

            fc = ctx.model.fc_out.module
            handle = fc.register_forward_hook(keep)
            try:
                out = ctx.forward(x)
            finally:
                handle.remove()
            pre = seen["pre"].reshape(out.shape[0], len(y), -1).mean(0)  # folded [T*B, H]
            rates = out.mean(0)
            target = nn.functional.one_hot(y, rates.shape[-1]).to(rates.dtype)
            err = (target - rates).repeat_interleave(fc.out_features // rates.shape[-1], -1)
            fc.weight += self.options.rate * err.T @ pre / len(y)
            fc.bias += self.options.rate * err.mean(0)
            loss = ctx.loss(out, y)
        return out, loss


def test_a_local_rule_without_optimizer_changes_weights_and_no_parameter_gets_a_grad(tmp_path):
    trainer = Trainer(
        tiny(tmp_path, model="ann-mlp"), method=DeltaRule({"rate": 0.1}), progress=False
    )
    assert trainer.optimizer is None and trainer.scheduler is None
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.fit()
    assert all(p.grad is None for p in trainer.model.parameters())
    after = trainer.model.state_dict()
    assert not torch.equal(before["fc_out.module.weight"], after["fc_out.module.weight"])
    assert torch.equal(before["fc1.module.0.weight"], after["fc1.module.0.weight"])
    assert summary["method"] == "delta-rule" and trainer.history[0]["lr"] is None
    assert summary["config"]["method_options"] == {"rate": 0.1}
    # the checkpoint holds no optimizer state, and the run resumes
    again = Trainer.resume(
        trainer.run_dir, method=DeltaRule({"rate": 0.1}), epochs=2, progress=False
    )
    assert again.fit()["epochs"] == 2


def test_method_options_are_typed_and_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match=r"\[method.bptt\]: unknown option\(s\) 'whatever'"):
        make_method("bptt", {"whatever": 1})
    with pytest.raises(ConfigError, match="rate must be a number, got 'fast'"):
        DeltaRule({"rate": "fast"})
    assert DeltaRule({"rate": 1}).options.rate == 1.0  # an int is a number


def test_method_table_in_toml_selects_the_method_and_its_options(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('dataset = "digits"\n[method]\nname = "noisy"\n[method.noisy]\nsigma = 0.5\n')
    cfg = TrainConfig.from_dict(load_config(path))
    assert (cfg.method, cfg.method_options) == ("noisy", {"sigma": 0.5})
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[method]\nname = "bptt"\n[method.noisy]\nsigma = 0.5\n')
    with pytest.raises(ConfigError, match="options given for method 'noisy' but the method is"):
        load_config(wrong)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[method]\nname = "noisy"\n[method.noisy]\ntemperature = 1\n')
    with pytest.raises(ConfigError, match="unknown option"):
        Trainer(TrainConfig.from_dict(load_config(unknown)), progress=False)


def test_every_registered_method_builds_with_default_options():
    assert {"bptt", "na", "noisy"} <= set(METHODS.names())
    for name in METHODS.names():
        method = make_method(name)
        assert method.name == name and isinstance(method.options_dict(), dict)


def test_a_run_on_injected_datasets_uses_them_and_not_the_named_dataset(tmp_path):
    train = data.load("digits", "train")
    test = data.load("digits", "test")
    calls = {"n": 0}

    class Counting(Callback):
        def on_batch_end(self, trainer, epoch, batch, loss):
            calls["n"] += 1

    small_train = Subset(train, range(200))
    small_test = Subset(test, range(100))
    trainer = Trainer(
        tiny(tmp_path, batch_size=50),
        datasets=(small_train, small_test),
        callbacks=[Counting()],
        progress=False,
    )
    summary = trainer.fit()
    assert calls["n"] == 4  # 200 samples in batches of 50
    x = torch.stack([small_test[i][0] for i in range(100)])
    y = torch.tensor([int(small_test[i][1]) for i in range(100)])
    with torch.no_grad():
        acc = float(
            (trainer.model.eval()(trainer.encode(x)).mean(0).argmax(-1) == y).float().mean()
        )
    assert summary["test_accuracy"] == pytest.approx(acc)


@pytest.mark.slow
def test_injected_dataset_of_another_shape_and_label_needs_no_catalog_entry(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(120, 5, generator=gen)
    y = (x.sum(1) > 2.5).long()
    cfg = tiny(tmp_path, dataset="my-sums", population=1)
    trainer = Trainer(cfg, datasets=(TensorDataset(x, y), TensorDataset(x, y)), progress=False)
    assert trainer.task.spec.input_shape == (5,) and trainer.task.spec.num_outputs == 2
    summary = trainer.fit()
    assert summary["data_spec"]["num_outputs"] == 2


@pytest.mark.slow
def test_callbacks_can_add_to_every_epochs_metrics_row(tmp_path):
    class Norm(Callback):
        def on_epoch_end(self, trainer, epoch, row):
            row["weight_norm"] = float(sum(p.detach().norm() for p in trainer.model.parameters()))

    trainer = Trainer(tiny(tmp_path, epochs=2), callbacks=[Norm()], progress=False)
    trainer.fit()
    assert all("weight_norm" in row for row in trainer.history)
    for key in ("train_time_s", "eval_time_s", "epoch_time_s", "loss_name"):
        assert key in trainer.history[0]


@pytest.mark.slow
def test_a_method_names_its_own_loss_for_train_and_test(tmp_path):
    class Halved(TrainingMethod):
        name = "halved"

        def loss(self, task):
            base = task.loss()
            return Loss(f"half {base.name}", lambda out, y: 0.5 * base(out, y))

        def train_step(self, ctx, x, y):
            from spikeweave.training import gradient_step

            out = ctx.forward(x)
            loss = ctx.loss(out, y)
            gradient_step(ctx, loss)
            return out.detach(), loss.detach()

    trainer = Trainer(tiny(tmp_path), method=Halved(), progress=False)
    summary = trainer.fit()
    assert summary["loss_name"] == "half cross-entropy on rates ×8"
    assert trainer.history[0]["loss_name"] == summary["loss_name"]


@pytest.mark.parametrize(
    ("method", "values", "field"),
    [
        ("na", {"population": 1}, "population"),  # the paper network has no population readout
        ("na", {"pool": "avg"}, "pool"),
        ("sampler", {"hidden": [32]}, "hidden"),
        ("bioleaf", {"pool": "avg", "model": "mlp"}, "pool"),
    ],
)
def test_a_network_field_a_method_does_not_read_is_refused_not_ignored(
    tmp_path, method, values, field
):
    from spikeweave.training import make_method

    options = {"network": "4C3-P2-8"} if method == "na" else {}
    task = "reconstruction" if method == "sampler" else ""
    cfg = TrainConfig(dataset="digits", method=method, task=task, out_dir=str(tmp_path), **values)
    with pytest.raises(ConfigError, match=f"{field} = .* does not apply to method '{method}'"):
        Trainer(cfg, method=make_method(method, options), progress=False)


@pytest.mark.parametrize("values", [{"weight_decay": 0.1}, {"lr": 0.01}, {"grad_clip": 5.0}])
def test_an_optimizer_field_bioleaf_does_not_read_is_refused_not_ignored(tmp_path, values):
    (field,) = values
    cfg = TrainConfig(dataset="digits", model="mlp", method="bioleaf", out_dir=str(tmp_path),
                      **values)  # fmt: skip
    with pytest.raises(ConfigError, match=f"{field} = .* does not apply to method 'bioleaf'"):
        Trainer(cfg, progress=False)


def test_bioleaf_takes_the_schedule_of_its_local_rates(tmp_path):
    cfg = TrainConfig(dataset="digits", model="mlp", method="bioleaf", schedule="exponential",
                      gamma=0.9, epochs=1, out_dir=str(tmp_path))  # fmt: skip
    trainer = Trainer(cfg, progress=False)  # no error: the rules read the schedule
    assert trainer.method.schedule[:2] == ("exponential", 0.9)


def test_na_converting_the_config_model_accepts_its_network_fields(tmp_path):
    cfg = TrainConfig(dataset="digits", model="mlp", hidden=[16], neuron="if", method="na",
                      population=1, steps=2, out_dir=str(tmp_path))  # fmt: skip
    Trainer(cfg, progress=False)  # no error: NA converts the config's own network
