"""IF/LIF against a plain per-step reference written here, independent of the library."""

import itertools
import math

import pytest
import torch

import spikeforge as sf
from spikeforge.errors import ConfigError, InputError


class _AtanSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return g * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


def reference(x, kind, tau, threshold, v_reset, reset, decay_input, detach_reset, v0=None):
    """The issue's equations, one step at a time, autograd all the way through."""
    u = torch.full_like(x[0], v_reset) if v0 is None else v0
    out, hs = [], []
    for t in range(x.shape[0]):
        if kind == "if":
            h = u + x[t]
        elif decay_input:
            h = u + (x[t] - (u - v_reset)) / tau
        else:
            h = u - (u - v_reset) / tau + x[t]
        s = _AtanSpike.apply(h - threshold, 2.0)
        sr = s.detach() if detach_reset else s
        u = h * (1 - sr) + v_reset * sr if reset == "hard" else h - threshold * sr
        out.append(s)
        hs.append(h)
    return torch.stack(out), u, torch.stack(hs)


def make(kind, **kw):
    if kind == "if":
        kw.pop("tau")
        kw.pop("decay_input")
        return sf.IF(surrogate=sf.surrogate.Atan(2.0), **kw)
    return sf.LIF(surrogate=sf.surrogate.Atan(2.0), **kw)


OPTIONS = [
    dict(kind=k, reset=r, decay_input=d, detach_reset=dr)
    for k, r, d, dr in itertools.product(
        ["lif", "if"], ["hard", "soft"], [True, False], [True, False]
    )
    if not (k == "if" and not d)
]


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("v_reset", [0.0, -0.3])
def test_spikes_and_gradients_match_per_step_reference(opt, v_reset):
    torch.manual_seed(0)
    params = dict(
        tau=1.7,
        threshold=0.8,
        v_reset=v_reset,
        reset=opt["reset"],
        decay_input=opt["decay_input"],
        detach_reset=opt["detach_reset"],
    )
    x = (torch.randn(12, 3, 5, dtype=torch.float64) * 1.5 + 0.6).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    v0 = (torch.rand(3, 5, dtype=torch.float64) * 0.5).requires_grad_()
    v0_ref = v0.detach().clone().requires_grad_()

    neuron = make(opt["kind"], **params)
    s, v, h = neuron(x, state=v0, return_state=True, return_membrane=True)
    s_ref, v_ref, h_ref = reference(x_ref, opt["kind"], v0=v0_ref, **params)

    assert torch.equal(s, s_ref)
    assert 0 < s.mean() < 1  # the test exercises both firing and silence
    torch.testing.assert_close(h, h_ref, rtol=0, atol=0)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=0)
    w = torch.randn_like(s)  # a generic upstream gradient on spikes and the final state
    ((s * w).sum() + v.sum()).backward()
    ((s_ref * w).sum() + v_ref.sum()).backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v0.grad, v0_ref.grad, rtol=1e-12, atol=1e-12)


def test_keeping_the_reset_path_changes_the_gradient():
    torch.manual_seed(1)
    x = (torch.randn(10, 4, 6, dtype=torch.float64) + 1.0).requires_grad_()
    grads = []
    for detach in (True, False):
        xi = x.detach().clone().requires_grad_()
        sf.LIF(detach_reset=detach)(xi).sum().backward()
        grads.append(xi.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_two_calls_with_same_input_give_identical_outputs():
    lif = sf.LIF()
    x = torch.rand(8, 4, 10) * 2
    assert torch.equal(lif(x), lif(x))


def test_streaming_in_chunks_equals_one_call():
    lif = sf.LIF(tau=3.0, reset="soft")
    x = torch.rand(10, 2, 7) * 2
    whole = lif(x)
    s1, v = lif(x[:4], return_state=True)
    s2 = lif(x[4:], state=v)
    assert torch.equal(torch.cat([s1, s2]), whole)


@pytest.mark.parametrize("shape", [(5, 3), (5, 3, 7), (4, 2, 3, 6, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("cls", [sf.LIF, sf.IF])
def test_output_has_input_shape_and_dtype_and_binary_values(shape, dtype, cls):
    x = (torch.rand(shape) * 3).to(dtype).requires_grad_()
    s = cls()(x)
    assert s.shape == x.shape and s.dtype == dtype
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    s.sum().backward()
    assert x.grad.shape == x.shape


def test_membrane_starts_at_rest_each_call():
    lif = sf.LIF(v_reset=-0.5)
    _, v = lif(torch.zeros(1, 2, 3), return_state=True)
    torch.testing.assert_close(v, torch.full((2, 3), -0.5))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.rand(5), r"rank >= 2, got shape \(5,\)"),
        (torch.tensor([[1.0, float("nan")]]), "NaN or inf"),
        (torch.tensor([[1.0, float("inf")]]), "NaN or inf"),
        (torch.ones(3, 2, dtype=torch.int64), "floating-point tensor"),
    ],
)
def test_bad_input_gives_one_line_error(x, match):
    with pytest.raises(InputError, match=match) as info:
        sf.LIF()(x)
    assert "\n" not in str(info.value)


def test_wrong_state_shape_is_refused():
    with pytest.raises(InputError, match=r"state must have shape \(2, 3\)"):
        sf.LIF()(torch.rand(4, 2, 3), state=torch.zeros(3, 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(tau=0.5), "tau is in steps"),
        (dict(reset="medium"), "reset must be 'hard' or 'soft'"),
        (dict(v_reset=2.0), "must be finite and below the threshold"),
        (dict(surrogate="nope"), "unknown surrogate"),
    ],
)
def test_invalid_options_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        sf.LIF(**kwargs)
