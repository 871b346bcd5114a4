"""A compiled CPU kernel for the built-in charges (IF, LIF): one pass over T each way.

Nothing is compiled at install time. The first time a neuron runs on float32 (or float64) CPU
tensors, the C source below is compiled for that dtype with the system C compiler (``$CC``,
else ``cc``/``gcc``) into a small shared library, cached in ``kernels/`` under the spikeforge
cache root (:func:`cache_root`: ``$SPIKEFORGE_CACHE``, default ``~/.cache/spikeforge``) keyed by
a hash of the source, the flags and the CPU, and loaded with :mod:`ctypes`. No PyTorch headers
are involved, so the build takes about half a second, once per machine. Where no compiler works,
``backend="auto"`` runs the fused loop in plain PyTorch ops, which gives the same numbers.
``SPIKEFORGE_CPU_KERNEL=0`` turns it off.

The kernel evaluates exactly the same floating-point operations as the reference
(:mod:`spikeforge.functional.neuron`), in the same order and without FMA contraction, so spikes
and potentials are bit-identical; it splits the neurons across ``torch.get_num_threads()``
POSIX threads and walks each block of neurons through time in cache. It also flags non-finite
results, so the input needs no separate NaN/inf scan.
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

from ..surrogate import Atan, FastSigmoid, Rectangular, Sigmoid, Surrogate, Triangle
from .dynamics import FireReset, KernelSpec

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

_CHARGES = {"if": 0, "lif": 1, "lif_nodecay": 2}
_SURROGATES: dict[type, int] = {Sigmoid: 0, Atan: 1, FastSigmoid: 2, Rectangular: 3, Triangle: 4}
SG_TABLE = 5  # surrogate derivative precomputed by PyTorch and passed in

_TEMPLATE = r"""
/* ch 1, 2: LIF as in functional/neuron.py; ch 3, 4: the same when tau is a power of two, where
   multiplying by the exact reciprocal rounds identically to dividing (and is much cheaper). */
static inline REAL SFX(charge)(int ch, REAL u, REAL x, REAL tau, REAL inv, REAL vr) {
    if (ch == 1) return u + (x - (u - vr)) / tau;
    if (ch == 2) return u - (u - vr) / tau + x;
    if (ch == 3) return u + (x - (u - vr)) * inv;
    if (ch == 4) return u - (u - vr) * inv + x;
    return u + x;
}

static inline __attribute__((always_inline)) int SFX(fwd_block)(
    const sf_job *j, int64_t nb, int64_t m, const int ch)
{
    const REAL tau = (REAL)j->tau, vr = (REAL)j->v_reset, th = (REAL)j->theta;
    const REAL inv = (REAL)1 / tau;
    const REAL rs = j->soft ? (REAL)1 : (REAL)0, rc = j->soft ? -th : vr;
    const int64_t N = j->N;
    REAL u[SF_BS];
    const REAL *v0 = (const REAL *)j->v0;
    for (int64_t i = 0; i < m; ++i) u[i] = v0 ? v0[nb + i] : vr;
    int bad = 0;
    for (int64_t t = 0; t < j->T; ++t) {
        const REAL *restrict xt = (const REAL *)j->x + t * j->x_ts + nb;
        REAL *restrict st = (REAL *)j->s + t * N + nb;
        REAL *restrict ht = (REAL *)j->h + t * N + nb;
        for (int64_t i = 0; i < m; ++i) {
            REAL hv = SFX(charge)(ch, u[i], xt[i], tau, inv, vr);
            int sp = (hv - th) >= (REAL)0;
            st[i] = sp ? (REAL)1 : (REAL)0;
            ht[i] = hv;
            /* after a spike: hard hv*0 + v_reset = v_reset, soft hv*1 + (-theta) = hv - theta,
               both exactly as the reference rounds them */
            u[i] = sp ? hv * rs + rc : hv;
        }
    }
    /* a NaN or inf anywhere in x leaves the final membrane non-finite (NaN and inf never
       leave the state again), so one look at the last state flags it */
    for (int64_t i = 0; i < m; ++i) bad |= !(FABS(u[i]) <= MAXV);
    if (j->vT) {
        REAL *vT = (REAL *)j->vT;
        for (int64_t i = 0; i < m; ++i) vT[nb + i] = u[i];
    }
    return bad;
}

/* Threads take blocks of SF_BS neurons from a shared counter until none is left, so a thread
   the OS preempts (other processes on the machine) delays the call by one block at most. */
static inline int64_t SFX(next_block)(sf_job *j) {
    return __atomic_fetch_add(j->next, (int64_t)SF_BS, __ATOMIC_RELAXED);
}

static void SFX(forward)(sf_job *j) {
    int bad = 0;
    for (int64_t nb = SFX(next_block)(j); nb < j->N; nb = SFX(next_block)(j)) {
        int64_t m = j->N - nb < SF_BS ? j->N - nb : SF_BS;
        switch (j->charge) {
            case 0: bad |= SFX(fwd_block)(j, nb, m, 0); break;
            case 1: bad |= SFX(fwd_block)(j, nb, m, 1); break;
            case 2: bad |= SFX(fwd_block)(j, nb, m, 2); break;
            case 3: bad |= SFX(fwd_block)(j, nb, m, 3); break;
            default: bad |= SFX(fwd_block)(j, nb, m, 4); break;
        }
    }
    j->nonfinite = bad;
}

/* surrogate derivative g'(h - theta) for m neurons of one step; constants as surrogate.py
   computes them in double (c: atan pi/2*alpha, rectangular 0.5/alpha) */
static void SFX(surrogate)(int kind, const REAL *restrict h, REAL th, REAL a, REAL c,
                           REAL *restrict sg, int64_t m) {
    const REAL half_a = a / (REAL)2;
    switch (kind) {
    case 0:
        for (int64_t i = 0; i < m; ++i) {
            REAL e = (REAL)1 / ((REAL)1 + EXP(-(a * (h[i] - th))));
            sg[i] = a * e * ((REAL)1 - e);
        }
        break;
    case 1:
        for (int64_t i = 0; i < m; ++i) {
            REAL z = c * (h[i] - th); sg[i] = half_a / ((REAL)1 + z * z);
        }
        break;
    case 2:
        for (int64_t i = 0; i < m; ++i) {
            REAL z = (REAL)1 + a * FABS(h[i] - th); sg[i] = half_a / (z * z);
        }
        break;
    case 3:
        for (int64_t i = 0; i < m; ++i) sg[i] = FABS(h[i] - th) < c ? a : (REAL)0;
        break;
    default:
        for (int64_t i = 0; i < m; ++i) {
            REAL z = (REAL)1 - a * FABS(h[i] - th); sg[i] = a * (z > (REAL)0 ? z : (REAL)0);
        }
        break;
    }
}

static void SFX(bwd_block)(const sf_job *j, int64_t nb, int64_t m)
{
    const REAL vr = (REAL)j->v_reset, th = (REAL)j->theta;
    const REAL a = (REAL)j->alpha, c = (REAL)j->alpha_c;
    const REAL du = (REAL)j->du, dx = (REAL)j->dx;
    /* du/dh of the reset = A - B*s + K*(C - D*h)*g'; hard: 1 - s + K*(v_reset - h)*g',
       soft: 1 - K*theta*g'; K = 0 when the reset is detached */
    const int soft = j->soft;
    const REAL B = soft ? (REAL)0 : (REAL)1, C = soft ? -th : vr, D = soft ? (REAL)0 : (REAL)1;
    const REAL K = j->detach ? (REAL)0 : (REAL)1;
    const int64_t N = j->N;
    REAL gu[SF_BS], g[SF_BS], sgb[SF_BS];
    const REAL *gvT = (const REAL *)j->gvT;
    for (int64_t i = 0; i < m; ++i) gu[i] = gvT ? gvT[nb + i] : (REAL)0;
    for (int64_t t = j->T - 1; t >= 0; --t) {
        const REAL *ht = (const REAL *)j->h + t * N + nb;
        const REAL *gst = j->gs ? (const REAL *)j->gs + t * j->g_ts + nb : 0;
        const REAL *ghe = j->gh_extra ? (const REAL *)j->gh_extra + t * N + nb : 0;
        const REAL *sg = j->table ? (const REAL *)j->table + t * N + nb : sgb;
        REAL *gxt = (REAL *)j->gx + t * N + nb;
        if (!j->table) SFX(surrogate)(j->surrogate, ht, th, a, c, sgb, m);
        for (int64_t i = 0; i < m; ++i) {
            REAL hv = ht[i];
            REAL sp = (hv - th) >= (REAL)0 ? (REAL)1 : (REAL)0;
            REAL dudh = ((REAL)1 - B * sp) + K * (C - D * hv) * sg[i];
            g[i] = gu[i] * dudh;
        }
        if (gst) for (int64_t i = 0; i < m; ++i) g[i] = gst[i] * sg[i] + g[i];
        if (ghe) for (int64_t i = 0; i < m; ++i) g[i] = g[i] + ghe[i];
        for (int64_t i = 0; i < m; ++i) gu[i] = g[i] * du;
        for (int64_t i = 0; i < m; ++i) gxt[i] = g[i] * dx;
    }
    if (j->gv0) {
        REAL *gv0 = (REAL *)j->gv0;
        for (int64_t i = 0; i < m; ++i) gv0[nb + i] = gu[i];
    }
}

static void SFX(backward)(sf_job *j) {
    for (int64_t nb = SFX(next_block)(j); nb < j->N; nb = SFX(next_block)(j)) {
        int64_t m = j->N - nb < SF_BS ? j->N - nb : SF_BS;
        SFX(bwd_block)(j, nb, m);
    }
}
"""

_HEADER = r"""
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>

#define SF_BS 4096
#define SF_VERSION @VERSION@

typedef struct {
    int64_t T, N, x_ts, g_ts;
    int64_t *next;  /* shared block counter */
    const void *x, *v0;
    void *s, *h, *vT;
    const void *gs, *gh_extra, *gvT, *table;
    void *gx, *gv0;
    double tau, v_reset, theta, alpha, alpha_c, du, dx;
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
    return (
        _HEADER.replace("@VERSION@", str(_VERSION))
        + _EXP[dtype]
        + f"#define REAL {real}\n#define MAXV {maxv}\n#define SFX(n) sf_k_##n\n"
        + f"#define EXP {exp}\n#define FABS {fabs}\n"
        + _TEMPLATE
        + _FOOTER
    )


class _Job(ctypes.Structure):
    _fields_ = [
        ("T", ctypes.c_int64),
        ("N", ctypes.c_int64),
        ("x_ts", ctypes.c_int64),
        ("g_ts", ctypes.c_int64),
        ("next", ctypes.c_void_p),
        ("x", ctypes.c_void_p),
        ("v0", ctypes.c_void_p),
        ("s", ctypes.c_void_p),
        ("h", ctypes.c_void_p),
        ("vT", ctypes.c_void_p),
        ("gs", ctypes.c_void_p),
        ("gh_extra", ctypes.c_void_p),
        ("gvT", ctypes.c_void_p),
        ("table", ctypes.c_void_p),
        ("gx", ctypes.c_void_p),
        ("gv0", ctypes.c_void_p),
        ("tau", ctypes.c_double),
        ("v_reset", ctypes.c_double),
        ("theta", ctypes.c_double),
        ("alpha", ctypes.c_double),
        ("alpha_c", ctypes.c_double),
        ("du", ctypes.c_double),
        ("dx", ctypes.c_double),
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
_VERSION = 10
_lock = threading.Lock()
_libs: dict[torch.dtype, ctypes.CDLL | None] = {}
_reasons: dict[torch.dtype, str] = {}


CACHE_ENV = "SPIKEFORGE_CACHE"
"""The environment variable naming the one folder all of spikeforge's caches live under."""


# The root is defined here rather than in spikeforge.data.cache (the frame cache, which uses it
# too) because `import spikeforge` loads this module anyway, while importing spikeforge.data
# pulls in scikit-learn (about a second) that the first neuron call should not pay for.
def cache_root() -> Path:
    """The folder spikeforge caches under: ``$SPIKEFORGE_CACHE``, else
    ``$XDG_CACHE_HOME/spikeforge``, else ``~/.cache/spikeforge``.

    Each cache has a subfolder: ``kernels/`` (compiled CPU kernels), ``frames/`` (binned event
    frames, :mod:`spikeforge.data.cache`). Deleting the folder is always safe.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # expanduser("~") rather than Path.home(): it never raises when HOME cannot be determined.
    base = Path(xdg).expanduser() if xdg else Path(os.path.expanduser("~")) / ".cache"
    return base / "spikeforge"


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
    if os.environ.get("SPIKEFORGE_CPU_KERNEL", "1").lower() in ("0", "false", "off", "no"):
        raise RuntimeError("disabled by SPIKEFORGE_CPU_KERNEL=0")
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


def backward_inputs(
    h: torch.Tensor,
    fr: FireReset,
    g_spikes: torch.Tensor | None,
    g_h: torch.Tensor | None,
    g_vlast: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """What every compiled backward reads besides ``h``: the surrogate table (only for
    surrogates the kernels do not know) and the incoming gradients in ``h``'s dtype and layout."""
    table = None
    if surrogate_code(fr.surrogate) == SG_TABLE:
        table = fr.surrogate.derivative(h - fr.threshold).contiguous()
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


def _alpha_c(surrogate: Surrogate) -> float:
    # the constants surrogate.py computes in double before they meet the tensor
    if isinstance(surrogate, Atan):
        return math.pi / 2 * surrogate.alpha
    if isinstance(surrogate, Rectangular):
        return 0.5 / surrogate.alpha
    return 0.0


def _job(spec: KernelSpec, fr: FireReset, T: int, N: int, op: int) -> _Job:
    a = fr.surrogate.alpha
    return _Job(
        T=T,
        N=N,
        tau=spec.tau,
        v_reset=fr.v_reset,
        theta=fr.threshold,
        alpha=a,
        alpha_c=_alpha_c(fr.surrogate),
        du=1.0 if spec.kind == "if" else 1.0 - 1.0 / spec.tau,
        dx=1.0 / spec.tau if spec.kind == "lif" else 1.0,
        charge=_CHARGES[spec.kind] + (2 if spec.kind != "if" and _pow2(spec.tau) else 0),
        soft=int(fr.reset == "soft"),
        surrogate=surrogate_code(fr.surrogate),
        detach=int(fr.detach_reset),
        op=op,
    )


def forward(
    x: torch.Tensor, v0: torch.Tensor | None, spec: KernelSpec, fr: FireReset
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """``(spikes, v_last, h, nonfinite)`` for ``x [T, B, ...]`` from ``v0`` (None: ``v_reset``).

    ``nonfinite`` is True if the final membrane is not finite, which a NaN or inf anywhere in
    ``x`` always causes (it can also come from a non-finite ``v0`` or an overflow, so callers
    confirm on ``x`` before blaming the input).
    """
    lib = _get(x.dtype)
    assert lib is not None, "cpu_kernel used where it is not available"
    x = _step_contiguous(x)
    T = x.shape[0]
    N = x[0].numel()
    s = torch.empty(x.shape, dtype=x.dtype)
    h = torch.empty(x.shape, dtype=x.dtype)
    vT = torch.empty(x.shape[1:], dtype=x.dtype)
    if v0 is not None:
        v0 = v0.contiguous()
    job = _job(spec, fr, T, N, 0)
    job.x_ts = x.stride(0)
    job.x, job.v0, job.s, job.h, job.vT = _ptr(x), _ptr(v0), _ptr(s), _ptr(h), _ptr(vT)
    nonfinite = lib.sf_run(ctypes.byref(job), _threads(T * N))
    return s, vT, h, bool(nonfinite)


def backward(
    h: torch.Tensor,
    g_spikes: torch.Tensor | None,
    g_h: torch.Tensor | None,
    g_vlast: torch.Tensor | None,
    spec: KernelSpec,
    fr: FireReset,
    *,
    want_v0: bool,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(∂L/∂x, ∂L/∂v0)`` from the saved potentials ``h`` and the incoming gradients.

    ``out`` may be ``h`` itself: each element of ``h`` is read before its gradient is written.
    """
    lib = _get(h.dtype)
    assert lib is not None, "cpu_kernel used where it is not available"
    T = h.shape[0]
    N = h[0].numel()
    table, g_spikes, g_h, g_vlast = backward_inputs(h, fr, g_spikes, g_h, g_vlast)
    gx = torch.empty_like(h) if out is None else out
    gv0 = torch.empty(h.shape[1:], dtype=h.dtype) if want_v0 else None
    job = _job(spec, fr, T, N, 1)
    job.g_ts = g_spikes.stride(0) if g_spikes is not None else 0
    job.h, job.gs, job.gh_extra, job.gvT = _ptr(h), _ptr(g_spikes), _ptr(g_h), _ptr(g_vlast)
    job.table, job.gx, job.gv0 = _ptr(table), _ptr(gx), _ptr(gv0)
    lib.sf_run(ctypes.byref(job), _threads(T * N))
    return gx, gv0
