"""IF/LIF against a plain per-step reference written here, independent of the library."""

import itertools
import math

import pytest
import torch

import spikeweave as sf
from spikeweave.errors import ConfigError, InputError


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


# ------------------------------------------------------------ constructor arguments, typed


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (sf.LIF, dict(tau="2"), r"LIF: tau must be a number \(steps\), got '2' \(str\)"),
        (sf.LIF, dict(threshold="1"), r"LIF: threshold must be a number, got '1' \(str\)"),
        (sf.IF, dict(v_reset="0"), r"IF: v_reset must be a number, got '0' \(str\)"),
        (sf.IF, dict(threshold=None), r"IF: threshold must be a number, got None"),
        (sf.LIF, dict(decay_input="no"), r"LIF: decay_input must be True or False, got 'no'"),
        (sf.IF, dict(detach_reset=1), r"IF: detach_reset must be True or False, got 1 \(int\)"),
        (sf.LIF, dict(reset=1), r"LIF: reset must be 'hard' or 'soft', got 1"),
        (sf.LIF, dict(backend=["torch"]), r"LIF: backend must be one of"),
        (sf.LIF, dict(steps="4"), r"LIF: steps must be a positive int or None, got '4'"),
        (sf.IF, dict(steps=0), r"IF: steps must be a positive int or None, got 0"),
        (sf.IF, dict(steps=4.0), r"IF: steps must be a positive int or None, got 4.0"),
    ],
)
def test_constructor_argument_of_wrong_type_is_a_config_error_naming_it(cls, kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        cls(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["tau", "threshold", "v_reset"])
def test_bool_where_a_number_is_expected_is_refused(name):
    kwargs = {name: True}
    if name == "v_reset":
        kwargs["threshold"] = 2.0  # so that only the bool can be wrong
    with pytest.raises(ConfigError, match=rf"LIF: {name} must be a number.*got True \(bool\)"):
        sf.LIF(**kwargs)


def test_integer_and_numpy_numbers_are_accepted_as_numbers():
    np = pytest.importorskip("numpy")
    lif = sf.LIF(tau=2, threshold=np.float32(1.5), v_reset=np.int64(0), steps=np.int64(3))
    assert (lif.tau, lif.threshold, lif.v_reset, lif.steps) == (2.0, 1.5, 0.0, 3)
    assert isinstance(lif.threshold, float)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(block=[sf.LIF()], chunk=2), r"block must be an nn.Module.*\(list\)"),
        (dict(chunk="4"), r"chunk \(steps\) must be a positive int, got '4' \(str\)"),
        (dict(chunk=2.5), r"chunk \(steps\) must be a positive int, got 2.5"),
        (dict(chunk=True), r"chunk \(steps\) must be a positive int, got True"),
        (dict(chunk=0), r"chunk \(steps\) must be a positive int, got 0"),
    ],
)
def test_time_chunked_refuses_bad_block_and_chunk(kwargs, match):
    kwargs.setdefault("block", torch.nn.Sequential(sf.LIF()))
    with pytest.raises(ConfigError, match=match):
        sf.TimeChunked(**kwargs)


# ------------------------------------------------------------------------------- the state


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("backend", ["auto", "torch", "reference"])
def test_nonfinite_state_is_an_input_error_not_silent_zero_spikes(bad, backend):
    x = torch.rand(4, 2, 3) + 1.0  # fires every step from rest
    state = torch.zeros(2, 3)
    state[1, 2] = bad
    with pytest.raises(InputError, match="LIF: state contains NaN or inf"):
        sf.LIF(backend=backend)(x, state=state)


def test_state_of_another_float_dtype_is_cast_to_the_input_dtype():
    x = torch.rand(6, 2, 3, dtype=torch.float64) * 2
    v0 = torch.rand(2, 3, dtype=torch.float64) * 0.5
    s64, v64 = sf.LIF()(x, state=v0, return_state=True)
    s32, v32 = sf.LIF()(x, state=v0.float(), return_state=True)
    assert v64.dtype == torch.float64 and v32.dtype == torch.float64
    assert torch.equal(s32, sf.LIF()(x, state=v0.float().double()))


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_or_bool_state_is_refused(dtype):
    with pytest.raises(InputError, match="state must be a floating-point membrane potential"):
        sf.LIF()(torch.rand(4, 2, 3), state=torch.zeros(2, 3, dtype=dtype))


def test_state_on_another_device_is_refused():
    with pytest.raises(InputError, match=r"state is on meta but the input on cpu"):
        sf.LIF()(torch.rand(4, 2, 3), state=torch.zeros(2, 3, device="meta"))


# ----------------------------------------------------------------------------- steps check


def test_steps_refuses_batch_major_input_with_transpose_hint():
    x = torch.rand(32, 4, 10)  # [B=32, T=4, features] passed where [T, B, ...] is expected
    with pytest.raises(InputError, match=r"LIF\(steps=4\).*looks like \[B, T, \.\.\.\]") as info:
        sf.LIF(steps=4)(x)
    assert "transpose(0, 1)" in str(info.value) and "\n" not in str(info.value)
    assert sf.LIF(steps=4)(x.transpose(0, 1)).shape == (4, 32, 10)


def test_steps_refuses_another_number_of_steps():
    with pytest.raises(InputError, match=r"IF\(steps=4\): expected 4 steps on the time axis"):
        sf.IF(steps=4)(torch.rand(5, 3, 2))


def test_steps_none_accepts_any_number_of_steps():
    for T in (1, 4, 9):
        assert sf.LIF()(torch.rand(T, 4, 2)).shape == (T, 4, 2)


# -------------------------------------------------------------- where the charge is written


@pytest.mark.parametrize("cls", [sf.LIF, sf.IF, sf.KLIF])
def test_shipped_neurons_provide_their_charge_only_through_dynamics(cls):
    own = vars(cls)
    assert "dynamics" in own
    assert not {"charge", "_run", "forward"} & set(own)


@pytest.mark.parametrize(
    "neuron", [sf.LIF(tau=1.7, v_reset=-0.2), sf.LIF(decay_input=False), sf.IF(), sf.KLIF()]
)
def test_one_step_charge_is_the_dynamics_charge(neuron):
    v, x = torch.rand(3, 4) - 0.3, torch.randn(3, 4)
    dyn = neuron.dynamics(x.unsqueeze(0))
    assert torch.equal(neuron.charge(v, x), dyn.charge(v, x, 0, dyn.params())[0])


def test_reference_backend_builds_the_per_step_autograd_graph():
    x = (torch.rand(5, 2, 3) * 2).requires_grad_()
    s = sf.LIF(backend="reference")(x)
    assert type(s.grad_fn).__name__ != "_FusedNeuronBackward"
    assert type(sf.LIF()(x).grad_fn).__name__ == "_FusedNeuronBackward"


class _LeakyGain(sf.SpikingNeuron):
    """A neuron written only as a Python charge, with a learnable gain."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.gain = torch.nn.Parameter(torch.tensor(0.8, dtype=torch.float64))

    def charge(self, v, x):
        return 0.6 * v + self.gain * x


@pytest.mark.parametrize("backend", ["auto", "torch", "reference"])
def test_neuron_defining_only_charge_runs_it_with_parameter_gradients(backend):
    torch.manual_seed(3)
    x = (torch.randn(9, 3, 4, dtype=torch.float64) + 0.9).requires_grad_()
    neuron = _LeakyGain(backend=backend, surrogate=sf.surrogate.Atan(2.0))
    s = neuron(x)
    # independent of the library: the charge, the Heaviside with atan's gradient, hard reset
    gain = neuron.gain.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    u, out = torch.zeros(3, 4, dtype=torch.float64), []
    for t in range(9):
        h = 0.6 * u + gain * x_ref[t]
        st = _AtanSpike.apply(h - 1.0, 2.0)
        u = h * (1 - st.detach())
        out.append(st)
    s_ref = torch.stack(out)
    assert torch.equal(s, s_ref) and 0 < float(s.detach().mean()) < 1
    w = torch.randn_like(s)
    (s * w).sum().backward()
    (s_ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(neuron.gain.grad, gain.grad, rtol=1e-12, atol=1e-12)


def test_neuron_defining_only_charge_is_refused_by_the_compiled_backends():
    with pytest.raises(ConfigError, match="backend='cpu' cannot run: ChargeFunction has no native"):
        _LeakyGain(backend="cpu")(torch.rand(3, 2, 2, dtype=torch.float64))


def test_neuron_defining_neither_charge_nor_dynamics_says_so():
    with pytest.raises(NotImplementedError, match="defines neither dynamics"):
        sf.SpikingNeuron()(torch.rand(3, 2, 2))


def test_oscillating_lif_chunks_concatenate_exactly_when_given_their_start():
    torch.manual_seed(0)
    neuron = sf.OscillatingLIF(amplitude=0.5, frequency=0.3, threshold=0.4)
    x = torch.rand(9, 3, 5)
    whole = neuron(x)
    v, with_start, without = None, [], []
    for a, b in ((0, 2), (2, 7), (7, 9)):
        s, v = neuron(x[a:b], state=v, return_state=True, start=a)
        with_start.append(s)
    v = None
    for a, b in ((0, 2), (2, 7), (7, 9)):
        s, v = neuron(x[a:b], state=v, return_state=True)
        without.append(s)
    assert torch.equal(torch.cat(with_start), whole)
    assert not torch.equal(torch.cat(without), whole)  # t restarting at 0 is another sequence
    with pytest.raises(InputError, match="start must be an int >= 0"):
        neuron(x, start=-1)
