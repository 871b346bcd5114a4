"""The one protocol every fused-neuron backend implements, and what the compiled ones share.

:class:`NeuronBackend` is what :mod:`.fused` calls: ``why_not`` (can it run this input and
dynamics), ``forward`` (spikes, final membrane, pre-reset potentials, what backward keeps)
and ``backward`` (input, state and parameter gradients). Three implement it: the PyTorch loop
(:class:`~spikeweave.functional.fused.TorchBackend`), the compiled CPU kernel
(:mod:`.cpu_kernel`) and the Triton kernel (:mod:`.triton_lif`), both wrapped by
:class:`CompiledBackend`. The helpers below are the compiled backends' common ground: the
layout of tables and drives, surrogate codes, and parameter-gradient reduction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple, Protocol, runtime_checkable

import torch

from ..surrogate import Surrogate
from .c_codegen import MAXT, SG_TABLE
from .dynamics import Dynamics, FireReset, KernelSpec
from .spec import CHARGES, FIRE_RESET, SURROGATE_SPECS, torch_eval, torch_recompute

__all__ = [
    "SG_TABLE",
    "CompiledBackend",
    "Forward",
    "NeuronBackend",
    "backward_inputs",
    "neuron_shape_tables",
    "reduce_table_grad",
    "step_contiguous",
    "supports_spec",
    "surrogate_code",
]


class Forward(NamedTuple):
    """A backend's forward: spikes and ``v_last`` (returned), ``h`` (returned when asked for,
    else None), ``saved`` (tensors or None that its backward reads) and ``nonfinite`` (None:
    not checked; a bool; or a 0-dim device flag raised later without a sync)."""

    spikes: torch.Tensor
    v_last: torch.Tensor
    h: torch.Tensor | None
    saved: tuple[torch.Tensor | None, ...]
    nonfinite: bool | torch.Tensor | None


@runtime_checkable
class NeuronBackend(Protocol):
    """A way to run a :class:`Dynamics` with :class:`FireReset` over ``x [T, B, ...]``."""

    name: str

    def why_not(self, x: torch.Tensor, dynamics: Dynamics) -> str | None:
        """Why this backend cannot run ``dynamics`` on ``x`` (None: it can)."""
        ...

    def forward(
        self,
        x: torch.Tensor,
        v0: torch.Tensor | None,
        dynamics: Dynamics,
        fr: FireReset,
        params: tuple[torch.Tensor, ...],
        want_h: bool,
        graph: bool,
    ) -> Forward:
        """One pass over T; ``graph``: a backward will follow (keep what it reads)."""
        ...

    def backward(
        self,
        saved: tuple[torch.Tensor | None, ...],
        grads: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
        dynamics: Dynamics,
        fr: FireReset,
        params: tuple[torch.Tensor, ...],
        needs: tuple[bool, ...],
        destroy: bool,
        x_dtype: torch.dtype,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, list[torch.Tensor | None]]:
        """``(∂L/∂x, ∂L/∂v0, [∂L/∂param])`` from ``grads = (∂L/∂spikes, ∂L/∂h, ∂L/∂v_last)``.

        ``needs``: ``(x, v0, *params)`` need gradients; ``destroy``: the saved potentials are
        this call's alone, so the input gradient may be written over them."""
        ...


_SURROGATES: dict[type, int] = {cls: sp.code for cls, sp in SURROGATE_SPECS.items()}


def surrogate_code(surrogate: Surrogate) -> int:
    """The kernels' code for a built-in surrogate; ``SG_TABLE`` for any other."""
    return _SURROGATES.get(type(surrogate), SG_TABLE)


def step_contiguous(t: torch.Tensor) -> torch.Tensor:
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
    return len(spec.tables) <= MAXT and len(spec.drives) <= MAXT


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
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """What every compiled backward reads besides the saved values ``h``: the surrogate table
    (only for surrogates the kernels do not know; at ``w·d`` for a learnable width) and the
    incoming gradients, contiguous per step (cast to ``dtype`` when given)."""
    table = None
    if surrogate_code(fr.surrogate) == SG_TABLE:
        tables = dict(zip(spec.charge.tables, spec.tables, strict=True))
        hh = torch_recompute(spec.charge, h, spec.scalars, tables)
        d = fr.distance(hh)
        if spec.charge.width is not None:  # g'(w·d): the kernel turns it into ds/dh, ds/dw
            d = torch_eval(FIRE_RESET.scaled, d=d, w=tables[spec.charge.width].detach())
        table = fr.surrogate.derivative(d).contiguous()

    def prep(g: torch.Tensor | None, per_step: bool) -> torch.Tensor | None:
        if g is None:
            return None
        g = g if dtype is None else g.to(dtype)
        return step_contiguous(g) if per_step else g.contiguous()

    return table, prep(g_spikes, True), prep(g_h, False), prep(g_vlast, False)


class CompiledBackend:
    """:class:`NeuronBackend` over a compiled kernel (:mod:`.cpu_kernel`, :mod:`.triton_lif`):
    its ``forward(x, v0, spec, fr, want_h, save)`` and ``backward(saved, gS, gH, gV, spec,
    fr, *, want_v0, want_tables, out, x_dtype, x, v0)`` run a :class:`KernelSpec` (``x`` and
    ``v0`` given where the spec's VJP reads the input or membrane, else None); ``why_not(x)``
    says why the kernel cannot take ``x`` (dtype, device, no compiler)."""

    def __init__(
        self,
        name: str,
        forward: Callable[..., tuple],
        backward: Callable[..., tuple],
        why_not: Callable[[torch.Tensor], str | None],
    ) -> None:
        self.name = name
        self._forward, self._backward, self._why_not = forward, backward, why_not

    def why_not(self, x: torch.Tensor, dynamics: Dynamics) -> str | None:  # noqa: D102
        spec = dynamics.kernel_spec()
        if spec is None or not supports_spec(spec, x):
            return f"{type(dynamics).__name__} has no native kernel"
        return self._why_not(x)

    def forward(self, x, v0, dynamics, fr, params, want_h, graph) -> Forward:  # noqa: D102
        spec = dynamics.kernel_spec()
        S, v_last, H, Hout, nonfinite = self._forward(x, v0, spec, fr, want_h, graph)
        # a VJP reading the step's input or membrane (PLIF's ∂h/∂r): backward gets x, and v0
        # for the membrane before the first step (later ones it rebuilds from h)
        reads = spec.charge.vjp_reads
        X = x if "x" in reads else None
        V0 = v0 if "u" in reads else None
        return Forward(S, v_last, Hout, (H, X, V0), nonfinite)

    def backward(  # noqa: D102
        self, saved, grads, dynamics, fr, params, needs, destroy, x_dtype
    ):
        H, X, V0 = saved
        gS, gH, gV = grads
        spec = dynamics.kernel_spec()
        if params:  # the tensors saved at forward time, not whatever the module holds now
            spec = replace(spec, tables=(*params, *spec.tables[len(params) :]))
        g_x, g_v0, g_tabs = self._backward(
            H, gS, gH, gV, spec, fr, want_v0=needs[1], want_tables=tuple(needs[2:]),
            out=H if destroy and needs[0] else None, x_dtype=x_dtype, x=X, v0=V0,
        )  # fmt: skip
        g_params = [g_tabs[i] if i < len(g_tabs) else None for i in range(len(params))]
        return (g_x if needs[0] else None), g_v0, g_params
