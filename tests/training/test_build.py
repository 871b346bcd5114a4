"""Neurons from the config: every option reaches the neuron that has it, and an option set for
a neuron without it is refused, not ignored."""

from __future__ import annotations

import pytest

from spikeweave.errors import ConfigError
from spikeweave.neurons import OscillatingLIF
from spikeweave.training import TrainConfig
from spikeweave.training.build import neuron_factory


def test_oscillation_options_reach_the_oscillating_neuron():
    cfg = TrainConfig(neuron="oscillating", osc_amplitude=0.3, osc_frequency=0.1,
                      osc_fake_form="square", osc_fake_phase=1.0)  # fmt: skip
    n = neuron_factory(cfg.validate())()
    assert isinstance(n, OscillatingLIF)
    assert (n.amplitude, n.frequency, n.fake_form, n.fake_phase) == (0.3, 0.1, "square", 1.0)
    plain = neuron_factory(TrainConfig(neuron="oscillating").validate())()
    assert plain.fake_form is None and plain.fake_phase is None  # no defense unless asked


def test_an_option_the_neuron_lacks_is_refused():
    with pytest.raises(ConfigError, match="osc_amplitude = 0.5 does not apply to neuron 'lif'"):
        neuron_factory(TrainConfig(neuron="lif", osc_amplitude=0.5).validate())


@pytest.mark.slow
def test_pool_avg_builds_the_conv_net_with_average_pooling_and_rebuilds_by_name(tmp_path):
    from torch import nn

    from spikeweave.training import Trainer, load_run
    from spikeweave.training.assembly import model_from_config

    def pools(model):
        return {type(m) for m in model.modules() if isinstance(m, nn.MaxPool2d | nn.AvgPool2d)}

    assert pools(model_from_config(TrainConfig().validate())) == {nn.MaxPool2d}
    cfg = TrainConfig(dataset="digits", pool="avg", steps=2, epochs=1, out_dir=str(tmp_path))
    trainer = Trainer(cfg, progress=False)
    assert pools(trainer.model) == {nn.AvgPool2d}
    trainer.fit()
    assert pools(load_run(trainer.run_dir).model) == {nn.AvgPool2d}


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"pool": "min"}, "pool"),
        ({"pool": "avg", "model": "mlp"}, "model 'mlp' has no pooling"),
    ],
)
def test_an_unknown_pool_or_a_pool_for_the_mlp_is_refused(values, words):
    from spikeweave.training.assembly import model_from_config

    with pytest.raises(ConfigError, match=words):
        model_from_config(TrainConfig(**values).validate())


@pytest.mark.slow
def test_compiled_stateless_layers_give_the_plain_models_outputs_and_gradients():
    # The neurons (custom autograd Functions on the compiled C kernel) stay uncompiled between
    # compiled layers; outputs and every gradient must match the plain model's.
    import copy

    import torch

    from spikeweave.layers import TimeFolded
    from spikeweave.monitor import record_spikes
    from spikeweave.training.assembly import model_from_config
    from spikeweave.training.build import compile_stateless

    plain = model_from_config(TrainConfig(dataset="digits", steps=3).validate())
    compiled = copy.deepcopy(plain)
    keys = list(compiled.state_dict())
    assert compile_stateless(compiled) == sum(isinstance(m, TimeFolded) for m in plain.modules())
    assert list(compiled.state_dict()) == keys  # checkpoints unchanged
    x = torch.rand(3, 16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2
    target = torch.arange(16) % 10
    outs = []
    for model in (plain, compiled):
        model.train()
        out = model(x)
        torch.nn.functional.cross_entropy(out.mean(0), target).backward()
        outs.append(out)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    # every spiking layer's spikes are equal
    spikes = [record_spikes(m.eval(), x) for m in (plain, compiled)]
    assert bool(spikes[0]["spike1"].any())  # spikes pass the compiled layers
    for name, s in spikes[0].items():
        assert torch.equal(spikes[1][name], s), name
    grads = dict(plain.named_parameters())
    for name, p in compiled.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(
        compiled.state_dict()["conv1.module.1.running_mean"],
        plain.state_dict()["conv1.module.1.running_mean"],
    )


def test_compile_option_is_refused_in_one_line_where_torch_cannot_compile(monkeypatch):
    import torch._dynamo

    from spikeweave.training.assembly import model_from_config
    from spikeweave.training.build import compile_stateless

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.raises(ConfigError, match="torch.compile is not supported"):
        compile_stateless(model_from_config(TrainConfig(dataset="digits").validate()))
