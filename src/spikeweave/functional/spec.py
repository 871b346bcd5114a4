"""Each built-in charge and surrogate derivative written once, as data; every backend follows.

A :class:`ChargeSpec` is a few assignments in a tiny expression language (``+ - * /``, unary
``-``, parentheses, float literals, names, and the functions ``relu``, ``pos``, ``exp``,
``abs``, ``lt``, ``max0``). From it come:

- the PyTorch charge the reference loop and the fused PyTorch loop run (:func:`torch_charge`,
  used by :class:`~spikeweave.functional.dynamics.LIFDynamics` and the others), evaluated with
  exactly the operations written, in the order written;
- the C source of the compiled CPU kernel (:func:`c_expr`, :mod:`.cpu_kernel`);
- the Triton source of the GPU kernel (:func:`triton_expr`, :mod:`.triton_lif`), where every
  ``/`` becomes the IEEE-rounded ``tl.math.div_rn`` (float32) and FMA contraction is off;
- the constant local derivatives ``∂h/∂u``, ``∂h/∂x`` where they are constants (``derived``).

Names a charge may read: ``u`` (membrane before the step), ``x`` (the step's input), its
``scalars`` (Python floats, e.g. ``tau`` in steps and ``vr`` = v_reset), its ``derived``
constants (computed once in double from the scalars), its ``tables`` (per-neuron values that
broadcast over the batch, e.g. KLIF's ``k``) and ``drives`` (per-step, per-neuron values, e.g.
the oscillation ``A·osc(2π·f·t + φ)``). The forward must assign ``h`` (the potential fire and
reset see); ``save`` names the one value kept per element and step for backward (the statements
after it recompute ``h`` from it). The vector-Jacobian product ``vjp`` reads ``g = ∂L/∂h`` and
assigns ``gu = ∂L/∂u``, ``gx = ∂L/∂x`` and ``g_<table>`` for each table in ``grads``
(elementwise; the kernels sum over time and reduce to the parameter's shape).

Fire and reset (:data:`FIRE_RESET`, a :class:`FireResetSpec`) are written beside the charges
in the same language, once for every neuron and every backend: the spike ``s`` (0/1) from ``h``
and ``theta``; the membrane after the step for each reset mode from ``h``, ``s``, ``theta`` and
``vreset``; the surrogate's argument ``d``; and ``∂u/∂h`` of the reset for each mode, with the
reset path detached or not, from ``h``, ``s`` and ``sg`` (the surrogate derivative at ``d``).

Surrogate derivatives (:data:`SURROGATE_SPECS`) are written the same way in ``d = h - θ`` and
the constant ``a`` (alpha), mirroring the operations of :mod:`spikeweave.surrogate` (a Python
number divided by a tensor is ``reciprocal() * number`` there, so it is written that way here).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache

import torch

from ..surrogate import Atan, FastSigmoid, Rectangular, Sigmoid, Surrogate, Triangle

__all__ = [
    "CHARGES",
    "ChargeSpec",
    "FIRE_RESET",
    "FireResetSpec",
    "SURROGATE_SPECS",
    "SurrogateSpec",
    "c_expr",
    "derived_values",
    "surrogate_spec",
    "torch_charge",
    "torch_dreset",
    "torch_eval",
    "torch_fire",
    "torch_reset",
    "torch_recompute",
    "torch_surrogate",
    "torch_vjp",
    "torch_width_fire",
    "triton_expr",
]

Stmts = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ChargeSpec:
    """One neuron charge: forward statements, what backward keeps, and the local VJP."""

    name: str
    forward: Stmts
    vjp: Stmts
    scalars: tuple[str, ...] = ()
    derived: Stmts = ()
    tables: tuple[str, ...] = ()
    drives: tuple[str, ...] = ()
    grads: tuple[str, ...] = ()
    save: str = "h"
    pow2: tuple[str, ...] = ()
    """Scalars that, when a power of two, a C kernel may divide by as a multiplication by the
    exact reciprocal (rounds identically, much cheaper)."""
    width: str | None = None
    """A table that is the surrogate's learnable width ``w`` (:data:`FIRE_RESET`'s
    ``scaled``, ``dspike``, ``dspike_dw``): listed in ``grads``, its gradient comes from the
    fire, not from ``vjp``, which does not assign it."""

    def __post_init__(self) -> None:
        if self.vjp_reads and self.save != "h":  # u is rebuilt from the previous step's h
            raise ValueError(f"charge {self.name!r}: a VJP reading u or x needs save='h'")
        if self.width is not None and not (self.width in self.tables and self.width in self.grads):
            raise ValueError(f"charge {self.name!r}: the width must be a table with a gradient")

    @property
    def vjp_grads(self) -> tuple[str, ...]:
        """The tables whose gradient ``vjp`` assigns (``grads`` without the width)."""
        return tuple(g for g in self.grads if g != self.width)

    @property
    def vjp_reads(self) -> frozenset[str]:
        """Which of ``u`` (the membrane before the step) and ``x`` (the step's input) the VJP
        reads. A compiled backward then keeps ``x`` and rebuilds ``u`` from the previous
        step's saved ``h`` by :data:`FIRE_RESET` (``v0`` at the first step), as the forward
        did; such a charge saves ``h`` itself."""
        names = {n for _, e in self.vjp for n in re.findall(r"[A-Za-z_]\w*", e)}
        return frozenset(names & {"u", "x"})

    @property
    def recompute(self) -> Stmts:
        """Statements that rebuild ``h`` from the saved value (empty when ``save == "h"``)."""
        names = [v for v, _ in self.forward]
        return self.forward[names.index(self.save) + 1 :]

    def constant_derivatives(self, scalars: Mapping[str, float]) -> tuple[float, float] | None:
        """``(∂h/∂u, ∂h/∂x)`` as Python floats where the VJP is ``gu = g*du, gx = g*dx`` and
        the fire is the plain one (no learnable width)."""
        if self.width is not None or dict(self.vjp) != {"gu": "g * du", "gx": "g * dx"}:
            return None
        d = derived_values(self, scalars)
        return d["du"], d["dx"]


_LIF_D = (("du", "1.0 - 1.0 / tau"), ("dx", "1.0 / tau"))
_LIF_ND_D = (("du", "1.0 - 1.0 / tau"), ("dx", "1.0"))
_CONST_VJP = (("gu", "g * du"), ("gx", "g * dx"))
_LIF = "u + (x - (u - vr)) / tau"
_LIF_ND = "u - (u - vr) / tau + x"

CHARGES: dict[str, ChargeSpec] = {
    s.name: s
    for s in (
        ChargeSpec("if", (("h", "u + x"),), _CONST_VJP, derived=(("du", "1.0"), ("dx", "1.0"))),
        ChargeSpec("lif", (("h", _LIF),), _CONST_VJP, ("tau", "vr"), _LIF_D, pow2=("tau",)),
        ChargeSpec(
            "lif_nodecay", (("h", _LIF_ND),), _CONST_VJP, ("tau", "vr"), _LIF_ND_D, pow2=("tau",)
        ),
        ChargeSpec(
            "klif",
            (("hl", _LIF), ("h", "relu(k * hl)")),
            (
                ("gf", "g * pos(h)"),  # ReLU'(k·hl): h > 0 exactly where k·hl > 0
                ("ghl", "gf * k"),
                ("gu", "ghl * du"),
                ("gx", "ghl * dx"),
                ("g_k", "gf * hl"),
            ),
            ("tau", "vr"),
            _LIF_D,
            tables=("k",),
            grads=("k",),
            save="hl",
            pow2=("tau",),
        ),
        ChargeSpec(
            "osc_lif",
            (("h", _LIF + " + drive"),),
            _CONST_VJP,
            ("tau", "vr"),
            _LIF_D,
            drives=("drive",),
            pow2=("tau",),
        ),
        ChargeSpec(
            "osc_lif_nodecay",
            (("h", _LIF_ND + " + drive"),),
            _CONST_VJP,
            ("tau", "vr"),
            _LIF_ND_D,
            drives=("drive",),
            pow2=("tau",),
        ),
        # PLIF (Fang et al., 2021): LIF with the decay factor r = 1/tau = sigmoid(w) learnable,
        # as a table (the module computes r under autograd, which carries the gradient to w);
        # dh/dr = x - (u - vr) reads u and x, so the kernels keep x and rebuild u in backward
        ChargeSpec(
            "plif",
            (("h", "u + (x - (u - vr)) * r"),),
            (("gu", "g * (1.0 - r)"), ("gx", "g * r"), ("g_r", "g * (x - (u - vr))")),
            ("vr",),
            tables=("r",),
            grads=("r",),
        ),
        # LIF with a learnable surrogate width w per layer (LearnableWidthLIF): LIF's charge and
        # VJP; w only changes the fire's backward (FIRE_RESET's scaled/dspike/dspike_dw), and
        # the kernels sum its gradient from there
        ChargeSpec(
            "lif_width",
            (("h", _LIF),),
            _CONST_VJP,
            ("tau", "vr"),
            _LIF_D,
            tables=("w",),
            grads=("w",),
            pow2=("tau",),
            width="w",
        ),  # fmt: skip
        ChargeSpec(
            "lif_nodecay_width",
            (("h", _LIF_ND),),
            _CONST_VJP,
            ("tau", "vr"),
            _LIF_ND_D,
            tables=("w",),
            grads=("w",),
            pow2=("tau",),
            width="w",
        ),  # fmt: skip
    )
}
"""The charges the compiled kernels implement, by name (``KernelSpec.kind``)."""


@dataclass(frozen=True)
class FireResetSpec:
    """Fire and reset, shared by every charge: written here once, evaluated by every backend.

    ``fire`` gives the spike ``s`` as 0/1 in ``h``'s type; ``distance`` the surrogate's
    argument; ``reset[mode]`` the membrane after the step; ``dreset[(mode, detach)]`` its
    derivative ``∂u/∂h`` (``s`` inside the reset treated as a constant when ``detach``).
    ``reset_zero`` is the hard reset when ``vreset`` is 0 (the PyTorch loop's shortcut: it
    leaves out ``+ 0·s``, which changes at most the sign of a zero membrane).

    A learnable surrogate width ``w`` (a charge's ``width`` table) evaluates the surrogate at
    ``scaled`` (from ``d``, the distance, and ``w``) giving ``sgw``; the spike's derivative
    ``sg = ∂s/∂h`` is then ``dspike`` and ``∂s/∂w`` is ``dspike_dw``. ``dreset_ds[(mode,
    detach)]`` is ``∂u/∂s`` of the reset (None where the reset's ``s`` is detached), so that
    ``∂L/∂s = gs + gu·dreset_ds`` reaches ``w`` through the spike alone: the spike's own
    derivative kept apart from the reset path's.
    """

    fire: str
    distance: str
    reset: Mapping[str, str]
    reset_zero: str
    dreset: Mapping[tuple[str, bool], str]
    scaled: str
    dspike: str
    dspike_dw: str
    dreset_ds: Mapping[tuple[str, bool], str | None]


FIRE_RESET = FireResetSpec(
    # h >= θ is H(h - θ) of the reference for a finite θ: h - θ is 0 exactly when h == θ
    fire="ge(h, theta)",
    distance="h - theta",
    # after a spike: hard h·0 + v_reset (an inf h becomes NaN, never finite), soft h - θ
    # (θ·s is exact for s in {0, 1})
    reset={"hard": "h * (1.0 - s) + vreset * s", "soft": "h - theta * s"},
    reset_zero="h * (1.0 - s)",
    dreset={
        ("hard", False): "1.0 - s + (vreset - h) * sg",
        ("hard", True): "1.0 - s",
        ("soft", False): "1.0 - theta * sg",
        ("soft", True): "1.0",
    },
    # learnable width: the surrogate at w·d; ∂s/∂h = g'(w·d)·w, ∂s/∂w = g'(w·d)·d (the
    # product rule's order of the autograd reference: the surrogate's factor first)
    scaled="w * d",
    dspike="sgw * w",
    dspike_dw="sgw * d",
    dreset_ds={
        ("hard", False): "vreset - h",
        ("hard", True): None,
        ("soft", False): "-theta",
        ("soft", True): None,
    },
)
"""Fire and reset of every neuron (:class:`~spikeweave.functional.dynamics.FireReset` holds
the values; the reference loop, the fused PyTorch loop and both kernels evaluate these)."""


@dataclass(frozen=True)
class SurrogateSpec:
    """A surrogate derivative ``sg`` of ``d = h - θ``; constants derived in double from ``a``."""

    code: int
    stmts: Stmts
    derived: Stmts = field(default=())


SURROGATE_SPECS: dict[type, SurrogateSpec] = {
    # sigmoid(a·d) = 1/(1 + exp(-(a·d))); then a·σ·(1 - σ)
    Sigmoid: SurrogateSpec(0, (("e", "1.0 / (1.0 + exp(-(a * d)))"), ("sg", "a * e * (1.0 - e)"))),
    # (a/2) / (1 + (π/2·a·d)²): a number over a tensor is reciprocal()·number in PyTorch
    Atan: SurrogateSpec(
        1,
        (("z", "c * d"), ("sg", "1.0 / (z * z + 1.0) * half")),
        (("c", "pi / 2 * a"), ("half", "a / 2")),
    ),
    FastSigmoid: SurrogateSpec(
        2,
        (("q", "a * abs(d) + 1.0"), ("sg", "1.0 / (q * q) * half")),
        (("half", "a / 2"),),
    ),
    Rectangular: SurrogateSpec(3, (("sg", "lt(abs(d), c) * a"),), (("c", "0.5 / a"),)),
    Triangle: SurrogateSpec(4, (("sg", "a * max0(1.0 - a * abs(d))"),)),
}
"""Built-in surrogates the kernels evaluate natively; any other is tabulated by PyTorch."""


def surrogate_spec(surrogate: Surrogate) -> SurrogateSpec | None:
    """The native spec of ``surrogate``'s exact type, or None (then a table is used)."""
    return SURROGATE_SPECS.get(type(surrogate))


def surrogate_constants(surrogate: Surrogate) -> dict[str, float]:
    """``a`` and the derived constants of a built-in surrogate, in double."""
    return dict(_surrogate_constants(type(surrogate), surrogate.alpha))


@cache
def _surrogate_constants(cls: type, alpha: float) -> tuple[tuple[str, float], ...]:
    spec = SURROGATE_SPECS[cls]
    env: dict[str, float] = {"a": alpha, "pi": math.pi}
    for name, expr in spec.derived:
        env[name] = float(eval(_code(expr), {"__builtins__": {}}, env))  # noqa: S307
    env.pop("pi")
    return tuple(env.items())


def derived_values(spec: ChargeSpec, scalars: Mapping[str, float]) -> dict[str, float]:
    """The spec's derived constants, computed in double from its scalars."""
    return dict(_derived(spec, tuple(float(scalars[k]) for k in spec.scalars)))


@cache
def _derived(spec: ChargeSpec, values: tuple[float, ...]) -> tuple[tuple[str, float], ...]:
    env = dict(zip(spec.scalars, values, strict=True))
    out = []
    for name, expr in spec.derived:
        env[name] = float(eval(_code(expr), {"__builtins__": {}}, env))  # noqa: S307
        out.append((name, env[name]))
    return tuple(out)


# ------------------------------------------------------------------------------- parsing

_FUNCS = ("relu", "pos", "exp", "abs", "lt", "ge", "max0")


@cache
def _parse(expr: str) -> ast.expr:
    node = ast.parse(expr, mode="eval").body
    for n in ast.walk(node):
        ok = isinstance(
            n,
            ast.BinOp
            | ast.UnaryOp
            | ast.Constant
            | ast.Name
            | ast.Call
            | ast.Load
            | ast.Add
            | ast.Sub
            | ast.Mult
            | ast.Div
            | ast.USub,
        )
        if isinstance(n, ast.Call):
            ok = isinstance(n.func, ast.Name) and n.func.id in _FUNCS and not n.keywords
        if isinstance(n, ast.Constant):
            ok = isinstance(n.value, int | float) and not isinstance(n.value, bool)
        if not ok:
            raise ValueError(f"spec expression {expr!r}: {ast.dump(n)} is not allowed")
    return node


@cache
def _code(expr: str):
    _parse(expr)
    return compile(expr, "<spec>", "eval")


_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _emit(node: ast.expr, lang: str, names: Callable[[str], str], inv: Mapping[str, str]) -> str:
    def rec(n: ast.expr) -> str:
        if isinstance(n, ast.Constant):
            v = float(n.value)
            return f"((REAL){v!r})" if lang == "c" else repr(v)
        if isinstance(n, ast.Name):
            return names(n.id)
        if isinstance(n, ast.UnaryOp):
            return f"(-{rec(n.operand)})"
        if isinstance(n, ast.BinOp):
            a, b = rec(n.left), rec(n.right)
            if isinstance(n.op, ast.Div):
                if isinstance(n.right, ast.Name) and n.right.id in inv:
                    return f"({a} * {inv[n.right.id]})"  # exact reciprocal: same rounding
                if lang == "triton":  # a number on the left is widened to b's type first
                    fn = "_rdiv" if isinstance(n.left, ast.Constant) else "_div"
                    return f"{fn}({a}, {b})"
            return f"({a} {_OPS[type(n.op)]} {b})"
        assert isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        args = ", ".join(rec(a) for a in n.args)
        if lang == "c":
            return {"exp": "EXP", "abs": "FABS"}.get(n.func.id, "SF_" + n.func.id.upper()) + (
                f"({args})"
            )
        return f"_{n.func.id}({args})"

    return rec(node)


def c_expr(expr: str, names: Callable[[str], str], inv: Mapping[str, str] | None = None) -> str:
    """``expr`` as C (``REAL`` arithmetic); divisions by a name in ``inv`` multiply by it."""
    return _emit(_parse(expr), "c", names, inv or {})


def triton_expr(
    expr: str, names: Callable[[str], str], inv: Mapping[str, str] | None = None
) -> str:
    """``expr`` as Triton: ``/`` is ``_div``/``_rdiv`` (IEEE ``div_rn`` in float32), functions
    ``_fn``; divisions by a name in ``inv`` multiply by it (PyTorch on CUDA divides a tensor
    by a Python number that way: ``x * (1/tau)``)."""
    return _emit(_parse(expr), "triton", names, inv or {})


# ------------------------------------------------------------------------- torch evaluation


def _pos(a: torch.Tensor) -> torch.Tensor:
    return a > 0


def _lt(a: torch.Tensor, b: float, out: torch.Tensor | None = None) -> torch.Tensor:
    return torch.lt(a, b, out=torch.empty_like(a) if out is None else out)  # 0/1 in a's dtype


def _ge(a: torch.Tensor, b: float, out: torch.Tensor | None = None) -> torch.Tensor:
    return torch.ge(a, b, out=torch.empty_like(a) if out is None else out)  # 0/1 in a's dtype


def _max0(a: torch.Tensor) -> torch.Tensor:
    return a.clamp_min(0)


_TORCH_FUNCS = {
    "relu": torch.relu,
    "pos": _pos,
    "exp": torch.exp,
    "abs": torch.abs,
    "lt": _lt,
    "ge": _ge,
    "max0": _max0,
}


def _run(stmts: Stmts, env: dict) -> dict:
    g = {"__builtins__": {}, **_TORCH_FUNCS}
    for name, expr in stmts:
        env[name] = eval(_code(expr), g, env)  # noqa: S307  (parsed and restricted above)
    return env


def torch_charge(
    spec: ChargeSpec,
    u: torch.Tensor,
    x: torch.Tensor,
    scalars: Mapping[str, float],
    tables: Mapping[str, torch.Tensor] | None = None,
    drives: Mapping[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(h, saved or None)`` for one step, with PyTorch ops exactly as written.

    ``drives`` hold the values of this step (``drive[t]``). ``saved`` is None when it is ``h``.
    """
    env = {"u": u, "x": x, **{k: scalars[k] for k in spec.scalars}}
    env.update(tables or {})
    env.update(drives or {})
    _run(spec.forward, env)
    return env["h"], (None if spec.save == "h" else env[spec.save])


_TORCH_BINOPS = {ast.Add: torch.add, ast.Sub: torch.sub, ast.Mult: torch.mul, ast.Div: torch.div}
_PY_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


@cache
def _into(expr: str) -> Callable[[dict, torch.Tensor], None]:
    """``expr`` evaluated with its outermost operation writing into ``out`` (same operations,
    same rounding as :func:`_run`; saves the copy of every step's result into a buffer)."""
    node = _parse(expr)
    code = {}
    if isinstance(node, ast.Call) and node.func.id in ("lt", "ge"):  # type: ignore[attr-defined]
        args = [_code(ast.unparse(a)) for a in node.args]
        fn = _TORCH_FUNCS[node.func.id]  # type: ignore[attr-defined]
        g0 = {"__builtins__": {}, **_TORCH_FUNCS}

        def run_cmp(env: dict, out: torch.Tensor) -> None:
            fn(*(eval(a, g0, env) for a in args), out=out)  # noqa: S307

        return run_cmp
    if isinstance(node, ast.BinOp):
        code = {"a": _code(ast.unparse(node.left)), "b": _code(ast.unparse(node.right))}
        op, py = _TORCH_BINOPS[type(node.op)], _PY_BINOPS[type(node.op)]
    whole = _code(expr)
    g = {"__builtins__": {}, **_TORCH_FUNCS}

    def run(env: dict, out: torch.Tensor) -> None:
        if not code:
            out.copy_(eval(whole, g, env))  # noqa: S307
            return
        a, b = eval(code["a"], g, env), eval(code["b"], g, env)  # noqa: S307
        if isinstance(a, torch.Tensor) and a.shape == out.shape and a.dtype == out.dtype:
            op(a, b, out=out)
        else:  # broadcasting or a Python number on the left: as the operator does, then copy
            out.copy_(py(a, b))

    return run


def torch_charge_into(
    spec: ChargeSpec,
    out: torch.Tensor,
    u: torch.Tensor,
    x: torch.Tensor,
    scalars: Mapping[str, float],
    tables: Mapping[str, torch.Tensor] | None = None,
    drives: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor | None:
    """:func:`torch_charge` writing ``h`` into ``out``; returns the saved value or None."""
    env = {"u": u, "x": x, **{k: scalars[k] for k in spec.scalars}}
    env.update(tables or {})
    env.update(drives or {})
    _run(spec.forward[:-1], env)
    name, expr = spec.forward[-1]
    assert name == "h", "a charge's last statement assigns h"
    _into(expr)(env, out)
    return None if spec.save == "h" else env[spec.save]


def torch_surrogate(surrogate: Surrogate, d: torch.Tensor) -> torch.Tensor:
    """``surrogate.derivative(d)``; a built-in one evaluated from its spec (same values to
    rounding, cheaper: no ``pow``, no bool masks), any other by its own ``derivative``."""
    spec = SURROGATE_SPECS.get(type(surrogate))
    if spec is None:
        return surrogate.derivative(d)
    env: dict = {"d": d, **surrogate_constants(surrogate)}
    g = {"__builtins__": {}, **_TORCH_FUNCS}
    for name, expr in spec.stmts:
        env[name] = eval(_code(expr), g, env)  # noqa: S307
    return env["sg"]


def torch_recompute(
    spec: ChargeSpec,
    saved: torch.Tensor,
    scalars: Mapping[str, float],
    tables: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``h`` from the saved value (``saved`` itself when the spec saves ``h``); any shape whose
    trailing axes the tables broadcast against. Not for charges whose recompute reads a drive."""
    if spec.save == "h":
        return saved
    env = {spec.save: saved, **{k: scalars[k] for k in spec.scalars}}
    env.update({k: v.detach() for k, v in (tables or {}).items()})
    return _run(spec.recompute, env)["h"]


def torch_vjp(
    spec: ChargeSpec,
    g: torch.Tensor,
    h: torch.Tensor,
    saved: torch.Tensor | None,
    scalars: Mapping[str, float],
    tables: Mapping[str, torch.Tensor] | None = None,
    u: torch.Tensor | None = None,
    x: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """``(∂L/∂u, ∂L/∂x, elementwise ∂L/∂table for each of grads)`` given ``g = ∂L/∂h``;
    ``u`` and ``x`` (the step's membrane before it and input) where the VJP reads them."""
    env = {"g": g, "h": h, **derived_values(spec, scalars), **(tables or {})}
    env.update({k: v for k, v in (("u", u), ("x", x)) if v is not None})
    env.update({k: scalars[k] for k in spec.scalars})
    if saved is not None:
        env[spec.save] = saved
    _run(spec.vjp, env)
    return env["gu"], env["gx"], tuple(env["g_" + p] for p in spec.grads)


# ------------------------------------------------------------------------- fire and reset


def torch_eval(expr: str, **env):
    """``expr`` of the spec language evaluated with PyTorch ops, exactly as written (under
    autograd where its inputs need gradients)."""
    return eval(_code(expr), {"__builtins__": {}, **_TORCH_FUNCS}, env)  # noqa: S307


def torch_fire(h: torch.Tensor, theta: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """The spikes of :data:`FIRE_RESET` as 0/1 in ``h``'s dtype (written into ``out``)."""
    if out is None:
        out = torch.empty_like(h)
    _into(FIRE_RESET.fire)({"h": h, "theta": theta}, out)
    return out


def torch_reset(
    h: torch.Tensor,
    s: torch.Tensor,
    theta: float,
    vreset: float,
    mode: str,
    zero_shortcut: bool = False,
) -> torch.Tensor:
    """The membrane after the step, :data:`FIRE_RESET` ``reset[mode]`` (autograd as written).

    ``zero_shortcut``: a hard reset to 0 leaves out ``+ 0·s`` (``reset_zero``; the fused loop's
    saving, the reference keeps the whole expression)."""
    short = zero_shortcut and mode == "hard" and vreset == 0.0
    expr = FIRE_RESET.reset_zero if short else FIRE_RESET.reset[mode]
    return torch_eval(expr, h=h, s=s, theta=theta, vreset=vreset)


def torch_dreset(
    h: torch.Tensor,
    s: torch.Tensor,
    sg: torch.Tensor | None,
    theta: float,
    vreset: float,
    mode: str,
    detach: bool,
) -> torch.Tensor:
    """``∂u/∂h`` of the reset, :data:`FIRE_RESET` ``dreset[(mode, detach)]``, as a tensor."""
    d = torch_eval(FIRE_RESET.dreset[(mode, detach)], h=h, s=s, sg=sg, theta=theta, vreset=vreset)
    return d if isinstance(d, torch.Tensor) else torch.full_like(h, d)


def torch_width_fire(
    surrogate: Surrogate, h: torch.Tensor, theta: float, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(d, ∂s/∂h, ∂s/∂w)`` of a spike with learnable width ``w`` (broadcast against ``h``):
    :data:`FIRE_RESET`'s ``distance``, ``dspike`` and ``dspike_dw`` with PyTorch ops."""
    d = torch_eval(FIRE_RESET.distance, h=h, theta=theta)
    sgw = torch_surrogate(surrogate, torch_eval(FIRE_RESET.scaled, d=d, w=w))
    dsdh = torch_eval(FIRE_RESET.dspike, sgw=sgw, w=w)
    return d, dsdh, torch_eval(FIRE_RESET.dspike_dw, sgw=sgw, d=d)
