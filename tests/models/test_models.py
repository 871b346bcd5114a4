import pytest
import torch

import spikeweave as sf
from spikeweave.errors import ConfigError
from spikeweave.neurons import SpikingNeuron


@pytest.mark.parametrize("name", ["mlp", "convnet"])
@pytest.mark.parametrize("neuron", [sf.LIF, sf.IF, None])
def test_models_map_time_major_images_to_class_rates(name, neuron):
    model = sf.build_model(name, (1, 8, 8), 10, neuron, population=3)
    out = model(torch.rand(4, 2, 1, 8, 8))
    assert out.shape == (4, 2, 10)
    has_neurons = any(isinstance(m, SpikingNeuron) for m in model.modules())
    assert has_neurons == (neuron is not None)
    if neuron is not None:
        assert ((out >= 0) & (out <= 1)).all()


def test_ann_twin_has_the_same_parameter_shapes_as_the_snn():
    snn = sf.ConvNet((1, 28, 28), 10, sf.LIF)
    ann = sf.ConvNet((1, 28, 28), 10, None)
    assert [p.shape for p in snn.parameters()] == [p.shape for p in ann.parameters()]


def test_unknown_model_and_flat_input_to_convnet_are_refused():
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        sf.build_model("resnet", (1, 8, 8), 10, sf.LIF)
    with pytest.raises(ConfigError, match="needs image inputs"):
        sf.ConvNet((64,), 10, sf.LIF)
