"""The Triton kernels, generated from the charge specs: against the reference in Triton's CPU
interpreter (where Triton is installed; skipped otherwise) and on CUDA (skipped without a GPU).

In the interpreter, the kernels' IEEE division and plain float32 arithmetic are NumPy's, so the
CPU reference must match them bit for bit: spikes, potentials and final states are compared
with ``torch.equal``; gradients within 1e-10 (float64) / 1e-4 (float32). float16 and bfloat16
inputs run in float32 inside: their spikes must equal the float32 reference's on the same
(exactly widened) values; potentials, states and gradients are compared after rounding, within
2^-7 relative (bfloat16) and 2^-10 (float16).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import spikeweave as sf
from spikeweave.functional import finite, triton_lif
from spikeweave.functional.dynamics import (
    FireReset,
    IFDynamics,
    KLIFDynamics,
    LIFDynamics,
    LIFWidthDynamics,
    OscillatingLIFDynamics,
    PLIFDynamics,
    oscillation_drive,
)
from spikeweave.functional.neuron import reference_multistep
from spikeweave.surrogate import SURROGATES, Surrogate

cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and triton_lif.available()),
    reason="needs a CUDA GPU with Triton",
)


class Erf(Surrogate):
    default_alpha = 2.0

    def derivative(self, x):
        return self.alpha / torch.pi**0.5 * torch.exp(-((self.alpha * x) ** 2))


SURR = [cls() for cls in SURROGATES.values()] + [Erf()]
CHARGE_KINDS = [
    "if",
    "lif",
    "lif_nodecay",
    "klif-layer",
    "klif-channel",
    "osc_lif",
    "osc_lif_nodecay",
    "plif",
    "lif_width",
]
SHAPE = (3, 4, 5)  # [B, C, F]: per-channel k over C


def _dynamics(kind: str, dtype, device="cpu"):
    """(dynamics, params needing a gradient) for one charge kind.

    On CUDA tau is 1.7: PyTorch there divides by it as ``x * (1/tau)``, and so does the kernel.
    On the CPU (the interpreter) the reference divides exactly: tau = 2 makes both the same.
    """
    tau = 1.7 if device == "cuda" else 2.0
    g = torch.Generator().manual_seed(2)
    if kind == "if":
        return IFDynamics(), []
    if kind == "lif_width":  # a learnable surrogate width per channel, a leaf
        w = (0.6 + 0.8 * torch.rand((4, 1), generator=g)).to(dtype).to(device).requires_grad_()
        return LIFWidthDynamics(tau, -0.2, True, w), [w]
    if kind.startswith("lif"):
        return LIFDynamics(tau, -0.2, kind == "lif"), []
    if kind.startswith("klif"):
        shape = () if kind == "klif-layer" else (4, 1)
        k = (0.8 + 0.5 * torch.rand(shape, generator=g)).to(dtype).to(device).requires_grad_()
        return KLIFDynamics(k, tau, -0.2), [k]
    if kind == "plif":  # the decay factor r = 1/tau per channel, a leaf: its gradient compared
        r = (0.3 + 0.4 * torch.rand((4, 1), generator=g)).to(dtype).to(device).requires_grad_()
        return PLIFDynamics(r, -0.2), [r]
    phi = (2 * math.pi * torch.rand(SHAPE[1:], generator=g, dtype=torch.float64)).to(device)
    drive = oscillation_drive(9, 0.3, 0.17, "triangle", phi, dtype)
    return OscillatingLIFDynamics(tau, -0.2, kind == "osc_lif", drive), []


def _data(dtype, device="cpu", T=9):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn((T, *SHAPE), generator=g) * 1.2 + 0.6).to(dtype).to(device)
    v0 = (torch.rand(SHAPE, generator=g) * 0.5).to(dtype).to(device)
    w = [
        torch.randn(s, generator=g).to(dtype).to(device) for s in ((T, *SHAPE), SHAPE, (T, *SHAPE))
    ]
    return x, v0, w


def _reference(x, v0, dyn, params, fr, w):
    """Spikes, final state, h and the gradients of (s·ws + v·wv + 0.1·h·wh) by autograd."""
    xi, vi = x.clone().requires_grad_(), v0.clone().requires_grad_()
    for p in params:
        p.grad = None
    s, v, h = reference_multistep(xi, vi, dyn, fr, return_membrane=True)
    ((s * w[0]).sum() + (v * w[1]).sum() + 0.1 * (h * w[2]).sum()).backward()
    return s.detach(), v.detach(), h.detach(), xi.grad, vi.grad, [p.grad for p in params]


def _kernel(x, v0, dyn, fr, w):
    spec = dyn.kernel_spec()
    s, v, saved, h, flag = triton_lif.forward(x, v0, spec, fr, want_h=True)
    h = saved if h is None else h
    gx, gv0, gk = triton_lif.backward(
        saved, w[0], 0.1 * w[2], w[1], spec, fr, want_v0=True, x_dtype=x.dtype, x=x, v0=v0
    )
    return s, v, h, gx, gv0, list(gk), flag


def _check(got, ref, dtype):
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert torch.equal(got[0], ref[0]), "spikes differ"
    assert 0 < float(got[0].mean()) < 1
    assert torch.equal(got[2], ref[2]), "potentials differ"
    assert torch.equal(got[1], ref[1]), "final states differ"
    for a, b in zip(got[3:6], ref[3:6], strict=False):
        if isinstance(a, list):
            for pa, pb in zip(a, b, strict=True):
                torch.testing.assert_close(pa, pb, **tol)
        else:
            torch.testing.assert_close(a, b, **tol)


# --------------------------------------------------------- Triton's interpreter, on the CPU


def _interpret(mp: pytest.MonkeyPatch) -> None:
    """Build the kernels for Triton's interpreter, everything undone when ``mp`` is.

    Triton reads ``TRITON_INTERPRET`` when a kernel is decorated (``triton.jit``), i.e. when
    the generated module is executed: set before that, whether or not triton was imported
    already, and only for this build (the variable and the module cache are restored after).
    """
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the compiled kernels are tested instead")
    mp.setenv("TRITON_INTERPRET", "1")
    pytest.importorskip("triton")
    mp.setattr(triton_lif, "_kernels", None)
    mp.setattr(triton_lif, "_reason", None)
    if triton_lif._get() is None:
        pytest.skip(f"Triton interpreter unavailable: {triton_lif._reason}")


@pytest.fixture
def interpreted(monkeypatch):
    _interpret(monkeypatch)
    yield


def test_interpreter_is_scoped_to_the_tests_that_ask_for_it():
    import os

    before_env, before_mod = os.environ.get("TRITON_INTERPRET"), triton_lif._kernels
    with pytest.MonkeyPatch.context() as mp:
        _interpret(mp)
        assert type(triton_lif._kernels.fwd_lif).__name__ == "InterpretedFunction"
    assert os.environ.get("TRITON_INTERPRET") == before_env
    assert triton_lif._kernels is before_mod


OPTIONS = list(itertools.product(["hard", "soft"], [True, False]))


# The fast tier runs every charge in float32 with one reset/detach option each, in turn (every
# surrogate: test_interpreted_every_surrogate_derivative); the slow tier, the whole float32 grid
# (every charge, reset and surrogate) and its float64 repeat.
@pytest.mark.rotate("reset,detach")
@pytest.mark.parametrize(
    "dtype",
    [torch.float32, pytest.param(torch.float64, marks=pytest.mark.slow)],
    ids=["f32", "f64"],
)
@pytest.mark.parametrize("reset,detach", OPTIONS, ids=str)
@pytest.mark.parametrize("kind", CHARGE_KINDS)
def test_interpreted_kernels_equal_reference(interpreted, kind, reset, detach, dtype):
    # every surrogate meets every charge across the grid (the index walks the surrogates)
    surrogate = SURR[(CHARGE_KINDS.index(kind) + 2 * OPTIONS.index((reset, detach))) % len(SURR)]
    fr = FireReset(0.8, -0.2, reset, surrogate, detach)
    x, v0, w = _data(dtype)
    dyn, params = _dynamics(kind, dtype)
    ref = _reference(x, v0, dyn, params, fr, w)
    got = _kernel(x, v0, dyn, fr, w)
    _check(got, ref, dtype)
    assert int(got[6]) == 0  # no non-finite flag


@pytest.mark.parametrize("surrogate", SURR, ids=lambda s: type(s).__name__)
def test_interpreted_every_surrogate_derivative(interpreted, surrogate):
    """Each surrogate's derivative as generated (division and exp included)."""
    fr = FireReset(0.8, -0.2, "hard", surrogate, False)
    x, v0, w = _data(torch.float32)
    dyn, _ = _dynamics("lif", torch.float32)
    _check(_kernel(x, v0, dyn, fr, w), _reference(x, v0, dyn, [], fr, w), torch.float32)


@pytest.mark.rotate("dtype")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("kind", ["lif", "klif-channel", "osc_lif", "plif"])
def test_interpreted_half_precision_computes_in_float32(interpreted, kind, dtype):
    fr = FireReset(0.8, -0.2, "soft", SURR[1], False)
    x, v0, w = _data(dtype)
    dyn, params = _dynamics(kind, dtype)
    dyn32, params32 = _dynamics(kind, torch.float32)
    if kind.startswith("osc"):  # the neuron's drive is in the input's precision: widen it
        dyn32.drive = dyn.drive.float()
    if params:  # likewise k (and PLIF's r)
        params32[0].data.copy_(params[0].detach().float())
    ref = _reference(x.float(), v0.float(), dyn32, params32, fr, [t.float() for t in w])
    s, v, h, gx, gv0, gk, _ = _kernel(x, v0, dyn, fr, w)
    assert s.dtype == dtype and gx.dtype == dtype
    assert torch.equal(s.float(), ref[0])  # same float32 arithmetic on the same values
    rel = 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
    tol = dict(rtol=rel, atol=rel)
    torch.testing.assert_close(h.float(), ref[2], **tol)
    torch.testing.assert_close(v.float(), ref[1], **tol)
    # the incoming gradients were rounded to the half type: compare at a few times that
    torch.testing.assert_close(gx.float(), ref[3], rtol=8 * rel, atol=8 * rel)
    torch.testing.assert_close(gv0.float(), ref[4], rtol=8 * rel, atol=8 * rel)
    for a, b in zip(gk, ref[5], strict=True):
        torch.testing.assert_close(a.float(), b, rtol=8 * rel, atol=8 * rel * b.abs().max())


def test_interpreted_nonfinite_flag_and_in_place_gradient(interpreted):
    fr = FireReset(0.8, -0.2, "hard", SURR[1], True)
    x, v0, w = _data(torch.float32)
    x[4, 1, 2, 3] = float("nan")
    dyn, _ = _dynamics("klif-layer", torch.float32)
    *_, flag = triton_lif.forward(x, v0, dyn.kernel_spec(), fr)
    assert int(flag) == 1
    x[4, 1, 2, 3] = -float("inf")  # ReLU hides it in the membrane: the saved value shows it
    *_, flag = triton_lif.forward(x, v0, dyn.kernel_spec(), fr)
    assert int(flag) == 1
    # an incoming gradient expanded over T (stride 0), written into the saved buffer
    x, v0, w = _data(torch.float64)
    dyn, _ = _dynamics("lif", torch.float64)
    _, _, saved, _, _ = triton_lif.forward(x, v0, dyn.kernel_spec(), fr)
    g2 = w[1].expand(x.shape)
    ref, _, _ = triton_lif.backward(
        saved.clone(), g2, None, None, dyn.kernel_spec(), fr, want_v0=False
    )
    gx, none, _ = triton_lif.backward(
        saved, g2, None, None, dyn.kernel_spec(), fr, want_v0=False, out=saved
    )
    assert none is None and gx.data_ptr() == saved.data_ptr()
    torch.testing.assert_close(gx, ref, rtol=0, atol=0)


def test_generated_source_divides_as_the_cuda_reference():
    """No plain float32 division in the generated kernels: by a scalar, a multiplication by
    its IEEE reciprocal (as PyTorch on CUDA); by a tensor, ``div_rn``."""
    src = triton_lif.source(interpret=False)
    body = src[src.index("def _rdiv") :]
    assert " / " not in body.replace("return a / b", "")  # only the float64 branch divides
    assert "div_rn" in src and "libdevice.exp" in src
    assert "inv_tau = tl.load(prm_ptr" in src and "* inv_tau)" in src


def test_interpreted_divides_by_tau_with_its_reciprocal(interpreted):
    """tau = 1.7: the kernel's h is the reference's with x / tau computed as x * (1/tau)."""
    fr = FireReset(0.8, -0.2, "soft", SURR[1], True)
    x, v0, _ = _data(torch.float32)
    dyn = LIFDynamics(1.7, -0.2, True)
    s, v, h, _, _ = triton_lif.forward(x, v0, dyn.kernel_spec(), fr, want_h=True)
    inv = torch.tensor(1.0) / torch.tensor(1.7)  # float32, IEEE
    u, hs = v0, []
    for t in range(x.shape[0]):
        hh = u + (x[t] - (u - -0.2)) * inv
        hs.append(hh)
        u = torch.sub(hh, (hh >= 0.8).float(), alpha=0.8)
    assert torch.equal(h, torch.stack(hs)) and torch.equal(v, u)


# ------------------------------------------------------------------------------------ CUDA


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("surrogate", SURR, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("reset,detach", OPTIONS, ids=str)
@pytest.mark.parametrize("kind", CHARGE_KINDS)
def test_triton_equals_reference_on_cuda(kind, reset, detach, surrogate, dtype):
    fr = FireReset(0.8, -0.2, reset, surrogate, detach)
    x, v0, w = _data(dtype, "cuda")
    dyn, params = _dynamics(kind, dtype, "cuda")
    ref = _reference(x, v0, dyn, params, fr, w)
    got = _kernel(x, v0, dyn, fr, w)
    _check(got, ref, dtype)


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_half_precision_on_cuda_runs_the_kernel(dtype):
    from spikeweave.functional.fused import select_backend

    x = torch.rand(6, 4, 8, device="cuda", dtype=dtype) * 2
    fr = sf.LIF().fire_reset()
    assert select_backend(x, LIFDynamics(2.0, 0.0, True), fr, "auto") == "triton"
    s = sf.LIF()(x)
    assert torch.equal(s.float(), sf.LIF(backend="reference")(x.float()))


@cuda
def test_training_step_makes_no_host_sync():
    """LIF, KLIF (per channel) and the oscillating LIF, forward + backward + Adam step, with
    PyTorch raising on any synchronising call."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        sf.TimeFolded(torch.nn.Linear(8, 16)),
        sf.LIF(),
        sf.TimeFolded(torch.nn.Linear(16, 16)),
        sf.KLIF(channels=16),
        sf.TimeFolded(torch.nn.Linear(16, 4)),
        sf.OscillatingLIF(),
    ).cuda()
    opt = torch.optim.Adam(net.parameters())
    x = torch.rand(10, 5, 8, device="cuda") * 2
    y = torch.randn(5, 4, device="cuda")

    def step():
        loss = ((net(x).mean(0) - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # first call: kernels compile, parameters and phases reach the device
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    finite.check_deferred()


@cuda
def test_nonfinite_input_on_cuda_is_an_input_error_deferred():
    x = torch.rand(5, 3, 4, device="cuda")
    x[2, 1, 1] = float("nan")
    with pytest.raises(sf.errors.InputError, match="LIF: input contains NaN or inf"):
        sf.LIF()(x)  # no sync: raised here if the flag has already arrived ...
        finite.check_deferred()  # ... else here, waiting for it
    finite.check_deferred()  # cleared
