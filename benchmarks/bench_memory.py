"""Memory and time of one training step at long T: what the neurons keep for backward.

Workloads (batch 16, forward + backward of ``sum`` of the output spikes weighted, float32):

- ``on``: the Open Neuromorphic benchmark shape, one ``Linear(n, n)`` + LIF over ``[T, 16, n]``
  (its n = 16,384 scaled down with ``--n`` to fit the machine);
- ``static``: a static input encoded once (``Linear(n, n)`` on ``[16, n]``, repeated over T
  with ``expand``) + LIF, where recomputing ``h`` pays;
- ``two``: ``Linear + LIF + Linear + LIF``, where the second Linear keeps the first LIF's spikes.

Arms: ``save`` (``memory="save"``), ``recompute`` (``memory="recompute"``), ``auto``,
``pack`` (``pack_spikes()`` around the forward), ``chunked`` (``TimeChunked``, chunk T/10),
``spikingjelly`` (its LIF, Triton/CuPy backend on CUDA; rows skipped with the reason where it
does not import).

Per (workload, arm, T): the bytes autograd keeps for backward (distinct storages through
``saved_tensors_hooks``, with ``pack_spikes``' hook where it is on; not available for
``chunked``, whose checkpoint keeps its own) and, with ``--peak``, in a fresh subprocess, the
step's peak memory above the memory before it (CPU: ``ru_maxrss``; CUDA: max allocated). Then
the step time, interleaved over the arms (``--reps`` rounds, median), in one process; on CUDA
synchronised (``--device cuda``, run by benchmarks/gpu_check.sh).

    python benchmarks/bench_memory.py --n 1024 --steps 100 500 1000 --threads 1 \
        --out benchmarks/results/memory_issue31_cpu
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

import spikeweave as sf
from spikeweave.functional import memory

ARMS = ("save", "recompute", "auto", "pack", "chunked", "spikingjelly")
WORKLOADS = ("on", "static", "two")


def build(workload: str, arm: str, n: int, T: int, device: str):
    """(model, input, step function) for one workload and arm."""
    torch.manual_seed(0)
    mode = arm if arm in ("save", "recompute") else "auto"

    def lif():
        if arm == "spikingjelly":  # its fastest backend that imports here; absent: an error row
            return _SJ(device)
        return sf.LIF(memory=mode)

    if workload == "two":
        layers = [sf.TimeFolded(torch.nn.Linear(n, n)), lif()]
        layers += [sf.TimeFolded(torch.nn.Linear(n, n)), lif()]
        net = torch.nn.Sequential(*layers)
    else:
        net = torch.nn.Sequential(sf.TimeFolded(torch.nn.Linear(n, n)), lif())
    if arm == "chunked":
        net = sf.TimeChunked(net, max(1, T // 10))
    net = net.to(device)
    if workload == "static":
        x0 = torch.rand(16, n, device=device) * 2
        lin, neuron = net[0].module if hasattr(net[0], "module") else net[0], net[1]

        def forward():
            return neuron(torch.nn.functional.linear(x0, lin.weight, lin.bias).expand(T, 16, n))

        x = x0
    else:
        x = torch.rand(T, 16, n, device=device) * 2

        def forward():
            return net(x)

    w = torch.linspace(-1, 1, 16 * n, device=device).view(16, n)

    def step(count=None):
        ctx = memory.pack_spikes() if arm == "pack" else contextlib.nullcontext()
        if count is not None:
            ctx = torch.autograd.graph.saved_tensors_hooks(count, memory.unpack_saved)
        with ctx:
            s = forward()
        (s * w).sum().backward()
        net.zero_grad(set_to_none=True)

    return net, x, step


class _SJ(torch.nn.Module):
    """SpikingJelly's multi-step LIF (same dynamics: tau 2, hard reset to 0, ATan, detached)."""

    def __init__(self, device: str) -> None:
        super().__init__()
        from spikingjelly.activation_based import neuron, surrogate

        kw = dict(tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate_function=surrogate.ATan())
        kw.update(detach_reset=True, step_mode="m")
        for backend in ("triton", "cupy", "torch") if device == "cuda" else ("torch",):
            try:
                self.node = neuron.LIFNode(backend=backend, **kw)
                self.backend = backend
                break
            except Exception:  # that backend is not available here: the next one
                continue

    def forward(self, x):
        self.node.reset()
        return self.node(x)


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def measure_one(workload: str, arm: str, n: int, T: int, device: str, peak: bool = True) -> dict:
    """Saved bytes and (``peak``) the step's peak memory (then run in a fresh process)."""
    net, x, step = build(workload, arm, n, T, device)
    saved: dict[int, int] = {}

    def count(t):
        kept = memory.pack_saved(t) if arm == "pack" else t
        b = kept if isinstance(kept, torch.Tensor) else kept.bits
        saved[b.untyped_storage().data_ptr()] = b.untyped_storage().nbytes()
        return kept

    build(workload, arm, n, 2, device)[2]()  # warm: lazy imports, kernel library loaded
    out: dict = {"workload": workload, "arm": arm, "n": n, "T": T}
    if not peak:
        step(None if arm == "chunked" else count)
        out["peak_MiB"] = None
    elif device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(None if arm == "chunked" else count)
        torch.cuda.synchronize()
        out["peak_MiB"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        base = _rss_kib()
        step(None if arm == "chunked" else count)
        out["peak_MiB"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    out["saved_MiB"] = None if arm == "chunked" else sum(saved.values()) / 2**20
    return out


def time_arms(workload: str, arms, n: int, T: int, device: str, reps: int) -> dict:
    steps = {a: build(workload, a, n, T, device)[2] for a in arms}
    for s in steps.values():  # warm: kernels built, allocator filled
        s()
    times: dict[str, list[float]] = {a: [] for a in arms}
    for _ in range(reps):
        for a in arms:  # interleaved: drift on a shared machine hits every arm alike
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            steps[a]()
            if device == "cuda":
                torch.cuda.synchronize()
            times[a].append(time.perf_counter() - t0)
    return {a: statistics.median(v) for a, v in times.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--steps", type=int, nargs="+", default=[100, 500, 1000])
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    p.add_argument("--arms", nargs="+", default=list(ARMS[:-1]), choices=ARMS)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    p.add_argument("--peak", action="store_true", help="also peak memory (a process per row)")
    p.add_argument("--one", nargs=3, metavar=("WORKLOAD", "ARM", "T"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.one:
        print(json.dumps(measure_one(a.one[0], a.one[1], a.n, int(a.one[2]), a.device)))
        return
    rows, timing = [], {}
    for wl in a.workloads:
        # pack: only where a later op keeps spikes; chunked: the static input is not [T, ...]
        arms = [x for x in a.arms if not (wl != "two" and x == "pack")]
        arms = [x for x in arms if not (wl == "static" and x == "chunked")]
        for T in a.steps:
            for arm in arms:
                if not a.peak:  # saved bytes only: exact in this process
                    try:
                        rows.append(measure_one(wl, arm, a.n, T, a.device, peak=False))
                    except Exception as e:  # e.g. a peer that is not installed
                        print(f"skipped {wl}/{arm}/T={T}: {e}", file=sys.stderr)
                    continue
                cmd = [sys.executable, __file__, "--n", str(a.n), "--device", a.device]
                cmd += ["--threads", str(a.threads), "--one", wl, arm, str(T)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode:  # e.g. a peer that is not installed: say so, go on
                    why = (res.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"skipped {wl}/{arm}/T={T}: {why}", file=sys.stderr)
                    continue
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            ok = {r["arm"] for r in rows if r["workload"] == wl and r["T"] == T}
            arms = [x for x in arms if x in ok]
            timing[f"{wl}/T={T}"] = time_arms(wl, arms, a.n, T, a.device, a.reps)
            for r in rows:
                if r["workload"] == wl and r["T"] == T:
                    r["step_s"] = timing[f"{wl}/T={T}"][r["arm"]]
            print(json.dumps([r for r in rows if r["workload"] == wl and r["T"] == T]))
    meta = {
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "device": a.device
        if a.device == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}), "
        f"{torch.get_num_threads()} torch thread(s)",
        "torch": torch.__version__,
    }
    if a.device == "cuda":
        meta["device"] = torch.cuda.get_device_name()
    if a.out:
        with open(a.out + ".json", "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        with open(a.out + ".md", "w") as f:
            f.write(_markdown(meta, rows))
    print(_markdown(meta, rows))


def _markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        "# Memory and time per training step at long T (issue 31)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Device: {meta['device']}; torch {meta['torch']}",
        "",
        "saved: bytes autograd keeps for backward after the forward (chunked: not counted, its",
        "checkpoint keeps its own); peak: the step's peak memory above the memory before it",
        "(CPU: peak RSS, fresh process per row). Step time: median, arms interleaved.",
        "",
        "| workload | T | arm | saved MiB | peak MiB | step s |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        saved = "–" if r["saved_MiB"] is None else f"{r['saved_MiB']:.1f}"
        peak = "–" if r["peak_MiB"] is None else f"{r['peak_MiB']:.1f}"
        lines.append(
            f"| {r['workload']} | {r['T']} | {r['arm']} | {saved} | {peak} | "
            f"{r.get('step_s', float('nan')):.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
