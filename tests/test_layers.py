import pytest
import torch
from torch import nn

import spikeforge as sf
from spikeforge.errors import InputError


def test_time_folded_equals_running_each_step_separately():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3, padding=1)
    x = torch.randn(5, 3, 2, 8, 8)
    folded = sf.TimeFolded(conv)(x)
    looped = torch.stack([conv(x[t]) for t in range(5)])
    torch.testing.assert_close(folded, looped)


def test_time_folded_refuses_input_without_time_axis():
    with pytest.raises(InputError, match=r"expected \[T, B, ...\]"):
        sf.TimeFolded(nn.Identity())(torch.zeros(3))


def test_spiking_blocks_map_shapes():
    lin = sf.SpikingLinear(6, 4, neuron=sf.LIF)
    assert lin(torch.rand(3, 2, 6)).shape == (3, 2, 4)
    conv = sf.SpikingConv2d(1, 8, 3, neuron=sf.IF, pool=2)
    s = conv(torch.rand(3, 2, 1, 8, 8))
    assert s.shape == (3, 2, 8, 4, 4)
    assert set(s.unique().tolist()) <= {0.0, 1.0}
