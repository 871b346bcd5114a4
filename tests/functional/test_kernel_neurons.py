"""KLIF (per-layer and per-channel k), PLIF's charge (per-layer and per-channel decay factor) and
the oscillating LIF through the compiled CPU kernel,
against the per-step reference: spikes and potentials bit-identical (float32 and float64),
gradients (input, state, k) within 1e-10 in float64, for every surrogate, reset and option."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import spikeweave as sf
from spikeweave.functional import cpu_kernel
from spikeweave.functional.dynamics import FireReset, KLIFDynamics, PLIFDynamics
from spikeweave.functional.fused import neuron_multistep, reference_multistep, select_backend
from spikeweave.neurons import OscillatingLIF
from spikeweave.surrogate import SURROGATES, Surrogate

pytestmark = pytest.mark.skipif(
    not cpu_kernel.available(), reason=f"no compiled CPU kernel: {cpu_kernel.unavailable_reason()}"
)


class Erf(Surrogate):
    """A surrogate the kernels do not know: tabulated by PyTorch."""

    default_alpha = 2.0

    def derivative(self, x):
        return self.alpha / torch.pi**0.5 * torch.exp(-((self.alpha * x) ** 2))


SURR = [cls() for cls in SURROGATES.values()] + [Erf()]
TOL64 = dict(rtol=1e-10, atol=1e-12)
TOL32 = dict(rtol=1e-4, atol=1e-5)


def _compare(run, x, v0, params, dtype):
    """run(backend, x, v0, params) -> (s, v, h); returns nothing, asserts equality."""
    outs = []
    g = torch.Generator().manual_seed(11)
    ws = wv = wh = None
    for backend in ("cpu", "reference"):
        xi = x.clone().requires_grad_()
        vi = v0.clone().requires_grad_()
        ps = [p.clone().requires_grad_() for p in params]
        s, v, h = run(backend, xi, vi, ps)
        if ws is None:
            ws = torch.randn(s.shape, generator=g).to(dtype)
            wv = torch.randn(v.shape, generator=g).to(dtype)
            wh = torch.randn(h.shape, generator=g).to(dtype)
        ((s * ws).sum() + (v * wv).sum() + 0.1 * (h * wh).sum()).backward()
        outs.append((s.detach(), v.detach(), h.detach(), xi.grad, vi.grad, [p.grad for p in ps]))
    got, ref = outs
    assert torch.equal(got[0], ref[0]), "spikes differ"
    assert 0 < float(got[0].mean()) < 1
    assert torch.equal(got[2], ref[2]) and torch.equal(got[1], ref[1])
    tol = TOL64 if dtype == torch.float64 else TOL32
    torch.testing.assert_close(got[3], ref[3], **tol)
    torch.testing.assert_close(got[4], ref[4], **tol)
    for a, b in zip(got[5], ref[5], strict=True):
        torch.testing.assert_close(a, b, **tol)


KLIF_CASES = list(itertools.product(["hard", "soft"], [True, False], [1.7, 2.0]))


@pytest.mark.rotate("surrogate", "dtype")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("surrogate", SURR, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("k_shape", [(), (4, 1, 1)], ids=["per-layer", "per-channel"])
@pytest.mark.parametrize("reset,detach,tau", KLIF_CASES, ids=str)
def test_klif_kernel_equals_reference(reset, detach, tau, k_shape, surrogate, dtype):
    g = torch.Generator().manual_seed(3)
    T, shape = 7, (2, 4, 3, 3)
    x = (torch.randn((T, *shape), generator=g) + 0.6).to(dtype)
    v0 = (torch.rand(shape, generator=g) * 0.3).to(dtype)
    k0 = (1.0 + 0.3 * torch.rand(k_shape, generator=g)).to(dtype)
    k0.view(-1)[0] = -0.4 if k0.numel() > 1 else k0  # a negative k: ReLU keeps nothing there
    fr = FireReset(0.9, -0.1, reset, surrogate, detach)

    def run(backend, xi, vi, ps):
        dyn = KLIFDynamics(ps[0], tau=tau, v_reset=-0.1)
        if backend == "reference":
            return reference_multistep(xi, vi, dyn, fr, True)
        assert select_backend(xi, dyn, fr, "auto") == "cpu"
        return neuron_multistep(xi, vi, dyn, fr, backend="cpu", return_membrane=True)

    _compare(run, x, v0, [k0], dtype)


@pytest.mark.rotate("surrogate", "dtype")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("surrogate", SURR, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("r_shape", [(), (4, 1, 1)], ids=["per-layer", "per-channel"])
@pytest.mark.parametrize("reset,detach", list(itertools.product(["hard", "soft"], [True, False])))
def test_plif_kernel_equals_reference(reset, detach, r_shape, surrogate, dtype):
    """The decay factor r = 1/tau as PLIF passes it (a tensor, here a leaf): ∂L/∂r from the
    kernel's backward, which rebuilds each step's membrane from the previous h and reads x."""
    g = torch.Generator().manual_seed(7)
    T, shape = 7, (2, 4, 3, 3)
    x = (torch.randn((T, *shape), generator=g) + 0.6).to(dtype)
    v0 = (torch.rand(shape, generator=g) * 0.3).to(dtype)
    r0 = (0.3 + 0.5 * torch.rand(r_shape, generator=g)).to(dtype)
    fr = FireReset(0.9, -0.1, reset, surrogate, detach)

    def run(backend, xi, vi, ps):
        dyn = PLIFDynamics(ps[0], v_reset=-0.1)
        if backend == "reference":
            return reference_multistep(xi, vi, dyn, fr, True)
        assert select_backend(xi, dyn, fr, "auto") == "cpu"
        return neuron_multistep(xi, vi, dyn, fr, backend="cpu", return_membrane=True)

    _compare(run, x, v0, [r0], dtype)


def test_klif_module_fc_and_conv_shapes_and_k_gradient_only():
    torch.manual_seed(4)
    for shape, ch in (((3, 6), 6), ((2, 3, 4, 4), 3), ((3, 6), None)):
        x = torch.rand(6, *shape, dtype=torch.float64) * 2
        a = sf.KLIF(channels=ch).double()
        b = sf.KLIF(channels=ch, backend="reference").double()
        with torch.no_grad():
            a.k.uniform_(0.6, 1.6)
        b.load_state_dict(a.state_dict())
        sa, sb = a(x), b(x)  # the input needs no gradient: only k's
        assert torch.equal(sa, sb)
        w = torch.randn_like(sa)
        (sa * w).sum().backward()
        (sb * w).sum().backward()
        torch.testing.assert_close(a.k.grad, b.k.grad, **TOL64)


def test_klif_nonfinite_input_is_refused_even_where_relu_hides_it():
    x = torch.rand(5, 2, 3)
    x[2, 1, 1] = -float("inf")  # ReLU(k·(-inf)) = 0: the membrane would look fine
    with pytest.raises(sf.errors.InputError, match="KLIF: input contains NaN or inf"):
        sf.KLIF(backend="cpu")(x)


OSC_CASES = [
    dict(form=f, reset=r, detach_reset=d, decay_input=di)
    for f, (r, d, di) in zip(
        ["sine", "square", "triangle", "sawtooth"] * 2,
        itertools.product(["hard", "soft"], [True, False], [True, False]),
        strict=True,
    )
]


@pytest.mark.rotate("surrogate", "dtype")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("surrogate", SURR, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("kw", OSC_CASES, ids=lambda k: "-".join(str(v) for v in k.values()))
@pytest.mark.parametrize("tau", [1.7, 2.0])
def test_oscillating_lif_kernel_equals_reference(kw, surrogate, dtype, tau):
    g = torch.Generator().manual_seed(5)
    T, shape = 9, (3, 2, 5)
    x = (torch.rand((T, *shape), generator=g) * 1.6).to(dtype)
    v0 = (torch.rand(shape, generator=g) * 0.3).to(dtype)
    torch.manual_seed(6)
    base = OscillatingLIF(tau=tau, amplitude=0.3, frequency=0.17, surrogate=surrogate, **kw)

    def run(backend, xi, vi, ps):
        n = OscillatingLIF(
            tau=tau, amplitude=0.3, frequency=0.17, surrogate=surrogate, backend=backend, **kw
        )
        n.load_state_dict(base.state_dict())
        return n(xi, state=vi, return_state=True, return_membrane=True)

    _compare(run, x, v0, [], dtype)


@pytest.mark.parametrize("fake", [dict(fake_form="square"), dict(fake_phase=math.pi / 3)])
def test_fake_backward_defense_on_the_kernel(fake):
    """Defended: forward is the true neuron bit for bit, the gradient the fake neuron's; the
    kernel and the reference agree on both."""
    torch.manual_seed(8)
    x = torch.rand(10, 4, 6, dtype=torch.float64) * 1.5
    w = torch.randn(10, 4, 6, dtype=torch.float64)
    res = []
    for backend in ("cpu", "reference"):
        torch.manual_seed(9)
        n = OscillatingLIF(amplitude=0.4, frequency=0.2, backend=backend, **fake)
        plain = OscillatingLIF(amplitude=0.4, frequency=0.2, backend=backend)
        plain.load_state_dict(n.state_dict())
        xi, xp = x.clone().requires_grad_(), x.clone().requires_grad_()
        s, sp = n(xi), plain(xp)
        assert torch.equal(s, sp)
        (s * w).sum().backward()
        (sp * w).sum().backward()
        assert not torch.allclose(xi.grad, xp.grad)
        res.append((s, xi.grad))
    assert torch.equal(res[0][0], res[1][0])
    torch.testing.assert_close(res[0][1], res[1][1], **TOL64)


def test_klif_and_oscillating_pick_the_kernel():
    x = torch.rand(3, 2, 4)
    fr = sf.LIF().fire_reset()
    assert select_backend(x, sf.KLIF().dynamics(x), fr, "auto") == "cpu"
    assert select_backend(x, OscillatingLIF().dynamics(x), fr, "auto") == "cpu"
    # a per-neuron table that varies over the batch does not fit the kernel: PyTorch runs it
    assert select_backend(x, KLIFDynamics(torch.ones(2, 4), 2.0, 0.0), fr, "auto") == "torch"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (see conftest): the shared CPU is oversubscribed."""


@pytest.mark.parametrize("make", [sf.LIF, sf.KLIF, OscillatingLIF], ids=lambda m: m.__name__)
def test_without_a_graph_nothing_is_saved_and_results_are_the_same(make):
    torch.manual_seed(10)
    x = torch.rand(7, 3, 5, dtype=torch.float64) * 2
    n, ref = make(backend="cpu"), make(backend="reference")
    ref.load_state_dict(n.state_dict())
    with torch.no_grad():
        s, v = n(x, return_state=True)
        s_ref, v_ref = ref(x, return_state=True)
        s_h, v_h, h = n(x, return_state=True, return_membrane=True)
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)
    assert torch.equal(s_h, s) and torch.equal(v_h, v) and h.shape == x.shape
