"""Seconds per training epoch: spikeweave's default conv net vs a SpikingJelly loop vs the ANN.

The network is ``spikeweave train``'s default conv net (Conv3x3(32)-BN-LIF-MaxPool2,
Conv3x3(64)-BN-LIF-MaxPool2, Linear(128)-LIF, Linear(10×10)-LIF, population readout) on
Fashion-MNIST (1×28×28), direct encoding, T=4, batch 128, AdamW (lr 2e-3, weight decay 1e-2),
gradient clipping at 1, the rate cross-entropy of ``spikeweave train``. Arms:

- ``spikeweave``: the model ``spikeweave train`` builds (LIF on its fused kernel);
- ``spikeweave-compile``: the same with ``compile`` (its stateless layers through
  ``torch.compile``); the first step's time includes compilation;
- ``spikingjelly``: the same layers in SpikingJelly's multi-step style
  (``SeqToANNContainer`` around Conv+BN, pooling and Linear; ``LIFNode(tau=2, v_reset=0,
  ATan, detach_reset=True, step_mode="m")``, reset with ``functional.reset_net``), with the
  spikeweave model's initial weights copied in and its output checked equal on one batch;
- ``ann``: the same architecture with ReLU, one step (``--model ann`` of ``spikeweave
  train``).

Each arm trains with the same loop (images pre-loaded on the device, batches sliced from a
seeded permutation, so data loading is excluded), in ``fp32`` and ``bf16`` (autocast). Every
arm first runs ``--warmup`` steps (the first one's time is recorded: kernel builds,
compilation); then rounds interleave the arms, one epoch over ``--images`` training images
each, in a rotating order, so load on the machine hits every arm alike. On CUDA the clock
reads after ``torch.cuda.synchronize()`` and peak memory is ``torch.cuda.max_memory_allocated``
over one epoch; on the CPU peak memory is the RSS high-water mark over ``--memory-steps``
steps in a fresh process per arm.

    PYTHONPATH=src /tmp/bench-venv/bin/python benchmarks/bench_epoch.py --images 2048 \
        --rounds 3 --out benchmarks/results/epoch_cpu
    PYTHONPATH=src python benchmarks/bench_epoch.py --device cuda --images 60000 --rounds 3 \
        --out benchmarks/results/epoch_cuda
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from spikeweave.data.static import load_idx_dataset
from spikeweave.encoding import direct
from spikeweave.training import TrainConfig
from spikeweave.training.assembly import model_from_config
from spikeweave.training.build import compile_stateless

LIBS = ("spikeweave", "spikeweave-compile", "spikingjelly", "ann")
PRECISIONS = ("fp32", "bf16")


def load_images(folder: Path, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` Fashion-MNIST training images ``[n, 1, 28, 28]`` in [0, 1], labels."""
    data = load_idx_dataset("fashion-mnist", folder, "train")
    if n > len(data):
        raise SystemExit(f"--images {n} exceeds the {len(data)} training images")
    xs = torch.stack([torch.as_tensor(data[i][0]) for i in range(n)]).float()
    xs = xs.reshape(n, 1, 28, 28)
    if xs.max() > 1:
        xs = xs / 255
    ys = torch.tensor([int(data[i][1]) for i in range(n)])
    return xs.to(device), ys.to(device)


def _config(lib: str, steps: int) -> TrainConfig:
    model = "ann" if lib == "ann" else "convnet"
    return TrainConfig(dataset="fashion-mnist", model=model, steps=steps).validate()


class SJConvNet(nn.Module):
    """The default conv net in SpikingJelly's multi-step style."""

    def __init__(self) -> None:
        super().__init__()
        from spikingjelly.activation_based import layer, neuron, surrogate

        from spikeweave.models.readout import PopulationReadout

        def lif() -> nn.Module:
            return neuron.LIFNode(
                tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                surrogate_function=surrogate.ATan(alpha=2.0), detach_reset=True,
                step_mode="m",
            )  # fmt: skip

        seq = layer.SeqToANNContainer
        self.net = nn.Sequential(
            seq(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)),
            lif(),
            seq(nn.MaxPool2d(2)),
            seq(nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)),
            lif(),
            seq(nn.MaxPool2d(2)),
            seq(nn.Flatten(), nn.Linear(64 * 7 * 7, 128)),
            lif(),
            seq(nn.Linear(128, 100)),
            lif(),
            PopulationReadout(10, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self.net)
        return self.net(x)


def _copy_weights(sj: SJConvNet, sw: nn.Module) -> None:
    """spikeweave's initial weights into the SpikingJelly net, tensor by tensor in order."""
    src = [t for t in sw.state_dict().values()]
    dst = [t for t in sj.state_dict().values()]
    if [t.shape for t in src] != [t.shape for t in dst]:
        raise SystemExit("the SpikingJelly net's tensors do not match spikeweave's")
    with torch.no_grad():
        for d, s in zip(dst, src, strict=True):
            d.copy_(s)


def build(lib: str, steps: int, device: torch.device, check: torch.Tensor | None) -> nn.Module:
    """The arm's model on ``device``, initialised from seed 0 (TrainConfig's default)."""
    torch.manual_seed(0)
    model = model_from_config(_config(lib, steps))
    if lib == "spikingjelly":
        sj = SJConvNet()
        _copy_weights(sj, model)
        if check is not None:  # same spikes, same readout, from the same weights
            xt = direct(check[:16].cpu(), steps)
            model.train(), sj.train()
            with torch.no_grad():
                same = torch.equal(model(xt), sj(xt))
            if not same:
                raise SystemExit("SpikingJelly's output differs from spikeweave's on equal weights")
            _copy_weights(sj, model)  # BatchNorm's running statistics moved in the check
        model = sj
    model = model.to(device)
    if lib == "spikeweave-compile":
        compile_stateless(model)
    return model


def trainer_for(
    lib: str, steps: int, device: torch.device, precision: str, check: torch.Tensor | None
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One training step of the arm: ``step(x [B, 1, 28, 28], y [B])``."""
    cfg = _config(lib, steps)
    model = build(lib, steps, device, check)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    from spikeweave.tasks import DataSpec, make_task

    task = make_task("classification", DataSpec((1, 28, 28), 10), "", cfg.spiking, cfg.rate_scale)
    loss_fn = task.loss()
    T = cfg.effective_steps
    cast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with cast:
            out = model(direct(x, T))
            loss = loss_fn(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch(step, xs, ys, batch: int, seed: int, device: torch.device) -> float:
    """Seconds for one pass over ``xs`` in batches of ``batch`` (the last one may be short)."""
    order = torch.randperm(len(xs), generator=torch.Generator().manual_seed(seed)).to(device)
    _sync(device)
    start = time.perf_counter()
    for i in range(0, len(xs), batch):
        idx = order[i : i + batch]
        step(xs[idx], ys[idx])
    _sync(device)
    return time.perf_counter() - start


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def memory_probe(args: argparse.Namespace, lib: str, precision: str) -> dict:
    """Fresh process: RSS high-water mark over a few steps, reset just before them."""
    device = torch.device("cpu")
    xs, ys = load_images(args.data, args.batch_size, device)
    step = trainer_for(lib, args.steps, device, precision, None)
    step(xs, ys)  # kernel builds and compilation are not training memory
    base = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    for _ in range(args.memory_steps):
        step(xs, ys)
    return {"rss_before_steps_mib": base / 1024, "peak_rss_mib": _status_kib("VmHWM") / 1024}


def _probe(lib: str, precision: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, os.path.abspath(__file__), "--probe", lib, precision,
        "--data", str(args.data), "--steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--memory-steps", str(args.memory_steps),
        "--threads", str(torch.get_num_threads()),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    xs, ys = load_images(args.data, args.images, device)
    arms = [(lib, p) for lib in args.libs for p in args.precisions]
    steps, first = {}, {}
    for lib, p in arms:  # warm-up; the first step's time includes builds and compilation
        try:
            step = trainer_for(lib, args.steps, device, p, xs)
        except ImportError as exc:
            print(f"skipping {lib}: {exc}", flush=True)
            continue
        for k in range(args.warmup):
            _sync(device)
            t = time.perf_counter()
            step(xs[: args.batch_size], ys[: args.batch_size])
            _sync(device)
            if k == 0:
                first[f"{lib}/{p}"] = time.perf_counter() - t
        steps[(lib, p)] = step
    times: dict[str, list[float]] = {f"{lib}/{p}": [] for lib, p in steps}
    peak: dict[str, float] = {}
    order = list(steps)
    load = [os.getloadavg()]
    for r in range(args.rounds):
        rotated = order[r % len(order) :] + order[: r % len(order)]
        for lib, p in rotated:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times[f"{lib}/{p}"].append(
                epoch(steps[(lib, p)], xs, ys, args.batch_size, r, device)
            )  # fmt: skip
            if device.type == "cuda":
                peak[f"{lib}/{p}"] = torch.cuda.max_memory_allocated(device) / 2**20
        load.append(os.getloadavg())
        print(f"round {r + 1}: " + ", ".join(
            f"{k} {statistics.median(v):.2f} s" for k, v in times.items()
        ), flush=True)  # fmt: skip
    if device.type == "cpu" and args.memory:
        for lib, p in steps:
            peak[f"{lib}/{p}"] = _probe(lib, p, args).get("peak_rss_mib", float("nan"))
    rows = []
    for key, ts in times.items():
        med = statistics.median(ts)
        lib, p = key.split("/")
        ref = times.get(f"spikingjelly/{p}")
        ann = times.get(f"ann/{p}")
        rows.append({
            "arm": key,
            "epoch_s_median": med,
            "epoch_s_all": ts,
            "samples_per_s": args.images / med,
            "s_per_60k_epoch_extrapolated": med * 60000 / args.images,
            "first_step_s": first.get(key),
            "peak_memory_mib": peak.get(key),
            "ratio_to_spikingjelly": med / statistics.median(ref) if ref else None,
            "ratio_to_ann": med / statistics.median(ann) if ann else None,
            "ratio_to_spikingjelly_per_round": _ratios(ts, ref),
            "ratio_to_ann_per_round": _ratios(ts, ann),
        })  # fmt: skip
    command = shlex.join(["benchmarks/bench_epoch.py", *sys.argv[1:]])
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {
        "command": f"PYTHONPATH=src {sys.executable} {command}",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_per_round": load,
        "images": args.images,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "memory": "torch.cuda.max_memory_allocated over one epoch" if device.type == "cuda"
        else f"peak RSS (VmHWM) over {args.memory_steps} steps, fresh process per arm"
        if args.memory else "not measured (--no-memory)",
        "rows": rows,
    }  # fmt: skip


def _ratios(ts: list[float], ref: list[float] | None) -> list[float] | None:
    """Round-by-round ratios: both arms ran in the same round, under the same load."""
    return [a / b for a, b in zip(ts, ref, strict=True)] if ref else None


def markdown(result: dict) -> str:
    lines = [
        f"# Epoch time: default conv net, Fashion-MNIST, T={result['steps']}, batch "
        f"{result['batch_size']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Device: {result['device_type']} ({result['device']}), torch {result['torch']}, "
        f"{result['threads']} threads of {result['cpu_count']} cores; {result['images']} "
        f"training images per epoch, median of {result['rounds']} interleaved rounds; "
        f"{result['date']}.",
        "Load average (1/5/15 min) before and after each round: "
        + "; ".join("/".join(f"{v:.1f}" for v in la) for la in result["load_average_per_round"]),
        f"Memory: {result['memory']}.",
        "",
        "× columns: ratio of the medians; per round: each interleaved round's ratio (the same "
        "load hit both arms within a round).",
        "",
        "| arm | s/epoch (median) | samples/s | × SpikingJelly | × SpikingJelly per round "
        "| × ANN | × ANN per round | first step s | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    f = lambda v, fmt: "—" if v is None else format(v, fmt)  # noqa: E731
    g = lambda vs: "—" if not vs else ", ".join(f"{v:.2f}" for v in vs)  # noqa: E731
    for r in result["rows"]:
        lines.append(
            f"| {r['arm']} | {r['epoch_s_median']:.2f} | {r['samples_per_s']:.0f} | "
            f"{f(r['ratio_to_spikingjelly'], '.2f')} | "
            f"{g(r.get('ratio_to_spikingjelly_per_round'))} | "
            f"{f(r['ratio_to_ann'], '.2f')} | {g(r.get('ratio_to_ann_per_round'))} | "
            f"{f(r['first_step_s'], '.1f')} | {f(r['peak_memory_mib'], '.0f')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=60000)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--libs", type=lambda s: s.split(","), default=list(LIBS))
    ap.add_argument("--precisions", type=lambda s: s.split(","), default=list(PRECISIONS))
    ap.add_argument("--memory-steps", type=int, default=3)
    ap.add_argument("--no-memory", dest="memory", action="store_false")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--probe", nargs=2, metavar=("LIB", "PRECISION"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        print(json.dumps(memory_probe(args, *args.probe)))
        return
    result = run(args)
    text = markdown(result)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
