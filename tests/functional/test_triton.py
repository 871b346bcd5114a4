"""The Triton kernels: against the reference on CUDA (skipped without a GPU), and in Triton's
CPU interpreter where Triton is installed without CUDA (skipped otherwise)."""

from __future__ import annotations

import itertools

import pytest
import torch

import spikeforge as sf
from spikeforge.functional import cpu_kernel, triton_lif
from spikeforge.functional.dynamics import FireReset, KernelSpec
from spikeforge.surrogate import SURROGATES, Surrogate

cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and triton_lif.available()),
    reason="needs a CUDA GPU with Triton",
)


class Erf(Surrogate):
    default_alpha = 2.0

    def derivative(self, x):
        return self.alpha / torch.pi**0.5 * torch.exp(-((self.alpha * x) ** 2))


SURR = [cls() for cls in SURROGATES.values()] + [Erf()]
CASES = [
    (k, d, r, dr)
    for (k, d), r, dr in itertools.product(
        [("lif", True), ("lif", False), ("if", True)], ["hard", "soft"], [True, False]
    )
]


def _make(kind, decay, reset, detach, surrogate, backend):
    kw = dict(
        threshold=0.8,
        v_reset=-0.2,
        reset=reset,
        surrogate=surrogate,
        detach_reset=detach,
        backend=backend,
    )
    return sf.IF(**kw) if kind == "if" else sf.LIF(tau=1.7, decay_input=decay, **kw)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("surrogate", SURR, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("kind,decay,reset,detach", CASES, ids=str)
def test_triton_equals_reference_on_cuda(kind, decay, reset, detach, surrogate, dtype):
    g = torch.Generator().manual_seed(0)
    T, shape = 9, (3, 2, 5)
    x = (torch.randn((T, *shape), generator=g) * 1.2 + 0.5).to(dtype).cuda()
    v0 = (torch.rand(shape, generator=g) * 0.6).to(dtype).cuda()
    w = torch.randn(x.shape, generator=g).to(dtype).cuda()
    outs = []
    for backend in ("triton", "reference"):
        xi, vi = x.clone().requires_grad_(), v0.clone().requires_grad_()
        s, v, h = _make(kind, decay, reset, detach, surrogate, backend)(
            xi, state=vi, return_state=True, return_membrane=True
        )
        ((s * w).sum() + v.sum() + (0.1 * h * w).sum()).backward()
        outs.append((s, v, h, xi.grad, vi.grad))
    got, ref = outs
    assert torch.equal(got[0], ref[0]) and torch.equal(got[2], ref[2])
    assert torch.equal(got[1], ref[1])
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[3], ref[3], **tol)
    torch.testing.assert_close(got[4], ref[4], **tol)


@cuda
def test_auto_uses_triton_on_cuda():
    from spikeforge.functional.dynamics import LIFDynamics
    from spikeforge.functional.fused import select_backend

    x = torch.rand(3, 2, 4, device="cuda")
    assert select_backend(x, LIFDynamics(2.0, 0.0, True), sf.LIF().fire_reset(), "auto") == (
        "triton"
    )


# --------------------------------------------------------- Triton's interpreter, on the CPU


@pytest.fixture
def interpreted(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the compiled kernels are tested instead")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # read when triton is first imported
    pytest.importorskip("triton")
    monkeypatch.setattr(triton_lif, "_kernels", None)
    monkeypatch.setattr(triton_lif, "_reason", None)
    if triton_lif._get() is None:
        pytest.skip(f"Triton interpreter unavailable: {triton_lif._reason}")
    yield


def _reciprocal_reference(x, v0, spec, fr):
    """The forward as PyTorch computes it on CUDA (division by a scalar = reciprocal mul)."""
    inv = torch.tensor(1.0, dtype=x.dtype) / torch.tensor(spec.tau, dtype=x.dtype)
    u, S, H = v0.clone(), [], []
    for t in range(x.shape[0]):
        if spec.kind == "lif":
            h = u + (x[t] - (u - fr.v_reset)) * inv
        elif spec.kind == "lif_nodecay":
            h = u - (u - fr.v_reset) * inv + x[t]
        else:
            h = u + x[t]
        s = (h - fr.threshold) >= 0
        u = (
            torch.where(s, fr.v_reset, h)
            if fr.reset == "hard"
            else torch.where(s, h - fr.threshold, h)
        )
        S.append(s.to(x.dtype))
        H.append(h)
    return torch.stack(S), u, torch.stack(H)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("surrogate", SURR, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("kind,decay,reset,detach", CASES, ids=str)
def test_triton_kernels_in_interpreter(interpreted, kind, decay, reset, detach, surrogate, dtype):
    if not cpu_kernel.available():
        pytest.skip("compares with the compiled CPU kernel")
    spec = KernelSpec({"lif": "lif" if decay else "lif_nodecay", "if": "if"}[kind], 1.7, -0.2)
    fr = FireReset(0.8, -0.2, reset, surrogate, detach)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(7, 3, 50, generator=g) * 1.2 + 0.5).to(dtype)
    v0 = (torch.rand(3, 50, generator=g) * 0.5).to(dtype)
    s, v, h = triton_lif.forward(x, v0, spec, fr)
    rs, rv, rh = _reciprocal_reference(x, v0, spec, fr)
    assert torch.equal(s, rs) and torch.equal(h, rh) and torch.equal(v, rv)
    gs, ghe = (torch.randn(x.shape, generator=g).to(dtype) for _ in range(2))
    gv = torch.randn(v0.shape, generator=g).to(dtype)
    gx, gv0 = triton_lif.backward(h, gs, ghe, gv, spec, fr, want_v0=True)
    cx, cv0 = cpu_kernel.backward(h, gs, ghe, gv, spec, fr, want_v0=True)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gx, cx, **tol)
    torch.testing.assert_close(gv0, cv0, **tol)
    # expanded incoming gradient (from mean over T), written into h's own buffer
    g2 = torch.randn(3, 50, generator=g).to(dtype).expand(7, 3, 50)
    cx2, _ = cpu_kernel.backward(h.clone(), g2, None, None, spec, fr, want_v0=False)
    gx2, none = triton_lif.backward(h, g2, None, None, spec, fr, want_v0=False, out=h)
    assert none is None and gx2.data_ptr() == h.data_ptr()
    torch.testing.assert_close(gx2, cx2, **tol)
