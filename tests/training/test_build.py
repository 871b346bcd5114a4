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
