"""The NA and noisy neurons refuse arguments of the wrong type with a one-line ConfigError."""

import pytest
import torch

from spikeweave.errors import ConfigError
from spikeweave.learning.na import NANeuron
from spikeweave.learning.noisy import NoisyIF


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(threshold="1"), r"NoisyIF: threshold must be a number, got '1' \(str\)"),
        (dict(sigma=True), r"NoisyIF: sigma must be a number, got True \(bool\)"),
        (dict(noise_mean="0.5"), r"NoisyIF: noise_mean must be a number, got '0.5' \(str\)"),
    ],
)
def test_noisy_if_refuses_non_numbers(kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        NoisyIF(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(tau_m="5"), r"NANeuron: tau_m must be a number \(steps\), got '5' \(str\)"),
        (dict(tau_s=None), r"NANeuron: tau_s must be a number \(steps\), got None"),
        (dict(threshold=True), r"NANeuron: threshold must be a number, got True \(bool\)"),
        (dict(min_distance="0.2"), r"NANeuron: min_distance must be a number"),
        (dict(code_clip=[5]), r"NANeuron: code_clip must be a number"),
    ],
)
def test_na_neuron_refuses_non_numbers(kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        NANeuron(**kwargs)
    assert "\n" not in str(info.value)


def test_noisy_if_multistep_mode_runs_the_shared_if_dynamics():
    x = torch.rand(6, 2, 3) * 2
    n = NoisyIF(threshold=1.0, mode="multistep")
    assert torch.equal(n(x), n.to_if()(x))
