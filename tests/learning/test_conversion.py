import pytest
import torch
from torch import nn

from spikeweave.encoding import direct
from spikeweave.errors import ConfigError
from spikeweave.learning.conversion import (
    accuracy_over_time,
    activation_percentiles,
    ann_to_snn,
    avg_pooled,
    convert_from_config,
    neuron_blocks,
    normalize_weights,
    snn_config,
)
from spikeweave.models import MLP, ConvNet
from spikeweave.neurons import IF, LIF
from spikeweave.training import TrainConfig, model_from_config

pytestmark = pytest.mark.usefixtures("one_thread")


def soft_if():
    return IF(reset="soft")


def twins(seed=0, **kw):
    torch.manual_seed(seed)
    ann = MLP((10,), 3, None, hidden=(20, 16), population=2, **kw)
    snn = MLP((10,), 3, soft_if, hidden=(20, 16), population=2, **kw)
    with torch.no_grad():  # give BatchNorm non-trivial statistics
        ann.train()
        for _ in range(5):
            ann(direct(torch.rand(64, 10) * 2, 1))
    return ann.eval(), snn


def test_neuron_blocks_pair_each_neuron_with_its_layer():
    _, snn = twins()
    assert neuron_blocks(snn) == [("fc1", "spike1"), ("fc2", "spike2"), ("fc_out", "spike_out")]
    conv = ConvNet((1, 8, 8), 2, soft_if, channels=(4,), hidden=8, population=1)
    assert neuron_blocks(conv) == [("conv1", "spike1"), ("fc1", "spike2"), ("fc_out", "spike_out")]
    with pytest.raises(ConfigError, match="Sequential"):
        neuron_blocks(nn.Module())
    with pytest.raises(ConfigError, match="no spiking"):
        neuron_blocks(MLP((10,), 3, None, hidden=(4,)))


def test_percentiles_of_positive_activations():
    ann, snn = twins()
    x = direct(torch.rand(200, 10), 1)
    blocks = [b for b, _ in neuron_blocks(snn)]
    top = activation_percentiles(ann, blocks, x, percentile=100)
    with torch.no_grad():
        h1 = ann.fc1(ann.flatten(x))
    assert top[0] == pytest.approx(float(h1.max()))
    mid = activation_percentiles(ann, blocks, x, percentile=50)
    assert mid[0] == pytest.approx(float(h1[h1 > 0].median()), rel=0.05)
    assert all(0 < m < t for m, t in zip(mid, top, strict=True))
    with pytest.raises(ConfigError):
        activation_percentiles(ann, blocks, x, percentile=0)


def test_normalisation_scales_input_weights_and_output_affine():
    ann, snn = twins()
    snn.load_state_dict(ann.state_dict())
    normalize_weights(snn, [2.0, 4.0, 8.0])
    assert torch.allclose(snn.fc1.module[0].weight, ann.fc1.module[0].weight)
    assert torch.allclose(snn.fc1.module[1].weight, ann.fc1.module[1].weight / 2)
    assert torch.allclose(snn.fc2.module[0].weight, ann.fc2.module[0].weight * 2)
    assert torch.allclose(snn.fc2.module[1].bias, ann.fc2.module[1].bias / 4)
    assert torch.allclose(snn.fc_out.module.weight, ann.fc_out.module.weight * 4 / 8)
    assert torch.allclose(snn.fc_out.module.bias, ann.fc_out.module.bias / 8)


@torch.no_grad()
def test_converted_rates_approach_the_normalised_ann_activations():
    ann, snn = twins()
    calib = torch.rand(300, 10)
    net, scales = ann_to_snn(ann, snn, calib, percentile=99.9)
    x = torch.rand(100, 10)
    h = ann.fc2(ann.act1(ann.fc1(ann.flatten(direct(x, 1)))))
    logits = ann.fc_out(ann.act2(h))[0]
    target = (logits / scales[2]).clamp(0, 1)
    # output spike rates (before the population readout) against clip(a / λ, 0, 1)
    out = {}
    net.spike_out.register_forward_hook(lambda _m, _i, o: out.setdefault("s", o))
    net(direct(x, 256))
    s = out["s"]
    err = [float((s[:T].mean(0) - target).abs().mean()) for T in (4, 16, 64, 256)]
    assert err[-1] < err[0] / 3 and err[-1] < 0.03, err
    # the SNN's decision at long T agrees with the ANN's almost everywhere
    agree = (net(direct(x, 256)).mean(0).argmax(-1) == ann(direct(x, 1))[0].argmax(-1)).float()
    assert float(agree.mean()) > 0.9


def test_refuses_targets_that_are_not_soft_reset_if_with_unit_threshold():
    ann, _ = twins()
    torch.manual_seed(0)
    lif = MLP((10,), 3, LIF, hidden=(20, 16), population=2)
    with pytest.raises(ConfigError, match="soft reset"):
        ann_to_snn(ann, lif, torch.rand(10, 10))


def test_accuracy_over_time_equals_separate_runs():
    ann, snn = twins()
    net, _ = ann_to_snn(ann, snn, torch.rand(100, 10))
    x, y = torch.rand(40, 10), torch.randint(0, 3, (40,))
    accs = accuracy_over_time(net, x, y, [1, 3, 8], batch_size=16)
    for T, acc in accs.items():
        with torch.no_grad():
            pred = net(direct(x, T)).mean(0).argmax(-1)
        assert acc == pytest.approx(float((pred == y).float().mean()))


def test_convert_from_config_rebuilds_from_the_snn_config():
    cfg = TrainConfig(dataset="digits", model="ann-mlp", neuron="relu", population=2)
    ann = model_from_config(cfg).eval()
    x = torch.rand(64, 1, 8, 8)
    snn, scfg, scales = convert_from_config(cfg, ann, x, v_init=0.5)
    assert scfg == snn_config(cfg, v_init=0.5)
    assert (scfg.model, scfg.neuron, scfg.reset, scfg.v_reset) == ("mlp", "if", "soft", 0.5)
    assert len(scales) == 3
    rebuilt = model_from_config(scfg).eval()
    rebuilt.load_state_dict(snn.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(direct(x, 8)), snn(direct(x, 8)))
    with pytest.raises(ConfigError, match="ANN"):
        convert_from_config(scfg, snn, x)


def test_avg_pooled_swaps_every_max_pool_and_keeps_rates_linear():
    torch.manual_seed(0)
    net = avg_pooled(ConvNet((1, 8, 8), 3, soft_if, channels=(4, 4), population=1))
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert sum(isinstance(m, nn.AvgPool2d) for m in net.modules()) == 2
    # the average of a spike map is its rate per window (the max would be an OR)
    pool = next(m for m in net.modules() if isinstance(m, nn.AvgPool2d))
    s = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert float(pool(s)) == 0.25
    with pytest.raises(ConfigError, match="no MaxPool2d"):
        avg_pooled(nn.Sequential(nn.Linear(2, 2)))


def test_accuracy_over_time_with_a_poisson_code_is_seeded():
    torch.manual_seed(0)
    _, snn = twins()
    snn = snn.eval()
    x, y = torch.rand(40, 10), torch.randint(0, 3, (40,))
    a = accuracy_over_time(snn, x, y, [1, 4], encoder="poisson", seed=3)
    b = accuracy_over_time(snn, x, y, [1, 4], encoder="poisson", seed=3)
    assert a == b and set(a) == {1, 4}
