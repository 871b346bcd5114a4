"""What a fused neuron keeps for backward (``memory=``) and spikes saved at 1 bit.

Recomputing ``h`` in backward runs the same kernel forward again, so spikes and gradients must
be bit-identical to keeping it (``torch.equal``), and both agree with the per-step reference
(within rounding, as the fused path always does). Every built-in charge, on the PyTorch loop,
the C kernel and Triton (in its CPU interpreter where no GPU is present).
"""

from __future__ import annotations

import math

import pytest
import torch

import spikeweave as sf
from spikeweave.errors import ConfigError
from spikeweave.functional import cpu_kernel, memory, triton_lif
from spikeweave.functional.dynamics import (
    FireReset,
    IFDynamics,
    KLIFDynamics,
    LIFDynamics,
    LIFWidthDynamics,
    OscillatingLIFDynamics,
    PLIFDynamics,
    oscillation_drive,
)
from spikeweave.functional.fused import neuron_multistep
from spikeweave.surrogate import Atan, Sigmoid, Triangle

KINDS = [
    "if",
    "lif",
    "lif_nodecay",
    "klif-layer",
    "klif-channel",
    "osc_lif",
    "osc_lif_nodecay",
    "plif",
    "lif_width",
]
SHAPE = (3, 4, 5)  # [B, C, F]
# every reset mode meets every kind across the list (index walks the options)
OPTIONS = [("hard", True, Atan()), ("soft", False, Sigmoid()), ("hard", False, Triangle())]


def _dynamics(kind: str, dtype=torch.float64):
    g = torch.Generator().manual_seed(2)
    if kind == "if":
        return IFDynamics(), []
    if kind == "lif_width":  # a learnable surrogate width per channel, a leaf
        w = (0.6 + 0.8 * torch.rand((4, 1), generator=g)).to(dtype).requires_grad_()
        return LIFWidthDynamics(2.0, -0.2, True, w), [w]
    if kind.startswith("lif"):
        return LIFDynamics(2.0, -0.2, kind == "lif"), []
    if kind.startswith("klif"):
        shape = () if kind == "klif-layer" else (4, 1)
        k = (0.8 + 0.5 * torch.rand(shape, generator=g)).to(dtype).requires_grad_()
        return KLIFDynamics(k, 2.0, -0.2), [k]
    if kind == "plif":  # r = 1/tau per channel, a leaf (PLIF's module passes sigmoid(w))
        r = (0.3 + 0.4 * torch.rand((4, 1), generator=g)).to(dtype).requires_grad_()
        return PLIFDynamics(r, -0.2), [r]
    phi = 2 * math.pi * torch.rand(SHAPE[1:], generator=g, dtype=torch.float64)
    drive = oscillation_drive(9, 0.3, 0.17, "triangle", phi, dtype)
    return OscillatingLIFDynamics(2.0, -0.2, kind == "osc_lif", drive), []


def _grads(kind, fr, backend, memory_mode, dtype=torch.float64, T=9, device="cpu"):
    """Spikes, v_last and the gradients of a loss reading spikes and v_last."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn((T, *SHAPE), generator=g) * 1.2 + 0.6).to(dtype).to(device)
    v0 = (torch.rand(SHAPE, generator=g) * 0.5).to(dtype).to(device)
    x.requires_grad_(), v0.requires_grad_()
    ws = torch.randn((T, *SHAPE), generator=g).to(dtype).to(device)
    wv = torch.randn(SHAPE, generator=g).to(dtype).to(device)
    dyn, params = _dynamics(kind, dtype)
    if device != "cpu":
        dyn, params = _to(dyn, params, device)
    s, v, _ = neuron_multistep(x, v0, dyn, fr, backend=backend, memory=memory_mode)
    ((s * ws).sum() + (v * wv).sum()).backward()
    return [s.detach(), v.detach(), x.grad, v0.grad, *[p.grad for p in params]]


def _to(dyn, params, device):
    """The same dynamics with its tables and drive on ``device`` (leaf parameters again)."""
    if isinstance(dyn, KLIFDynamics):
        k = params[0].detach().to(device).requires_grad_()
        return KLIFDynamics(k, 2.0, -0.2), [k]
    if isinstance(dyn, PLIFDynamics):
        r = params[0].detach().to(device).requires_grad_()
        return PLIFDynamics(r, -0.2), [r]
    if isinstance(dyn, LIFWidthDynamics):
        w = params[0].detach().to(device).requires_grad_()
        return LIFWidthDynamics(2.0, -0.2, True, w), [w]
    if isinstance(dyn, OscillatingLIFDynamics):
        dyn.drive = dyn.drive.to(device)
    return dyn, params


def _check_modes(kind, i, backend, dtype=torch.float64, device="cpu"):
    reset, detach, surrogate = OPTIONS[i % len(OPTIONS)]
    fr = FireReset(0.8, -0.2, reset, surrogate, detach)
    saved = _grads(kind, fr, backend, "save", dtype, device=device)
    recomputed = _grads(kind, fr, backend, "recompute", dtype, device=device)
    for a, b in zip(saved, recomputed, strict=True):
        assert torch.equal(a, b)
    assert 0 < float(saved[0].mean()) < 1
    ref = _grads(kind, fr, "reference", "auto", dtype, device=device)
    assert torch.equal(saved[0], ref[0]) and torch.equal(saved[1], ref[1])
    for a, b in zip(saved[2:], ref[2:], strict=True):
        tol = (1e-10, 1e-12) if dtype == torch.float64 else (1e-4, 1e-5)
        torch.testing.assert_close(a, b, rtol=tol[0], atol=tol[1])


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("kind", KINDS)
def test_recompute_gives_the_saved_paths_spikes_and_gradients_bit_for_bit(kind, backend):
    if backend == "cpu" and not cpu_kernel.available():
        pytest.skip(f"compiled CPU kernel unavailable: {cpu_kernel.unavailable_reason()}")
    _check_modes(kind, KINDS.index(kind), backend)


@pytest.fixture
def triton_on_cpu(monkeypatch):
    """The Triton backend in its CPU interpreter, taking CPU tensors (scoped to the test)."""
    if torch.cuda.is_available():
        pytest.skip("CUDA present: tests/functional/test_triton.py runs the compiled kernels")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # read when the kernels are decorated
    pytest.importorskip("triton")
    monkeypatch.setattr(triton_lif, "_kernels", None)
    monkeypatch.setattr(triton_lif, "_reason", None)
    if triton_lif._get() is None:
        pytest.skip(f"Triton interpreter unavailable: {triton_lif._reason}")
    monkeypatch.setattr(triton_lif.BACKEND, "_why_not", lambda x: None)


# the interpreter is slow: the fast tier runs four kinds of different dynamics (the C kernel's
# test above runs every kind there), the full run all of them
TRITON_FAST_KINDS = ("lif", "klif-channel", "osc_lif", "plif")


@pytest.mark.parametrize(
    "kind", [k if k in TRITON_FAST_KINDS else pytest.param(k, marks=pytest.mark.slow)
             for k in KINDS],
)  # fmt: skip
def test_recompute_on_triton_interpreted_equals_saving(triton_on_cpu, kind):
    _check_modes(kind, KINDS.index(kind) + 1, "triton")


@pytest.mark.skipif(
    not (torch.cuda.is_available() and triton_lif.available()),
    reason="needs a CUDA GPU with Triton",
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_recompute_on_cuda_triton_equals_saving(kind, dtype):
    _check_modes(kind, KINDS.index(kind) + 2, "triton", dtype, "cuda")


def _saved_bytes(fn, pack: bool = False):
    """Bytes of the distinct storages autograd keeps for backward while ``fn`` runs (with
    :func:`memory.pack_spikes`' hooks when ``pack``), and ``fn``'s result."""
    seen: dict[int, int] = {}

    def count(t):
        kept = memory.pack_saved(t) if pack else t
        b = kept if isinstance(kept, torch.Tensor) else kept.bits
        seen[b.untyped_storage().data_ptr()] = b.untyped_storage().nbytes()
        return kept

    with torch.autograd.graph.saved_tensors_hooks(count, memory.unpack_saved):
        out = fn()
    return sum(seen.values()), out


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_auto_recomputes_for_an_input_broadcast_over_time(backend):
    if backend == "cpu" and not cpu_kernel.available():
        pytest.skip(f"compiled CPU kernel unavailable: {cpu_kernel.unavailable_reason()}")
    x0 = torch.rand(16, 1024, requires_grad=True)
    xe = x0.expand(50, 16, 1024)
    assert memory.choose(xe, "auto") == "recompute"
    assert memory.choose(xe.contiguous(), "auto") == "save"
    fr = FireReset(0.5, 0.0, "hard", Atan(), True)
    kept = {}
    for mode in ("save", "auto"):
        n, s = _saved_bytes(
            lambda mode=mode: neuron_multistep(
                xe, None, LIFDynamics(2.0, 0.0, True), fr, backend=backend, memory=mode
            )[0]
        )
        kept[mode] = n
        x0.grad = None
        s.sum().backward()
        kept[mode + "-grad"] = x0.grad.clone()
    assert kept["save"] >= 50 * 16 * 1024 * 4  # h: T·B·N float32
    assert kept["auto"] <= 16 * 1024 * 4  # the broadcast input only
    assert torch.equal(kept["save-grad"], kept["auto-grad"])


def test_recompute_allows_a_second_backward():
    x = torch.rand(6, 4, 8, requires_grad=True)
    s = sf.LIF(memory="recompute")(x)
    s.sum().backward(retain_graph=True)
    g1 = x.grad.clone()
    s.sum().backward()
    assert torch.equal(x.grad, 2 * g1)


def test_neuron_modules_take_and_check_the_memory_option():
    x = torch.rand(7, 3, 10) * 2
    for cls in (sf.LIF, sf.IF, sf.KLIF, sf.OscillatingLIF):
        outs = []
        for mode in ("save", "recompute"):
            torch.manual_seed(0)
            n = cls(memory=mode)
            xi = x.clone().requires_grad_()
            s = n(xi)
            (s * torch.arange(s.numel()).view_as(s)).sum().backward()
            outs.append((s, xi.grad))
        assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert "memory='recompute'" in repr(sf.LIF(memory="recompute"))
    with pytest.raises(ConfigError, match="LIF: memory must be one of auto, save, recompute"):
        sf.LIF(memory="bits")
    with pytest.raises(ConfigError, match="memory='recompute' needs a fused backend"):
        sf.LIF(backend="reference", memory="recompute")(x)


# -------------------------------------------------------------------------- spikes at 1 bit


@pytest.mark.parametrize("n", [1, 7, 8, 9, 4096 + 3])
def test_bits_round_trip(n):
    s = (torch.rand(n) > 0.5).float()
    bits = memory.pack_bits(s)
    assert bits.dtype == torch.uint8 and bits.numel() == -(-n // 8)
    assert torch.equal(memory.unpack_bits(bits, s.shape, s.dtype), s)


def _linear_after_lif(pack: bool, modify: bool = False):
    torch.manual_seed(0)
    lin1, lif, lin2 = torch.nn.Linear(64, 128), sf.LIF(), torch.nn.Linear(128, 32)
    x = torch.rand(20, 8, 64)

    def run():
        s = lif(lin1(x))
        if modify:
            s.mul_(0.5)  # no longer 0/1: must not be packed
        return lin2(s)

    n, y = _saved_bytes(run, pack)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return n, y.detach(), [p.grad for p in (*lin1.parameters(), *lin2.parameters())]


def test_pack_spikes_keeps_spike_inputs_at_one_bit_with_identical_gradients(monkeypatch):
    n0, y0, g0 = _linear_after_lif(False)
    n1, y1, g1 = _linear_after_lif(True)
    assert torch.equal(y0, y1)
    for a, b in zip(g0, g1, strict=True):
        assert torch.equal(a, b)
    spikes = 20 * 8 * 128
    assert n0 - n1 == spikes * 4 - spikes // 8  # the spikes lin2 keeps: float32 → bits
    # the context manager applies the same hooks: the spikes are packed there too
    packed = []
    monkeypatch.setattr(memory, "pack_bits", lambda t: packed.append(t.shape) or _bits(t))
    lif, lin = sf.LIF(), torch.nn.Linear(128, 4)
    x = torch.rand(20, 8, 128, requires_grad=True)
    with memory.pack_spikes():
        y = lin(lif(x))
    y.sum().backward()
    assert packed == [torch.Size([160, 128])]  # lin's input, as the matmul saved it
    x2 = x.detach().clone().requires_grad_()
    lin(lif(x2)).sum().backward()
    assert torch.equal(x.grad, x2.grad)


_bits = memory.pack_bits


def test_pack_spikes_leaves_spikes_modified_in_place_alone():
    n0, y0, g0 = _linear_after_lif(False, modify=True)
    n1, y1, g1 = _linear_after_lif(True, modify=True)
    assert n0 == n1 and torch.equal(y0, y1)
    for a, b in zip(g0, g1, strict=True):
        assert torch.equal(a, b)
