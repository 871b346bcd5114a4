"""KLIF against a per-step reference written here (methods.md §3)."""

import pytest
import torch

import spikeweave as sf
from spikeweave.errors import ConfigError, InputError


def reference(x, k, tau, theta, v_reset, reset, detach_reset, alpha=4.0):
    """h = u + (x - (u - v_reset))/tau; f = ReLU(k h); s = H(f - θ); reset on f."""
    u = torch.full_like(x[0], v_reset)
    out, fs = [], []
    for t in range(x.shape[0]):
        h = u + (x[t] - (u - v_reset)) / tau
        f = torch.relu(k * h)
        z = f - theta
        sg = torch.sigmoid(alpha * z)
        s = (z >= 0).to(x.dtype).detach() + (sg - sg.detach())  # Heaviside, sigmoid gradient
        sr = s.detach() if detach_reset else s
        u = f * (1 - sr) + v_reset * sr if reset == "hard" else f - theta * sr
        out.append(s)
        fs.append(f)
    return torch.stack(out), u, torch.stack(fs)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("channels", [None, 3])
def test_spikes_and_input_and_k_gradients_match_reference(reset, detach_reset, backend, channels):
    torch.manual_seed(0)
    x = (torch.randn(7, 2, 3, 4, dtype=torch.float64) + 0.8).requires_grad_()
    klif = sf.KLIF(
        tau=2.0, reset=reset, detach_reset=detach_reset, backend=backend, channels=channels
    ).double()
    with torch.no_grad():
        klif.k.copy_(torch.tensor([0.8, 1.3, 1.1])[: (channels or 1)].reshape(klif.k.shape))
    s, v, f = klif(x, return_state=True, return_membrane=True)

    x_ref = x.detach().clone().requires_grad_()
    k_ref = klif.k.detach().clone().requires_grad_()
    k_b = k_ref.view(3, 1) if channels else k_ref
    s_ref, v_ref, f_ref = reference(x_ref, k_b, 2.0, 1.0, 0.0, reset, detach_reset)

    assert torch.equal(s, s_ref) and 0 < s.mean() < 1
    torch.testing.assert_close(f, f_ref, rtol=0, atol=0)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=0)
    w = torch.randn_like(s)
    ((s * w).sum() + v.sum()).backward()
    ((s_ref * w).sum() + v_ref.sum()).backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(klif.k.grad, k_ref.grad, rtol=1e-10, atol=1e-12)


def test_k_starts_at_one_per_layer_with_sigmoid_alpha_4():
    klif = sf.KLIF()
    assert klif.k.shape == () and klif.k.item() == 1.0
    assert klif.surrogate == sf.surrogate.Sigmoid(4.0)
    assert [n for n, _ in klif.named_parameters()] == ["k"]


def test_k_is_learned_by_an_optimizer():
    klif = sf.KLIF()
    opt = torch.optim.SGD(klif.parameters(), lr=0.1)
    x = torch.rand(4, 8, 5) * 2
    klif(x).mean().backward()
    opt.step()
    assert klif.k.item() != 1.0


def test_per_channel_k_refuses_wrong_channel_count_and_bad_options():
    with pytest.raises(InputError, match=r"KLIF\(channels=3\): expected \[T, B, 3, ...\]"):
        sf.KLIF(channels=3)(torch.rand(2, 2, 4))
    with pytest.raises(ConfigError, match="k_init must be a positive number"):
        sf.KLIF(k_init=0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(channels=True), r"KLIF: channels must be a positive int or None, got True \(bool\)"),
        (dict(channels=3.0), r"KLIF: channels must be a positive int or None, got 3.0 \(float\)"),
        (dict(channels=0), r"KLIF: channels must be a positive int or None, got 0"),
        (dict(k_init="1"), r"KLIF: k_init must be a number, got '1' \(str\)"),
        (dict(k_init=False), r"KLIF: k_init must be a number, got False \(bool\)"),
        (dict(tau="2"), r"KLIF: tau must be a number \(steps\), got '2' \(str\)"),
        (dict(threshold=[1.0]), r"KLIF: threshold must be a number, got \[1.0\] \(list\)"),
    ],
)
def test_constructor_argument_of_wrong_type_is_a_config_error_naming_it(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        sf.KLIF(**kwargs)


@pytest.mark.parametrize("channels", [None, 3])
def test_dynamics_shapes_k_from_the_input_without_a_private_run(channels):
    klif = sf.KLIF(channels=channels)
    x = torch.rand(4, 2, 3, 5, 5)
    k = klif.dynamics(x).params()[0]
    assert k.shape == (() if channels is None else (3, 1, 1))
    assert "_run" not in vars(sf.KLIF)


def test_zero_steps_return_no_spikes_and_the_state_unchanged():
    v0 = torch.rand(2, 3)
    s, v = sf.KLIF(channels=3)(torch.zeros(0, 2, 3), state=v0, return_state=True)
    assert s.shape == (0, 2, 3) and torch.equal(v, v0)
