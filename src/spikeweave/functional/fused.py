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

Every backend computes the same floating-point operations in forward, so spikes and
potentials are identical across backends; gradients agree to rounding. The compiled kernels
and the built-in dynamics all come from one spec per charge (:mod:`.spec`).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import ConfigError
from . import cpu_kernel, finite
from .dynamics import Dynamics, FireReset
from .finite import nonfinite_error
from .neuron import reference_multistep

__all__ = ["BACKENDS", "neuron_multistep", "reference_multistep", "select_backend"]

BACKENDS = ("auto", "torch", "cpu", "triton", "reference")


def _triton():
    from . import triton_lif  # imported lazily: triton is optional and heavy

    return triton_lif


def select_backend(x: torch.Tensor, dynamics: Dynamics, fr: FireReset, backend: str) -> str:
    """The concrete backend (``"cpu"``, ``"triton"``, ``"torch"`` or ``"reference"``)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "reference" or (dynamics.reference_only and backend in ("auto", "torch")):
        return "reference"
    if backend == "torch":
        return backend
    spec = dynamics.kernel_spec()
    if spec is not None and not cpu_kernel.supports_spec(spec, x):
        spec = None  # e.g. a per-neuron table that also varies over the batch
    if backend == "cpu":
        why = None
        if spec is None:
            why = f"{type(dynamics).__name__} has no native kernel"
        elif not cpu_kernel.supports(x):
            why = f"needs a float32/float64 CPU tensor, got {x.dtype} on {x.device}"
        elif not cpu_kernel.available(x.dtype):
            why = cpu_kernel.unavailable_reason(x.dtype)
        if why:
            raise ConfigError(f"backend='cpu' cannot run: {why}; use backend='auto' or 'torch'")
        return "cpu"
    if backend == "triton":
        why = None
        if spec is None:
            why = f"{type(dynamics).__name__} has no native kernel"
        elif x.device.type != "cuda":
            why = f"needs a CUDA tensor, got one on {x.device}"
        else:
            tl = _triton()
            if not tl.available():
                why = tl.unavailable_reason()
            elif not tl.supports(x):
                why = f"unsupported dtype {x.dtype}"
        if why:
            raise ConfigError(f"backend='triton' cannot run: {why}; use backend='auto' or 'torch'")
        return "triton"
    # auto
    if spec is not None:
        if x.device.type == "cpu" and cpu_kernel.supports(x) and cpu_kernel.available(x.dtype):
            return "cpu"
        if x.device.type == "cuda":
            tl = _triton()
            if tl.available() and tl.supports(x):
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run ``dynamics`` over ``x [T, B, ...]`` from ``v0 [B, ...]`` (None: at ``v_reset``).

    Returns ``(spikes [T, B, ...] in x's dtype, v_last [B, ...], h [T, B, ...] or None)``.
    With ``check_finite="Name"``, an input holding NaN or inf raises ``InputError`` naming the
    caller: on the CPU in this call (the compiled kernel checks in its own pass, the PyTorch
    path beforehand), on CUDA later and without a host sync (:mod:`.finite`).
    """
    kind = select_backend(x, dynamics, fr, backend)
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
    spikes, v_last, h = _FusedNeuron.apply(
        x, v0, dynamics, fr, kind, return_membrane, check_finite, graph, *params
    )
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


def _backward_const(ctx, H, gS, gH, gV, du: float, dx: float, fr: FireReset, destroy_h: bool):
    """Backward for constant ∂h/∂u, ∂h/∂x: one step at a time, newest first.

    Per step a handful of float operations on one step's neurons, which stay in cache between
    them (the whole-T alternative streams every temporary through memory), and no bool masks
    (PyTorch's bool kernels are several times slower than its float ones on the CPU). With
    ``destroy_h`` the input gradient of step t is written over ``h[t]`` once it is read.
    """
    T = H.shape[0]
    need_x = ctx.needs_input_grad[0]
    GX = (H if destroy_h else torch.empty_like(H)) if need_x else None
    gu = gV
    for t in range(T - 1, -1, -1):
        h = H[t]
        d = h - fr.threshold
        sg = fr.surrogate_derivative(d)
        D = fr.dreset_dh(h, torch.ge(d, 0.0, out=d), sg) if gu is not None else None
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
    g_v0 = gu if ctx.needs_input_grad[1] else None
    return GX, g_v0


def _backward_generic(ctx, H, X, AUX, v0, gS, gH, gV, dynamics: Dynamics, fr, params):
    """Backward for any dynamics: per step, fire/reset derivatives then ``charge_vjp``."""
    T = H.shape[0]
    need_x = ctx.needs_input_grad[0]
    GX = torch.empty_like(H) if need_x else None
    acc: list[torch.Tensor | None] = [None] * len(params)
    gu = gV
    for t in range(T - 1, -1, -1):
        h = H[t]
        d = h - fr.threshold
        sg = fr.surrogate_derivative(d)
        g = sg * gS[t] if gS is not None else torch.zeros_like(h)
        if gH is not None:
            g = g + gH[t]
        if gu is not None:
            g = g + gu * fr.dreset_dh(h, torch.ge(d, 0.0, out=d), sg)
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
            if gp is not None and ctx.needs_input_grad[_N_ARGS + i]:
                acc[i] = gp if acc[i] is None else acc[i] + gp
    g_params = []
    for p, a in zip(params, acc, strict=True):
        g_params.append(None if a is None else a.sum_to_size(p.shape).to(p.dtype))
    g_v0 = gu if ctx.needs_input_grad[1] else None
    return GX, g_v0, g_params


REUSE_SAVED = True  # write the input gradient into the saved potentials (no new buffer)
_N_ARGS = 8  # x, v0, dynamics, fr, kind, want_h, check_finite, graph; then the parameters


class _FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, dynamics, fr, kind, want_h, check_finite, graph, *params):  # noqa: D102
        spec = dynamics.kernel_spec()
        AUX = None
        if kind == "cpu":
            S, v_last, H, Hout, nonfinite = cpu_kernel.forward(x, v0, spec, fr, want_h, graph)
            if nonfinite and check_finite and not bool(torch.isfinite(x).all()):
                raise nonfinite_error(check_finite)
        elif kind == "triton":
            S, v_last, H, Hout, flag = _triton().forward(x, v0, spec, fr, want_h)
            if check_finite:
                finite.defer(flag, check_finite)
        else:
            with torch.no_grad():
                S, v_last, H, AUX = _forward_torch(x, v0, dynamics, fr, params)
            Hout = H
        X = x if dynamics.needs_x else None
        ctx.set_materialize_grads(False)  # unused outputs (v_last, h) cost nothing in backward
        ctx.dynamics, ctx.fr, ctx.kind, ctx.want_h = dynamics, fr, kind, want_h
        ctx.has_v0 = v0 is not None
        ctx.x_dtype = x.dtype
        ctx.consumed = False
        ctx.save_for_backward(H, X, AUX, v0 if dynamics.needs_u else None, *params)
        if Hout is None:  # h not asked for: the kernel may have saved something else, or nothing
            Hout = H if H is not None else x.new_empty(0)
        if not want_h:
            ctx.mark_non_differentiable(Hout)
        return S, v_last, Hout

    @staticmethod
    def backward(ctx, gS, gV, gH):  # noqa: D102
        if ctx.consumed:
            raise RuntimeError(
                "spikeweave: backward through a fused neuron a second time; its saved potentials "
                "were reused to hold gradients. Use backend='reference' for retain_graph=True."
            )
        H, X, AUX, v0, *params = ctx.saved_tensors
        dynamics, fr, kind = ctx.dynamics, ctx.fr, ctx.kind
        n_params = len(params)
        need_x, need_v0 = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not ctx.want_h:
            gH = None
        need_p = tuple(ctx.needs_input_grad[_N_ARGS:])
        if not (need_x or need_v0 or any(need_p)):
            return (None,) * (_N_ARGS + n_params)
        # H is ours alone (not returned): its buffer can take the input gradient in place
        destroy = REUSE_SAVED and not ctx.want_h and not torch.is_grad_enabled()
        if kind in ("cpu", "triton"):
            mod = cpu_kernel if kind == "cpu" else _triton()
            spec = dynamics.kernel_spec()
            if params:  # the tensors saved at forward time, not whatever the module holds now
                spec = replace(spec, tables=(*params, *spec.tables[len(params) :]))
            out = H if destroy and need_x else None
            if destroy:
                ctx.consumed = True
            g_x, g_v0, g_tabs = mod.backward(
                H, gS, gH, gV, spec, fr, want_v0=need_v0, want_tables=need_p, out=out,
                x_dtype=ctx.x_dtype,
            )  # fmt: skip
            g_params = [g_tabs[i] if i < len(g_tabs) else None for i in range(n_params)]
            return (g_x if need_x else None, g_v0, *([None] * (_N_ARGS - 2)), *g_params)
        const = dynamics.constant_derivatives()
        if const is not None and not any(need_p):
            g_x, g_v0 = _backward_const(ctx, H, gS, gH, gV, const[0], const[1], fr, destroy)
            return (g_x, g_v0, *([None] * (_N_ARGS - 2 + n_params)))
        GX, g_v0, g_params = _backward_generic(ctx, H, X, AUX, v0, gS, gH, gV, dynamics, fr, params)
        return (GX, g_v0, *([None] * (_N_ARGS - 2)), *g_params)
