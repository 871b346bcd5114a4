"""C source of the compiled CPU kernel, generated from :mod:`.spec` into the C templates.

One forward and one backward block function per charge (plus a variant dividing by a
power-of-two ``tau`` as a multiplication by its exact reciprocal); the charge, fire, reset,
the reset's derivative and the surrogate derivatives are all generated from the specs, and
the skeleton around them (loops, threads, dispatch) is ``templates/kernel.c.tmpl`` and its
neighbours. Nothing of a neuron is written here by hand. Building and caching the library is
:mod:`.kernel_build`; calling it is :mod:`.cpu_kernel`.

The kernel evaluates exactly the same floating-point operations as the reference, in the same
order and without FMA contraction (the build passes ``-ffp-contract=off``).
"""

from __future__ import annotations

import torch

from .spec import CHARGES, FIRE_RESET, SURROGATE_SPECS, ChargeSpec, c_expr
from .template import render

__all__ = ["KINDS", "MAXP", "MAXT", "SG_TABLE", "VERSION", "charge_index", "source"]

VERSION = 14  # the library's own check against a stale build; bump with the C interface
SG_TABLE = 5  # surrogate derivative precomputed by PyTorch and passed in
MAXP = 8  # scalars + derived constants per charge
MAXT = 2  # tables / drives per charge
KINDS = list(CHARGES)  # kernel index 2*i: plain, 2*i + 1: power-of-two variant
_RESET_MODES = ("hard", "soft")  # j->soft: 0, 1

_REALS = {
    torch.float32: ("float", "sf_expf", "fabsf", "FLT_MAX", "exp_float32.c.tmpl"),
    torch.float64: ("double", "sf_exp", "fabs", "DBL_MAX", "exp_float64.c.tmpl"),
}


def real_name(dtype: torch.dtype) -> str:
    """The C type of ``dtype`` (``float`` or ``double``; part of the library's file name)."""
    return _REALS[dtype][0]


def charge_index(kind: str, pow2: bool) -> int:
    """The kernel's code for charge ``kind`` (its power-of-two variant when ``pow2``)."""
    return 2 * KINDS.index(kind) + int(pow2)


def _vars(name: str) -> str:
    return "v_" + name


def _indent(lines: list[str], pad: str) -> str:
    return ("\n" + pad).join(lines)


def _charge_functions(idx: int, cs: ChargeSpec, pow2: bool) -> str:
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
    consts += [f"REAL dr_{n}[SF_BS];" for n in cs.drives]
    loads = [f"const REAL v_{n} = tb_{n}[i];" for n in cs.tables]
    loads += [f"const REAL v_{n} = dr_{n}[i];" for n in cs.drives]
    drive_rows = [
        f"SFX(expand)((const REAL *)j->drv[{i}] + t * j->M, j->M, nb, m, dr_{n});"
        for i, n in enumerate(cs.drives)
    ]

    def stmts(lst) -> str:
        return "\n".join(f"            REAL v_{v} = {c_expr(e, _vars, inv)};" for v, e in lst)

    pad3 = "\n            "
    fire = c_expr(FIRE_RESET.fire, _vars)
    loops = []
    for soft, mode in enumerate(_RESET_MODES):
        hot = [False] if cs.save == "h" else [True, False]  # h written besides the saved value
        for k, with_h in enumerate(hot):
            cond = f"if ({'' if soft else '!'}j->soft{' && hot' if with_h else ''}) "
            cond = ("else " if soft or k else "") + cond
            loops.append(
                render(
                    "fwd_loop.c.tmpl",
                    cond=cond,
                    loads=pad3.join(loads),
                    charge=stmts(cs.forward),
                    fire=fire,
                    save=cs.save,
                    hout="hot[i] = v_h;" if with_h else "",
                    reset=c_expr(FIRE_RESET.reset[mode], _vars),
                ).rstrip("\n")
            )
    recompute = cs.recompute
    rec_loop = ""
    if recompute:
        rec_loop = f"""
        for (int64_t i = 0; i < m; ++i) {{
            const REAL v_{cs.save} = svt[i];
            {pad3.join(loads)}
{stmts(recompute)}
            hb[i] = v_h;
        }}"""
    dreset_cases = []
    for soft, mode in enumerate(_RESET_MODES):
        for detach in (False, True):
            expr = c_expr(FIRE_RESET.dreset[(mode, detach)], _vars)
            dreset_cases.append(
                f"        case {2 * soft + int(detach)}: for (int64_t i = 0; i < m; ++i) {{\n"
                f"            const REAL v_h = hp[i], v_sg = sg[i];\n"
                f"            const REAL v_s = {fire};\n"
                f"            (void)v_s; (void)v_sg;\n"
                f"            g[i] = gu[i] * {expr};\n"
                f"        }} break;"
            )
    # a VJP reading the step's membrane u or input x: u rebuilt from the previous step's h
    # by the reset (as the forward computed it), v0 or v_reset at the first step; x read
    u_prev = ""
    vjp_loads = []
    if "u" in cs.vjp_reads:
        resets = []
        for soft, mode in enumerate(_RESET_MODES):
            resets.append(
                f"{'else ' if soft else ''}if ({'' if soft else '!'}j->soft) "
                f"for (int64_t i = 0; i < m; ++i) {{\n"
                f"                const REAL v_h = hq[i];\n"
                f"                const REAL v_s = {fire};\n"
                f"                ub[i] = {c_expr(FIRE_RESET.reset[mode], _vars)};\n"
                f"            }}"
            )
        u_prev = (
            "\n        REAL ub[SF_BS];\n        if (t > 0) {\n"
            "            const REAL *hq = svt - N;  /* h of the previous step */\n"
            f"            {' '.join(resets)}\n"
            "        } else {\n"
            "            const REAL *u0 = (const REAL *)j->v0;\n"
            "            for (int64_t i = 0; i < m; ++i) ub[i] = u0 ? u0[nb + i] : vr_;\n"
            "        }"
        )
        vjp_loads.append("const REAL v_u = ub[i];")
    if "x" in cs.vjp_reads:
        u_prev += "\n        const REAL *xb = (const REAL *)j->x + t * j->x_ts + nb;"
        vjp_loads.append("const REAL v_x = xb[i];")
    vjp_assign = ["gu[i] = v_gu;", "gxt[i] = v_gx;"]
    vjp_assign += [f"ga_{n}[i] += v_g_{n};" for n in cs.vjp_grads]
    sg_calc, width_acc = _width_fire(cs)
    grad_init = "".join(
        f"\n    REAL ga_{n}[SF_BS];\n    for (int64_t i = 0; i < m; ++i) ga_{n}[i] = (REAL)0;"
        for n in cs.grads
    )
    grad_out = "".join(
        f"\n    if (j->gp[{cs.tables.index(n)}]) for (int64_t i = 0; i < m; ++i) "
        f"((REAL *)j->gp[{cs.tables.index(n)}])[nb + i] = ga_{n}[i];"
        for n in cs.grads
    )
    return render(
        "charge.c.tmpl",
        name=cs.name + (" (power-of-two tau)" if pow2 else ""),
        idx=idx,
        consts=_indent(consts, "    "),
        drive_rows=_indent(drive_rows, "        "),
        fwd_loops="\n".join(loops),
        rec_loop=rec_loop,
        hsrc="hb" if recompute else "svt",
        grad_init=grad_init,
        dreset_cases="\n".join(dreset_cases),
        sg_calc=sg_calc,
        width_acc=width_acc,
        save_load=f"const REAL v_{cs.save} = svt[i];" if cs.save != "h" else "",
        u_prev=u_prev,
        vjp_loads=" ".join(vjp_loads),
        loads=pad3.join(loads),
        vjp=stmts(cs.vjp),
        vjp_assign=" ".join(vjp_assign),
        grad_out=grad_out,
    )


def _width_fire(cs: ChargeSpec) -> tuple[str, str]:
    """The backward's surrogate evaluation, and for a charge with a learnable width ``w``
    (:attr:`ChargeSpec.width`) the accumulation of ``∂L/∂w``, from :data:`FIRE_RESET`.

    With a width the surrogate is evaluated at ``scaled`` (the C surrogate takes it as its
    ``h`` with threshold 0: ``a - 0`` is ``a`` exactly), then ``sg`` becomes ``dspike`` and
    ``swb`` holds ``dspike_dw``; ``∂L/∂s`` (the spike's gradient, plus ``gu·dreset_ds`` where
    the reset is not detached) times ``swb`` is summed into the width's gradient."""
    plain = "        if (!j->table) SFX(surrogate)(j->surrogate, hp, th, j->sc, sgb, m);"
    if cs.width is None:
        return plain, ""
    w = cs.width
    dist = c_expr(FIRE_RESET.distance, _vars)
    sg_calc = f"""        /* learnable width: surrogate at w*d; ds/dh into sgb, ds/dw into swb */
        REAL swb[SF_BS];
        for (int64_t i = 0; i < m; ++i) {{
            const REAL v_h = hp[i], v_{w} = tb_{w}[i];
            const REAL v_d = {dist};
            swb[i] = {c_expr(FIRE_RESET.scaled, _vars)};
        }}
        if (!j->table) SFX(surrogate)(j->surrogate, swb, (REAL)0, j->sc, sgb, m);
        for (int64_t i = 0; i < m; ++i) {{
            const REAL v_h = hp[i], v_{w} = tb_{w}[i], v_sgw = sg[i];
            const REAL v_d = {dist};
            sgb[i] = {c_expr(FIRE_RESET.dspike, _vars)};
            swb[i] = {c_expr(FIRE_RESET.dspike_dw, _vars)};
        }}
        sg = sgb;"""
    cases = []
    for soft, mode in enumerate(_RESET_MODES):
        for detach in (False, True):
            ds = FIRE_RESET.dreset_ds[(mode, detach)]
            if ds is None:  # the reset's s detached: only the spike's own gradient
                body = f"if (gst) for (int64_t i = 0; i < m; ++i) ga_{w}[i] += gst[i] * swb[i];"
            else:
                body = (
                    "for (int64_t i = 0; i < m; ++i) {\n"
                    "            const REAL v_h = hp[i];\n"
                    f"            REAL gsum = gu[i] * {c_expr(ds, _vars)};\n"
                    "            if (gst) gsum = gst[i] + gsum;\n"
                    f"            ga_{w}[i] += gsum * swb[i];\n"
                    "        }"
                )
            cases.append(f"        case {2 * soft + int(detach)}: {body} break;")
    width_acc = (
        "\n        /* dL/ds (the spike's own gradient, plus the reset path's unless detached) "
        "times ds/dw */\n        switch (mode) {\n"
        + "\n".join(cases)
        + "\n        default: break;\n        }"
    )
    return sg_calc, width_acc


def _surrogates() -> str:
    """``g'(h - theta)`` for m neurons of one step, one case per built-in surrogate spec;
    constants ``sc`` as :func:`~spikeweave.functional.spec.surrogate_constants` orders them."""
    cases = []
    names_h = {"h": "h[i]", "theta": "v_theta"}
    distance = c_expr(FIRE_RESET.distance, lambda n: names_h.get(n, _vars(n)))
    for sp in sorted(SURROGATE_SPECS.values(), key=lambda s: s.code):
        names = ["a", *(n for n, _ in sp.derived)]
        consts = " ".join(f"const REAL v_{n} = (REAL)sc[{i}];" for i, n in enumerate(names))
        body = "\n".join(f"            REAL v_{v} = {c_expr(e, _vars)};" for v, e in sp.stmts)
        cases.append(
            f"""    case {sp.code}: {{
        {consts}
        for (int64_t i = 0; i < m; ++i) {{
            const REAL v_d = {distance};
{body}
            sg[i] = v_sg;
        }}
        break;
    }}"""
        )
    return render("surrogate.c.tmpl", cases="\n".join(cases))


def source(dtype: torch.dtype) -> str:
    """The C source for one dtype (one small library per dtype: each compiles in ~0.5 s)."""
    real, exp, fabs, maxv, exp_file = _REALS[dtype]
    charges, cases_f, cases_b = [], [], []
    for name in KINDS:
        for pow2 in (False, True):
            if pow2 and not CHARGES[name].pow2:
                continue
            idx = charge_index(name, pow2)
            charges.append(_charge_functions(idx, CHARGES[name], pow2))
            cases_f.append(f"            case {idx}: bad |= SFX(fwd_{idx})(j, nb, m); break;")
            cases_b.append(f"            case {idx}: SFX(bwd_{idx})(j, nb, m); break;")
    return render(
        "kernel.c.tmpl",
        version=VERSION,
        maxt=MAXT,
        maxp=MAXP,
        exp=render(exp_file),
        real=real,
        maxv=maxv,
        exp_name=exp,
        fabs=fabs,
        surrogates=_surrogates(),
        charges="".join(charges),
        forward_cases="\n".join(cases_f),
        backward_cases="\n".join(cases_b),
    )
