"""The charge and surrogate specs: one description, checked mechanically against every place
that evaluates it (the PyTorch reference, the C source, the Triton source)."""

from __future__ import annotations

import pytest
import torch

from spikeweave.functional import c_codegen, cpu_kernel, fused, spec, template, triton_lif
from spikeweave.functional.backend import NeuronBackend
from spikeweave.functional.dynamics import FireReset, IFDynamics, KLIFDynamics, LIFDynamics
from spikeweave.functional.neuron import reset
from spikeweave.surrogate import SURROGATES, Atan


@pytest.mark.parametrize("cls", list(SURROGATES.values()), ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_surrogate_specs_equal_the_surrogates(cls, dtype):
    s = cls(alpha=1.7)
    d = torch.linspace(-3, 3, 2001, dtype=dtype)
    got = spec.torch_surrogate(s, d)
    want = s.derivative(d)
    tol = dict(rtol=1e-14, atol=1e-15) if dtype == torch.float64 else dict(rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(got, want, **tol)
    if cls.__name__ != "Sigmoid":  # sigmoid: torch.sigmoid rounds its own exp
        assert torch.equal(got, want), "written with the surrogate's own operations"


def test_constant_derivatives_come_from_the_spec():
    assert LIFDynamics(4.0, 0.0, True).constant_derivatives() == (0.75, 0.25)
    assert LIFDynamics(4.0, 0.0, False).constant_derivatives() == (0.75, 1.0)
    assert IFDynamics().constant_derivatives() == (1.0, 1.0)
    assert KLIFDynamics(torch.ones(()), 2.0, 0.0).constant_derivatives() is None


def test_generated_sources_carry_each_charge():
    c_src = c_codegen.source(torch.float32)
    t_src = triton_lif.source(interpret=False)
    for name, cs in spec.CHARGES.items():
        assert f"def fwd_{name}(" in t_src and f"def bwd_{name}(" in t_src
        for _, expr in cs.forward + cs.vjp:
            assert spec.c_expr(expr, lambda n: "v_" + n) in c_src
            inv = {sc: "inv_" + sc for sc in cs.scalars}  # x / tau: x * (1/tau) on CUDA
            assert spec.triton_expr(expr, lambda n: "v_" + n, inv) in t_src
    assert "(v_u + ((v_x - (v_u - v_vr)) * inv_tau))" in c_src  # the power-of-two variant


@pytest.mark.parametrize(
    "bad", ["u ** 2", "__import__('os')", "u.abs()", "sin(u)", "u if x else u"]
)
def test_spec_language_is_closed(bad):
    with pytest.raises(ValueError, match="not allowed"):
        spec._parse(bad)


def test_generated_sources_fire_and_reset_from_the_one_spec():
    c_src = c_codegen.source(torch.float64)
    t_src = triton_lif.source(interpret=False)
    fr = spec.FIRE_RESET
    v = lambda n: "v_" + n  # noqa: E731
    for expr in (fr.fire, *fr.reset.values(), *fr.dreset.values()):
        if expr != "1.0":  # soft, detached: a constant
            assert spec.c_expr(expr, v) in c_src
            assert spec.triton_expr(expr, v) in t_src
    for src in (c_src, t_src):  # no kernel writes its own comparison with the threshold
        assert "- th) >=" not in src and "v_h >= th" not in src


@pytest.mark.parametrize("mode", ["hard", "soft"])
@pytest.mark.parametrize("v_reset", [0.0, -0.3])
def test_fused_reset_equals_reference_reset(mode, v_reset):
    h = torch.tensor([-1.0, 0.0, 0.5, 0.8, 0.81, 3.0, float("inf")], dtype=torch.float64)
    fr = FireReset(0.8, v_reset, mode, Atan(), True)
    s = fr.spikes(h)
    assert torch.equal(s, (h - 0.8 >= 0).to(h.dtype))
    got = fr.reset_value(h, s)
    want = reset(h, s, 0.8, v_reset, mode, True)
    assert torch.equal(got.nan_to_num(7.0), want.nan_to_num(7.0))


def test_every_backend_implements_the_protocol():
    for b in (cpu_kernel.BACKEND, triton_lif.BACKEND, fused.TORCH):
        assert isinstance(b, NeuronBackend), b


def test_templates_refuse_an_unfilled_field():
    with pytest.raises(KeyError):
        template.render("fwd_loop.c.tmpl", cond="")


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_reset_derivative_splits_into_the_detached_part_and_the_spikes_path(mode):
    """``dreset_ds`` (what a learnable width learns from the reset) is exactly the part of
    ``∂u/∂h`` that the spike inside the reset carries: kept minus detached, over ``sg``."""
    g = torch.Generator().manual_seed(0)
    h, sg = torch.randn(200, generator=g, dtype=torch.float64), torch.rand(200, generator=g)
    env = dict(h=h, s=(h >= 0.7).double(), sg=sg.double(), theta=0.7, vreset=-0.2)
    kept = spec.torch_eval(spec.FIRE_RESET.dreset[(mode, False)], **env)
    detached = spec.torch_eval(spec.FIRE_RESET.dreset[(mode, True)], **env)
    ds = spec.torch_eval(spec.FIRE_RESET.dreset_ds[(mode, False)], **env)
    torch.testing.assert_close(kept, detached + ds * env["sg"], rtol=1e-15, atol=1e-15)
    assert spec.FIRE_RESET.dreset_ds[(mode, True)] is None


def test_a_width_is_a_table_with_a_gradient_that_the_vjp_leaves_to_the_fire():
    cs = spec.CHARGES["lif_width"]
    assert cs.width == "w" and cs.grads == ("w",) and cs.vjp_grads == ()
    assert cs.constant_derivatives({"tau": 2.0, "vr": 0.0}) is None  # the fire is not plain
    with pytest.raises(ValueError, match="width"):
        spec.ChargeSpec("bad", (("h", "u + x"),), (), tables=("w",), width="w")
    assert "ga_w[i] += gsum * swb[i]" in c_codegen.source(torch.float64)
    assert "ga0 = ga0 + gsw * v_sw" in triton_lif.source(interpret=False)
