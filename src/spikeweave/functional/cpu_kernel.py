"""A compiled CPU kernel for every built-in charge (IF, LIF, KLIF, oscillating LIF): one pass
over T each way.

The C source is generated from the charge and surrogate specs of
:mod:`spikeweave.functional.spec` (one forward and one backward block function per charge,
plus a variant dividing by a power-of-two ``tau`` as a multiplication by its exact
reciprocal); nothing of a charge is written here by hand. Nothing is compiled at install time.
The first time a neuron runs on float32 (or float64) CPU tensors, the source is compiled for
that dtype with the system C compiler (``$CC``, else ``cc``/``gcc``) into a small shared
library, cached in ``kernels/`` under the spikeweave cache root (:func:`cache_root`:
``$SPIKEWEAVE_CACHE``, default ``~/.cache/spikeweave``) keyed by a hash of the source, the flags
and the CPU, and loaded with :mod:`ctypes`. No PyTorch headers are involved: the build takes
about 1.4 s of CPU time, once per machine and dtype. Where no compiler works,
``backend="auto"`` runs the fused loop in plain PyTorch ops, which gives the same numbers.
``SPIKEWEAVE_CPU_KERNEL=0`` turns it off.

The kernel evaluates exactly the same floating-point operations as the reference
(:mod:`spikeweave.functional.neuron`), in the same order and without FMA contraction, so spikes
and potentials are bit-identical; it splits the neurons across ``torch.get_num_threads()``
threads and walks each block of neurons through time in cache. It also flags non-finite
values in its own pass, so the input needs no separate NaN/inf scan.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

from ..surrogate import Surrogate
from .dynamics import FireReset, KernelSpec
from .spec import (
    CHARGES,
    SURROGATE_SPECS,
    ChargeSpec,
    c_expr,
    derived_values,
    surrogate_constants,
    torch_recompute,
)

__all__ = [
    "CACHE_ENV",
    "available",
    "backward",
    "cache_dir",
    "cache_root",
    "forward",
    "reset",
    "surrogate_code",
    "unavailable_reason",
]

_SURROGATES: dict[type, int] = {cls: sp.code for cls, sp in SURROGATE_SPECS.items()}
SG_TABLE = 5  # surrogate derivative precomputed by PyTorch and passed in
_MAXP = 8  # scalars + derived constants per charge
_MAXT = 2  # tables / drives per charge


def _vars(name: str) -> str:
    return "v_" + name


def _c_charge_functions(idx: int, cs: ChargeSpec, pow2: bool) -> str:
    """Forward and backward block functions for one charge, generated from its spec.

    ``pow2``: the variant used when the spec's ``pow2`` scalars are powers of two, where
    dividing by them is a multiplication by the exact reciprocal (same rounding, cheaper).
    """
    inv = {n: "inv_" + n for n in cs.pow2} if pow2 else {}
    consts = [f"const REAL v_{n} = (REAL)j->p[{i}];" for i, n in enumerate(cs.scalars)]
    consts += [
        f"const REAL v_{n} = (REAL)j->p[{len(cs.scalars) + i}];"
        for i, (n, _) in enumerate(cs.derived)
    ]
    consts += [f"const REAL inv_{n} = (REAL)1 / v_{n};" for n in inv]
    # tables and drive rows are laid out per block once (contiguous runs of the [M] rows), so
    # the loops over neurons read plain arrays and vectorise: no gather, no modulo
    consts += [
        f"REAL tb_{n}[SF_BS]; SFX(expand)((const REAL *)j->tab[{i}], j->M, nb, m, tb_{n});"
        for i, n in enumerate(cs.tables)
    ]
    if cs.drives:
        consts += [f"REAL dr_{n}[SF_BS];" for n in cs.drives]
    loads = [f"const REAL v_{n} = tb_{n}[i];" for n in cs.tables]
    loads += [f"const REAL v_{n} = dr_{n}[i];" for n in cs.drives]
    drive_rows = [
        f"SFX(expand)((const REAL *)j->drv[{i}] + t * j->M, j->M, nb, m, dr_{n});"
        for i, n in enumerate(cs.drives)
    ]

    def stmts(lst) -> str:
        return "\n".join(f"            REAL v_{v} = {c_expr(e, _vars, inv)};" for v, e in lst)

    nl = "\n    "
    nl3 = "\n            "
    save = cs.save
    fwd_body = f"""
            const REAL v_u = u[i], v_x = xt[i];
            {nl3.join(loads)}
{stmts(cs.forward)}
            int sp = (v_h - th) >= (REAL)0;
            st[i] = sp ? (REAL)1 : (REAL)0;
            svt[i] = v_{save};
            HOUT
            /* any NaN or inf reaching the saved value: the caller then looks at x */
            bad |= !(FABS(v_{save}) <= MAXV);
            /* after a spike: hard h*0 + v_reset = v_reset, soft h*1 + (-theta) = h - theta,
               both exactly as the reference rounds them (and inf becomes NaN, never finite) */
            u[i] = sp ? v_h * rs + rc : v_h;"""
    if save == "h":
        loops = f"for (int64_t i = 0; i < m; ++i) {{{fwd_body.replace('HOUT', '')}\n        }}"
    else:
        with_h = fwd_body.replace("HOUT", "hot[i] = v_h;")
        without = fwd_body.replace("HOUT", "")
        loops = (
            f"if (hot) for (int64_t i = 0; i < m; ++i) {{{with_h}\n        }}\n"
            f"        else for (int64_t i = 0; i < m; ++i) {{{without}\n        }}"
        )
    fwd = f"""
static int SFX(fwd_{idx})(const sf_job *j, int64_t nb, int64_t m) {{
    const REAL th = (REAL)j->theta, vr_ = (REAL)j->v_reset;
    {nl.join(consts)}
    const REAL rs = j->soft ? (REAL)1 : (REAL)0, rc = j->soft ? -th : vr_;
    const int64_t N = j->N;
    REAL u[SF_BS];
    const REAL *v0 = (const REAL *)j->v0;
    for (int64_t i = 0; i < m; ++i) u[i] = v0 ? v0[nb + i] : vr_;
    int bad = 0;
    REAL scratch[SF_BS];  /* where the saved values go when nothing will read them */
    for (int64_t t = 0; t < j->T; ++t) {{
        const REAL *restrict xt = (const REAL *)j->x + t * j->x_ts + nb;
        REAL *restrict st = (REAL *)j->s + t * N + nb;
        REAL *restrict svt = j->sv ? (REAL *)j->sv + t * N + nb : scratch;
        REAL *restrict hot = j->ho ? (REAL *)j->ho + t * N + nb : 0;
        {nl.join(drive_rows)}
        (void)hot;
        {loops}
    }}
    for (int64_t i = 0; i < m; ++i) bad |= !(FABS(u[i]) <= MAXV);
    if (j->vT) {{
        REAL *vT = (REAL *)j->vT;
        for (int64_t i = 0; i < m; ++i) vT[nb + i] = u[i];
    }}
    return bad;
}}
"""
    # backward: h from the saved value (recompute), the surrogate, the reset, then the VJP
    recompute = cs.recompute
    rec_loop = ""
    if recompute:
        rec_loop = f"""
        for (int64_t i = 0; i < m; ++i) {{
            const REAL v_{save} = svt[i];
            {nl3.join(loads)}
{stmts(recompute)}
            hb[i] = v_h;
        }}"""
    hsrc = "hb" if recompute else "svt"
    vjp_assign = ["gu[i] = v_gu;", "gxt[i] = v_gx;"]
    vjp_assign += [f"ga_{n}[i] += v_g_{n};" for n in cs.grads]
    grad_init = "".join(
        f"\n    REAL ga_{n}[SF_BS];\n    for (int64_t i = 0; i < m; ++i) ga_{n}[i] = (REAL)0;"
        for n in cs.grads
    )
    grad_out = "".join(
        f"\n    if (j->gp[{cs.tables.index(n)}]) for (int64_t i = 0; i < m; ++i) "
        f"((REAL *)j->gp[{cs.tables.index(n)}])[nb + i] = ga_{n}[i];"
        for n in cs.grads
    )
    bwd = f"""
static void SFX(bwd_{idx})(const sf_job *j, int64_t nb, int64_t m) {{
    const REAL th = (REAL)j->theta, vr_ = (REAL)j->v_reset;
    {nl.join(consts)}
    /* du/dh of the reset = A - B*s + K*(C - D*h)*g'; hard: 1 - s + K*(v_reset - h)*g',
       soft: 1 - K*theta*g'; K = 0 when the reset is detached */
    const int soft = j->soft;
    const REAL B = soft ? (REAL)0 : (REAL)1, C = soft ? -th : vr_, D = soft ? (REAL)0 : (REAL)1;
    const REAL K = j->detach ? (REAL)0 : (REAL)1;
    const int64_t N = j->N;
    REAL gu[SF_BS], g[SF_BS], sgb[SF_BS], hb[SF_BS];
    (void)hb;
    {grad_init}
    const REAL *gvT = (const REAL *)j->gvT;
    for (int64_t i = 0; i < m; ++i) gu[i] = gvT ? gvT[nb + i] : (REAL)0;
    for (int64_t t = j->T - 1; t >= 0; --t) {{
        const REAL *svt = (const REAL *)j->sv + t * N + nb;
        const REAL *gst = j->gs ? (const REAL *)j->gs + t * j->g_ts + nb : 0;
        const REAL *ghe = j->gh_extra ? (const REAL *)j->gh_extra + t * N + nb : 0;
        const REAL *sg = j->table ? (const REAL *)j->table + t * N + nb : sgb;
        REAL *gxt = (REAL *)j->gx + t * N + nb;
        {nl.join(drive_rows)}{rec_loop}
        const REAL *hp = {hsrc};
        if (!j->table) SFX(surrogate)(j->surrogate, hp, th, j->sc, sgb, m);
        for (int64_t i = 0; i < m; ++i) {{
            REAL hv = hp[i];
            REAL sp = (hv - th) >= (REAL)0 ? (REAL)1 : (REAL)0;
            REAL dudh = ((REAL)1 - B * sp) + K * (C - D * hv) * sg[i];
            g[i] = gu[i] * dudh;
        }}
        if (gst) for (int64_t i = 0; i < m; ++i) g[i] = gst[i] * sg[i] + g[i];
        if (ghe) for (int64_t i = 0; i < m; ++i) g[i] = g[i] + ghe[i];
        for (int64_t i = 0; i < m; ++i) {{
            const REAL v_g = g[i], v_h = hp[i];
            {"const REAL v_" + save + " = svt[i];" if save != "h" else ""}
            {nl3.join(loads)}
{stmts(cs.vjp)}
            {" ".join(vjp_assign)}
        }}
    }}
    if (j->gv0) {{
        REAL *gv0 = (REAL *)j->gv0;
        for (int64_t i = 0; i < m; ++i) gv0[nb + i] = gu[i];
    }}{grad_out}
}}
"""
    return fwd + bwd


_C_EXPAND = r"""
/* out[i] = row[(nb + i) % M] for i < m: the per-neuron row of a table, laid out for one
   block of neurons (the batch repeats it every M elements) */
static void SFX(expand)(const REAL *row, int64_t M, int64_t nb, int64_t m, REAL *out) {
    if (M == 1) {
        const REAL v = row[0];
        for (int64_t i = 0; i < m; ++i) out[i] = v;
        return;
    }
    int64_t off = nb % M, i = 0;
    while (i < m) {
        int64_t n = M - off < m - i ? M - off : m - i;
        memcpy(out + i, row + off, (size_t)n * sizeof(REAL));
        i += n;
        off = 0;
    }
}
"""


def _c_surrogates() -> str:
    """``g'(h - theta)`` for m neurons of one step, one case per built-in surrogate spec;
    constants ``sc`` as :func:`~spikeweave.functional.spec.surrogate_constants` orders them."""
    cases = []
    for sp in sorted(SURROGATE_SPECS.values(), key=lambda s: s.code):
        names = ["a", *(n for n, _ in sp.derived)]
        consts = " ".join(f"const REAL v_{n} = (REAL)sc[{i}];" for i, n in enumerate(names))
        body = "\n".join(f"                REAL v_{v} = {c_expr(e, _vars)};" for v, e in sp.stmts)
        cases.append(
            f"""    case {sp.code}: {{
        {consts}
        for (int64_t i = 0; i < m; ++i) {{
            const REAL v_d = h[i] - th;
{body}
            sg[i] = v_sg;
        }}
        break;
    }}"""
        )
    return f"""
static void SFX(surrogate)(int kind, const REAL *restrict h, REAL th, const double *sc,
                           REAL *restrict sg, int64_t m) {{
    switch (kind) {{
{chr(10).join(cases)}
    default: break;
    }}
}}
"""


_KINDS = list(CHARGES)  # kernel index 2*i: plain, 2*i + 1: power-of-two variant
_CHARGES = {name: i for i, name in enumerate(_KINDS)}


def _template() -> str:
    parts = [_C_EXPAND, _c_surrogates()]
    cases_f, cases_b = [], []
    for i, name in enumerate(_KINDS):
        for v in (0, 1):
            if v and not CHARGES[name].pow2:
                continue
            idx = 2 * i + v
            parts.append(_c_charge_functions(idx, CHARGES[name], bool(v)))
            cases_f.append(f"            case {idx}: bad |= SFX(fwd_{idx})(j, nb, m); break;")
            cases_b.append(f"            case {idx}: SFX(bwd_{idx})(j, nb, m); break;")
    nl = "\n"
    parts.append(
        f"""
/* Threads take blocks of SF_BS neurons from a shared counter until none is left, so a thread
   the OS preempts (other processes on the machine) delays the call by one block at most. */
static inline int64_t SFX(next_block)(sf_job *j) {{
    return __atomic_fetch_add(j->next, (int64_t)SF_BS, __ATOMIC_RELAXED);
}}

static void SFX(forward)(sf_job *j) {{
    int bad = 0;
    for (int64_t nb = SFX(next_block)(j); nb < j->N; nb = SFX(next_block)(j)) {{
        int64_t m = j->N - nb < SF_BS ? j->N - nb : SF_BS;
        switch (j->charge) {{
{nl.join(cases_f)}
            default: break;
        }}
    }}
    j->nonfinite = bad;
}}

static void SFX(backward)(sf_job *j) {{
    for (int64_t nb = SFX(next_block)(j); nb < j->N; nb = SFX(next_block)(j)) {{
        int64_t m = j->N - nb < SF_BS ? j->N - nb : SF_BS;
        switch (j->charge) {{
{nl.join(cases_b)}
            default: break;
        }}
    }}
}}
"""
    )
    return "".join(parts)


_HEADER = r"""
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>

#define SF_BS 4096
#define SF_VERSION @VERSION@
/* the spec language's functions; relu keeps NaN (as torch.relu does) */
#define SF_RELU(a) ((a) < (REAL)0 ? (REAL)0 : (a))
#define SF_POS(a) ((a) > (REAL)0 ? (REAL)1 : (REAL)0)
#define SF_LT(a, b) ((a) < (b) ? (REAL)1 : (REAL)0)
#define SF_MAX0(a) ((a) > (REAL)0 ? (a) : (REAL)0)

typedef struct {
    int64_t T, N, M, x_ts, g_ts;
    int64_t *next;  /* shared block counter */
    const void *x, *v0;
    void *s, *sv, *ho, *vT;
    const void *gs, *gh_extra, *gvT, *table;
    void *gx, *gv0;
    const void *tab[@MAXT@];
    const void *drv[@MAXT@];
    void *gp[@MAXT@];
    double p[@MAXP@];
    double sc[4];
    double v_reset, theta;
    int32_t charge, soft, surrogate, detach, dtype, op, nonfinite;
} sf_job;
"""

_FOOTER = r"""
static void sf_dispatch(sf_job *j) {
    if (j->op == 0) sf_k_forward(j); else sf_k_backward(j);
}

static void *sf_thread(void *p) { sf_dispatch((sf_job *)p); return 0; }

int sf_version(void) { return SF_VERSION; }

/* Run job over neurons [0, N) with nthreads threads (the caller's is one of them). Built with
   OpenMP where the compiler has it: the library then shares the process's libgomp, which is
   PyTorch's own thread pool on Linux builds, so the kernel's threads are the ones that just ran
   the previous PyTorch op (no thread creation, no oversubscription). Otherwise POSIX threads. */
int sf_run(const sf_job *job, int nthreads) {
    int64_t blocks = (job->N + SF_BS - 1) / SF_BS;
    if (nthreads > blocks) nthreads = (int)blocks;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    int64_t next = 0;
    int nonfinite = 0;
#ifdef _OPENMP
    if (nthreads > 1) {
#pragma omp parallel num_threads(nthreads)
        {
            sf_job jj = *job;
            jj.next = &next;
            jj.nonfinite = 0;
            sf_dispatch(&jj);
            if (jj.nonfinite) __atomic_fetch_or(&nonfinite, 1, __ATOMIC_RELAXED);
        }
        return nonfinite;
    }
#endif
    sf_job jobs[64];
    pthread_t tid[64];
    int started[64];
    for (int i = 0; i < nthreads; ++i) {
        jobs[i] = *job;
        jobs[i].next = &next;
        jobs[i].nonfinite = 0;
    }
    for (int i = 1; i < nthreads; ++i)
        started[i] = pthread_create(&tid[i], 0, sf_thread, &jobs[i]) == 0;
    sf_dispatch(&jobs[0]);
    nonfinite = jobs[0].nonfinite;
    for (int i = 1; i < nthreads; ++i) {
        if (started[i]) pthread_join(tid[i], 0);
        nonfinite |= jobs[i].nonfinite;
    }
    return nonfinite;  /* forward: 1 if the final membrane is not finite */
}

int sf_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
"""


_REALS = {
    torch.float32: ("float", "sf_expf", "fabsf", "FLT_MAX"),
    torch.float64: ("double", "sf_exp", "fabs", "DBL_MAX"),
}

# exp() that vectorises (libm's does not without -ffast-math): round-to-nearest by the
# "magic number" trick, a polynomial on |r| <= ln2/2, then 2^n built in the exponent bits.
# float: Cephes expf polynomial (~1 ulp); double: Taylor to degree 12 (rel. error < 1e-15).
_EXP = {
    torch.float32: r"""
static inline float sf_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    int32_t ti, mi; memcpy(&ti, &t, 4); memcpy(&mi, &magic, 4);
    int32_t bits = (ti - mi + 127) << 23;
    float sc; memcpy(&sc, &bits, 4);
    return y * sc;
}
""",
    torch.float64: r"""
static inline double sf_exp(double x) {
    x = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    double t = x * 1.4426950408889634074 + magic;
    double n = t - magic;
    double r = x - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    double y = p * (r * r) + r + 1.0;
    int64_t ti, mi; memcpy(&ti, &t, 8); memcpy(&mi, &magic, 8);
    int64_t bits = (ti - mi + 1023) << 52;
    double sc; memcpy(&sc, &bits, 8);
    return y * sc;
}
""",
}


def _source(dtype: torch.dtype) -> str:
    """The C source for one dtype (one small library per dtype: each compiles in ~0.5 s)."""
    real, exp, fabs, maxv = _REALS[dtype]
    header = _HEADER.replace("@VERSION@", str(_VERSION)).replace("@MAXT@", str(_MAXT))
    return (
        header.replace("@MAXP@", str(_MAXP))
        + _EXP[dtype]
        + f"#define REAL {real}\n#define MAXV {maxv}\n#define SFX(n) sf_k_##n\n"
        + f"#define EXP {exp}\n#define FABS {fabs}\n"
        + _template()
        + _FOOTER
    )


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


_BASE_FLAGS = [
    "-O3",
    "-shared",
    "-fPIC",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-pthread",
]
# tried in order until one compiles: OpenMP (shares PyTorch's thread pool) and the host's
# vector instructions first, then without each
_EXTRA_FLAGS = (["-march=native", "-fopenmp"], ["-march=native"], ["-fopenmp"], [])
_VERSION = 11
_lock = threading.Lock()
_libs: dict[torch.dtype, ctypes.CDLL | None] = {}
_reasons: dict[torch.dtype, str] = {}


CACHE_ENV = "SPIKEWEAVE_CACHE"
"""The environment variable naming the one folder all of spikeweave's caches live under."""


# The root is defined here rather than in spikeweave.data.cache (the frame cache, which uses it
# too) because `import spikeweave` loads this module anyway, while importing spikeweave.data
# pulls in scikit-learn (about a second) that the first neuron call should not pay for.
def cache_root() -> Path:
    """The folder spikeweave caches under: ``$SPIKEWEAVE_CACHE``, else
    ``$XDG_CACHE_HOME/spikeweave``, else ``~/.cache/spikeweave``.

    Each cache has a subfolder: ``kernels/`` (compiled CPU kernels), ``frames/`` (binned event
    frames, :mod:`spikeweave.data.cache`). Deleting the folder is always safe.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # expanduser("~") rather than Path.home(): it never raises when HOME cannot be determined.
    base = Path(xdg).expanduser() if xdg else Path(os.path.expanduser("~")) / ".cache"
    return base / "spikeweave"


def cache_dir() -> Path:
    """Where compiled kernels are cached: ``kernels/`` under :func:`cache_root`."""
    return cache_root() / "kernels"


def _cpu_fingerprint() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc):
        return cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


def _build(cc: str, src: str, out: Path) -> None:
    """Compile ``src`` into ``out``, trying ``-march=native`` first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        c_file = Path(tmp) / "sf_kernel.c"
        c_file.write_text(src)
        so = Path(tmp) / out.name
        errors = []
        for extra in _EXTRA_FLAGS:
            cmd = [cc, *_BASE_FLAGS, *extra, str(c_file), "-o", str(so), "-lm"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if proc.returncode == 0:
                os.replace(so, out)  # atomic: concurrent builders never see a partial file
                return
            errors.append(proc.stderr.strip().splitlines()[-1:] or ["?"])
        raise RuntimeError(f"{cc} failed: {errors}")


def _load(dtype: torch.dtype) -> ctypes.CDLL:
    if os.environ.get("SPIKEWEAVE_CPU_KERNEL", "1").lower() in ("0", "false", "off", "no"):
        raise RuntimeError("disabled by SPIKEWEAVE_CPU_KERNEL=0")
    if not sys.platform.startswith(("linux", "darwin")):
        raise RuntimeError(f"not supported on {sys.platform}")
    src = _source(dtype)
    key = hashlib.sha256(
        "\0".join(
            [src, " ".join(_BASE_FLAGS), repr(_EXTRA_FLAGS), platform.machine(), _cpu_fingerprint()]
        ).encode()
    ).hexdigest()[:16]
    path = cache_dir() / f"sf_kernel_{_REALS[dtype][0]}_{key}.so"
    if not path.exists():
        cc = _compiler()
        if cc is None:
            raise RuntimeError("no C compiler found (set $CC)")
        _build(cc, src, path)
    lib = ctypes.CDLL(str(path))
    lib.sf_run.argtypes = [ctypes.POINTER(_Job), ctypes.c_int]
    lib.sf_run.restype = ctypes.c_int
    if lib.sf_version() != _VERSION:
        raise RuntimeError("stale kernel library")
    return lib


def _get(dtype: torch.dtype) -> ctypes.CDLL | None:
    """The kernel library for ``dtype``, loading or compiling it on the first call."""
    if dtype in _libs:
        return _libs[dtype]
    with _lock:
        if dtype not in _libs:
            try:
                _libs[dtype] = _load(dtype)
            except Exception as e:  # any failure means: use the PyTorch fallback
                _libs[dtype] = None
                _reasons[dtype] = f"{type(e).__name__}: {e}"
    return _libs[dtype]


def available(dtype: torch.dtype = torch.float32) -> bool:
    """True if the kernel for ``dtype`` (float32 or float64) can be used.

    The first call per dtype loads the cached library or compiles it (about half a second,
    once per machine and source version).
    """
    return dtype in _REALS and _get(dtype) is not None


def unavailable_reason(dtype: torch.dtype = torch.float32) -> str | None:
    """Why :func:`available` is False (None when it is available)."""
    if dtype not in _REALS:
        return f"no kernel for {dtype}"
    available(dtype)
    return _reasons.get(dtype)


def reset() -> None:
    """Forget the loaded kernels so that the next call loads or builds them again (tests)."""
    with _lock:
        _libs.clear()
        _reasons.clear()


def surrogate_code(surrogate: Surrogate) -> int:
    """The kernel's code for a built-in surrogate; ``SG_TABLE`` for any other."""
    return _SURROGATES.get(type(surrogate), SG_TABLE)


def supports(x: torch.Tensor) -> bool:
    """Whether the kernel handles this input (CPU, float32/float64)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _step_contiguous(t: torch.Tensor) -> torch.Tensor:
    """``t [T, ...]`` with each step contiguous; the time stride may be anything, e.g. 0 for a
    gradient expanded over time or an input repeated with ``expand``, so those are not copied."""
    if t.shape[0] > 0 and t[0].is_contiguous():
        return t
    return t.contiguous()


def neuron_shape_tables(spec: KernelSpec, x_shape: torch.Size, dtype: torch.dtype):
    """The spec's tables as ``[M]`` and drives as ``[T, M]`` contiguous tensors in ``dtype``,
    ``M`` being one step's neuron count without the batch (``x.shape[2:]``); None if one of
    them does not broadcast to that shape (then no kernel runs it)."""
    shape = tuple(x_shape[2:])
    tabs, drvs = [], []
    try:
        for t in spec.tables:
            tabs.append(t.detach().to(dtype).expand(shape).contiguous().view(-1))
        for d in spec.drives:
            d = d.detach().to(dtype)
            if d.shape[0] < x_shape[0]:
                return None
            d = d[: x_shape[0]].expand(x_shape[0], *shape).contiguous()
            drvs.append(d.view(x_shape[0], -1))
    except RuntimeError:
        return None
    return tabs, drvs


def supports_spec(spec: KernelSpec, x: torch.Tensor) -> bool:
    """Whether the spec's tables and drives fit ``x [T, B, ...]`` (broadcast over the batch)."""
    if spec.kind not in CHARGES:
        return False
    shape = tuple(x.shape[2:])
    try:
        for t in spec.tables:
            if torch.broadcast_shapes(t.shape, shape) != shape:
                return False
        for d in spec.drives:
            if d.shape[0] < x.shape[0] or torch.broadcast_shapes(d.shape[1:], shape) != shape:
                return False
    except RuntimeError:
        return False
    return len(spec.tables) <= _MAXT and len(spec.drives) <= _MAXT


def reduce_table_grad(gp: torch.Tensor, param: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
    """An elementwise ``[N]`` parameter gradient (already summed over time) reduced to
    ``param``'s shape: summed over the batch, then over the axes ``param`` broadcasts along."""
    shape = tuple(x_shape[2:])
    g = gp.view(-1, max(1, math.prod(shape))).sum(0).view(shape)
    return g.sum_to_size(param.shape).to(param.dtype)


def backward_inputs(
    h: torch.Tensor,
    spec: KernelSpec,
    fr: FireReset,
    g_spikes: torch.Tensor | None,
    g_h: torch.Tensor | None,
    g_vlast: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """What every compiled backward reads besides the saved values ``h``: the surrogate table
    (only for surrogates the kernels do not know) and the incoming gradients in ``h``'s dtype
    and layout."""
    table = None
    if surrogate_code(fr.surrogate) == SG_TABLE:
        tables = dict(zip(spec.charge.tables, spec.tables, strict=True))
        hh = torch_recompute(spec.charge, h, spec.scalars, tables)
        table = fr.surrogate.derivative(hh - fr.threshold).contiguous()
    if g_spikes is not None:
        g_spikes = _step_contiguous(g_spikes.to(h.dtype))
    if g_h is not None:
        g_h = g_h.to(h.dtype).contiguous()
    if g_vlast is not None:
        g_vlast = g_vlast.to(h.dtype).contiguous()
    return table, g_spikes, g_h, g_vlast


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
    job.charge = 2 * _CHARGES[spec.kind] + int(pow2)
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
    lib = _get(x.dtype)
    assert lib is not None, "cpu_kernel used where it is not available"
    x = _step_contiguous(x)
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
    nonfinite = lib.sf_run(ctypes.byref(job), _threads(T * N))
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
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor | None, ...]]:
    """``(∂L/∂x, ∂L/∂v0, ∂L/∂table per spec grad)`` from the saved values and the incoming
    gradients; table gradients are reduced to the tables' shapes (None where not wanted).

    ``out`` may be ``saved`` itself: each element is read before its gradient is written.
    ``x_dtype`` is accepted for the backends' common signature (here always ``saved``'s).
    """
    lib = _get(saved.dtype)
    assert lib is not None, "cpu_kernel used where it is not available"
    T = saved.shape[0]
    N = saved[0].numel()
    table, g_spikes, g_h, g_vlast = backward_inputs(saved, spec, fr, g_spikes, g_h, g_vlast)
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
    lib.sf_run(ctypes.byref(job), _threads(T * N))
    del keep
    g_tabs = tuple(
        None if gp is None else reduce_table_grad(gp, spec.tables[cs.tables.index(n)], saved.shape)
        for gp, n in zip(gps, cs.grads, strict=True)
    )
    return gx, gv0, g_tabs
