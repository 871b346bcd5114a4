"""Subnormal floats in BPTT: training step time with ``flush_denormal`` on and off.

The workload is reset-dependency's soft-XOR toy (a LIF MLP 2-64-128-256, T = 50, batch 10,
AdamW, no gradient clipping) at several learning rates. At high learning rates the gradients
that flow back through 50 steps decay into the subnormal range (|x| < 1.2e-38), where x86
arithmetic is many times slower. Each (learning rate, mode) is one short training run through
the ordinary ``Trainer``; modes alternate within every round and the order flips between
rounds, so machine load hits both alike. Reported: median seconds per training batch per run,
the ratio off/on per learning rate, and whether the final test MSEs agree. Run on one core:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_denormal.py \
        --out benchmarks/results/denormal

writes ``denormal.json`` (rows, command, machine, versions) and ``denormal.md`` (the table).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from spikeweave.experiments.reset_dependency import SoftXorSettings, soft_xor_config, soft_xor_data
from spikeweave.experiments.timing import StepTimer
from spikeweave.training import Trainer, versions


def one_run(lr: float, flush: bool, settings: SoftXorSettings, out: Path) -> tuple[float, float]:
    """(median seconds per training batch, final test MSE) of one seeded run."""
    gen = torch.Generator().manual_seed(0)
    train = TensorDataset(*soft_xor_data(settings.n_train, gen))
    test = TensorDataset(*soft_xor_data(settings.n_test, gen))
    cfg = replace(soft_xor_config(False, lr, settings), flush_denormal=flush, out_dir=str(out))
    trainer = Trainer(cfg, datasets=(train, test), callbacks=[StepTimer()], progress=False,
                      run_dir=out / f"lr{lr:g}-{'on' if flush else 'off'}")  # fmt: skip
    trainer.fit()
    step = statistics.median(r["step_time_s"] for r in trainer.history)
    return step, float(trainer.history[-1]["test_mse"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.1])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    settings = SoftXorSettings(n_train=args.n_train, n_test=200, epochs=args.epochs)
    steps: dict[tuple[float, bool], list[float]] = {}
    finals: dict[tuple[float, bool], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            modes = (True, False) if rnd % 2 == 0 else (False, True)
            for lr in args.lrs:
                for flush in modes:
                    run_dir = Path(tmp) / f"r{rnd}"
                    step, final = one_run(lr, flush, settings, run_dir)
                    steps.setdefault((lr, flush), []).append(step)
                    finals[lr, flush] = final
    rows = []
    table = [
        "| lr | step ms, flush on | step ms, flush off | off / on | same final MSE |",
        "|---|---|---|---|---|",
    ]
    for lr in args.lrs:
        on = statistics.median(steps[lr, True]) * 1000
        off = statistics.median(steps[lr, False]) * 1000
        same = finals[lr, True] == finals[lr, False]
        rows.append(
            {"lr": lr, "step_ms_on": on, "step_ms_off": off, "ratio": off / on,
             "final_mse_on": finals[lr, True], "final_mse_off": finals[lr, False]}
        )  # fmt: skip
        table.append(f"| {lr:g} | {on:.2f} | {off:.2f} | {off / on:.1f}x | {same} |")
    print("\n".join(table))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "command": shlex.join([sys.executable, *sys.argv]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "versions": versions(),
            "settings": vars(args) | {"out": str(args.out)},
            "rows": rows,
        }
        args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
        args.out.with_suffix(".md").write_text(
            f"# Subnormal floats: step time with flush_denormal on and off\n\n"
            f"`{record['command']}` ({record['date']}, {record['torch_threads']} torch "
            f"thread(s))\n\n" + "\n".join(table) + "\n"
        )


if __name__ == "__main__":
    main()
