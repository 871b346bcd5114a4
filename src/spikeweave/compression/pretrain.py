"""Train the built-in event-frame samplers: ``python -m spikeweave.compression.pretrain OUT``.

Reproducible from the command and seed alone (both are stored in every file it writes):

1. ``--images`` mnist5k *training* images (a seeded random choice) are turned into simulated
   N-MNIST-like saccade events (:mod:`.saccades`, seed ``--seed``); the first
   ``--test-images`` mnist5k *test* images (seed ``--seed + 1``) give the held-out frames
   the trainer reports PSNR/SSIM on.
2. Each recording is cut into ``--window-us`` windows; every window with at least one event
   becomes a frame ``[2, 34, 34]`` (counts per polarity, clipped at FRAME_CAP, scaled to [0, 1]).
3. For each rate of ``--rates`` (default: 10 %), the ordinary training seam trains a
   ``--method sampler`` run (spiking arm, top-k, task ``reconstruction``) on those frames,
   into ``OUT/runs/event-sampler-rNN``.
4. The run's spiking sampler (not its decoder: sampled mode stores the kept events, it does not
   reconstruct) is written to ``OUT/event_sampler_rNN.safetensors``.

No real recording is used. The shipped files in ``spikeweave/compression/pretrained/`` were made
with the command in ``pretrained/README.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .event_sampler import FRAME_CAP, normalise_frames, save_sampler
from .saccades import SENSOR_SIZE, SaccadeModel, simulate_saccades
from .sampling import DEFAULT_WINDOW_US, window_frames

__all__ = ["simulated_frames", "train_event_samplers", "main"]


def simulated_frames(
    images: np.ndarray, seed: int, window_us: int = DEFAULT_WINDOW_US
) -> torch.Tensor:
    """Non-empty ``window_us`` event frames of simulated saccades of ``images`` [B, 1, 28, 28]:
    float32 ``[n, 2, 34, 34]`` in [0, 1] (clipped at FRAME_CAP)."""
    frames = []
    for ev in simulate_saccades(images, seed):
        f, _ = window_frames(ev, SENSOR_SIZE, window_us)
        frames.append(f[f.sum((1, 2, 3)) > 0])
    return normalise_frames(np.concatenate(frames), 2)


def train_event_samplers(
    out_dir: str | Path,
    *,
    rates: tuple[float, ...] = (0.10,),
    images: int = 80,
    test_images: int = 30,
    epochs: int = 3,
    seed: int = 0,
    window_us: int = DEFAULT_WINDOW_US,
    command: str = "",
    progress: bool = True,
) -> list[Path]:
    """Train one spiking event-frame sampler per rate; returns the safetensors files."""
    from ..data.embedded import load_mnist5k_arrays
    from ..training import TrainConfig, Trainer
    from .sampler import SamplerMethod

    out_dir = Path(out_dir)
    x_train, _ = load_mnist5k_arrays("train")
    x_test, _ = load_mnist5k_arrays("test")
    pick = np.random.default_rng(seed).permutation(len(x_train))[:images]
    train = simulated_frames(x_train[pick], seed, window_us)
    test = simulated_frames(x_test[:test_images], seed + 1, window_us)
    data = (
        TensorDataset(train, torch.zeros(len(train), dtype=torch.long)),
        TensorDataset(test, torch.zeros(len(test), dtype=torch.long)),
    )
    about = (
        f"{len(train)} / {len(test)} non-empty {window_us} us event frames of simulated saccades "
        f"of {images} mnist5k train / {test_images} mnist5k test images "
        "(spikeweave.compression.saccades)"
    )
    written = []
    for rate in rates:
        tag = f"r{round(100 * rate):02d}"
        cfg = TrainConfig(
            dataset="mnist5k",  # a placeholder name: the data are injected, see notes
            task="reconstruction",
            encoder="direct",
            steps=4,
            epochs=epochs,
            batch_size=64,
            lr=2e-3,
            seed=seed,
            out_dir=str(out_dir / "runs"),
            notes={"data": about},
        )
        trainer = Trainer(
            cfg,
            method=SamplerMethod({"rate": rate, "arm": "spiking"}),
            datasets=data,
            run_dir=out_dir / "runs" / f"event-sampler-{tag}",
            progress=progress,
        )
        trainer.fit()
        last = trainer.history[-1]
        path = save_sampler(
            out_dir / f"event_sampler_{tag}.safetensors",
            trainer.model.sampler,
            cfg.steps,
            rate,
            {
                "command": command,
                "seed": str(seed),
                "window_us": str(window_us),
                "frame_cap": str(FRAME_CAP),
                "training_data": about,
                "saccade_model": SaccadeModel().as_dict(),
                "epochs": str(epochs),
                "heldout_psnr_db": f"{last['test_psnr']:.3f}",
                "heldout_ssim": f"{last['test_ssim']:.4f}",
            },
        )
        written.append(path)
        print(f"{path}: held-out PSNR {last['test_psnr']:.2f} dB, SSIM {last['test_ssim']:.3f}")
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m spikeweave.compression.pretrain OUT [options]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--images", type=int, default=80)
    parser.add_argument("--test-images", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window-us", type=int, default=DEFAULT_WINDOW_US)
    parser.add_argument("--rates", default="0.10")
    args = parser.parse_args(argv)
    command = "python -m spikeweave.compression.pretrain " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    train_event_samplers(
        args.out_dir,
        rates=tuple(float(r) for r in args.rates.split(",")),
        images=args.images,
        test_images=args.test_images,
        epochs=args.epochs,
        seed=args.seed,
        window_us=args.window_us,
        command=command,
    )


if __name__ == "__main__":
    main()
