import pytest
import torch
from torch import nn

import spikeweave as sf
from spikeweave.errors import ConfigError, InputError


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


@pytest.mark.parametrize(
    ("module", "x", "layout"),
    [
        (nn.Conv2d(1, 4, 3), torch.rand(8, 1, 28, 28), r"\[T, B, C, H, W\] \(rank 5"),
        (nn.Conv1d(2, 4, 3), torch.rand(8, 2, 16), r"\[T, B, C, L\] \(rank 4"),
        (nn.Conv3d(1, 2, 3), torch.rand(2, 1, 5, 5, 5), r"\[T, B, C, D, H, W\] \(rank 6"),
        (nn.BatchNorm2d(4), torch.rand(8, 4, 5, 5), r"\[T, B, C, H, W\] \(rank 5"),
        (nn.BatchNorm1d(4), torch.rand(8, 4), r"\[T, B, C\] or \[T, B, C, L\]"),
        (nn.Linear(64, 10), torch.rand(8, 64), r"\[T, B, \.\.\., features\] \(rank >= 3"),
        (nn.Flatten(), torch.rand(8, 64), r"\[T, B, \.\.\.\] \(rank >= 3"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)), torch.rand(8, 1, 9, 9), "rank 5"),
    ],
    ids=["conv2d", "conv1d", "conv3d", "bn2d", "bn1d", "linear", "flatten", "conv-bn-block"],
)
def test_static_batch_that_was_never_encoded_is_refused_with_encode_hint(module, x, layout):
    with pytest.raises(InputError, match=layout) as info:
        sf.TimeFolded(module)(x)
    msg = str(info.value)
    assert "encode first" in msg and "spikeweave.encoding.direct(x, T)" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("module", "x"),
    [
        (nn.Conv2d(1, 4, 3), torch.rand(2, 8, 1, 9, 9)),
        (nn.Conv1d(2, 4, 3), torch.rand(2, 8, 2, 16)),
        (nn.BatchNorm1d(4), torch.rand(2, 8, 4)),
        (nn.BatchNorm1d(4), torch.rand(2, 8, 4, 6)),
        (nn.Linear(6, 3), torch.rand(2, 8, 6)),
        (nn.Linear(6, 3), torch.rand(2, 8, 5, 6)),  # Linear maps the last axis of any rank
        (nn.Flatten(), torch.rand(2, 8, 1, 4, 4)),
        (nn.MaxPool2d(2), torch.rand(2, 8, 4, 4)),  # channel-less images: pooling accepts them
        (nn.Dropout(0.5), torch.rand(2, 8)),
        (nn.Identity(), torch.rand(2, 8)),
    ],
)
def test_time_major_inputs_of_every_rank_the_layer_accepts_pass(module, x):
    y = sf.TimeFolded(module)(x)
    assert y.shape[:2] == x.shape[:2]


def test_conv_model_called_on_a_static_batch_says_encode_first():
    net = sf.ConvNet((1, 28, 28), num_classes=10, neuron=sf.LIF)
    with pytest.raises(InputError, match="encode first"):
        net(torch.rand(4, 1, 28, 28))


def test_sample_rank_refuses_a_static_image_batch_at_a_first_flatten():
    flatten = sf.TimeFolded(nn.Flatten(), sample_rank=3)
    assert flatten(torch.rand(2, 4, 1, 5, 5)).shape == (2, 4, 25)
    with pytest.raises(InputError, match=r"rank 5, time-major.*encode first"):
        flatten(torch.rand(4, 1, 5, 5))  # without sample_rank this reads as T=4, B=1
    with pytest.raises(ConfigError, match="sample_rank must be an int >= 0 or None"):
        sf.TimeFolded(nn.Flatten(), sample_rank="3")
