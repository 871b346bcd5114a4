"""Methods' helpers keep every tensor they make on the model's device (issue 27).

Each test runs on the CPU and, marked ``cuda``, on a GPU (skipped with the reason without
one). The data stay on the CPU where a caller keeps them there (datasets, calibration and test
images): the helpers move each batch to the model, never the model to the data. The CUDA runs
also check that a GPU gives the CPU's numbers (to rounding).
"""

import pytest
import torch

from spikeweave.encoding import direct
from spikeweave.learning.bioleaf import BioLeaFOptions, Microcircuit, apical_on
from spikeweave.learning.conversion import accuracy_over_time, ann_to_snn
from spikeweave.learning.gradient_fidelity import gradient_fidelity
from spikeweave.learning.noisy import NoisySingleStep, to_multistep
from spikeweave.models import MLP
from spikeweave.neurons import IF

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def _on(model, device):
    return all(t.device.type == device for t in [*model.parameters(), *model.buffers()])


@pytest.mark.parametrize("device", DEVICES)
def test_bioleaf_targets_and_apical_pass_run_where_the_weights_are(device):
    torch.manual_seed(0)
    net = Microcircuit((10, 12, 4), BioLeaFOptions(substeps=2, settle=2)).to(device)
    y = torch.tensor([0, 3, 1])  # labels from a CPU dataset
    u = net.target_potentials(y)
    assert u.device.type == device and u.shape == (3, 4)
    assert torch.equal(u.argmax(-1).cpu(), y)
    ap, td = apical_on(net, torch.rand(5, 10), steps=2)  # CPU images
    assert len(ap) == len(td) == 1 and all(v >= 0 for v in ap + td)
    assert _on(net, device)


def _twins(device):
    torch.manual_seed(0)
    ann = MLP((10,), 3, None, hidden=(16,)).eval().to(device)
    snn = MLP((10,), 3, lambda: IF(reset="soft"), hidden=(16,)).to(device)
    return ann, snn


@pytest.mark.parametrize("device", DEVICES)
def test_conversion_calibrates_and_sweeps_t_with_cpu_data_and_a_device_model(device):
    ann, snn = _twins(device)
    calib = torch.rand(64, 10) * 2  # CPU calibration images
    net, scales = ann_to_snn(ann, snn, calib)
    assert _on(net, device) and len(scales) == 2 and min(scales) > 0  # hidden + output layer
    x, y = torch.rand(40, 10), torch.randint(0, 3, (40,))
    acc = accuracy_over_time(net, x, y, [1, 4, 8], batch_size=16, encoder="poisson", seed=3)
    assert set(acc) == {1, 4, 8} and all(0 <= a <= 1 for a in acc.values())
    # the sweep is the per-T evaluation: T = 8's accuracy is that of an 8-step run
    with torch.no_grad():
        out = net(direct(x.to(device), 8)).sum(0).argmax(-1).cpu()
    direct_acc = accuracy_over_time(net, x, y, [8], encoder="direct")[8]
    assert direct_acc == float((out == y).float().mean())


@pytest.mark.parametrize("device", DEVICES)
def test_noisy_model_converts_to_multistep_on_its_device(device):
    torch.manual_seed(0)
    model = NoisySingleStep().convert(MLP((10,), 3, lambda: IF(), hidden=(8,))).to(device)
    net = to_multistep(model, 4)
    assert _on(net, device)
    out = net(direct(torch.rand(5, 10, device=device), 4))
    assert out.device.type == device and out.shape == (4, 5, 3)


def _fidelity(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 6, generator=g).to(device)
    y = torch.randint(0, 3, (8,), generator=g)  # labels stay on the CPU
    return gradient_fidelity(
        x, y, hidden=(4,), num_classes=3, sigma=0.1, h=0.05, samples=16,
        estimator_samples=2, init_scale=2.0,
    )  # fmt: skip


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_fidelity_runs_on_the_inputs_device_with_the_cpus_noise(device):
    res = _fidelity(device)
    assert all(-1.0 <= c <= 1.0 for c in res.cosine.values())
    if device != "cpu":  # the noise is drawn on the CPU: the same estimate, to rounding
        ref = _fidelity("cpu")
        for arm, c in res.cosine.items():
            assert c == pytest.approx(ref.cosine[arm], abs=1e-6)
