"""OscillatingLIF: the oscillation enters the charge as documented, fused == reference, and the
fake-gradient defense keeps the forward bit-identical while changing (only) the backward."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeweave.errors import ConfigError
from spikeweave.functional.dynamics import OSC_FORMS, oscillation
from spikeweave.layers import TimeFolded
from spikeweave.neurons import NEURONS, OscillatingLIF
from spikeweave.security import true_gradients


def _hand_loop(x, tau, A, f, form, phi, threshold=1.0, v_reset=0.0):
    """The documented equations, one step at a time, in float64: spikes and h [T, B, ...]."""
    u = torch.full_like(x[0], v_reset)
    S, H = [], []
    for t in range(x.shape[0]):
        osc = A * oscillation(form, 2 * math.pi * f * t + phi)
        h = u + (x[t] - (u - v_reset)) / tau + osc
        s = (h >= threshold).to(x.dtype)
        u = torch.where(s.bool(), torch.full_like(h, v_reset), h)
        S.append(s)
        H.append(h)
    return torch.stack(S), torch.stack(H)


def test_forms_match_their_definitions():
    a = torch.tensor([0.0, math.pi / 2, math.pi, 3 * math.pi / 2, 2 * math.pi], dtype=torch.float64)
    assert torch.allclose(oscillation("sine", a), torch.sin(a))
    assert oscillation("square", a).tolist() == [1, 1, -1, -1, 1]
    assert torch.allclose(oscillation("triangle", a), torch.tensor([0.0, 1, 0, -1, 0]).double())
    saw = oscillation("sawtooth", torch.tensor([0.0, math.pi / 2, 3 * math.pi / 2]).double())
    assert torch.allclose(saw, torch.tensor([0.0, 0.5, -0.5]).double())
    for form in OSC_FORMS:  # period 2π, range [-1, 1]
        b = torch.linspace(0, 20, 101, dtype=torch.float64)
        assert torch.allclose(oscillation(form, b), oscillation(form, b + 2 * math.pi), atol=1e-9)
        assert oscillation(form, b).abs().max() <= 1


@pytest.mark.parametrize("form", OSC_FORMS)
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_oscillation_enters_the_charge_as_documented(form, backend):
    torch.manual_seed(0)
    n = OscillatingLIF(tau=3.0, amplitude=0.4, frequency=0.15, form=form, backend=backend)
    x = 1.5 * torch.rand(12, 4, 3, 5, dtype=torch.float64)
    s, h = n(x, return_membrane=True)
    phi = n.phases((3, 5))
    assert phi.shape == (3, 5) and float(phi.min()) >= 0 and float(phi.max()) < 2 * math.pi
    assert phi.unique().numel() == 15  # one phase per neuron
    s_ref, h_ref = _hand_loop(x, 3.0, 0.4, 0.15, form, phi)
    assert torch.equal(s, s_ref)
    assert torch.allclose(h, h_ref, atol=1e-12, rtol=0)


def test_zero_amplitude_is_lif():
    from spikeweave.neurons import LIF

    x = 2 * torch.rand(8, 4, 6)
    assert torch.equal(OscillatingLIF(amplitude=0.0)(x), LIF()(x))


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"reset": "soft", "form": "triangle"},
        {"detach_reset": False, "form": "square", "decay_input": False},
        {"reset": "soft", "detach_reset": False, "form": "sawtooth", "phase": 0.7},
    ],
)
def test_fused_and_reference_agree(kw):
    torch.manual_seed(1)
    fused = OscillatingLIF(tau=2.5, amplitude=0.3, frequency=0.2, **kw)
    ref = OscillatingLIF(tau=2.5, amplitude=0.3, frequency=0.2, backend="reference", **kw)
    ref.load_state_dict(fused.state_dict())
    x = 2 * torch.rand(10, 3, 2, 4, 4, dtype=torch.float64)
    w = torch.randn(10, 3, 2, 4, 4, dtype=torch.float64)
    grads, outs = [], []
    for n in (fused, ref):
        xi = x.clone().requires_grad_()
        s, v, h = n(xi, return_state=True, return_membrane=True)
        ((s * w).sum() + (v * w[0]).sum()).backward()
        outs.append((s, v, h))
        grads.append(xi.grad)
    assert torch.equal(outs[0][0], outs[1][0])  # spikes bit-identical
    assert torch.equal(outs[0][2], outs[1][2])  # so are the potentials
    assert torch.allclose(grads[0], grads[1], atol=1e-10, rtol=0)
    assert grads[0].abs().sum() > 0


def _net(neuron_kw, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        TimeFolded(nn.Linear(6, 8)),
        OscillatingLIF(**neuron_kw),
        TimeFolded(nn.Linear(8, 3)),
    ).double()


def _grad(net, x, w):
    xi = x.clone().requires_grad_()
    out = net(xi)
    (out * w).sum().backward()
    return out.detach(), xi.grad


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_defense_forward_identical_gradients_differ_true_gradients_restores(backend):
    base = {"amplitude": 0.4, "frequency": 0.25, "phase": 0.3, "backend": backend}
    plain = _net(base)
    defended = _net({**base, "fake_form": "square", "fake_phase": math.pi})
    defended.load_state_dict(plain.state_dict())
    # what the defended backward should be: the neuron whose oscillation is the fake one
    fake = _net({**base, "form": "square", "phase": 0.3 + math.pi})
    fake.load_state_dict(plain.state_dict())
    torch.manual_seed(2)
    x = 3 * torch.rand(8, 5, 6, dtype=torch.float64)
    w = torch.randn(8, 5, 3, dtype=torch.float64)
    out_p, g_p = _grad(plain, x, w)
    out_d, g_d = _grad(defended, x, w)
    _, g_f = _grad(fake, x, w)
    assert torch.equal(out_p, out_d)  # forward bit-identical
    with torch.no_grad():
        assert torch.equal(plain(x), defended(x))
    assert not torch.allclose(g_p, g_d)  # the gradient is masked
    assert torch.allclose(g_d, g_f, atol=1e-12, rtol=0)  # ...by the fake neuron's gradient
    with true_gradients(defended):
        out_t, g_t = _grad(defended, x, w)
    assert torch.equal(out_t, out_p) and torch.equal(g_t, g_p)
    assert defended[1].true_backward is False  # restored on exit
    _, g_again = _grad(defended, x, w)
    assert torch.equal(g_again, g_d)


def test_phase_is_saved_with_the_weights():
    torch.manual_seed(3)
    a, b = OscillatingLIF(), OscillatingLIF()
    assert "phase_seed" in a.state_dict()
    x = 1.2 * torch.rand(6, 4, 2, 5, 5)
    assert not torch.equal(a.phases((2, 5, 5)), b.phases((2, 5, 5)))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.phases((2, 5, 5)), b.phases((2, 5, 5)))
    assert torch.equal(a(x), b(x))


def test_registry_and_options():
    assert NEURONS.get("oscillating") is OscillatingLIF
    with pytest.raises(ConfigError, match="form must be one of"):
        OscillatingLIF(form="cosine")
    with pytest.raises(ConfigError, match="amplitude must be >= 0"):
        OscillatingLIF(amplitude=-1.0)
    with pytest.raises(ConfigError, match="fake_form"):
        OscillatingLIF(fake_form="noise")
    # the compiled CPU kernel runs it (where a C compiler is present), same spikes as "torch"
    from spikeweave.functional import cpu_kernel

    if cpu_kernel.available():
        x = 2 * torch.rand(5, 3, 4)
        n_cpu, n_torch = OscillatingLIF(backend="cpu"), OscillatingLIF(backend="torch")
        n_torch.load_state_dict(n_cpu.state_dict())
        assert torch.equal(n_cpu(x), n_torch(x))
    assert not OscillatingLIF().defended
    assert OscillatingLIF(fake_form="square").defended
    assert OscillatingLIF(fake_phase=1.0).defended


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (see conftest): the shared CPU is oversubscribed."""
