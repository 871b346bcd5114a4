"""Neurons from the config: every option reaches the neuron that has it, and an option set for
a neuron without it is refused, not ignored."""

from __future__ import annotations

import pytest

from spikeforge.errors import ConfigError
from spikeforge.neurons import OscillatingLIF
from spikeforge.training import TrainConfig
from spikeforge.training.build import neuron_factory


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
