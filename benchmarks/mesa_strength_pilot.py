"""Pilot (issue 30): is a backdoor of >= 95 % ASR at <= 1 point clean-accuracy loss reachable
on Fashion-MNIST? Runs the strength grid of :mod:`spikeweave.experiments.backdoor_strength` for
one trigger kind (``--kind``: badnets, blended, wanet; rates 1/5/10 %) and one model
(``--model``: the default MLP, or the experiment's ``convnet`` / ``ann``) for one seed, measured
on the validation split, and writes a markdown table and JSON (``pilot_<kind>[_<model>]``) to
``--out``.

    nice -n 10 python benchmarks/mesa_strength_pilot.py --train-size 10000 --epochs 3 \
        --kind blended --out docs/results/mesa
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from spikeweave.atomic import atomic_write_bytes
from spikeweave.experiments.backdoor_strength import rule_record, strength_search
from spikeweave.experiments.base import ExperimentContext
from spikeweave.training import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kind", default="badnets")
    ap.add_argument("--model", default="mlp", help="mlp (default), convnet or ann")
    ap.add_argument("--out", default="docs/results/mesa")
    ap.add_argument("--work", default="/tmp/mesa-strength-pilot")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = TrainConfig(dataset="fashion-mnist", model=a.model, steps=a.steps, epochs=a.epochs,
                      val_fraction=5000 / 60000, train_size=a.train_size, plots=False)  # fmt: skip
    ctx = ExperimentContext(out_dir=Path(a.work), quick=False, seeds=[a.seed])
    t0 = time.perf_counter()
    target = (3 * a.seed) % 10
    res = strength_search(ctx.train, cfg, a.kind, target, a.seed, "pilot")
    wall = time.perf_counter() - t0
    lines = [
        "| rate | strength | options | C-Acc (val) | C-Acc loss (pts) | ASR (val) | R-Acc (val) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['rate']:.0%} | {r['strength']} | {json.dumps(r['options'])} | "
            f"{r['clean_accuracy']:.2%} | {100 * r['clean_loss']:+.2f} | {r['asr']:.2%} | "
            f"{r['robust_accuracy']:.2%} |"
        )
    text = "\n".join([
        f"clean model: C-Acc (val) {res['clean']['clean_accuracy']:.2%} on "
        f"{res['clean']['images']} validation images; target class {target}; seed {a.seed}",
        "", *lines, "", f"rule: {res['reason']}", f"wall time {wall:.0f} s",
    ])  # fmt: skip
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"args": vars(a), "rule": rule_record(), "target": target, **res,
              "wall_s": round(wall, 1), "config": {"dataset": cfg.dataset, "model": cfg.model,
              "steps": cfg.steps, "epochs": cfg.epochs, "train_size": cfg.train_size}}  # fmt: skip
    name = a.kind if a.model == "mlp" else f"{a.kind}_{a.model}"
    atomic_write_bytes(out / f"pilot_{name}.json", json.dumps(record, indent=1).encode())
    atomic_write_bytes(out / f"pilot_{name}.md", (text + "\n").encode())


if __name__ == "__main__":
    main()
