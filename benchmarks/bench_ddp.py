"""Training throughput with 1 vs N processes (torchrun, gloo) on this machine.

Each round launches ``torchrun --standalone --nproc_per_node P spikeweave train ...`` for every
P in ``--procs``, interleaved (round 1: 1, 2; round 2: 1, 2; ...), so machine load hits all
arms alike. Throughput is training samples per second of the training part of each epoch
(``train_time_s`` in metrics.jsonl, evaluation excluded), from epochs 2.. (epoch 1 includes
warm-up). Each process gets ``threads`` torch threads (default: cores / P, so every arm uses
the whole machine). Results: JSON and Markdown under --out.

    python benchmarks/bench_ddp.py --procs 1 2 --rounds 3 --out benchmarks/results/ddp
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_once(procs: int, threads: int, args: argparse.Namespace) -> list[float]:
    """Samples/s of epochs 2.. of one launch."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(procs), "-m", "spikeweave.cli", "train",
            "--dataset", args.dataset, "--model", args.model, "-T", str(args.steps),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--no-progress", "--out-dir", out,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        run = next(Path(out).iterdir())
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    n = _train_size(args.dataset)
    return [n / r["train_time_s"] for r in rows[1:]]


def _train_size(dataset: str) -> int:
    from spikeweave import data

    return len(data.load(dataset, "train"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--model", default="mlp")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ddp"))
    args = p.parse_args()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    results: dict[int, list[float]] = {n: [] for n in args.procs}
    for r in range(args.rounds):
        for n in args.procs:
            threads = max(1, cores // n)
            results[n] += run_once(n, threads, args)
            print(f"round {r + 1}: {n} process(es): {statistics.median(results[n]):.0f} samples/s")
    load_after = os.getloadavg()[0]
    base = statistics.median(results[args.procs[0]])
    rows = []
    for n in args.procs:
        med = statistics.median(results[n])
        rows.append((n, max(1, cores // n), med, med / base))
    command = "python " + " ".join(sys.argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "command": command,
                "cores": cores,
                "load_average_1min": [load_before, load_after],
                "setup": {k: str(v) for k, v in vars(args).items()},
                "samples_per_s": {str(n): v for n, v in results.items()},
            },
            indent=2,
        )
    )
    lines = [
        "# Data-parallel throughput (torchrun, gloo)",
        "",
        f"Command: `{command}` on {cores} cores. {args.dataset}, {args.model}, T={args.steps}, "
        f"global batch {args.batch_size}; median over {args.rounds} interleaved rounds of epochs "
        f"2..{args.epochs} (training only). 1-minute load average {load_before:.1f} before, "
        f"{load_after:.1f} after: on a loaded machine the multi-threaded one-process arm "
        "suffers most from oversubscription, so compare only runs on an idle machine.",
        "",
        "| processes | threads each | samples/s | vs first |",
        "|---|---|---|---|",
        *[f"| {n} | {t} | {m:.0f} | {ratio:.2f}× |" for n, t, m, ratio in rows],
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
