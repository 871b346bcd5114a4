"""The klif-vs-lif ablation neurons through the compiled kernels, against the per-step reference.

PLIF (learnable τ) runs the spec ``"plif"`` on the fused PyTorch loop, the C kernel and Triton
(in its CPU interpreter where no GPU is present); FlooredLIF runs KLIF's kernel with ``k``
fixed; LearnableWidthLIF runs ``"lif_width"`` (the surrogate's width learnable, its gradient
summed by each kernel's backward). Spikes and final membranes are compared with
``torch.equal``; gradients of the input, the initial membrane and the learnable parameter
within rtol 1e-10 / atol 1e-12 (float64) and rtol 1e-4 / atol 1e-5 (float32), for hard and
soft reset, the reset path detached or not, and backward keeping ``h`` (``memory="save"``) or
recomputing it (``"recompute"``).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from spikeweave.ablation_neurons import PLIF, FlooredLIF, LearnableWidthLIF
from spikeweave.errors import ConfigError
from spikeweave.experiments.timing import neuron_backends
from spikeweave.functional import cpu_kernel, memory, triton_lif
from spikeweave.functional.fused import neuron_multistep, select_backend
from spikeweave.surrogate import Atan, Rectangular, Sigmoid, Surrogate

TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-4, atol=1e-5),
}
OPTIONS = list(itertools.product(["hard", "soft"], [True, False], ["save", "recompute"]))
SURR = [Sigmoid(4.0), Atan(), Rectangular()]


@pytest.fixture
def kernel(request, monkeypatch):
    """The backend named by the test's parameter, made runnable here: the C kernel where it
    builds, Triton in its CPU interpreter (scoped to the test) where no GPU is present."""
    backend = request.param
    if backend == "cpu" and not cpu_kernel.available():
        pytest.skip(f"compiled CPU kernel unavailable: {cpu_kernel.unavailable_reason()}")
    if backend == "triton":
        if torch.cuda.is_available():
            pytest.skip("CUDA present: tests/functional/test_triton.py runs the compiled kernels")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        pytest.importorskip("triton")
        monkeypatch.setattr(triton_lif, "_kernels", None)
        monkeypatch.setattr(triton_lif, "_reason", None)
        if triton_lif._get() is None:
            pytest.skip(f"Triton interpreter unavailable: {triton_lif._reason}")
        monkeypatch.setattr(triton_lif.BACKEND, "_why_not", lambda x: None)
    return backend


def _data(dtype, T=7, shape=(3, 2, 5)):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn((T, *shape), generator=g) * 1.2 + 0.5).to(dtype)
    v0 = (torch.rand(shape, generator=g) * 0.3).to(dtype)
    ws = torch.randn((T, *shape), generator=g).to(dtype)
    wv = torch.randn(shape, generator=g).to(dtype)
    return x, v0, ws, wv


def _run(neuron, x, v0, ws, wv):
    """Spikes, final membrane and the gradients of ``s·ws + v·wv`` (input, state, params).

    The module's own dynamics and fire/reset through :func:`neuron_multistep` (its forward
    minus the finite-input check, whose deferred CUDA flag the interpreter cannot take)."""
    xi, vi = x.clone().requires_grad_(), v0.clone().requires_grad_()
    s, v, _ = neuron_multistep(
        xi, vi, neuron.dynamics(xi), neuron.fire_reset(), backend=neuron.backend,
        memory=neuron.memory,
    )  # fmt: skip
    ((s * ws).sum() + (v * wv).sum()).backward()
    return s.detach(), v.detach(), xi.grad, vi.grad, [p.grad for p in neuron.parameters()]


def _check(got, ref, dtype):
    assert torch.equal(got[0], ref[0]), "spikes differ"
    assert 0 < float(got[0].mean()) < 1
    assert torch.equal(got[1], ref[1]), "final membranes differ"
    torch.testing.assert_close(got[2], ref[2], **TOL[dtype])
    torch.testing.assert_close(got[3], ref[3], **TOL[dtype])
    assert len(got[4]) == len(ref[4])
    for a, b in zip(got[4], ref[4], strict=True):
        assert a is not None and bool(a.abs().sum() > 0)
        torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.rotate("dtype")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reset,detach,memory", OPTIONS, ids=str)
@pytest.mark.parametrize("kernel", ["torch", "cpu", "triton"], indirect=True)
def test_plif_on_every_backend_equals_the_reference(kernel, reset, detach, memory, dtype):
    surrogate = SURR[OPTIONS.index((reset, detach, memory)) % len(SURR)]
    kw = dict(tau=1.7, threshold=0.9, v_reset=-0.1, reset=reset, detach_reset=detach)
    kw["surrogate"] = surrogate
    data = _data(dtype)
    ref = _run(PLIF(backend="reference", **kw).to(dtype), *data)
    got = _run(PLIF(backend=kernel, memory=memory, **kw).to(dtype), *data)
    _check(got, ref, dtype)


@pytest.mark.parametrize("kernel", ["cpu", "triton"], indirect=True)
def test_plif_gradient_of_tau_alone_and_without_a_graph(kernel):
    """Only ``w`` needs a gradient (the first layer's input does not), and under no_grad the
    kernel keeps nothing: the same spikes, and ``w``'s gradient equals the reference's."""
    x, _, ws, _ = _data(torch.float64)
    fast, ref = PLIF(tau=3.0, backend=kernel).double(), PLIF(tau=3.0, backend="reference").double()

    def spikes(n):
        return neuron_multistep(x, None, n.dynamics(x), n.fire_reset(), backend=n.backend)[0]

    (spikes(fast) * ws).sum().backward()
    (spikes(ref) * ws).sum().backward()
    torch.testing.assert_close(fast.w.grad, ref.w.grad, **TOL[torch.float64])
    with torch.no_grad():
        assert torch.equal(spikes(fast), spikes(ref))


def test_plif_auto_picks_the_compiled_kernel():
    if not cpu_kernel.available():
        pytest.skip(f"compiled CPU kernel unavailable: {cpu_kernel.unavailable_reason()}")
    x = torch.rand(4, 2, 3)
    n = PLIF()
    spec = n.dynamics(x).kernel_spec()
    assert spec is not None and spec.kind == "plif"
    assert select_backend(x, n.dynamics(x), n.fire_reset(), "auto") == "cpu"


@pytest.mark.parametrize("reset,detach,memory", OPTIONS[::3], ids=str)
@pytest.mark.parametrize("kernel", ["torch", "cpu", "triton"], indirect=True)
def test_floored_lif_runs_the_klif_kernel_and_equals_the_reference(kernel, reset, detach, memory):
    kw = dict(tau=2.0, threshold=0.9, v_reset=-0.1, reset=reset, detach_reset=detach)
    data = _data(torch.float64)
    fast = FlooredLIF(backend=kernel, memory=memory, **kw).double()
    x = data[0]
    if kernel != "torch":
        assert select_backend(x, fast.dynamics(x), fast.fire_reset(), kernel) == kernel
    _check(_run(fast, *data), _run(FlooredLIF(backend="reference", **kw).double(), *data),
           torch.float64)  # fmt: skip


# ------------------------------------------------------------------ learnable surrogate width


class Erf(Surrogate):
    """A surrogate the kernels do not know: its derivative comes as a table (at ``w·d``)."""

    default_alpha = 2.0

    def derivative(self, x):
        return self.alpha / torch.pi**0.5 * torch.exp(-((self.alpha * x) ** 2))


def _width_lif(backend, kernel, log_width=0.3, **kw):
    """On ``backend``, with the ``tau`` the test of ``kernel`` uses: 2 on Triton (its
    interpreter multiplies by 1/tau where the CPU reference divides), else 1.7."""
    n = LearnableWidthLIF(tau=2.0 if kernel == "triton" else 1.7, backend=backend, **kw)
    with torch.no_grad():
        n.log_width.fill_(log_width)  # a width away from 1: w's own factor in every derivative
    return n


@pytest.mark.rotate("dtype")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reset,detach,memory", OPTIONS, ids=str)
@pytest.mark.parametrize("kernel", ["torch", "cpu", "triton"], indirect=True)
def test_learnable_width_on_every_backend_equals_the_reference(
    kernel, reset, detach, memory, dtype
):
    kw = dict(threshold=0.9, v_reset=-0.1, reset=reset, detach_reset=detach)
    kw["surrogate"] = SURR[OPTIONS.index((reset, detach, memory)) % len(SURR)]
    data = _data(dtype)
    ref = _run(_width_lif("reference", kernel, **kw).to(dtype), *data)
    got = _run(_width_lif(kernel, kernel, memory=memory, **kw).to(dtype), *data)
    _check(got, ref, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("reset,detach,memory", OPTIONS, ids=str)
@pytest.mark.parametrize("kernel", ["torch", "cpu", "triton"], indirect=True)
def test_learnable_width_on_every_backend_equals_the_reference_bigger(
    kernel, reset, detach, memory
):
    """More steps and neurons: several C blocks of 4096 neurons; several Triton programs with
    masked lanes (fewer there: the interpreter runs every lane in Python)."""
    kw = dict(threshold=0.9, v_reset=-0.1, reset=reset, detach_reset=detach, surrogate=Atan())
    shape = (2, 3, 150) if kernel == "triton" else (4, 3, 700)
    data = _data(torch.float64, T=16, shape=shape)
    ref = _run(_width_lif("reference", kernel, **kw).double(), *data)
    got = _run(_width_lif(kernel, kernel, memory=memory, **kw).double(), *data)
    _check(got, ref, torch.float64)


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("kernel", ["torch", "cpu", "triton"], indirect=True)
def test_learnable_width_gradient_through_the_reset_path_alone(kernel, detach):
    """A loss on the final membrane only: ``w`` learns through the reset's ``s`` exactly when
    the reset is not detached (the spike's own gradient is zero here), and equals the
    reference's either way; an unknown surrogate (a table at ``w·d``) likewise."""
    x, v0, _, wv = _data(torch.float64)
    for surrogate in (Sigmoid(4.0), Erf()):
        grads = []
        for backend in (kernel, "reference"):
            n = _width_lif(backend, kernel, surrogate=surrogate, detach_reset=detach).double()
            xi = x.clone().requires_grad_()
            v = neuron_multistep(xi, v0, n.dynamics(xi), n.fire_reset(), backend=n.backend)[1]
            (v * wv).sum().backward()
            gw = n.log_width.grad  # None where nothing reached w (the reference, detached)
            grads.append((torch.zeros((), dtype=x.dtype) if gw is None else gw, xi.grad))
        torch.testing.assert_close(grads[0], grads[1], **TOL[torch.float64])
        assert (float(grads[0][0].abs()) > 0) == (not detach)


def test_learnable_width_dispatches_to_the_compiled_kernel_and_marks_its_spikes():
    if not cpu_kernel.available():
        pytest.skip(f"compiled CPU kernel unavailable: {cpu_kernel.unavailable_reason()}")
    x = torch.rand(4, 2, 3)
    n = LearnableWidthLIF()
    spec = n.dynamics(x).kernel_spec()
    assert spec is not None and spec.kind == "lif_width"
    assert LearnableWidthLIF(decay_input=False).dynamics(x).kernel_spec().kind == (
        "lif_nodecay_width"
    )
    assert neuron_backends(torch.nn.Sequential(n), x) == {"0": "cpu"}
    big = torch.rand(8, 16, memory.PACK_MIN_NUMEL // 16, requires_grad=True)
    assert memory.is_marked_spikes(n(big))  # what activation_memory "pack" stores at 1 bit
    with pytest.raises(ConfigError, match="memory"):
        LearnableWidthLIF(memory="bogus")
