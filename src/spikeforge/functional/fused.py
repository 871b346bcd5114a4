"""The fused multi-step neuron: one pass over T forward, one pass backward, custom autograd.

:func:`neuron_multistep` runs any :class:`~spikeforge.functional.dynamics.Dynamics` with a
:class:`~spikeforge.functional.dynamics.FireReset` over ``x [T, B, ...]``. No per-step autograd
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
  (:func:`~spikeforge.functional.neuron.reference_multistep`, re-exported here). A dynamics
  with ``reference_only`` (a charge with no hand-written derivative) always runs there.

Every backend computes the same floating-point operations in forward, so spikes and
potentials are identical across backends; gradients agree to rounding.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError, InputError
from . import cpu_kernel
from .dynamics import Dynamics, FireReset
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
    caller (the compiled CPU kernel checks in its forward pass, the others beforehand).
    """
    kind = select_backend(x, dynamics, fr, backend)
    if x.shape[0] == 0:  # no steps: no spikes, the state is unchanged
        v = (
            torch.full(x.shape[1:], fr.v_reset, dtype=x.dtype, device=x.device)
            if v0 is None
            else v0
        )
        return x.new_zeros(x.shape), v, (x.new_zeros(x.shape) if return_membrane else None)
    if check_finite and kind != "cpu" and not bool(torch.isfinite(x).all()):
        raise nonfinite_error(check_finite)
    if kind == "reference":
        return reference_multistep(x, v0, dynamics, fr, return_membrane)
    if v0 is not None and v0.dtype != x.dtype:
        v0 = v0.to(x.dtype)
    spikes, v_last, h = _FusedNeuron.apply(
        x, v0, dynamics, fr, kind, return_membrane, check_finite, *dynamics.params()
    )
    return spikes, v_last, (h if return_membrane else None)


def nonfinite_error(who: str) -> InputError:
    """The one-line error for an input holding NaN or inf."""
    return InputError(
        f"{who}: input contains NaN or inf; check the data and the layer before this neuron"
    )


# ----------------------------------------------------------------------------- forward


def _forward_torch(x, v0, dynamics: Dynamics, fr: FireReset, params):
    """Single pass over T with PyTorch ops; returns (spikes bool, v_last, h, aux or None)."""
    T = x.shape[0]
    u = torch.full_like(x[0], fr.v_reset) if v0 is None else v0
    H = torch.empty_like(x, memory_format=torch.contiguous_format)
    S = torch.empty(x.shape, dtype=torch.bool, device=x.device)
    aux_list = []
    for t in range(T):
        h, aux = dynamics.charge(u, x[t], t, params)
        H[t] = h
        torch.ge(H[t], fr.threshold, out=S[t])
        u = fr.reset_value(H[t], S[t])
        if aux is not None:
            aux_list.append(aux)
    AUX = torch.stack(aux_list) if aux_list else None
    return S, u, H, AUX


# ---------------------------------------------------------------------------- backward


def _backward_const(ctx, H, gS, gH, gV, du: float, dx: float, fr: FireReset, destroy_h: bool):
    """Backward for constant ∂h/∂u, ∂h/∂x: one multiply-add per step, the rest vectorised."""
    T = H.shape[0]
    d = H - fr.threshold
    sg = fr.surrogate.derivative(d)
    s = d >= 0
    del d
    D = fr.dreset_dh(H, s, sg)  # ∂u[t]/∂h[t]
    del s
    if destroy_h:
        del H  # the caller released its reference; the buffer can go
    G = sg.mul_(gS) if gS is not None else torch.zeros_like(sg)
    if gH is not None:
        G.add_(gH)
    if T > 1 and du != 1.0:
        D[:-1].mul_(du)  # for t < T-1 the gradient reaches u[t] through the next charge
    if gV is not None:
        G[T - 1].addcmul_(D[T - 1], gV)
    for t in range(T - 2, -1, -1):
        G[t].addcmul_(D[t], G[t + 1])
    g_v0 = G[0] * du if ctx.needs_input_grad[1] else None
    if ctx.needs_input_grad[0]:
        g_x = G.mul_(dx) if dx != 1.0 else G
    else:
        g_x = None
    return g_x, g_v0


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
        sg = fr.surrogate.derivative(d)
        g = sg * gS[t] if gS is not None else torch.zeros_like(h)
        if gH is not None:
            g = g + gH[t]
        if gu is not None:
            g = g + gu * fr.dreset_dh(h, d >= 0, sg)
        u = None
        if dynamics.needs_u:
            if t == 0:
                u = torch.full_like(h, fr.v_reset) if v0 is None else v0
            else:
                u = fr.reset_value(H[t - 1], H[t - 1] >= fr.threshold)
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
_N_ARGS = 7  # x, v0, dynamics, fr, kind, want_h, check_finite; then the parameters


class _FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, dynamics, fr, kind, want_h, check_finite, *params):  # noqa: D102
        spec = dynamics.kernel_spec()
        AUX = None
        if kind == "cpu":
            S, v_last, H, nonfinite = cpu_kernel.forward(x, v0, spec, fr)
            if nonfinite and check_finite and not bool(torch.isfinite(x).all()):
                raise nonfinite_error(check_finite)
        elif kind == "triton":
            S, v_last, H = _triton().forward(x, v0, spec, fr)
        else:
            with torch.no_grad():
                Sb, v_last, H, AUX = _forward_torch(x, v0, dynamics, fr, params)
            S = Sb.to(x.dtype)
            del Sb
        X = x if dynamics.needs_x else None
        ctx.set_materialize_grads(False)  # unused outputs (v_last, h) cost nothing in backward
        ctx.dynamics, ctx.fr, ctx.kind, ctx.want_h = dynamics, fr, kind, want_h
        ctx.has_v0 = v0 is not None
        ctx.consumed = False
        ctx.save_for_backward(H, X, AUX, v0 if dynamics.needs_u else None, *params)
        if not want_h:
            ctx.mark_non_differentiable(H)
        return S, v_last, H

    @staticmethod
    def backward(ctx, gS, gV, gH):  # noqa: D102
        if ctx.consumed:
            raise RuntimeError(
                "spikeforge: backward through a fused neuron a second time; its saved potentials "
                "were reused to hold gradients. Use backend='reference' for retain_graph=True."
            )
        H, X, AUX, v0, *params = ctx.saved_tensors
        dynamics, fr, kind = ctx.dynamics, ctx.fr, ctx.kind
        n_params = len(params)
        need_x, need_v0 = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not ctx.want_h:
            gH = None
        const = dynamics.constant_derivatives()
        if const is not None and not any(ctx.needs_input_grad[_N_ARGS:]):
            if not (need_x or need_v0):
                return (None,) * (_N_ARGS + n_params)
            # H is ours alone (not returned): its buffer can take the input gradient in place
            destroy = REUSE_SAVED and not ctx.want_h and not torch.is_grad_enabled()
            if kind in ("cpu", "triton"):
                mod = cpu_kernel if kind == "cpu" else _triton()
                out = H if destroy and need_x else None
                if destroy:
                    ctx.consumed = True
                g_x, g_v0 = mod.backward(
                    H, gS, gH, gV, dynamics.kernel_spec(), fr, want_v0=need_v0, out=out
                )
                return (g_x if need_x else None, g_v0, *([None] * (_N_ARGS - 2 + n_params)))
            g_x, g_v0 = _backward_const(ctx, H, gS, gH, gV, const[0], const[1], fr, destroy)
            return (g_x, g_v0, *([None] * (_N_ARGS - 2 + n_params)))
        GX, g_v0, g_params = _backward_generic(ctx, H, X, AUX, v0, gS, gH, gV, dynamics, fr, params)
        return (GX, g_v0, *([None] * (_N_ARGS - 2)), *g_params)
