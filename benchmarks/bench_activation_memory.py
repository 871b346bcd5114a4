"""Peak memory and time of one training step per ``activation_memory`` mode as T grows.

Workload: the trainer's conv net (``ConvNet``: conv-BN-LIF-maxpool ×2, Linear(hidden)-LIF,
Linear-LIF, population readout) on ``[T, B, C, H, W]`` inputs, batch ``--batch``; one step is
the forward through the trainer's :class:`~spikeweave.training.activation.ActivationMemory`
wrapper, cross-entropy of the mean output over time, and backward (the optimizer's update is
the same in every mode and left out).

Peak memory, each (mode, T) in a fresh subprocess: CPU, the step's peak resident set above the
resident set just before it (``ru_maxrss`` after minus ``/proc/self/statm`` before; torch's
CPU allocator returns large blocks to the system, so the high-water mark is the step's own);
CUDA, ``torch.cuda.max_memory_allocated()`` above ``memory_allocated()`` before. A mode that
runs out of memory is a row saying so. Time per step: median over ``--reps`` rounds in one
process, modes interleaved within each round, reported as a ratio to ``save``.

    python benchmarks/bench_activation_memory.py --steps 4 32 128 512 --threads 2 \
        --out benchmarks/results/activation_memory_cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from spikeweave.models import ConvNet
from spikeweave.neurons import LIF
from spikeweave.training.activation import with_activation_memory
from spikeweave.training.config import ACTIVATION_MEMORY


def build(mode: str, T: int, a: argparse.Namespace):
    """A function running one forward + backward of the conv net under ``mode``."""
    torch.manual_seed(0)
    shape = tuple(a.input)
    model = ConvNet(shape, 10, LIF, channels=tuple(a.channels), hidden=a.hidden).to(a.device)
    net = with_activation_memory(model, mode)
    x = torch.rand(T, a.batch, *shape, device=a.device)
    y = torch.randint(0, 10, (a.batch,), device=a.device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x).mean(0), y)
        loss.backward()

    return model, step


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def measure_one(mode: str, T: int, a: argparse.Namespace) -> dict:
    """The step's peak memory above what was allocated before it (run in a fresh process)."""
    build(mode, 2, a)[1]()  # warm: lazy imports, kernel library loaded
    model, step = build(mode, T, a)
    row: dict = {"mode": mode, "T": T}
    if a.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        row["peak_MiB"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        base = _rss_kib()
        step()
        row["peak_MiB"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return row


def time_modes(modes, T: int, a: argparse.Namespace) -> dict[str, float]:
    steps = {m: build(m, T, a)[1] for m in modes}
    for s in steps.values():  # warm
        s()
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(a.reps):
        for m in modes:  # interleaved: drift on a shared machine hits every mode alike
            if a.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            steps[m]()
            if a.device == "cuda":
                torch.cuda.synchronize()
            times[m].append(time.perf_counter() - t0)
    return {m: statistics.median(v) for m, v in times.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[4, 32, 128, 512])
    p.add_argument("--modes", nargs="+", default=list(ACTIVATION_MEMORY), choices=ACTIVATION_MEMORY)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--input", type=int, nargs=3, default=[1, 28, 28], metavar=("C", "H", "W"))
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--time-max-T", type=int, default=10**9, help="time only up to this T")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    p.add_argument("--one", nargs=2, metavar=("MODE", "T"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.one:
        print(json.dumps(measure_one(a.one[0], int(a.one[1]), a)))
        return
    shared = ["--device", a.device, "--threads", str(a.threads), "--batch", str(a.batch)]
    shared += ["--input", *map(str, a.input), "--channels", *map(str, a.channels)]
    shared += ["--hidden", str(a.hidden)]
    rows = []
    for T in a.steps:
        here = []
        for mode in a.modes:
            cmd = [sys.executable, __file__, *shared, "--one", mode, str(T)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                why = (res.stderr.strip().splitlines() or ["?"])[-1][:160]
                here.append({"mode": mode, "T": T, "peak_MiB": None, "error": why})
                continue
            here.append(json.loads(res.stdout.strip().splitlines()[-1]))
        ok = [r["mode"] for r in here if r["peak_MiB"] is not None]
        if T <= a.time_max_T and ok:
            times = time_modes(ok, T, a)
            for r in here:
                r["step_s"] = times.get(r["mode"])
        rows += here
        print(json.dumps(here), flush=True)
        _write(a, argv, rows)  # after every T: a long sweep cut short keeps what it measured
    meta = _write(a, argv, rows)
    print(_markdown(meta, rows))


def _write(a: argparse.Namespace, argv, rows: list[dict]) -> dict:
    device = (
        torch.cuda.get_device_name()
        if a.device == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} "
        "torch thread(s)"
    )
    meta = {
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "device": device,
        "torch": torch.__version__,
        "workload": f"ConvNet{tuple(a.input)} channels {a.channels} hidden {a.hidden}, "
        f"batch {a.batch}, LIF",
    }
    if a.out:
        with open(a.out + ".json", "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        with open(a.out + ".md", "w") as f:
            f.write(_markdown(meta, rows))
    return meta


def _markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        "# Peak memory and time of one training step per activation_memory mode",
        "",
        f"Command: `{meta['command']}`  ",
        f"Device: {meta['device']}; torch {meta['torch']}  ",
        f"Workload: {meta['workload']}; forward + backward, no optimizer update.",
        "",
        "peak: the step's peak memory above the memory before it (CPU: peak RSS in a fresh",
        "process per row; CUDA: max allocated). time: median step time, modes interleaved,",
        "as a ratio to save at the same T.",
        "",
        "| T | mode | peak MiB | × save memory | step s | × save time |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    by = {(r["T"], r["mode"]): r for r in rows}
    for r in rows:
        base = by.get((r["T"], "save"), {})
        if r["peak_MiB"] is None:
            lines.append(f"| {r['T']} | {r['mode']} | failed: {r.get('error', '?')} | | | |")
            continue
        mem = f"{r['peak_MiB'] / base['peak_MiB']:.2f}" if base.get("peak_MiB") else "–"
        s = r.get("step_s")
        t = f"{s:.3f}" if s else "–"
        ratio = f"{s / base['step_s']:.2f}" if s and base.get("step_s") else "–"
        lines.append(f"| {r['T']} | {r['mode']} | {r['peak_MiB']:.1f} | {mem} | {t} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
