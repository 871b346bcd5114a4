"""Process CPU time of one epoch's parts, to compare ``test_eval`` each-epoch with best-val.

Workload: the trainer's conv net at T = 4 (sigmoid surrogate) on full Fashion-MNIST, 5,000
validation images held out of the 60,000, one torch thread. Timed with ``time.process_time``:
one ``Trainer.train_epoch`` on ``--train-size`` images, ``Trainer.evaluate("val")`` (5,000
images) and ``Trainer.evaluate("test")`` (10,000). An epoch costs train + val + test with
``each-epoch``, train + val with ``best-val`` (which scores test once per run).

    PYTHONPATH=src python benchmarks/bench_test_eval.py --train-size 1000

Measured 2026-12-07 on the project's 2-core CPU (shared, load 5–10): training 1,000 images
6.2 s, validation 26.7 s, test 51.4 s; an epoch 84.3 s with each-epoch, 32.9 s with best-val
(+51.4 s once per run).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from spikeweave.training import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            dataset="fashion-mnist", model="convnet", steps=4, surrogate="sigmoid", epochs=1,
            val_fraction=5000 / 60000, train_size=args.train_size, threads=1, plots=False,
            out_dir=out, test_eval="best-val",
        )  # fmt: skip
        trainer = Trainer(cfg, progress=False)
        spent = {}
        for name, work in (
            ("train", lambda: trainer.train_epoch(1)),
            ("val", lambda: trainer.evaluate("val")),
            ("test", lambda: trainer.evaluate("test")),
        ):
            start = time.process_time()
            work()
            spent[name] = time.process_time() - start
    print(
        f"train {len(trainer.train_set)} images {spent['train']:.1f} s CPU; val "
        f"{len(trainer.val_set)} {spent['val']:.1f} s; test {len(trainer.test_set)} "
        f"{spent['test']:.1f} s"
    )
    each = spent["train"] + spent["val"] + spent["test"]
    best = spent["train"] + spent["val"]
    print(f"epoch: each-epoch {each:.1f} s, best-val {best:.1f} s (+{spent['test']:.1f} s once)")


if __name__ == "__main__":
    main()
