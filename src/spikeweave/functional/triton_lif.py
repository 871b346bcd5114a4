"""Triton kernels on CUDA, generated from the charge specs: one pass over T each way.

The kernel source is generated from :mod:`spikeweave.functional.spec` (every built-in charge
and surrogate derivative), written once per spec version into the kernel cache
(:func:`~spikeweave.functional.cpu_kernel.cache_dir`) and imported from there (Triton reads a
kernel's source from its file). Each program owns ``BLOCK`` neurons and walks them through
time, keeping the membrane (forward) or its gradient (backward) in registers.

Arithmetic, so that spikes and potentials are bit-identical to the PyTorch reference on CUDA:

- a division by one of the charge's scalars (``x / tau``) is a multiplication by its
  reciprocal, which is how PyTorch divides a CUDA tensor by a Python number (on an H200, IEEE
  division differed from the reference in float32 and float64 alike, and a float32 reciprocal
  computed as ``1f / tau_f`` in float32); the reciprocal is taken once from PyTorch's own
  division on the device (``ones / tau`` is exactly it), so it is the reference's, bit for bit;
- every other ``/`` (the surrogate derivatives' ``1 / tensor``, PyTorch's ``reciprocal``) is
  IEEE-rounded: ``tl.math.div_rn`` in float32 (Triton's plain float32 ``/`` is an approximate
  division), ``/`` in float64;
- no FMA contraction (``enable_fp_fusion=False`` on every launch);
- ``exp`` (the sigmoid surrogate) is libdevice's correctly rounded-to-1-ulp ``exp``, not the
  fast approximate one (the interpreter, which has no libdevice, uses ``tl.exp``).

float16 and bfloat16 inputs are computed in float32 inside (loads widen, stores round); the
saved potentials stay float32, so backward sees exactly the forward's spikes. Parameters live
on the device (one small tensor per parameter set, cached: no host→device copy per call), and
the kernel raises a device flag on a non-finite saved value instead of a host-side check
(:mod:`spikeweave.functional.finite` turns it into the ``InputError`` without a sync).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import threading

import torch

from .backend import (
    SG_TABLE,
    CompiledBackend,
    backward_inputs,
    neuron_shape_tables,
    reduce_table_grad,
    step_contiguous,
    surrogate_code,
)
from .dynamics import FireReset, KernelSpec
from .kernel_build import cache_dir
from .spec import (
    CHARGES,
    FIRE_RESET,
    SURROGATE_SPECS,
    ChargeSpec,
    derived_values,
    surrogate_constants,
    triton_expr,
)
from .template import render

__all__ = [
    "BACKEND",
    "available",
    "backward",
    "forward",
    "source",
    "supports",
    "unavailable_reason",
]

_reason: str | None = None
_kernels = None
_lock = threading.Lock()
_VERSION = 5
# neurons per program: 512 where there are enough neurons to fill the GPU with such blocks
# (on an H200, 512 ran the 16k-neuron T=500 net 3% faster than 256, 128 slower), else 256 so
# that small layers still spread over every multiprocessor; SPIKEWEAVE_TRITON_BLOCK forces one
_BLOCK_ENV = os.environ.get("SPIKEWEAVE_TRITON_BLOCK")
_NP = 8  # charge scalars + derived constants; then theta, v_reset, max finite, a, sc1..sc3,
# then the reciprocals of the charge scalars
_P_TH, _P_VR, _P_MAX, _P_SC = _NP, _NP + 1, _NP + 2, _NP + 3
_P_INV = _NP + 7


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _v(name: str) -> str:
    return "v_" + name


def _charge_kernels(cs: ChargeSpec) -> str:
    """Forward and backward Triton kernels for one charge."""
    n = cs.name
    nl = "\n        "
    loads = [f"v_{s} = tl.load(prm_ptr + {i}).to(CT)" for i, s in enumerate([*cs.scalars])] + [
        f"v_{s} = tl.load(prm_ptr + {len(cs.scalars) + i}).to(CT)"
        for i, (s, _) in enumerate(cs.derived)
    ]
    tabs = [
        f"v_{t} = tl.load(tab{i}_ptr + mi, mask=mask, other=0.0).to(CT)"
        for i, t in enumerate(cs.tables)
    ]
    drv_ptrs = [f"dp{i} = drv{i}_ptr + mi" for i in range(len(cs.drives))]
    drv_loads = [
        f"v_{d} = tl.load(dp{i}, mask=mask, other=0.0).to(CT)" for i, d in enumerate(cs.drives)
    ]
    drv_step_f = [f"dp{i} += M" for i in range(len(cs.drives))]
    drv_step_b = [f"dp{i} -= M" for i in range(len(cs.drives))]

    # ATen divides a CUDA tensor by a Python number as x * (1/b): the kernel multiplies by the
    # very reciprocal PyTorch uses (taken from PyTorch itself once, see _params), bit for bit
    inv = {sc: "inv_" + sc for sc in cs.scalars}
    loads += [
        f"inv_{sc} = tl.load(prm_ptr + {_P_INV + i}).to(CT)" for i, sc in enumerate(cs.scalars)
    ]

    def stmts(lst) -> str:
        return nl.join(f"v_{v} = {triton_expr(e, _v, inv)}" for v, e in lst)

    tab_args = "".join(f"tab{i}_ptr, " for i in range(len(cs.tables)))
    drv_args = "".join(f"drv{i}_ptr, " for i in range(len(cs.drives)))
    gp_args = "".join(f"gp{i}_ptr, " for i in range(len(cs.tables)))
    p = "\n    "
    rec = stmts(cs.recompute) if cs.recompute else f"v_h = v_{cs.save}"
    grads = [cs.tables.index(g) for g in cs.grads]
    ga_init = nl.join(f"ga{i} = tl.zeros([BLOCK], dtype=CT)" for i in grads)
    ga_acc = nl.join(
        f"ga{i} = ga{i} + v_g_{cs.tables[i]}" for i in grads if cs.tables[i] in cs.vjp_grads
    )
    width_pre, sg_arg, width_fire, width_acc = _width_fire(cs)
    ga_store = p.join(
        f"if HAS_GP:\n        tl.store(gp{i}_ptr + offs, ga{i}.to(gp{i}_ptr.dtype.element_ty), "
        "mask=mask)"
        for i in grads
    )

    def fr(expr: str) -> str:  # fire/reset: a constant still becomes a tensor of d's shape
        out = triton_expr(expr, _v)
        return out if any(c.isalpha() for c in out) else f"tl.zeros_like(d) + {out}"

    # a VJP reading the step's membrane u or input x (x_ptr, v0_ptr point at step T-1 and
    # the first membrane): u rebuilt from the previous step's h by the reset, as the forward
    # computed it, v0 (or v_reset) at the first step
    reads_init, reads = [], []
    if "u" in cs.vjp_reads:
        reads_init += [
            "if HAS_V0:",
            "    u0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(CT)",
            "else:",
            "    u0 = tl.zeros([BLOCK], dtype=CT) + vr_",
        ]
        reads += [
            "prev = (tl.zeros([BLOCK], dtype=tl.int32) + k) < T - 1  # a step before this one",
            "v_h = tl.load(svp - N, mask=mask & prev, other=0.0).to(CT)",
            f"v_s = {triton_expr(FIRE_RESET.fire, _v)}",
            "if SOFT:",
            f"    v_u = {triton_expr(FIRE_RESET.reset['soft'], _v)}",
            "else:",
            f"    v_u = {triton_expr(FIRE_RESET.reset['hard'], _v)}",
            "v_u = tl.where(prev, v_u, u0)",
        ]
    if "x" in cs.vjp_reads:
        reads_init += ["xp = x_ptr + offs"]
        reads += ["v_x = tl.load(xp, mask=mask, other=0.0).to(CT)", "xp -= x_ts"]

    return render(
        "triton_charge.py.tmpl",
        name=n,
        reads_init=p.join(reads_init),
        reads=nl.join(reads),
        tab_args=tab_args,
        drv_args=drv_args,
        gp_args=gp_args,
        p_th=_P_TH,
        p_vr=_P_VR,
        p_max=_P_MAX,
        p_sc=_P_SC,
        p_sc1=_P_SC + 1,
        p_sc2=_P_SC + 2,
        loads=p.join(loads),
        tabs=p.join(tabs),
        drv_ptrs=p.join(drv_ptrs),
        drv_loads=nl.join(drv_loads),
        drv_step_f=nl.join(drv_step_f),
        drv_step_b=nl.join(drv_step_b),
        charge=stmts(cs.forward),
        fire=triton_expr(FIRE_RESET.fire, _v),
        save=cs.save,
        reset_soft=triton_expr(FIRE_RESET.reset["soft"], _v),
        reset_hard=triton_expr(FIRE_RESET.reset["hard"], _v),
        ga_init=ga_init,
        rec=rec,
        distance=triton_expr(FIRE_RESET.distance, _v),
        dreset_soft_detach=fr(FIRE_RESET.dreset[("soft", True)]),
        dreset_soft=fr(FIRE_RESET.dreset[("soft", False)]),
        dreset_hard_detach=fr(FIRE_RESET.dreset[("hard", True)]),
        dreset_hard=fr(FIRE_RESET.dreset[("hard", False)]),
        vjp=stmts(cs.vjp),
        ga_acc=ga_acc,
        ga_store=ga_store,
        width_pre=width_pre,
        sg_arg=sg_arg,
        width_fire=width_fire,
        width_acc=width_acc,
    )


def _width_fire(cs: ChargeSpec) -> tuple[str, str, str, str]:
    """For a charge with a learnable width ``w`` (:attr:`ChargeSpec.width`), from
    :data:`FIRE_RESET`: the surrogate's argument ``scaled``, ``sg`` turned into ``dspike``
    with ``v_sw = dspike_dw``, and ``∂L/∂s·v_sw`` (the spike's gradient plus ``gu·dreset_ds``
    where the reset is not detached) summed into ``w``'s accumulator. Plain charges: the
    surrogate at ``d`` and nothing else."""
    if cs.width is None:
        return "", "d", "", ""
    nl = "\n        "
    width_pre = nl + "v_d = d"
    width_fire = (
        nl + "v_sgw = sg"
        + nl + f"sg = {triton_expr(FIRE_RESET.dspike, _v)}"
        + nl + f"v_sw = {triton_expr(FIRE_RESET.dspike_dw, _v)}"
    )  # fmt: skip
    acc = [
        "# dL/ds (the spike's own gradient, plus the reset path's unless detached) times ds/dw",
        "gsw = tl.zeros([BLOCK], dtype=CT)",
        "if HAS_GS:",
        "    gsw = tl.load(gsp, mask=mask, other=0.0).to(CT)",
    ]
    for soft, mode in enumerate(("hard", "soft")):
        acc.append("if SOFT:" if soft else "if not SOFT:")
        for detach in (False, True):
            ds = FIRE_RESET.dreset_ds[(mode, detach)]
            acc.append("    if DETACH:" if detach else "    if not DETACH:")
            step = "pass" if ds is None else f"gsw = gsw + gu * {triton_expr(ds, _v)}"
            acc.append("        " + step)
    acc.append(f"ga{cs.tables.index(cs.width)} = ga{cs.tables.index(cs.width)} + gsw * v_sw")
    return width_pre, triton_expr(FIRE_RESET.scaled, _v), width_fire, nl + nl.join(acc)


def _surrogate_helper() -> str:
    cases = []
    for i, sp in enumerate(sorted(SURROGATE_SPECS.values(), key=lambda s: s.code)):
        names = [n for n, _ in sp.derived]
        binds = "".join(f"\n        v_{nm} = s{j + 1}" for j, nm in enumerate(names))
        body = "".join(f"\n        v_{v} = {triton_expr(e, _v)}" for v, e in sp.stmts)
        kw = "if" if i == 0 else "elif"
        cases.append(f"    {kw} SG == {sp.code}:\n        v_d = d\n        v_a = sa{binds}{body}")
    return (
        "\n@triton.jit\ndef _surrogate(d, sa, s1, s2, SG: tl.constexpr):\n"
        + "\n".join(cases)
        + "\n    else:\n        v_sg = tl.zeros_like(d)\n    return v_sg\n"
    )


def source(interpret: bool | None = None) -> str:
    """The generated Triton module (every charge's kernels, the surrogates, the helpers)."""
    interpret = _interpreting() if interpret is None else interpret
    exp = "tl.exp(a)" if interpret else "libdevice.exp(a)"
    return render(
        "triton_module.py.tmpl",
        exp=exp,
        surrogate=_surrogate_helper(),
        kernels="".join(_charge_kernels(cs) for cs in CHARGES.values()),
    )


def _build():
    import triton  # noqa: F401  (fails here, cleanly, where Triton is missing)

    src = source()
    key = hashlib.sha256(f"{_VERSION}\0{src}".encode()).hexdigest()[:16]
    path = cache_dir() / f"sf_triton_{key}.py"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(src)
        os.replace(tmp, path)  # atomic: concurrent builders never see a partial file
    name = f"spikeweave_triton_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # Triton resolves the kernels' globals through their module
    spec.loader.exec_module(mod)
    return mod


def _get():
    global _kernels, _reason
    if _kernels is None and _reason is None:
        with _lock:
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
    """Whether the kernel handles this input dtype (float16/bfloat16 computed in float32)."""
    return x.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


_params_cache: dict[tuple, torch.Tensor] = {}


def _params(spec: KernelSpec, fr: FireReset, dtype: torch.dtype, device) -> torch.Tensor:
    """The kernel's constants as a device tensor, made once per value set and device (a
    host→device copy per call would synchronise)."""
    cs = spec.charge
    vals = [float(spec.scalars[n]) for n in cs.scalars]
    vals += list(derived_values(cs, spec.scalars).values())
    vals += [0.0] * (_NP - len(vals))
    maxv = torch.finfo(dtype).max
    sc = [0.0] * 4
    if surrogate_code(fr.surrogate) != SG_TABLE:
        got = list(surrogate_constants(fr.surrogate).values())
        sc[: len(got)] = got
    vals += [fr.threshold, fr.v_reset, maxv, *sc]
    key = (tuple(vals), dtype, str(device))
    prm = _params_cache.get(key)
    if prm is None:
        if len(_params_cache) > 256:
            _params_cache.clear()
        prm = torch.tensor(vals + [1.0] * len(cs.scalars), dtype=dtype).to(device)
        for i, name in enumerate(cs.scalars):
            # 1 / tau by PyTorch's own division on this device: 1 · (1/tau) is exactly the
            # reciprocal the reference multiplies by, however PyTorch rounds it
            prm[_P_INV + i] = torch.ones((), dtype=dtype, device=device) / float(spec.scalars[name])
        _params_cache[key] = prm
    return prm


def _block(N: int) -> int:
    if _BLOCK_ENV:
        return int(_BLOCK_ENV)
    return 512 if N >= 1 << 17 else 256


def forward(
    x: torch.Tensor,
    v0: torch.Tensor | None,
    spec: KernelSpec,
    fr: FireReset,
    want_h: bool = False,
    save: bool = True,
):
    """``(spikes, v_last, saved, h or None, flag)`` for ``x [T, B, ...]``; ``flag`` is a 0-dim
    int32 device tensor, nonzero if a saved value or the final membrane is not finite.
    ``save`` is accepted for the backends' common signature (the saved values are always
    written here)."""
    mod = _get()
    cs = spec.charge
    x = step_contiguous(x)
    T, N = x.shape[0], x[0].numel()
    ct = _compute_dtype(x.dtype)
    s = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    sv = torch.empty(x.shape, dtype=ct, device=x.device)
    same = cs.save == "h" and ct == x.dtype
    ho = sv if same else (torch.empty_like(s) if want_h else None)
    vT = torch.empty(x.shape[1:], dtype=x.dtype, device=x.device)
    v0c = v0.contiguous() if v0 is not None else vT
    flag = torch.zeros((), dtype=torch.int32, device=x.device)
    tabs, drvs = neuron_shape_tables(spec, x.shape, ct)  # type: ignore[misc]
    M = max(1, math.prod(x.shape[2:]))
    import triton.language as tl

    block = _block(N)
    getattr(mod, f"fwd_{cs.name}")[(max(1, -(-N // block)),)](
        x, v0c, s, sv, ho if ho is not None and ho is not sv else sv, vT,
        _params(spec, fr, ct, x.device), *tabs, *drvs, flag, T, N, M, x.stride(0),
        HAS_V0=v0 is not None, HAS_HO=ho is not None and ho is not sv,
        SOFT=fr.reset == "soft", BLOCK=block,
        CT=tl.float64 if ct == torch.float64 else tl.float32, enable_fp_fusion=False,
    )  # fmt: skip
    return s, vT, sv, ho, flag


def backward(
    saved: torch.Tensor,
    g_spikes: torch.Tensor | None,
    g_h: torch.Tensor | None,
    g_vlast: torch.Tensor | None,
    spec: KernelSpec,
    fr: FireReset,
    *,
    want_v0: bool,
    want_tables: tuple[bool, ...] = (),
    out: torch.Tensor | None = None,
    x_dtype: torch.dtype | None = None,
    x: torch.Tensor | None = None,
    v0: torch.Tensor | None = None,
):
    """``(∂L/∂x, ∂L/∂v0, ∂L/∂table per spec grad)``; ``out`` may be ``saved`` itself (when
    the dtypes agree). Gradients come in ``x_dtype`` (default: the saved values' dtype).
    ``x`` (the forward's input) and ``v0`` (its initial membrane, None: at ``v_reset``) are
    read where the spec's VJP reads the step's input or membrane."""
    mod = _get()
    cs = spec.charge
    T, N = saved.shape[0], saved[0].numel()
    x_dtype = x_dtype or saved.dtype
    table, g_spikes, g_h, g_vlast = backward_inputs(saved, spec, fr, g_spikes, g_h, g_vlast)
    if out is not None and out.dtype != x_dtype:
        out = None
    gx = torch.empty(saved.shape, dtype=x_dtype, device=saved.device) if out is None else out
    gv0 = torch.empty(saved.shape[1:], dtype=x_dtype, device=saved.device) if want_v0 else None
    ct = saved.dtype
    tabs, drvs = neuron_shape_tables(spec, saved.shape, ct)  # type: ignore[misc]
    want_gp = any(want_tables) if want_tables else bool(cs.grads)
    gps = [
        torch.empty(saved.shape[1:], dtype=ct, device=saved.device) if want_gp else None
        for _ in cs.tables
    ]
    M = max(1, math.prod(saved.shape[2:]))
    last = T - 1
    dummy = saved[last]
    import triton.language as tl

    if "x" in cs.vjp_reads:
        assert x is not None, f"charge {cs.name!r}: backward reads the input"
        x = step_contiguous(x.detach())
    x_last = x[last] if x is not None and "x" in cs.vjp_reads else dummy
    v0c = v0.detach().contiguous() if v0 is not None and "u" in cs.vjp_reads else None
    block = _block(N)
    getattr(mod, f"bwd_{cs.name}")[(max(1, -(-N // block)),)](
        saved[last],
        g_spikes[last] if g_spikes is not None else dummy,
        g_h[last] if g_h is not None else dummy,
        g_vlast if g_vlast is not None else dummy,
        table[last] if table is not None else dummy,
        gx[last],
        gv0 if gv0 is not None else dummy,
        _params(spec, fr, ct, saved.device),
        x_last,
        v0c if v0c is not None else dummy,
        *tabs,
        *[d[last] for d in drvs],
        *[gp if gp is not None else dummy for gp in gps],
        T, N, M, g_spikes.stride(0) if g_spikes is not None else 0,
        x.stride(0) if x is not None and "x" in cs.vjp_reads else 0,
        HAS_GS=g_spikes is not None, HAS_GHE=g_h is not None, HAS_GVT=g_vlast is not None,
        HAS_TAB=table is not None, HAS_GV0=gv0 is not None, HAS_GP=want_gp,
        SOFT=fr.reset == "soft", DETACH=fr.detach_reset, SG=min(surrogate_code(fr.surrogate), 4),
        HAS_V0=v0c is not None,
        BLOCK=block, CT=tl.float64 if ct == torch.float64 else tl.float32,
        enable_fp_fusion=False,
    )  # fmt: skip
    g_tabs = []
    for i, name in enumerate(cs.grads):
        j = cs.tables.index(name)
        wanted = gps[j] is not None and (not want_tables or want_tables[i])
        g_tabs.append(reduce_table_grad(gps[j], spec.tables[j], saved.shape) if wanted else None)
    return gx, gv0, tuple(g_tabs)


def _why_not(x: torch.Tensor) -> str | None:
    if x.device.type != "cuda":
        return f"needs a CUDA tensor, got one on {x.device}"
    if not available():
        return unavailable_reason()
    if not supports(x):
        return f"unsupported dtype {x.dtype}"
    return None


BACKEND = CompiledBackend("triton", forward, backward, _why_not)
"""This kernel as a :class:`~spikeweave.functional.backend.NeuronBackend`."""
