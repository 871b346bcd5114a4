"""Training-step benchmark: spikeweave vs the T-folded ANN vs SpikingJelly, snnTorch and Norse.

Builds the same two networks in every library from identical weights, checks that they produce
identical spikes on identical inputs, then times forward + backward + Adam step, interleaving
the libraries round by round so machine noise hits all of them alike. Peak RSS is measured per
library in a fresh subprocess. Peers are optional: a library that is not installed is skipped
(see benchmarks/README.md for the separate benchmark environment).

    python benchmarks/bench_step.py --out benchmarks/results/step_time
    python benchmarks/bench_step.py --device cuda --nets fc,conv,conv128,fcbig,nbound,on \
        --libs ann,spikeweave,spikeweave-no-check,spikingjelly --no-memory

Besides LIF, the CPU run times KLIF and the oscillating LIF (plain and with the fake-backward
defense) on the compiled kernel, and LIF on the fused PyTorch path (what runs without a C
compiler), so their ratios to LIF and to the ANN come from the same interleaved run.
PLIF (learnable τ) is timed on the compiled kernel, on the fused PyTorch path and as it ran
before its charge went through the kernels (``spikeweave-plif``, ``-plif-torch``,
``-plif-before``); the summary gives the latter two over the first. The learnable-width LIF
likewise (``spikeweave-width``, ``-width-torch``, ``-width-before``: the per-step loop under
autograd it ran before its spec ``"lif_width"``, which is its ``backend="reference"`` now).
``--device cuda`` runs the networks of issue 18's table on the GPU (CUDA-event timing, peak
``torch.cuda.max_memory_allocated``); ``--dtype bfloat16`` runs model and input in that type.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

import torch
from torch import nn

import spikeweave as sf
from spikeweave.layers import TimeFolded

TAU, THETA = 2.0, 1.0  # v = 0.5·v + I, spike when v >= 1, hard reset to 0

# ------------------------------------------------------------------------------ neurons
# Each library gives a multi-step neuron [T, B, ...] -> spikes [T, B, ...] with the same
# dynamics. Peers keep hidden state, so every call starts from a fresh state.


def sf_neuron(backend: str) -> Callable[[], nn.Module]:
    return lambda: sf.LIF(tau=TAU, threshold=THETA, decay_input=False, backend=backend)


class _SJ(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from spikingjelly.activation_based import neuron, surrogate

        self.node = neuron.LIFNode(
            tau=TAU,
            decay_input=False,
            v_threshold=THETA,
            v_reset=0.0,
            surrogate_function=surrogate.ATan(),
            detach_reset=True,
            step_mode="m",
        )

    def forward(self, x):
        self.node.reset()
        return self.node(x)


class _SnnTorchLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        import snntorch as snn

        self.lif = snn.Leaky(beta=1 - 1 / TAU, threshold=THETA, reset_mechanism="zero")

    def forward(self, x):
        mem = self.lif.init_leaky()
        out = []
        for t in range(x.shape[0]):
            spk, mem = self.lif(x[t], mem)
            out.append(spk)
        return torch.stack(out)


class _NorseLIF(nn.Module):
    """Norse LIF with dt=1, tau_mem_inv=1/τ, tau_syn_inv=1: v = 0.5·v + 0.5·I, so I = 2x."""

    def __init__(self) -> None:
        super().__init__()
        import norse.torch as nt

        p = nt.LIFParameters(
            tau_mem_inv=torch.tensor(1 / TAU),
            tau_syn_inv=torch.tensor(1.0),
            v_th=torch.tensor(THETA),
            v_reset=torch.tensor(0.0),
            v_leak=torch.tensor(0.0),
        )
        self.lif = nt.LIF(p, dt=1.0)

    def forward(self, x):
        z, _ = self.lif(x * TAU)
        return z


class _NorseBoxLoop(nn.Module):
    """Norse LIFBoxCell (no synaptic current) stepped in a Python loop; I = 2x."""

    def __init__(self) -> None:
        super().__init__()
        import norse.torch as nt

        p = nt.LIFBoxParameters(
            tau_mem_inv=torch.tensor(1 / TAU),
            v_th=torch.tensor(THETA),
            v_reset=torch.tensor(0.0),
            v_leak=torch.tensor(0.0),
        )
        self.cell = nt.LIFBoxCell(p, dt=1.0)

    def forward(self, x):
        state, out = None, []
        for t in range(x.shape[0]):
            z, state = self.cell(x[t] * TAU, state)
            out.append(z)
        return torch.stack(out)


# library name -> (module it needs, neuron factory or None for the ReLU ANN)
LIBS: dict[str, tuple[str | None, Callable[[], nn.Module] | None]] = {
    "ann": (None, None),
    "spikeweave": (None, sf_neuron("auto")),
    "spikeweave-torch": (None, sf_neuron("torch")),
    "spikeweave-reference": (None, sf_neuron("reference")),
    "spikingjelly": ("spikingjelly", _SJ),
    "snntorch": ("snntorch", _SnnTorchLoop),
    "norse": ("norse", _NorseLIF),
    "norse-box": ("norse", _NorseBoxLoop),
}
LIBS["spikeweave-chunked"] = (None, sf_neuron("auto"))  # whole net under TimeChunked
# other neurons on the same nets (their dynamics differ: not in the spike-identity check)
LIBS["spikeweave-klif"] = (None, lambda: sf.KLIF(tau=TAU, threshold=THETA))
LIBS["spikeweave-osc"] = (
    None,
    lambda: sf.OscillatingLIF(tau=TAU, threshold=THETA, decay_input=False),
)
LIBS["spikeweave-osc-defended"] = (
    None,
    lambda: sf.OscillatingLIF(tau=TAU, threshold=THETA, decay_input=False, fake_form="square"),
)


class _PLIFBefore(nn.Module):
    """PLIF as it ran before its charge became the spec ``"plif"``: the same module on the
    fused PyTorch loop with the former hand-written charge and VJP (``w`` the parameter, the
    drive kept per step as ``aux``). For the ratio only; the library no longer has it."""

    def __init__(self) -> None:
        super().__init__()
        from spikeweave.ablation_neurons import PLIF

        self.plif = PLIF(tau=TAU, threshold=THETA, backend="torch")

    def forward(self, x):
        from spikeweave.functional.dynamics import Dynamics
        from spikeweave.functional.fused import neuron_multistep

        class Before(Dynamics):
            def __init__(self, w, v_reset):
                self.w, self.v_reset = w, v_reset

            def params(self):
                return (self.w,)

            def charge(self, u, x, t, params):
                drive = x - (u - self.v_reset)
                return u + drive * torch.sigmoid(params[0]), drive

            def charge_vjp(self, gh, u, x, t, h, aux, params):
                r = torch.sigmoid(params[0])
                return gh * (1 - r), gh * r, (gh * aux * (r * (1 - r)),)

        p = self.plif
        dyn = Before(p.w, p.v_reset)
        return neuron_multistep(x, None, dyn, p.fire_reset(), backend="torch", check_finite="PLIF")[
            0
        ]


def _plif(backend: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        from spikeweave.ablation_neurons import PLIF

        return PLIF(tau=TAU, threshold=THETA, backend=backend)

    return make


# PLIF (learnable tau): compiled kernel, the fused PyTorch loop, and the loop it ran before
LIBS["spikeweave-plif"] = (None, _plif("auto"))
LIBS["spikeweave-plif-torch"] = (None, _plif("torch"))
LIBS["spikeweave-plif-before"] = (None, _PLIFBefore)


def _width(backend: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        from spikeweave.ablation_neurons import LearnableWidthLIF

        return LearnableWidthLIF(tau=TAU, threshold=THETA, backend=backend)

    return make


# LIF with a learnable surrogate width: compiled kernel, fused PyTorch loop, and the per-step
# loop under autograd it ran before (the same operations as its reference backend)
LIBS["spikeweave-width"] = (None, _width("auto"))
LIBS["spikeweave-width-torch"] = (None, _width("torch"))
LIBS["spikeweave-width-before"] = (None, _width("reference"))
OTHER_DYNAMICS = {
    "spikeweave-width",
    "spikeweave-width-torch",
    "spikeweave-width-before",
    "spikeweave-klif",
    "spikeweave-osc",
    "spikeweave-osc-defended",
    "spikeweave-plif",
    "spikeweave-plif-torch",
    "spikeweave-plif-before",
}


class _NoCheckLIF(nn.Module):
    """spikeweave's LIF without the finite-input check (the issue's 'without the NaN check')."""

    def __init__(self) -> None:
        super().__init__()
        self.lif = sf.LIF(tau=TAU, threshold=THETA, decay_input=False)

    def forward(self, x):
        from spikeweave.functional.fused import neuron_multistep

        return neuron_multistep(x, None, self.lif.dynamics(x), self.lif.fire_reset())[0]


LIBS["spikeweave-no-check"] = (None, _NoCheckLIF)
CHUNK = 8  # steps per chunk for spikeweave-chunked
PEERS = {
    "spikingjelly": ["spikingjelly"],
    "snntorch": ["snntorch"],
    "norse": ["norse", "norse-box"],
}


def have(module: str | None) -> bool:
    if module is None:
        return True
    try:
        __import__(module)
    except Exception:
        return False
    return True


# ----------------------------------------------------------------------------- networks


def fc_net(neuron: Callable[[], nn.Module] | None, hidden: int = 512) -> nn.Module:
    act = neuron or nn.ReLU
    return nn.Sequential(
        TimeFolded(nn.Linear(784, hidden)), act(), TimeFolded(nn.Linear(hidden, 10)), act()
    )


def conv_net(neuron: Callable[[], nn.Module] | None, width: int = 16) -> nn.Module:
    act = neuron or nn.ReLU
    return nn.Sequential(
        TimeFolded(nn.Conv2d(2, width, 3, padding=1)),
        act(),
        TimeFolded(nn.MaxPool2d(2)),
        TimeFolded(nn.Conv2d(width, 2 * width, 3, padding=1)),
        act(),
        TimeFolded(nn.MaxPool2d(2)),
        TimeFolded(nn.Flatten()),
        TimeFolded(nn.Linear(2 * width * 8 * 8, 10)),
        act(),
    )


class _WideOut(nn.Module):
    """Linear(n_in -> 16384) + 16k spiking neurons, the neuron-bound nets of issue 18."""

    def __init__(self, neuron, n_in: int) -> None:
        super().__init__()
        act = neuron or nn.ReLU
        self.net = nn.Sequential(TimeFolded(nn.Linear(n_in, 16384)), act())

    def forward(self, x):
        return self.net(x)


# name -> (T, B, input shape, title); fc and conv are the CPU nets, all are the GPU table
NETS: dict[str, tuple[int, int, tuple[int, ...], str]] = {
    "fc": (25, 128, (784,), "FC 784-512-10, T=25, B=128, Bernoulli(0.2) input"),
    "conv": (10, 32, (2, 34, 34), "Conv 2x34x34 -> C16-P2-C32-P2-FC10, T=10, B=32"),
    "conv128": (10, 128, (2, 34, 34), "same conv, B=128"),
    "fcbig": (32, 256, (784,), "FC 784-4096-4096-10, T=32, B=256"),
    "nbound": (500, 16, (128,), "Linear(128->16384) + 16k LIF, T=500, B=16 (neuron-bound)"),
    "on": (500, 16, (16384,), "Linear(16384->16384) + 16k LIF, T=500, B=16"),
}
DEVICE = torch.device("cpu")
DTYPE = torch.float32


def make_input(net: str, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    _, B, shape, _ = NETS[net]
    x = (torch.rand((T, B, *shape), generator=g) < 0.2).to(DTYPE)
    n_out = 16384 if net in ("nbound", "on") else 10
    y = torch.randint(0, n_out, (B,), generator=g)
    return x.to(DEVICE), y.to(DEVICE)


def build(lib: str, net: str, size: int | None, seed: int = 0) -> nn.Module:
    neuron = LIBS[lib][1]
    torch.manual_seed(seed)  # identical weights in every library
    if net == "fc":
        model = fc_net(neuron, size or 512)
    elif net == "fcbig":
        act = neuron or nn.ReLU
        model = nn.Sequential(
            TimeFolded(nn.Linear(784, 4096)),
            act(),
            TimeFolded(nn.Linear(4096, 4096)),
            act(),
            TimeFolded(nn.Linear(4096, 10)),
            act(),
        )
    elif net in ("nbound", "on"):
        model = _WideOut(neuron, NETS[net][2][0])
    else:
        model = conv_net(neuron, size or 16)
    if lib == "spikeweave-chunked":
        from spikeweave.neurons import TimeChunked

        model = nn.Sequential(*[TimeChunked(model, CHUNK)])
    return model.to(device=DEVICE, dtype=DTYPE)


def step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        out = model(x).mean(0)  # spike counts (ANN: mean activation) over time
        loss = nn.functional.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


# ------------------------------------------------------------------------ dynamics check


def check_dynamics(libs: list[str], net: str, T: int) -> dict:
    """Spikes of every hidden and output layer, from identical weights and inputs."""
    x, _ = make_input(net, T, seed=1)
    result = {}
    ref = None
    for lib in libs:
        if lib == "ann" or lib in OTHER_DYNAMICS:
            continue
        model = build(lib, net, None, seed=1)
        with torch.no_grad():
            for m in model.modules():  # stronger weights so every layer fires
                if isinstance(m, nn.Linear | nn.Conv2d):
                    m.weight.mul_(3.0)
        layers = model[0].block if lib == "spikeweave-chunked" else model
        if isinstance(layers, _WideOut):
            layers = layers.net
        neurons = [m for m in layers if not isinstance(m, TimeFolded)]
        seen: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(neurons))}

        def keep(_m, _i, out, i, seen=seen):
            seen[i].append((out[0] if isinstance(out, tuple) else out).detach())

        hooks = [
            m.register_forward_hook(lambda m_, i_, o, i=i: keep(m_, i_, o, i))
            for i, m in enumerate(neurons)
        ]
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        spikes = [torch.cat(seen[i]) for i in range(len(neurons))]  # chunks, if any, joined
        if ref is None:
            ref = spikes
            result["firing_rates"] = [round(float(s.mean()), 4) for s in spikes]
        mism = [int((a != b).sum()) for a, b in zip(ref, spikes, strict=True)]
        result[lib] = {"mismatched_spikes_per_layer": mism, "identical": not any(mism)}
    return result


# ------------------------------------------------------------------------------- timing


CLOCK = time.perf_counter  # --clock cpu: time.process_time (CPU seconds of this process)


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(
    libs: list[str], net: str, T: int, size: int | None, rounds: int, per_round: int
) -> dict[str, dict]:
    x, y = make_input(net, T)
    steps, first, peak = {}, {}, {}
    for lib in libs:
        model = build(lib, net, size)
        steps[lib] = step_fn(model, x, y)
        _sync()
        t0 = time.perf_counter()
        steps[lib]()
        _sync()
        first[lib] = time.perf_counter() - t0
        if DEVICE.type == "cuda":  # the step's own peak: above what every model holds
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        steps[lib]()  # second warm-up step
        _sync()
        if DEVICE.type == "cuda":
            peak[lib] = (torch.cuda.max_memory_allocated() - base) / 2**20
    times: dict[str, list[float]] = {lib: [] for lib in libs}
    loads: list[float] = []
    rng = random.Random(0)
    for _ in range(rounds):
        order = libs[:]
        rng.shuffle(order)
        loads.append(os.getloadavg()[0])
        for lib in order:
            for _ in range(per_round):
                if DEVICE.type == "cuda":
                    start, end = (
                        torch.cuda.Event(enable_timing=True),
                        torch.cuda.Event(enable_timing=True),
                    )
                    start.record()
                    steps[lib]()
                    end.record()
                    end.synchronize()
                    times[lib].append(start.elapsed_time(end) / 1e3)
                else:
                    t0 = CLOCK()
                    steps[lib]()
                    times[lib].append(CLOCK() - t0)
    out = {}
    for lib in libs:
        ts = sorted(times[lib])
        out[lib] = {
            "median_ms": 1e3 * statistics.median(ts),
            "p25_ms": 1e3 * ts[len(ts) // 4],
            "p75_ms": 1e3 * ts[(3 * len(ts)) // 4],
            "first_step_ms": 1e3 * first[lib],
            "n": len(ts),
        }
        if lib in peak:
            out[lib]["cuda_peak_mib"] = peak[lib]
    out["_load"] = {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}
    return out


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def memory_probe(lib: str, net: str, T: int, steps: int = 5) -> dict:
    """Run in a fresh process: RSS after building, and the peak over a few training steps.

    The kernel's high-water mark is reset just before the steps (``/proc/self/clear_refs``),
    so transient peaks while importing the library do not count.
    """
    x, y = make_input(net, T)
    model = build(lib, net, None)
    step = step_fn(model, x, y)
    base = _status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    for _ in range(steps):
        step()
    peak = _status_kib("VmHWM") if reset else 0
    if not peak:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss_before_steps_mib": base / 1024, "peak_rss_mib": peak / 1024, "hwm_reset": reset}


def _probe(args: list[str], threads: int, env: dict | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *args, "--threads", str(threads)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=1800, env={**os.environ, **(env or {})}
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# glibc keeps freed heap memory mapped (RSS stays high after fragmentation); with a fixed
# mmap threshold every buffer >= 64 KiB is unmapped when freed, so RSS follows live memory
LIVE_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def memory_in_subprocess(lib: str, net: str, T: int, threads: int) -> dict:
    data = _probe(["--memory-probe", lib, net, str(T)], threads)
    if "error" not in data:
        data["peak_minus_before_mib"] = data["peak_rss_mib"] - data["rss_before_steps_mib"]
        live = _probe(["--memory-probe", lib, net, str(T)], threads, LIVE_ENV)
        if "error" not in live:
            data["live_peak_minus_before_mib"] = live["peak_rss_mib"] - live["rss_before_steps_mib"]
    return data


def first_step_probe(lib: str, net: str, steps: int = 8) -> dict:
    """In a fresh process: the first training step's time against the later ones."""
    T = NETS[net][0]
    x, y = make_input(net, T)
    step = step_fn(build(lib, net, None), x, y)
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    later = statistics.median(ts[2:])
    return {
        "first_ms": 1e3 * ts[0],
        "later_median_ms": 1e3 * later,
        "first_minus_later_ms": 1e3 * (ts[0] - later),
    }


def first_step_report(libs: list[str], net: str, threads: int) -> dict:
    """Cold kernel cache (compiles on the first step), warm cache, and the others as a yardstick."""
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {"SPIKEWEAVE_CACHE": cache}
        out["spikeweave (cold kernel cache)"] = _probe(
            ["--first-step-probe", "spikeweave", net], threads, env
        )
        out["spikeweave (warm kernel cache)"] = _probe(
            ["--first-step-probe", "spikeweave", net], threads, env
        )
    for lib in libs:
        if lib != "spikeweave":
            out[lib] = _probe(["--first-step-probe", lib, net], threads)
    return out


# ------------------------------------------------------------------------------- report


def best_variant(res: dict[str, dict], peer: str) -> str | None:
    names = [n for n in PEERS[peer] if n in res]
    return min(names, key=lambda n: res[n]["median_ms"]) if names else None


def markdown(report: dict) -> str:
    clock_word = {"wall": "wall", "cpu": "CPU", "cuda-events": "GPU (CUDA events)"}.get(
        report["clock"], report["clock"]
    )
    lines = [
        "# Training-step benchmark",
        "",
        f"Command: `{report['command']}`",
        "",
        f"{report['date']} · torch {report['torch']} · {report['threads']} threads · "
        f"{report['cpu']} · device {report.get('device', 'cpu')} · dtype "
        f"{report.get('dtype', 'float32')} · Python {report['python']} · clock: "
        f"{report['clock']} · load "
        f"average at start / end: {report['load_average_at_start'][0]:.1f} / "
        f"{report.get('load_average_at_end', [float('nan')])[0]:.1f}",
        "",
        f"Median {clock_word} time of forward + backward "
        "+ Adam step, libraries interleaved round by "
        "round in one process (ratios within a table come from the same run). "
        + (
            "Memory from a "
            "fresh process per library over 5 training steps, the kernel's high-water mark "
            "reset just before them: `peak RSS` as a user sees it, `growth` = that peak minus "
            "the RSS after building the model and inputs, `live growth` = the same with "
            "`MALLOC_MMAP_THRESHOLD_=65536`, so that freed buffers leave RSS at once and the "
            "number follows the memory the library actually holds (glibc's default keeps "
            "freed, fragmented heap memory counted)."
            if report.get("device", "cpu") == "cpu"
            else "Memory: the peak of `torch.cuda.max_memory_allocated` during one training "
            "step, above what all the models built for the run hold."
        ),
        "",
    ]
    for nres in report["networks"].values():
        res = nres["timing"]
        ann = res["ann"]["median_ms"]
        sfm = res["spikeweave"]["median_ms"]
        lines += [f"## {nres['title']}", ""]
        load = nres["summary"].get("load_average_during_timing")
        if load:
            lines += [
                f"1-minute load average sampled each round: min {load['min']:.1f}, median "
                f"{load['median']:.1f}, max {load['max']:.1f} (this machine has "
                f"{report.get('cpu_count', '?')} cores).",
                "",
            ]
        other = nres["summary"].get("x_spikeweave_lif")
        if other:
            lines += [
                "Ratios to spikeweave's LIF (compiled kernel) in the same run: "
                + ", ".join(f"{k} {v:.2f}×" for k, v in other.items())
                + ".",
                "",
            ]
        for key, who in (("plif", "PLIF"), ("width", "The learnable-width LIF")):
            own = nres["summary"].get(f"x_spikeweave_{key}")
            if own:
                lines += [
                    f"{who}'s other paths over it on the compiled kernel, same run: "
                    + ", ".join(f"{k} {v:.2f}×" for k, v in own.items())
                    + ".",
                    "",
                ]
        peak_head = (
            "peak RSS MiB"
            if report.get("device", "cpu") == "cpu"
            else "GPU step peak MiB (above the resident models)"
        )
        lines += [
            f"| library | median ms (p25–p75) | × ANN | spikeweave ÷ this | {peak_head} | "
            "growth MiB | live growth MiB | first step ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for lib, r in res.items():
            mem = nres["memory"].get(lib, {})
            if "cuda_peak_mib" in r:
                mem = {"peak_rss_mib": r["cuda_peak_mib"]}  # device memory, in the RSS column
            lines.append(
                f"| {lib} | {r['median_ms']:.1f} ({r['p25_ms']:.1f}–{r['p75_ms']:.1f}) | "
                f"{r['median_ms'] / ann:.2f} | {sfm / r['median_ms']:.2f} | "
                f"{mem.get('peak_rss_mib', float('nan')):.0f} | "
                f"{mem.get('peak_minus_before_mib', float('nan')):.0f} | "
                f"{mem.get('live_peak_minus_before_mib', float('nan')):.0f} | "
                f"{r['first_step_ms']:.0f} |"
            )
        chk = nres["dynamics_check"]
        same = [k for k, v in chk.items() if isinstance(v, dict) and v["identical"]]
        diff = {
            k: v["mismatched_spikes_per_layer"]
            for k, v in chk.items()
            if isinstance(v, dict) and not v["identical"]
        }
        lines += [
            "",
            f"Dynamics check (weights ×3, firing rates per layer {chk.get('firing_rates')}): "
            f"identical spikes in every layer: {', '.join(same)}"
            + (f"; mismatches per layer: {diff}" if diff else "")
            + ".",
            "",
        ]
    for sweep in report.get("sweeps", {}).values():
        libs = [k for k in next(iter(sweep["points"].values())) if not k.startswith("_")]
        lines += [
            f"## {sweep['title']}",
            "",
            "| "
            + sweep["param"]
            + " | "
            + " | ".join(f"{lib} ms" for lib in libs)
            + " | spikeweave × ANN |",
            "|" + "---|" * (len(libs) + 2),
        ]
        for p, res in sweep["points"].items():
            cells = " | ".join(f"{res[lib]['median_ms']:.1f}" for lib in libs)
            ratio = res["spikeweave"]["median_ms"] / res["ann"]["median_ms"]
            lines.append(f"| {p} | {cells} | {ratio:.2f} |")
        lines.append("")
    if report.get("memory_vs_T"):
        pts = report["memory_vs_T"]
        libs = list(next(iter(pts.values())).keys())
        for key, what in (
            ("live_peak_minus_before_mib", "live memory growth"),
            ("peak_minus_before_mib", "RSS growth, default malloc"),
        ):
            lines += [
                f"## FC net, {what} during training vs T (MiB; spikeweave-chunked = "
                f"TimeChunked, {CHUNK} steps per chunk)",
                "",
                "| T | " + " | ".join(libs) + " |",
                "|" + "---|" * (len(libs) + 1),
            ]
            for T, res in pts.items():
                cells = " | ".join(f"{res[lib].get(key, float('nan')):.0f}" for lib in libs)
                lines.append(f"| {T} | {cells} |")
            lines.append("")
    if report.get("first_step"):
        lines += [
            "## First training step vs later steps (fresh process each)",
            "",
            "| net | run | first ms | later median ms | first − later ms |",
            "|---|---|---|---|---|",
        ]
        for net, res in report["first_step"].items():
            for run, r in res.items():
                if "error" in r:
                    lines.append(f"| {net} | {run} | error: {r['error']} | | |")
                    continue
                lines.append(
                    f"| {net} | {run} | {r['first_ms']:.0f} | "
                    f"{r['later_median_ms']:.0f} | {r['first_minus_later_ms']:.0f} |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="fc,conv")
    ap.add_argument("--libs", default=",".join(LIBS), help="comma list; missing peers skipped")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--per-round", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sweeps", default="T,width", help="comma list of T,width or ''")
    ap.add_argument("--sweep-libs", default="ann,spikeweave,spikeweave-reference,spikingjelly")
    ap.add_argument("--sweep-rounds", type=int, default=10)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time (default), or CPU time of the process (robust to other load with "
        "--threads 1; with more threads it also counts time the threads spend waiting)",
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16", "float64"]
    )
    ap.add_argument("--out", default=None, help="path prefix for .json and .md")
    ap.add_argument("--memory-T", default="25,100,200", help="FC memory-vs-T points ('' = none)")
    ap.add_argument(
        "--from-json",
        default=None,
        help="re-render the .md of an earlier run from its .json (measures nothing)",
    )
    ap.add_argument("--memory-probe", nargs=3, metavar=("LIB", "NET", "T"), help=argparse.SUPPRESS)
    ap.add_argument("--first-step-probe", nargs=2, metavar=("LIB", "NET"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            text = markdown(json.load(f))
        note = (
            f"\n_Re-rendered from `{os.path.basename(args.from_json)}` on "
            f"{datetime.now(timezone.utc):%Y-%m-%d} (`bench_step.py --from-json`); every figure "
            "is as measured on the date above._"
        )
        print(text)
        if args.out:
            with open(args.out + ".md", "w") as f:
                f.write(text + "\n" + note + "\n")
        return
    torch.set_num_threads(args.threads)
    global CLOCK, DEVICE, DTYPE
    DTYPE = getattr(torch, args.dtype)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("--device cuda: no CUDA device here; nothing to measure", file=sys.stderr)
            return
        DEVICE = torch.device("cuda")
        args.no_memory = True  # peak device memory is measured in the timing loop instead
        args.sweeps = ""
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    if args.memory_probe:
        lib, net, T = args.memory_probe
        print(json.dumps(memory_probe(lib, net, int(T))))
        return
    if args.first_step_probe:
        print(json.dumps(first_step_probe(*args.first_step_probe)))
        return

    libs = [lib for lib in args.libs.split(",") if lib and have(LIBS[lib][0])]
    skipped = [lib for lib in args.libs.split(",") if lib and lib not in libs]
    report = {
        "command": (f"PYTHONPATH={os.environ['PYTHONPATH']} " if "PYTHONPATH" in os.environ else "")
        + f"{sys.executable} "
        + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "threads": args.threads,
        "clock": args.clock if args.device == "cpu" else "cuda-events",
        "device": args.device
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""),
        "dtype": args.dtype,
        "load_average_at_start": os.getloadavg(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "skipped": skipped,
        "networks": {},
        "sweeps": {},
    }
    try:
        with open("/proc/cpuinfo") as f:
            report["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f if "model name" in ln)
    except (OSError, StopIteration):
        pass
    titles = {k: v[3] for k, v in NETS.items()}
    for net in args.nets.split(","):
        T = NETS[net][0]
        print(f"[{net}] dynamics check", file=sys.stderr)
        chk = check_dynamics(libs, net, T)
        print(f"[{net}] timing {libs}", file=sys.stderr)
        timing = time_interleaved(libs, net, T, None, args.rounds, args.per_round)
        memory = {}
        if not args.no_memory:
            for lib in libs:
                print(f"[{net}] memory {lib}", file=sys.stderr)
                memory[lib] = memory_in_subprocess(lib, net, T, args.threads)
        ann = timing["ann"]["median_ms"]
        lif = timing["spikeweave"]["median_ms"]
        summary = {
            "spikeweave_x_ann": lif / ann,
            "peers_x_ann": {},
            "spikeweave_speedup_vs_peer": {},
            "x_spikeweave_lif": {
                lib: timing[lib]["median_ms"] / lif
                for lib in timing
                if lib in OTHER_DYNAMICS or lib == "spikeweave-torch"
            },
            "load_average_during_timing": timing.pop("_load"),
        }
        for key in ("plif", "width"):  # compiled: its other paths' time over its own
            if f"spikeweave-{key}" in timing:
                own = timing[f"spikeweave-{key}"]["median_ms"]
                summary[f"x_spikeweave_{key}"] = {
                    lib: timing[lib]["median_ms"] / own
                    for lib in (f"spikeweave-{key}-torch", f"spikeweave-{key}-before")
                    if lib in timing
                }
        for peer in PEERS:
            b = best_variant(timing, peer)
            if b:
                summary["peers_x_ann"][b] = timing[b]["median_ms"] / ann
                summary["spikeweave_speedup_vs_peer"][b] = (
                    timing[b]["median_ms"] / timing["spikeweave"]["median_ms"]
                )
        report["networks"][net] = {
            "title": titles[net],
            "timing": timing,
            "memory": memory,
            "dynamics_check": chk,
            "summary": summary,
        }
        print(json.dumps(summary, indent=1), file=sys.stderr)

    sweep_libs = [lib for lib in args.sweep_libs.split(",") if lib in libs]
    for sweep in [s for s in args.sweeps.split(",") if s]:
        points = {}
        values = [4, 8, 16, 32, 64] if sweep == "T" else [128, 256, 512, 1024, 2048]
        for v in values:
            print(f"[sweep {sweep}={v}]", file=sys.stderr)
            T, size = (v, None) if sweep == "T" else (25, v)
            points[v] = time_interleaved(sweep_libs, "fc", T, size, args.sweep_rounds, 2)
        title = (
            "FC net, step time vs T (B=128, hidden 512)"
            if sweep == "T"
            else ("FC net, step time vs hidden width (T=25, B=128)")
        )
        report["sweeps"][sweep] = {"title": title, "param": sweep, "points": points}

    if not args.no_memory and args.memory_T:
        mem_libs = [lib for lib in libs if lib not in ("spikeweave-torch",)]
        points = {}
        for T in [int(v) for v in args.memory_T.split(",")]:
            print(f"[memory vs T={T}]", file=sys.stderr)
            points[T] = {lib: memory_in_subprocess(lib, "fc", T, args.threads) for lib in mem_libs}
        report["memory_vs_T"] = points
    print("[first step]", file=sys.stderr)
    report["first_step"] = (
        {}
        if args.device == "cuda"
        else {
            net: first_step_report(
                [lib for lib in ("ann", "spikeweave-reference") if lib in libs], net, args.threads
            )
            for net in args.nets.split(",")
        }
    )

    report["load_average_at_end"] = os.getloadavg()
    text = markdown(report)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out + ".json", "w") as f:
            json.dump(report, f, indent=1)
        with open(args.out + ".md", "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
