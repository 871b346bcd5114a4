"""Experiment ``reset-dependency``: BPTT with and without the reset path's derivative.

Claim (arXiv 2011.09964, methods.md §1): keeping the reset term makes training more robust to
the learning rate on a toy task; on a real image task it brings little, at extra compute cost.

Toy: the "soft XOR" regression on [-1, 1]² with target ``-4(σ(x/0.15)-½)(σ(y/0.15)-½)``, inputs
held for ``T`` steps (direct encoding), a LIF MLP 2-64-128-256 with a linear readout of the last
layer's spikes whose time average is the prediction — trained by the ordinary trainer with the
``regression`` task on injected datasets —
multiplicative reset (hard, to 0), no input decay, τ = 5, sigmoid surrogate with temperature 0.2
(α = 5), AdamW with lr decay 0.9 per epoch — the settings of the author's code, except the batch
size and epoch count, which are larger / fewer here to fit a CPU budget (stated in the report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch.utils.data import TensorDataset

from ..errors import TrainingError
from ..training import TrainConfig
from .base import Experiment, ExperimentContext, register
from .figures import plot_bars, plot_seed_bands, plot_sweep
from .report import Report, Table, fmt_pm, mean_std

__all__ = [
    "soft_xor_data",
    "soft_xor_config",
    "train_soft_xor",
    "SoftXorSettings",
    "ResetDependency",
]


def soft_xor_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points uniform on [-1, 1]² and their soft-XOR targets ``[n]``."""
    x = torch.rand(n, 2, generator=generator) * 2 - 1
    y = -4 * (torch.sigmoid(x[:, 0] / 0.15) - 0.5) * (torch.sigmoid(x[:, 1] / 0.15) - 0.5)
    return x, y


@dataclass(frozen=True)
class SoftXorSettings:
    """Size of the toy runs."""

    n_train: int = 5000
    n_test: int = 1000
    steps: int = 50
    epochs: int = 15
    batch_size: int = 100
    lr_decay: float = 0.9


def soft_xor_config(detach_reset: bool, lr: float, settings: SoftXorSettings) -> TrainConfig:
    """The toy's run: a LIF MLP 2-64-128-256 with a linear readout of the last layer's spikes
    (its time average is the prediction), regression task, AdamW with lr decay per epoch."""
    return TrainConfig(
        dataset="soft-xor",
        task="regression",
        model="mlp",
        hidden=[64, 128, 256],
        batch_norm=False,
        population=1,
        neuron="lif",
        tau=5.0,
        decay_input=False,
        reset="hard",
        surrogate="sigmoid",
        alpha=5.0,
        detach_reset=detach_reset,
        steps=settings.steps,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        eval_batch_size=settings.n_test,
        lr=lr,
        schedule="exponential",
        gamma=settings.lr_decay,
        grad_clip=0.0,
    )


def train_soft_xor(
    ctx: ExperimentContext, detach_reset: bool, lr: float, seed: int, settings: SoftXorSettings
) -> dict[str, object]:
    """Train the toy once through the trainer (regression task, injected data); returns the
    per-epoch test MSE (inf once diverged), the final one and training seconds per step."""
    gen = torch.Generator().manual_seed(seed)
    train = TensorDataset(*soft_xor_data(settings.n_train, gen))
    test = TensorDataset(*soft_xor_data(settings.n_test, gen))
    arm = f"soft-xor-{'detach' if detach_reset else 'keep'}-lr{lr:g}"
    try:
        trainer = ctx.train(
            arm, soft_xor_config(detach_reset, lr, settings), seed, datasets=(train, test)
        )
    except TrainingError:  # diverged: NaN loss or activations
        return {"curve": [math.inf], "final_loss": math.inf, "step_time_s": math.nan}
    curve = [float(r["test_mse"]) for r in trainer.history]
    steps = trainer.steps_per_epoch * len(trainer.history)
    train_s = sum(float(r["train_time_s"]) for r in trainer.history)
    return {"curve": curve, "final_loss": curve[-1], "step_time_s": train_s / steps}


@register
class ResetDependency(Experiment):
    """Soft-XOR learning-rate sweep and mnist5k accuracy, reset path detached vs kept."""

    name = "reset-dependency"
    title = "Reset-path temporal dependency in BPTT (detach_reset=False vs True)"
    claim = (
        "Keeping the reset path's derivative in BPTT makes training more robust to the learning "
        "rate on the soft-XOR toy; on a real image task it brings little, at extra compute cost "
        "(arXiv 2011.09964)."
    )

    def run(self, ctx: ExperimentContext) -> Report:  # noqa: D102
        arms = {"detached (usual)": True, "reset-aware": False}
        if ctx.quick:
            toy = SoftXorSettings(n_train=200, n_test=100, steps=6, epochs=1, batch_size=50)
            lrs = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
            image = TrainConfig(dataset="digits", model="mlp", steps=2, epochs=1, batch_size=64)
        else:
            toy = SoftXorSettings()
            lrs = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
            image = TrainConfig(
                dataset="mnist5k",
                model="convnet",
                steps=4,
                epochs=8,
                surrogate="sigmoid",
                alpha=4.0,
            )
        image = replace(image, out_dir=str(ctx.out_dir / "runs"))

        toy_final: dict[str, list[list[float]]] = {a: [] for a in arms}
        toy_time: dict[str, list[float]] = {a: [] for a in arms}
        for arm, detach in arms.items():
            for lr in lrs:
                results = [train_soft_xor(ctx, detach, lr, seed, toy) for seed in ctx.seeds]
                toy_final[arm].append([float(r["final_loss"]) for r in results])
                toy_time[arm] += [
                    float(r["step_time_s"]) for r in results if math.isfinite(r["step_time_s"])
                ]

        img_acc: dict[str, list[float]] = {}
        img_curves: dict[str, list[list[float]]] = {}
        img_time: dict[str, list[float]] = {}
        for arm, detach in arms.items():
            trainers = [
                ctx.train(
                    f"mnist-{'detach' if detach else 'keep'}",
                    replace(image, detach_reset=detach),
                    seed,
                )
                for seed in ctx.seeds
            ]
            img_acc[arm] = [t.history[-1]["test_accuracy"] for t in trainers]
            img_curves[arm] = [[r["test_accuracy"] for r in t.history] for t in trainers]
            img_time[arm] = [r["epoch_time_s"] for t in trainers for r in t.history]

        figures = [
            str(
                plot_sweep(
                    lrs,
                    {a: [[min(v, 10.0) for v in per] for per in toy_final[a]] for a in arms},
                    ctx.out_dir / "soft_xor_lr_sweep.png",
                    "Soft XOR: final test MSE vs learning rate (diverged runs at 10)",
                    "learning rate",
                    "test MSE",
                    logy=True,
                )
            ),
            str(
                plot_seed_bands(
                    {a: [[100 * v for v in c] for c in img_curves[a]] for a in arms},
                    ctx.out_dir / "image_test_accuracy.png",
                    f"{image.dataset}: test accuracy",
                    "test accuracy (%)",
                )
            ),
            str(
                plot_bars(
                    {a: [1000 * v for v in toy_time[a]] for a in arms},
                    ctx.out_dir / "step_time.png",
                    "Soft XOR: time per training step",
                    "ms per step",
                )
            ),
        ]

        sweep_rows = []
        for i, lr in enumerate(lrs):
            sweep_rows.append([f"{lr:g}"] + [fmt_pm(toy_final[a][i], digits=4) for a in arms])
        good = 0.05  # a run "trains" when its test MSE ends below this (the target variance ~0.23)
        robust = {a: sum(mean_std(v)[0] < good for v in toy_final[a]) for a in arms}
        t_det, t_keep = (mean_std(img_time[a])[0] for a in arms)
        a_det, a_keep = (mean_std(img_acc[a])[0] for a in arms)
        held = robust["reset-aware"] > robust["detached (usual)"] and abs(a_keep - a_det) < 0.01
        verdict = (
            f"Learning rates (of {len(lrs)}) at which the soft-XOR test MSE ends below {good}: "
            f"detached {robust['detached (usual)']}, reset-aware {robust['reset-aware']}. "
            f"{image.dataset} accuracy: detached {100 * a_det:.2f}%, reset-aware "
            f"{100 * a_keep:.2f}%; epoch time ratio reset-aware/detached {t_keep / t_det:.2f}."
        )
        return Report(
            name=self.name,
            title=self.title,
            claim=self.claim,
            setup={
                "toy": f"soft XOR, {toy.n_train}/{toy.n_test} points, T={toy.steps}, "
                f"{toy.epochs} epochs, batch {toy.batch_size}, lr decay {toy.lr_decay}/epoch "
                "(author's code: batch 10, 50 epochs)",
                "toy model": "LIF MLP 2-64-128-256 + linear readout, tau=5, hard reset to 0, "
                "no input decay, sigmoid surrogate alpha=5 (temperature 0.2)",
                "learning rates": lrs,
                "image task": f"{image.dataset}, {image.model}, T={image.steps}, "
                f"{image.epochs} epochs, surrogate {image.surrogate}",
            },
            tables=[
                Table(
                    "Soft XOR: final test MSE (mean ± std over seeds)", ["lr", *arms], sweep_rows
                ),
                Table(
                    f"{image.dataset}: final test accuracy (%) and time per epoch",
                    ["arm", "test accuracy (%)", "epoch time (s)", "toy step time (ms)"],
                    [
                        [a, fmt_pm(img_acc[a], 100), fmt_pm(img_time[a]), fmt_pm(toy_time[a], 1000)]
                        for a in arms
                    ],
                ),
            ],
            figures=figures,
            verdict=verdict,
            held=held,
            results={
                "toy_final_loss": toy_final,
                "learning_rates": lrs,
                "image_accuracy": img_acc,
                "image_epoch_time_s": img_time,
                "toy_step_time_s": toy_time,
            },
        )
