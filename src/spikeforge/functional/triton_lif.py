"""Triton kernels for the built-in charges on CUDA: one pass over T each way.

Each program owns ``BLOCK`` neurons and walks them through time, keeping the membrane (forward)
or its gradient (backward) in registers; the forward writes spikes and the pre-reset potentials
``h``, the backward reads ``h`` and the incoming gradients and writes ``∂L/∂x`` (possibly into
``h``'s own buffer). Only float32 and float64 are handled; other dtypes use the PyTorch path.

Forward arithmetic follows what PyTorch itself does on CUDA, so spikes are bit-identical to the
reference there: division by the Python scalar ``tau`` is a multiplication by its reciprocal
(as ATen's CUDA ``div`` by a CPU scalar does), and FMA contraction is turned off.
"""

from __future__ import annotations

import math

import torch

from .cpu_kernel import _step_contiguous, backward_inputs, surrogate_code
from .dynamics import FireReset, KernelSpec

__all__ = ["available", "unavailable_reason", "supports", "forward", "backward"]

_reason: str | None = None
_kernels = None


def _build():
    import triton
    import triton.language as tl

    @triton.jit
    def _fwd(
        x_ptr, v0_ptr, s_ptr, h_ptr, vT_ptr, prm_ptr, T, N, x_ts,
        HAS_V0: tl.constexpr, CHARGE: tl.constexpr, SOFT: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        inv_tau = tl.load(prm_ptr + 0)
        vr = tl.load(prm_ptr + 1)
        th = tl.load(prm_ptr + 2)
        if HAS_V0:
            u = tl.load(v0_ptr + offs, mask=mask, other=0.0)
        else:
            u = tl.zeros([BLOCK], dtype=h_ptr.dtype.element_ty) + vr
        xp = x_ptr + offs  # 64-bit pointers advance by whole steps: no int32 overflow
        sp = s_ptr + offs
        hp = h_ptr + offs
        for _ in range(T):
            x = tl.load(xp, mask=mask, other=0.0)
            if CHARGE == 1:
                h = u + (x - (u - vr)) * inv_tau
            elif CHARGE == 2:
                h = u - (u - vr) * inv_tau + x
            else:
                h = u + x
            spike = (h - th) >= 0
            tl.store(sp, spike.to(h.dtype), mask=mask)
            tl.store(hp, h, mask=mask)
            if SOFT:
                u = tl.where(spike, h - th, h)
            else:
                u = tl.where(spike, vr, h)
            xp += x_ts
            sp += N
            hp += N
        tl.store(vT_ptr + offs, u, mask=mask)

    @triton.jit
    def _bwd(
        h_ptr, gs_ptr, ghe_ptr, gvT_ptr, tab_ptr, gx_ptr, gv0_ptr, prm_ptr, T, N, g_ts,
        HAS_GS: tl.constexpr, HAS_GHE: tl.constexpr, HAS_GVT: tl.constexpr,
        HAS_TAB: tl.constexpr, HAS_GV0: tl.constexpr, SOFT: tl.constexpr,
        DETACH: tl.constexpr, SG: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        vr = tl.load(prm_ptr + 1)
        th = tl.load(prm_ptr + 2)
        a = tl.load(prm_ptr + 3)
        c = tl.load(prm_ptr + 4)
        du = tl.load(prm_ptr + 5)
        dx = tl.load(prm_ptr + 6)
        if HAS_GVT:
            gu = tl.load(gvT_ptr + offs, mask=mask, other=0.0)
        else:
            gu = tl.zeros([BLOCK], dtype=h_ptr.dtype.element_ty)
        # the *_ptr of h, gs, ghe, tab and gx point at step T-1; walk back one step at a time
        hp = h_ptr + offs
        gsp = gs_ptr + offs
        ghp = ghe_ptr + offs
        tp = tab_ptr + offs
        gxp = gx_ptr + offs
        for _ in range(T):
            h = tl.load(hp, mask=mask, other=0.0)
            d = h - th
            sp = tl.where(d >= 0, 1.0, 0.0).to(h.dtype)
            if HAS_TAB:
                sg = tl.load(tp, mask=mask, other=0.0)
            elif SG == 0:
                e = 1.0 / (1.0 + tl.exp(-(a * d)))
                sg = a * e * (1.0 - e)
            elif SG == 1:
                z = c * d
                sg = (a / 2.0) / (1.0 + z * z)
            elif SG == 2:
                z = 1.0 + a * tl.abs(d)
                sg = (a / 2.0) / (z * z)
            elif SG == 3:
                sg = tl.where(tl.abs(d) < c, a, 0.0).to(h.dtype)
            else:
                sg = a * tl.maximum(1.0 - a * tl.abs(d), 0.0)
            if SOFT:
                if DETACH:
                    dudh = tl.zeros_like(h) + 1.0
                else:
                    dudh = 1.0 - th * sg
            else:
                if DETACH:
                    dudh = 1.0 - sp
                else:
                    dudh = (1.0 - sp) + (vr - h) * sg
            g = gu * dudh
            if HAS_GS:
                g = tl.load(gsp, mask=mask, other=0.0) * sg + g
            if HAS_GHE:
                g = g + tl.load(ghp, mask=mask, other=0.0)
            gu = g * du
            tl.store(gxp, g * dx, mask=mask)
            hp -= N
            gsp -= g_ts
            ghp -= N
            tp -= N
            gxp -= N
        if HAS_GV0:
            tl.store(gv0_ptr + offs, gu, mask=mask)

    return _fwd, _bwd


def _get():
    global _kernels, _reason
    if _kernels is None and _reason is None:
        try:
            _kernels = _build()
        except Exception as e:  # triton missing or broken: the PyTorch path takes over
            _reason = f"{type(e).__name__}: {e}"
    return _kernels


def available() -> bool:
    """True where CUDA and a working Triton are present."""
    if not torch.cuda.is_available():
        return False
    return _get() is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is False."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    _get()
    return _reason


def supports(x: torch.Tensor) -> bool:
    """Whether the kernel handles this input (float32/float64)."""
    return x.dtype in (torch.float32, torch.float64)


_BLOCK = 256
_CHARGES = {"if": 0, "lif": 1, "lif_nodecay": 2}


def _params(spec: KernelSpec, fr: FireReset, dtype: torch.dtype, device) -> torch.Tensor:
    # 1/tau in the tensor's precision, as ATen's CUDA division by a CPU scalar computes it
    inv_tau = torch.tensor(1.0, dtype=dtype) / torch.tensor(spec.tau, dtype=dtype)
    a = fr.surrogate.alpha
    from ..surrogate import Atan, Rectangular

    c = math.pi / 2 * a if isinstance(fr.surrogate, Atan) else 0.0
    if isinstance(fr.surrogate, Rectangular):
        c = 0.5 / a
    du = 1.0 if spec.kind == "if" else 1.0 - 1.0 / spec.tau
    dx = 1.0 / spec.tau if spec.kind == "lif" else 1.0
    vals = [float(inv_tau), fr.v_reset, fr.threshold, a, c, du, dx]
    return torch.tensor(vals, dtype=dtype, device=device)


def forward(x: torch.Tensor, v0: torch.Tensor | None, spec: KernelSpec, fr: FireReset):
    """``(spikes, v_last, h)`` for ``x [T, B, ...]``."""
    fwd, _ = _get()
    x = _step_contiguous(x)
    T, N = x.shape[0], x[0].numel()
    s = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    h = torch.empty_like(s)
    vT = torch.empty(x.shape[1:], dtype=x.dtype, device=x.device)
    v0c = v0.contiguous() if v0 is not None else vT
    prm = _params(spec, fr, x.dtype, x.device)
    grid = (max(1, -(-N // _BLOCK)),)
    fwd[grid](
        x, v0c, s, h, vT, prm, T, N, x.stride(0),
        HAS_V0=v0 is not None, CHARGE=_CHARGES[spec.kind], SOFT=fr.reset == "soft",
        BLOCK=_BLOCK, enable_fp_fusion=False,
    )  # fmt: skip
    return s, vT, h


def backward(h, g_spikes, g_h, g_vlast, spec: KernelSpec, fr: FireReset, *, want_v0, out=None):
    """``(∂L/∂x, ∂L/∂v0)``; ``out`` may be ``h`` itself."""
    _, bwd = _get()
    T, N = h.shape[0], h[0].numel()
    code = surrogate_code(fr.surrogate)
    table, g_spikes, g_h, g_vlast = backward_inputs(h, fr, g_spikes, g_h, g_vlast)
    gx = torch.empty_like(h) if out is None else out
    gv0 = torch.empty(h.shape[1:], dtype=h.dtype, device=h.device) if want_v0 else None
    prm = _params(spec, fr, h.dtype, h.device)
    grid = (max(1, -(-N // _BLOCK)),)
    dummy = h[T - 1]
    last = T - 1
    bwd[grid](
        h[last],
        g_spikes[last] if g_spikes is not None else dummy,
        g_h[last] if g_h is not None else dummy,
        g_vlast if g_vlast is not None else dummy,
        table[last] if table is not None else dummy,
        gx[last],
        gv0 if gv0 is not None else dummy,
        prm, T, N, g_spikes.stride(0) if g_spikes is not None else 0,
        HAS_GS=g_spikes is not None, HAS_GHE=g_h is not None, HAS_GVT=g_vlast is not None,
        HAS_TAB=table is not None, HAS_GV0=gv0 is not None, SOFT=fr.reset == "soft",
        DETACH=fr.detach_reset, SG=min(code, 4), BLOCK=_BLOCK,
    )  # fmt: skip
    return gx, gv0
