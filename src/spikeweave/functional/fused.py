"""The fused multi-step neuron: one pass over T forward, one pass backward, custom autograd.

:func:`neuron_multistep` runs any :class:`~spikeweave.functional.dynamics.Dynamics` with a
:class:`~spikeweave.functional.dynamics.FireReset` over ``x [T, B, ...]``. No per-step autograd
graph is built; the forward saves only the pre-reset potentials ``h [T, B, ...]`` (spikes are
``h >= θ`` and the membrane before each step is the reset of the previous ``h``, so both are
recomputed in backward), plus whatever a dynamics asks for (``aux``, ``x``).

Backends (``backend=``):

- ``"auto"`` (default): the compiled CPU kernel (:mod:`.cpu_kernel`) or Triton on CUDA
  (:mod:`.triton_lif`) where the dynamics has a native kernel and the kernel can be built
  (the CPU kernel compiles once per machine, on first use); else ``"torch"``.
- ``"torch"``: the same single-pass loops written with PyTorch ops (no compiler needed).
- ``"cpu"`` / ``"triton"``: insist on that kernel (``ConfigError`` if it cannot run).
- ``"reference"``: the plain per-step loop under autograd
  (:func:`~spikeweave.functional.neuron.reference_multistep`, re-exported here). A dynamics
  with ``reference_only`` (a charge with no hand-written derivative) always runs there.

What backward keeps (``memory=``, :mod:`.memory`): ``"save"`` the potentials ``h``,
``"recompute"`` only a reference to ``x`` (the kernel's forward runs again in backward, bit for
bit), ``"auto"`` (default) recompute where ``x`` is stored in less than half of ``h``'s bytes
(an input broadcast over time). Spike outputs are marked for :func:`.memory.pack_spikes`.

Every backend computes the same floating-point operations in forward, so spikes and
potentials are identical across backends; gradients agree to rounding. The compiled kernels
and the built-in dynamics all come from one spec per charge (:mod:`.spec`).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from . import cpu_kernel, finite
from . import memory as _memory
from .backend import Forward, NeuronBackend
from .dynamics import Dynamics, FireReset
from .finite import nonfinite_error
from .neuron import reference_multistep
from .spec import FIRE_RESET, torch_eval, torch_width_fire

__all__ = [
    "BACKENDS",
    "TORCH",
    "TorchBackend",
    "neuron_multistep",
    "reference_multistep",
    "select_backend",
]

BACKENDS = ("auto", "torch", "cpu", "triton", "reference")


def _triton() -> NeuronBackend:
    from . import triton_lif  # imported lazily: triton is optional and heavy

    return triton_lif.BACKEND


def _backend(kind: str) -> NeuronBackend:
    return {"cpu": cpu_kernel.BACKEND, "torch": TORCH}[kind] if kind != "triton" else _triton()


def select_backend(x: torch.Tensor, dynamics: Dynamics, fr: FireReset, backend: str) -> str:
    """The concrete backend (``"cpu"``, ``"triton"``, ``"torch"`` or ``"reference"``)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "reference" or (dynamics.reference_only and backend in ("auto", "torch")):
        return "reference"
    if backend == "torch":
        return backend
    if backend in ("cpu", "triton"):
        why = _backend(backend).why_not(x, dynamics)
        if why:
            raise ConfigError(
                f"backend={backend!r} cannot run: {why}; use backend='auto' or 'torch'"
            )
        return backend
    # auto: the compiled kernel of the input's device where it can run
    if dynamics.kernel_spec() is not None:
        if x.device.type == "cpu" and cpu_kernel.BACKEND.why_not(x, dynamics) is None:
            return "cpu"
        if x.device.type == "cuda" and _triton().why_not(x, dynamics) is None:
            return "triton"
    return "torch"


def neuron_multistep(
    x: torch.Tensor,
    v0: torch.Tensor | None,
    dynamics: Dynamics,
    fr: FireReset,
    *,
    backend: str = "auto",
    return_membrane: bool = False,
    check_finite: str | None = None,
    memory: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run ``dynamics`` over ``x [T, B, ...]`` from ``v0 [B, ...]`` (None: at ``v_reset``).

    Returns ``(spikes [T, B, ...] in x's dtype, v_last [B, ...], h [T, B, ...] or None)``.
    With ``check_finite="Name"``, an input holding NaN or inf raises ``InputError`` naming the
    caller: on the CPU in this call (the compiled kernel checks in its own pass, the PyTorch
    path beforehand), on CUDA later and without a host sync (:mod:`.finite`). ``memory``:
    ``"auto"``, ``"save"`` or ``"recompute"`` (what backward keeps, :mod:`.memory`; the
    reference loop keeps its autograd graph, so it refuses ``"recompute"``).
    """
    _memory.check_mode(memory)
    kind = select_backend(x, dynamics, fr, backend)
    if kind == "reference" and memory == "recompute":
        raise ConfigError(
            "memory='recompute' needs a fused backend; the reference loop (backend='reference', "
            "or a charge without a hand-written derivative) keeps its autograd graph"
        )
    if x.shape[0] == 0:  # no steps: no spikes, the state is unchanged
        v = (
            torch.full(x.shape[1:], fr.v_reset, dtype=x.dtype, device=x.device)
            if v0 is None
            else v0
        )
        return x.new_zeros(x.shape), v, (x.new_zeros(x.shape) if return_membrane else None)
    if check_finite and kind not in ("cpu", "triton"):
        if x.device.type == "cuda":  # on the device, raised later: no host sync per call
            finite.defer(~torch.isfinite(x.sum()), check_finite)
        elif finite.has_nonfinite(x):
            raise nonfinite_error(check_finite)
    if kind == "reference":
        return reference_multistep(x, v0, dynamics, fr, return_membrane)
    if v0 is not None and v0.dtype != x.dtype:
        v0 = v0.to(x.dtype)
    params = dynamics.params()
    # without a graph to record (inference, or the no-grad half of a defended neuron) the
    # compiled kernel need not write the [T, B, ...] values backward would read
    graph = torch.is_grad_enabled() and (
        x.requires_grad
        or (v0 is not None and v0.requires_grad)
        or any(p.requires_grad for p in params)
    )
    # h returned anyway: keeping it costs nothing more than recomputing it
    mode = "save" if return_membrane or not graph else _memory.choose(x, memory)
    spikes, v_last, h = _FusedNeuron.apply(
        x, v0, dynamics, fr, kind, return_membrane, check_finite, graph, mode, *params
    )
    _memory.mark_spikes(spikes)
    return spikes, v_last, (h if return_membrane else None)


# ----------------------------------------------------------------------------- forward


def _forward_torch(x, v0, dynamics: Dynamics, fr: FireReset, params):
    """Single pass over T with PyTorch ops; returns (spikes in x's dtype, v_last, h, aux).

    Per step: the charge written straight into ``h[t]``, spikes straight into their output,
    and the reset as one operation (no per-step copies, no second pass to cast the spikes).
    """
    T = x.shape[0]
    u = torch.full_like(x[0], fr.v_reset) if v0 is None else v0
    H = torch.empty_like(x, memory_format=torch.contiguous_format)
    S = torch.empty_like(H)
    aux_list = []
    for t in range(T):
        aux = dynamics.charge_into(H[t], u, x[t], t, params)
        u = fr.reset_value(H[t], fr.spikes(H[t], out=S[t]))
        if aux is not None:
            aux_list.append(aux)
    AUX = torch.stack(aux_list) if aux_list else None
    return S, u, H, AUX


# ---------------------------------------------------------------------------- backward


def _backward_const(needs, H, gS, gH, gV, du: float, dx: float, fr: FireReset, destroy_h: bool):
    """Backward for constant ∂h/∂u, ∂h/∂x: one step at a time, newest first.

    Per step a handful of float operations on one step's neurons, which stay in cache between
    them (the whole-T alternative streams every temporary through memory), and no bool masks
    (PyTorch's bool kernels are several times slower than its float ones on the CPU). With
    ``destroy_h`` the input gradient of step t is written over ``h[t]`` once it is read.
    """
    T = H.shape[0]
    need_x = needs[0]
    GX = (H if destroy_h else torch.empty_like(H)) if need_x else None
    gu = gV
    for t in range(T - 1, -1, -1):
        h = H[t]
        d = fr.distance(h)
        sg = fr.surrogate_derivative(d)
        D = fr.dreset_dh(h, fr.spikes(h, out=d), sg) if gu is not None else None
        g = sg.mul_(gS[t]) if gS is not None else torch.zeros_like(h)
        if gH is not None:
            g.add_(gH[t])
        if D is not None:
            g.addcmul_(D, gu)
        gu = g * du if du != 1.0 else g
        if GX is not None:
            if dx != 1.0:
                torch.mul(g, dx, out=GX[t])
            else:
                GX[t].copy_(g)
    g_v0 = gu if needs[1] else None
    return GX, g_v0


def _backward_generic(needs, H, X, AUX, v0, gS, gH, gV, dynamics: Dynamics, fr, params):
    """Backward for any dynamics: per step, fire/reset derivatives then ``charge_vjp``."""
    T = H.shape[0]
    need_x = needs[0]
    GX = torch.empty_like(H) if need_x else None
    acc: list[torch.Tensor | None] = [None] * len(params)
    wi = dynamics.width_index  # a learnable surrogate width: its gradient comes from the fire
    ds_expr = FIRE_RESET.dreset_ds[(fr.reset, fr.detach_reset)]
    gu = gV
    for t in range(T - 1, -1, -1):
        h = H[t]
        if wi is None:
            d = fr.distance(h)
            sg = fr.surrogate_derivative(d)
        else:
            d, sg, sw = torch_width_fire(fr.surrogate, h, fr.threshold, params[wi])
            # dL/ds: the spike's own gradient, plus the reset path's where it is not detached
            gs = gS[t] if gS is not None else torch.zeros_like(h)
            if gu is not None and ds_expr is not None:
                s = fr.spikes(h)
                gs = gs + gu * torch_eval(ds_expr, h=h, s=s, theta=fr.threshold, vreset=fr.v_reset)
            if needs[2 + wi]:
                acc[wi] = gs * sw if acc[wi] is None else acc[wi] + gs * sw
        g = sg * gS[t] if gS is not None else torch.zeros_like(h)
        if gH is not None:
            g = g + gH[t]
        if gu is not None:
            g = g + gu * fr.dreset_dh(h, fr.spikes(h, out=d), sg)
        u = None
        if dynamics.needs_u:
            if t == 0:
                u = torch.full_like(h, fr.v_reset) if v0 is None else v0
            else:
                u = fr.reset_value(H[t - 1], fr.spikes(H[t - 1]))
        xt = X[t] if X is not None else None
        at = AUX[t] if AUX is not None else None
        gu, gx, gps = dynamics.charge_vjp(g, u, xt, t, h, at, params)
        if GX is not None:
            GX[t] = gx
        for i, gp in enumerate(gps):
            if gp is not None and needs[2 + i]:
                acc[i] = gp if acc[i] is None else acc[i] + gp
    g_params = []
    for p, a in zip(params, acc, strict=True):
        g_params.append(None if a is None else a.sum_to_size(p.shape).to(p.dtype))
    g_v0 = gu if needs[1] else None
    return GX, g_v0, g_params


class TorchBackend:
    """The fused loops in PyTorch ops: a :class:`~.backend.NeuronBackend` for any dynamics
    with a ``charge_vjp`` (the constant-derivative backward where it applies)."""

    name = "torch"

    def why_not(self, x: torch.Tensor, dynamics: Dynamics) -> str | None:  # noqa: D102
        return "no hand-written derivative" if dynamics.reference_only else None

    def forward(self, x, v0, dynamics, fr, params, want_h, graph) -> Forward:  # noqa: D102
        with torch.no_grad():
            S, v_last, H, AUX = _forward_torch(x, v0, dynamics, fr, params)
        X = x if dynamics.needs_x else None
        return Forward(S, v_last, H, (H, X, AUX, v0 if dynamics.needs_u else None), None)

    def backward(self, saved, grads, dynamics, fr, params, needs, destroy, x_dtype):  # noqa: D102
        H, X, AUX, v0 = saved
        gS, gH, gV = grads
        const = dynamics.constant_derivatives()
        if const is not None and not any(needs[2:]):
            g_x, g_v0 = _backward_const(needs, H, gS, gH, gV, const[0], const[1], fr, destroy)
            return g_x, g_v0, [None] * len(params)
        return _backward_generic(needs, H, X, AUX, v0, gS, gH, gV, dynamics, fr, params)


TORCH = TorchBackend()

REUSE_SAVED = True  # write the input gradient into the saved potentials (no new buffer)
_N_ARGS = 9  # x, v0, dynamics, fr, kind, want_h, check_finite, graph, mode; then parameters


class _FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, dynamics, fr, kind, want_h, check_finite, graph, mode, *params):  # noqa: D102
        recompute = mode == "recompute"
        # recompute: the kernel need not write what backward reads; it runs again there
        out = _backend(kind).forward(x, v0, dynamics, fr, params, want_h, graph and not recompute)
        if isinstance(out.nonfinite, torch.Tensor):  # a device flag: raised later, no sync
            if check_finite:
                finite.defer(out.nonfinite, check_finite)
        elif out.nonfinite and check_finite and not bool(torch.isfinite(x).all()):
            raise nonfinite_error(check_finite)
        ctx.set_materialize_grads(False)  # unused outputs (v_last, h) cost nothing in backward
        ctx.dynamics, ctx.fr, ctx.kind, ctx.want_h = dynamics, fr, kind, want_h
        ctx.x_dtype = x.dtype
        ctx.consumed = False
        ctx.recompute = recompute
        kept = (x, v0) if recompute else out.saved
        ctx.n_saved = len(kept)
        ctx.save_for_backward(*kept, *params)
        Hout = out.h
        if Hout is None:  # h not asked for: the kernel may have saved something else, or nothing
            Hout = out.saved[0] if out.saved[0] is not None else x.new_empty(0)
        if not want_h:
            ctx.mark_non_differentiable(Hout)
        return out.spikes, out.v_last, Hout

    @staticmethod
    def backward(ctx, gS, gV, gH):  # noqa: D102
        if ctx.consumed:
            raise RuntimeError(
                "spikeweave: backward through a fused neuron a second time; its saved potentials "
                "were reused to hold gradients. Use backend='reference' for retain_graph=True."
            )
        tensors = ctx.saved_tensors
        saved, params = tensors[: ctx.n_saved], tensors[ctx.n_saved :]
        backend = _backend(ctx.kind)
        if ctx.recompute:  # the same forward again: the very h the "save" mode keeps
            with torch.no_grad():
                saved = backend.forward(*saved, ctx.dynamics, ctx.fr, params, False, True).saved
        n_params = len(params)
        needs = tuple(ctx.needs_input_grad[:2]) + tuple(ctx.needs_input_grad[_N_ARGS:])
        if not ctx.want_h:
            gH = None
        if not any(needs):
            return (None,) * (_N_ARGS + n_params)
        # H is ours alone (not returned): its buffer can take the input gradient in place
        # (recomputed, it is this call's alone: a second backward recomputes it again)
        destroy = REUSE_SAVED and not ctx.want_h and (ctx.recompute or not torch.is_grad_enabled())
        if destroy and ctx.kind != "torch" and not ctx.recompute:
            ctx.consumed = True
        g_x, g_v0, g_params = backend.backward(
            saved, (gS, gH, gV), ctx.dynamics, ctx.fr, params, needs, destroy, ctx.x_dtype
        )
        return (g_x, g_v0, *([None] * (_N_ARGS - 2)), *g_params)
