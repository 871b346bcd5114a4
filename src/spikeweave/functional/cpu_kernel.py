"""The compiled CPU kernel for every built-in charge (IF, LIF, KLIF, oscillating LIF, PLIF).

One pass over T each way. The C source is generated from the specs (:mod:`.c_codegen`), built
and cached once per machine and dtype (:mod:`.kernel_build`); this module fills the job the
library reads and calls it. It evaluates exactly the same floating-point operations as the
reference (:mod:`spikeweave.functional.neuron`), in the same order and without FMA
contraction, so spikes and potentials are bit-identical; it splits the neurons across
``torch.get_num_threads()`` threads and walks each block of neurons through time in cache. It
also flags non-finite values in its own pass, so the input needs no separate NaN/inf scan.
Where no compiler works, ``backend="auto"`` runs the fused loop in plain PyTorch ops, which
gives the same numbers.
"""

from __future__ import annotations

import ctypes
import math

import torch

from ..toolchain import c_compiler
from .backend import (
    SG_TABLE,
    CompiledBackend,
    backward_inputs,
    neuron_shape_tables,
    reduce_table_grad,
    step_contiguous,
    supports_spec,
    surrogate_code,
)
from .c_codegen import MAXP as _MAXP
from .c_codegen import MAXT as _MAXT
from .c_codegen import charge_index
from .dynamics import FireReset, KernelSpec
from .kernel_build import (
    CACHE_ENV,
    available,
    cache_dir,
    cache_root,
    library,
    reset,
    unavailable_reason,
)
from .spec import derived_values, surrogate_constants

__all__ = [
    "BACKEND",
    "CACHE_ENV",
    "available",
    "backward",
    "cache_dir",
    "cache_root",
    "forward",
    "reset",
    "supports",
    "supports_spec",
    "surrogate_code",
    "unavailable_reason",
]

# re-exported for callers of the former single module (the data cache, tests)
_ = (c_compiler, SG_TABLE, neuron_shape_tables, reduce_table_grad, supports_spec, surrogate_code)
_step_contiguous = step_contiguous


def supports(x: torch.Tensor) -> bool:
    """Whether the kernel handles this input (CPU, float32/float64)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _Job(ctypes.Structure):
    _fields_ = [
        ("T", ctypes.c_int64),
        ("N", ctypes.c_int64),
        ("M", ctypes.c_int64),
        ("x_ts", ctypes.c_int64),
        ("g_ts", ctypes.c_int64),
        ("next", ctypes.c_void_p),
        ("x", ctypes.c_void_p),
        ("v0", ctypes.c_void_p),
        ("s", ctypes.c_void_p),
        ("sv", ctypes.c_void_p),
        ("ho", ctypes.c_void_p),
        ("vT", ctypes.c_void_p),
        ("gs", ctypes.c_void_p),
        ("gh_extra", ctypes.c_void_p),
        ("gvT", ctypes.c_void_p),
        ("table", ctypes.c_void_p),
        ("gx", ctypes.c_void_p),
        ("gv0", ctypes.c_void_p),
        ("tab", ctypes.c_void_p * _MAXT),
        ("drv", ctypes.c_void_p * _MAXT),
        ("gp", ctypes.c_void_p * _MAXT),
        ("p", ctypes.c_double * _MAXP),
        ("sc", ctypes.c_double * 4),
        ("v_reset", ctypes.c_double),
        ("theta", ctypes.c_double),
        ("charge", ctypes.c_int32),
        ("soft", ctypes.c_int32),
        ("surrogate", ctypes.c_int32),
        ("detach", ctypes.c_int32),
        ("dtype", ctypes.c_int32),
        ("op", ctypes.c_int32),
        ("nonfinite", ctypes.c_int32),
    ]


def _threads(work: int) -> int:
    return max(1, torch.get_num_threads()) if work >= (1 << 15) else 1


def _pow2(tau: float) -> bool:
    """Whether ``1/tau`` is exact in float32 and float64 (tau a power of two, small exponent)."""
    m, e = math.frexp(tau)
    return m == 0.5 and -100 < e < 100


def _job(spec: KernelSpec, fr: FireReset, T: int, N: int, op: int) -> _Job:
    cs = spec.charge
    scal = spec.scalars
    vals = [float(scal[n]) for n in cs.scalars] + list(derived_values(cs, scal).values())
    job = _Job(T=T, N=N, v_reset=fr.v_reset, theta=fr.threshold, op=op)
    job.p[: len(vals)] = vals
    code = surrogate_code(fr.surrogate)
    if code != SG_TABLE:
        sc = list(surrogate_constants(fr.surrogate).values())
        job.sc[: len(sc)] = sc
    pow2 = bool(cs.pow2) and all(_pow2(float(scal[n])) for n in cs.pow2)
    job.charge = charge_index(spec.kind, pow2)
    job.soft = int(fr.reset == "soft")
    job.surrogate = code
    job.detach = int(fr.detach_reset)
    return job


def _set_tables(job: _Job, spec: KernelSpec, x_shape: torch.Size, dtype: torch.dtype) -> list:
    """Point the job at the spec's tables and drives; returns them (keep them alive)."""
    prepared = neuron_shape_tables(spec, x_shape, dtype)
    assert prepared is not None, "tables checked by supports_spec"
    tabs, drvs = prepared
    job.M = max(1, math.prod(x_shape[2:]))
    for i, t in enumerate(tabs):
        job.tab[i] = t.data_ptr()
    for i, d in enumerate(drvs):
        job.drv[i] = d.data_ptr()
    return tabs + drvs


def forward(
    x: torch.Tensor,
    v0: torch.Tensor | None,
    spec: KernelSpec,
    fr: FireReset,
    want_h: bool = False,
    save: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, bool]:
    """``(spikes, v_last, saved, h, nonfinite)`` for ``x [T, B, ...]`` from ``v0``.

    ``saved`` is what backward needs (the spec's ``save``: ``h`` itself for most charges, then
    ``h`` is the same tensor); ``h`` is None unless ``want_h`` or it is ``saved``. With
    ``save=False`` (nothing will run backward) no ``[T, B, ...]`` buffer is written for it.
    ``nonfinite`` is True if a saved value or the final membrane is not finite, which a NaN or
    inf anywhere in ``x`` always causes (it can also come from a non-finite ``v0`` or an
    overflow, so callers confirm on ``x`` before blaming the input).
    """
    lib = library(x.dtype)
    assert lib is not None, "cpu_kernel used where it is not available"
    x = step_contiguous(x)
    T = x.shape[0]
    N = x[0].numel()
    s = torch.empty(x.shape, dtype=x.dtype)
    same = spec.charge.save == "h"
    save = save or (want_h and same)
    sv = torch.empty(x.shape, dtype=x.dtype) if save else None
    ho = sv if same else (torch.empty(x.shape, dtype=x.dtype) if want_h else None)
    vT = torch.empty(x.shape[1:], dtype=x.dtype)
    if v0 is not None:
        v0 = v0.contiguous()
    job = _job(spec, fr, T, N, 0)
    keep = _set_tables(job, spec, x.shape, x.dtype)
    job.x_ts = x.stride(0)
    job.x, job.v0, job.s, job.sv, job.vT = _ptr(x), _ptr(v0), _ptr(s), _ptr(sv), _ptr(vT)
    job.ho = None if same else _ptr(ho)
    nonfinite = lib.sf_run(ctypes.addressof(job), _threads(T * N))
    del keep
    return s, vT, sv, ho, bool(nonfinite)


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
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor | None, ...]]:
    """``(∂L/∂x, ∂L/∂v0, ∂L/∂table per spec grad)`` from the saved values and the incoming
    gradients; table gradients are reduced to the tables' shapes (None where not wanted).

    ``out`` may be ``saved`` itself: each element is read before its gradient is written
    (and the previous step's ``h``, which a VJP reading ``u`` rebuilds it from, before its).
    ``x_dtype`` is accepted for the backends' common signature (here always ``saved``'s).
    ``x`` (the forward's input) and ``v0`` (its initial membrane, None: at ``v_reset``) are
    read where the spec's VJP reads the step's input or membrane.
    """
    lib = library(saved.dtype)
    assert lib is not None, "cpu_kernel used where it is not available"
    T = saved.shape[0]
    N = saved[0].numel()
    table, g_spikes, g_h, g_vlast = backward_inputs(
        saved, spec, fr, g_spikes, g_h, g_vlast, saved.dtype
    )
    gx = torch.empty_like(saved) if out is None else out
    gv0 = torch.empty(saved.shape[1:], dtype=saved.dtype) if want_v0 else None
    job = _job(spec, fr, T, N, 1)
    keep = _set_tables(job, spec, saved.shape, saved.dtype)
    cs = spec.charge
    gps: list[torch.Tensor | None] = []
    for i, name in enumerate(cs.grads):
        want = want_tables[i] if i < len(want_tables) else True
        gp = torch.empty(saved.shape[1:], dtype=saved.dtype) if want else None
        gps.append(gp)
        job.gp[cs.tables.index(name)] = _ptr(gp)
    job.g_ts = g_spikes.stride(0) if g_spikes is not None else 0
    job.sv, job.gs, job.gh_extra, job.gvT = _ptr(saved), _ptr(g_spikes), _ptr(g_h), _ptr(g_vlast)
    job.table, job.gx, job.gv0 = _ptr(table), _ptr(gx), _ptr(gv0)
    reads = cs.vjp_reads
    if "x" in reads:
        assert x is not None, f"charge {cs.name!r}: backward reads the input"
        x = step_contiguous(x.detach())
        job.x, job.x_ts = _ptr(x), x.stride(0)
    if "u" in reads and v0 is not None:
        v0 = v0.detach().contiguous()
        job.v0 = _ptr(v0)
    lib.sf_run(ctypes.addressof(job), _threads(T * N))
    del keep
    g_tabs = tuple(
        None if gp is None else reduce_table_grad(gp, spec.tables[cs.tables.index(n)], saved.shape)
        for gp, n in zip(gps, cs.grads, strict=True)
    )
    return gx, gv0, g_tabs


def _why_not(x: torch.Tensor) -> str | None:
    if not supports(x):
        return f"needs a float32/float64 CPU tensor, got {x.dtype} on {x.device}"
    if not available(x.dtype):
        return unavailable_reason(x.dtype)
    return None


BACKEND = CompiledBackend("cpu", forward, backward, _why_not)
"""This kernel as a :class:`~spikeweave.functional.backend.NeuronBackend`."""
