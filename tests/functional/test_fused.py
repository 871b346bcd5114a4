"""The fused multi-step path against the per-step reference, for every option and backend."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch

import spikeweave as sf
from spikeweave.errors import ConfigError, InputError
from spikeweave.functional import cpu_kernel, kernel_build
from spikeweave.functional.dynamics import Dynamics, FireReset, KLIFDynamics, LIFDynamics
from spikeweave.functional.fused import neuron_multistep, reference_multistep, select_backend
from spikeweave.neurons import TimeChunked
from spikeweave.surrogate import SURROGATES, Surrogate


class Erf(Surrogate):
    """A surrogate the kernels do not know: its derivative is tabulated by PyTorch."""

    default_alpha = 2.0

    def derivative(self, x):
        return self.alpha / torch.pi**0.5 * torch.exp(-((self.alpha * x) ** 2))


SURR = [cls() for cls in SURROGATES.values()] + [Erf()]
BACKENDS = ["torch", "cpu"]
KINDS = [("lif", True), ("lif", False), ("if", True)]
# tau 2.0: the kernel multiplies by the exact 1/tau instead of dividing (IF has no tau)
CASES = [
    (k, d, r, dr, tau)
    for (k, d), r, dr, tau in itertools.product(KINDS, ["hard", "soft"], [True, False], [1.7, 2.0])
    if not (k == "if" and tau == 2.0)
]


def _make(kind, decay, reset, detach, surrogate, backend, tau=1.7, theta=0.8, v_reset=-0.2):
    common = dict(
        threshold=theta,
        v_reset=v_reset,
        reset=reset,
        surrogate=surrogate,
        detach_reset=detach,
        backend=backend,
    )
    if kind == "if":
        return sf.IF(**common)
    return sf.LIF(tau=tau, decay_input=decay, **common)


def _needs_cpu(backend):
    if backend == "cpu" and not cpu_kernel.available():
        pytest.skip(f"compiled CPU kernel unavailable: {cpu_kernel.unavailable_reason()}")


def _run(neuron, x, v0, w_s, w_v, w_h):
    x = x.detach().clone().requires_grad_()
    v0 = v0.detach().clone().requires_grad_()
    s, v, h = neuron(x, state=v0, return_state=True, return_membrane=True)
    ((s * w_s).sum() + (v * w_v).sum() + (h * w_h).sum()).backward()
    return s, v, h, x.grad, v0.grad


@pytest.mark.rotate("surrogate", "dtype")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("surrogate", SURR, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("kind,decay,reset,detach,tau", CASES, ids=str)
def test_fused_equals_reference(kind, decay, reset, detach, tau, surrogate, dtype, backend):
    _needs_cpu(backend)
    g = torch.Generator().manual_seed(sum(map(ord, f"{kind}{decay}{reset}{detach}")))
    T, shape = 9, (3, 2, 5)
    x = (torch.randn((T, *shape), generator=g) * 1.2 + 0.5).to(dtype)
    v0 = (torch.rand(shape, generator=g) * 0.6).to(dtype)
    w_s, w_v, w_h = (torch.randn(t.shape, generator=g).to(dtype) for t in (x, v0, x))
    make = functools.partial(_make, kind, decay, reset, detach, surrogate, tau=tau)
    ref = _run(make("reference"), x, v0, w_s, w_v, w_h)
    got = _run(make(backend), x, v0, w_s, w_v, w_h)
    s, v, h = got[:3]
    assert torch.equal(s, ref[0]), "spikes differ"
    assert 0 < float(s.detach().mean()) < 1
    assert torch.equal(h, ref[2]) and torch.equal(v, ref[1])
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[3], ref[3], **tol)
    torch.testing.assert_close(got[4], ref[4], **tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("detach", [True, False])
def test_gradient_within_1e5_when_only_spikes_are_used(backend, reset, detach):
    """The common training case: no state in, loss on spikes only, last state unused."""
    _needs_cpu(backend)
    torch.manual_seed(0)
    x = (torch.randn(20, 4, 33, dtype=torch.float64) + 0.7).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    w = torch.randn_like(x)
    s = sf.LIF(tau=2.0, reset=reset, detach_reset=detach, backend=backend)(x)
    s_ref = sf.LIF(tau=2.0, reset=reset, detach_reset=detach, backend="reference")(x_ref)
    assert torch.equal(s, s_ref)
    (s * w).sum().backward()
    (s_ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_expanded_and_noncontiguous_tensors(backend):
    """A gradient from ``mean(0)`` is expanded over T (stride 0); inputs may be views."""
    _needs_cpu(backend)
    torch.manual_seed(1)
    base = torch.randn(6, 4, 10, 3, dtype=torch.float64) + 0.8
    x = base.transpose(2, 3).detach().requires_grad_()  # not contiguous
    x_ref = x.detach().clone().requires_grad_()
    out = sf.LIF(backend=backend)(x).mean(0)
    out_ref = sf.LIF(backend="reference")(x_ref).mean(0)
    assert torch.equal(out, out_ref)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (out_ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_repeated_over_time_with_expand_and_zero_steps(backend):
    _needs_cpu(backend)
    x = (torch.rand(1, 4, 5, dtype=torch.float64) * 2).expand(6, 4, 5).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    s, s_ref = sf.LIF(backend=backend)(x), sf.LIF(backend="reference")(x_ref)
    assert torch.equal(s, s_ref)
    s.sum().backward()
    s_ref.sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    v0 = torch.rand(4, 5)
    s0, v = sf.LIF(backend=backend)(torch.zeros(0, 4, 5), state=v0, return_state=True)
    assert s0.shape == (0, 4, 5) and torch.equal(v, v0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_is_fused_and_streaming_matches(backend):
    _needs_cpu(backend)
    lif = sf.LIF(tau=3.0, reset="soft", backend=backend)
    x = torch.rand(10, 2, 7) * 2
    whole = lif(x)
    s1, v = lif(x[:4], return_state=True)
    s2 = lif(x[4:], state=v)
    assert torch.equal(torch.cat([s1, s2]), whole)
    assert torch.equal(whole, sf.LIF(tau=3.0, reset="soft", backend="reference")(x))


def test_auto_picks_the_fused_kernel():
    x = torch.rand(3, 2, 4)
    dyn, fr = LIFDynamics(2.0, 0.0, True), sf.LIF().fire_reset()
    want = "cpu" if cpu_kernel.available() else "torch"
    assert select_backend(x, dyn, fr, "auto") == want
    assert sf.LIF().backend == "auto"
    # bfloat16 has no compiled kernel: the PyTorch fused loop runs it
    assert select_backend(x.bfloat16(), dyn, fr, "auto") == "torch"
    # KLIF has a native kernel; a dynamics without one runs the generic fused loop
    klif = KLIFDynamics(torch.ones(()), 2.0, 0.0)
    assert select_backend(x, klif, fr, "auto") == want
    assert select_backend(x, _Oscillating(torch.ones(())), fr, "auto") == "torch"


def test_no_per_step_graph_is_built():
    x = (torch.rand(50, 2, 3) * 2).requires_grad_()
    s = sf.LIF()(x)
    assert type(s.grad_fn).__name__ == "_FusedNeuronBackward"
    assert s.grad_fn.next_functions[0][0] is not None  # straight to x's accumulator


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_dtypes_match_reference(dtype):
    torch.manual_seed(2)
    x = (torch.rand(8, 3, 5) * 2).to(dtype)
    assert torch.equal(sf.LIF()(x), sf.LIF(backend="reference")(x))


@pytest.mark.parametrize("backend", ["auto", "torch", "reference"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_input_anywhere_is_refused(backend, bad):
    x = torch.rand(30, 4, 300)
    x[17, 3, 299] = bad  # late step, last neuron: in the second thread's share
    with pytest.raises(InputError, match="LIF: input contains NaN or inf"):
        sf.LIF(backend=backend)(x)
    with pytest.raises(InputError, match="IF: input contains NaN or inf"):
        sf.IF(backend=backend, reset="soft")(x.double())


def test_overflow_from_finite_input_is_not_blamed_on_the_input():
    x = torch.full((3, 1, 4), 3e38)  # finite, but the membrane overflows to inf
    x[:, :, 0] = 0.5
    s = sf.IF(reset="soft", threshold=1e38)(x)
    assert s.shape == x.shape


def test_retain_graph_second_backward_is_refused_not_wrong():
    if not cpu_kernel.available():
        pytest.skip("only the compiled kernel reuses the saved buffer")
    x = (torch.rand(5, 2, 3) * 2).requires_grad_()
    s = sf.LIF(backend="cpu")(x).sum()
    s.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second time"):
        s.backward()


def test_create_graph_keeps_saved_buffer():
    x = (torch.rand(5, 2, 3, dtype=torch.float64) * 2).requires_grad_()
    s = sf.LIF()(x)
    (g,) = torch.autograd.grad(s.sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(s.sum(), x)  # graph still intact
    torch.testing.assert_close(g, g2)


def test_unknown_or_impossible_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="backend must be one of"):
        sf.LIF(backend="cuda-magic")
    with pytest.raises(ConfigError, match="backend='triton' cannot run"):
        sf.LIF(backend="triton")(torch.rand(3, 2, 2))
    with pytest.raises(ConfigError, match="backend='cpu' cannot run"):
        sf.LIF(backend="cpu")(torch.rand(3, 2, 2).bfloat16())


def test_subclass_overriding_charge_runs_its_own_charge():
    class Doubling(sf.LIF):
        def charge(self, v, x):
            return super().charge(v, 2 * x)

    x = torch.full((4, 1, 1), 0.6)
    assert Doubling(decay_input=False)(x).sum() > sf.LIF(decay_input=False)(x).sum()


# ------------------------------------------------------------------ plug-in dynamics (KLIF)


@pytest.mark.parametrize("k_shape", [(), (4, 1, 1)], ids=["per-layer", "per-channel"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("detach", [True, False])
def test_klif_plugs_into_generic_loop_with_parameter_gradient(k_shape, reset, detach):
    torch.manual_seed(3)
    T, shape = 8, (2, 4, 3, 3)
    x = torch.randn(T, *shape, dtype=torch.float64) + 0.6
    v0 = torch.rand(shape, dtype=torch.float64) * 0.3
    k0 = 1.0 + 0.3 * torch.rand(k_shape, dtype=torch.float64)
    fr = FireReset(1.0, 0.0, reset, sf.surrogate.Sigmoid(4.0), detach)
    outs = []
    for fused in (True, False):
        xi, vi = x.clone().requires_grad_(), v0.clone().requires_grad_()
        k = k0.clone().requires_grad_()
        dyn = KLIFDynamics(k, tau=2.0, v_reset=0.0)
        run = neuron_multistep if fused else reference_multistep
        kw = dict(backend="auto", return_membrane=True) if fused else dict(return_membrane=True)
        s, v, h = run(xi, vi, dyn, fr, **kw)
        w = torch.randn_like(s, generator=torch.Generator().manual_seed(4))
        ((s * w).sum() + v.sum() + (0.1 * h).sum()).backward()
        outs.append((s, v, h, xi.grad, vi.grad, k.grad))
    (s, v, h, gx, gv, gk), ref = outs
    assert torch.equal(s, ref[0]) and torch.equal(h, ref[2]) and torch.equal(v, ref[1])
    assert 0 < float(s.detach().mean()) < 1
    for a, b in zip((gx, gv, gk), ref[3:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert gk.shape == k0.shape


class _Oscillating(Dynamics):
    """A time-dependent charge (LIF + A·sin(ω t)) written only as charge + vjp."""

    def __init__(self, amp: torch.Tensor) -> None:
        self.amp = amp

    def params(self):
        return (self.amp,)

    def charge(self, u, x, t, params):
        (amp,) = params
        return u + (x - u) / 2.0 + amp * math.sin(0.7 * t), None

    def charge_vjp(self, gh, u, x, t, h, aux, params):
        return gh - gh / 2.0, gh / 2.0, (gh * math.sin(0.7 * t),)


class _OscLIF(sf.LIF):
    def __init__(self, amp: float, **kw) -> None:
        super().__init__(**kw)
        self.amp = torch.nn.Parameter(torch.tensor(amp, dtype=torch.float64))

    def dynamics(self, x):
        return _Oscillating(self.amp)


def test_a_new_neuron_module_plugs_in_through_dynamics():
    torch.manual_seed(7)
    x = torch.randn(15, 3, 6, dtype=torch.float64) + 0.8
    neuron = _OscLIF(0.3, surrogate="fast-sigmoid", reset="soft")
    grads = []
    for fused in (True, False):
        xi = x.clone().requires_grad_()
        neuron.amp.grad = None
        if fused:
            s = neuron(xi)
        else:
            s = reference_multistep(xi, None, neuron.dynamics(xi), neuron.fire_reset())[0]
        (s * torch.linspace(-1, 1, 6, dtype=torch.float64)).sum().backward()
        grads.append((s.detach(), xi.grad, neuron.amp.grad.clone()))
    (s, gx, ga), ref = grads
    assert torch.equal(s, ref[0]) and 0 < float(s.mean()) < 1
    torch.testing.assert_close(gx, ref[1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ga, ref[2], rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- JIT fallback


@pytest.fixture
def fresh_kernel(tmp_path, monkeypatch):
    """A cold cache: the next use compiles (or fails to) from scratch."""
    monkeypatch.setenv("SPIKEWEAVE_CACHE", str(tmp_path / "cache"))
    cpu_kernel.reset()
    yield tmp_path / "cache" / "kernels"
    cpu_kernel.reset()


@pytest.mark.slow
def test_kernel_compiles_into_cache_and_is_reused(fresh_kernel, monkeypatch):
    if cpu_kernel.c_compiler() is None:
        pytest.skip("no C compiler on this machine")
    assert cpu_kernel.available(), cpu_kernel.unavailable_reason()
    built = list(fresh_kernel.glob("sf_kernel_*.so"))
    assert len(built) == 1
    cpu_kernel.reset()

    def no_build(*a, **k):
        raise AssertionError("recompiled although the cache holds the kernel")

    monkeypatch.setattr(kernel_build, "build_library", no_build)
    assert cpu_kernel.available()


@pytest.mark.parametrize("how", ["no-compiler", "disabled", "broken-compiler"])
def test_without_compiler_falls_back_to_torch_with_same_numbers(fresh_kernel, monkeypatch, how):
    if how == "no-compiler":
        monkeypatch.setattr(kernel_build, "c_compiler", lambda: None)
    elif how == "disabled":
        monkeypatch.setenv("SPIKEWEAVE_CPU_KERNEL", "0")
    else:
        monkeypatch.setenv("CC", "false")
        monkeypatch.setattr(kernel_build, "c_compiler", lambda: "false")
    torch.manual_seed(5)
    x = (torch.rand(12, 3, 8, dtype=torch.float64) * 2).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    s = sf.LIF()(x)  # auto: must not raise
    assert not cpu_kernel.available()
    assert cpu_kernel.unavailable_reason()
    assert select_backend(x, LIFDynamics(2.0, 0.0, True), sf.LIF().fire_reset(), "auto") == "torch"
    s_ref = sf.LIF(backend="reference")(x_ref)
    assert torch.equal(s, s_ref)
    s.sum().backward()
    s_ref.sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    with pytest.raises(ConfigError, match="backend='cpu' cannot run"):
        sf.LIF(backend="cpu")(x)


# ----------------------------------------------------------------------------- low memory


@pytest.mark.parametrize("chunk", [1, 3, 7, 20])
def test_time_chunked_equals_whole_sequence(chunk):
    torch.manual_seed(6)
    block = torch.nn.Sequential(
        sf.TimeFolded(torch.nn.Linear(5, 6)),
        sf.LIF(),
        sf.TimeFolded(torch.nn.Linear(6, 4)),
        sf.LIF(reset="soft"),
    ).double()
    x = (torch.rand(13, 3, 5, dtype=torch.float64) * 3).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    y = block(x)
    y2 = TimeChunked(block, chunk)(x2)
    assert torch.equal(y, y2)
    w = torch.randn_like(y)
    g = torch.autograd.grad((y * w).sum(), [x, *block.parameters()])
    g2 = torch.autograd.grad((y2 * w).sum(), [x2, *block.parameters()])
    for a, b in zip(g, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_time_chunked_refuses_batchnorm():
    block = torch.nn.Sequential(sf.TimeFolded(torch.nn.BatchNorm1d(3)), sf.LIF())
    with pytest.raises(ConfigError, match="BatchNorm"):
        TimeChunked(block, 4)
