"""Experiment ``klif-vs-lif``: KLIF against LIF on the same network, steps, epochs and seeds.

Claim (arXiv 2302.09238, methods.md §3): KLIF reaches at least LIF's accuracy at no extra
cost. Both arms use the sigmoid surrogate with α = 4 (KLIF's setting), τ = 2, θ = 1, hard reset.
File-based datasets are added when their files are found under the data root.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from ..training import EpochMetrics, TrainConfig
from .base import Experiment, ExperimentContext, register
from .figures import plot_seed_bands
from .report import Report, Table, fmt_pm, mean_std

__all__ = ["KlifVsLif", "k_values"]


def k_values(model: nn.Module) -> dict[str, float]:
    """``{"k/<layer>": mean k}`` for every KLIF layer (its learnable sharpness)."""
    from ..neurons import KLIF

    return {
        f"k/{name}": float(m.k.detach().mean())
        for name, m in model.named_modules()
        if isinstance(m, KLIF)
    }


@register
class KlifVsLif(Experiment):
    """Test accuracy, learning curves, k trajectories and step time of KLIF vs LIF."""

    name = "klif-vs-lif"
    title = "KLIF vs LIF: same network, steps, epochs and seeds"
    claim = (
        "KLIF (learnable k scaling the membrane before fire and reset) reaches at least LIF's "
        "accuracy at no extra cost (arXiv 2302.09238)."
    )

    def run(self, ctx: ExperimentContext) -> Report:  # noqa: D102
        if ctx.quick:
            base = TrainConfig(dataset="digits", model="mlp", steps=2, epochs=1, batch_size=64)
        else:
            base = TrainConfig(dataset="mnist5k", model="convnet", steps=4, epochs=10)
        base = replace(
            base,
            surrogate="sigmoid",
            alpha=4.0,
            tau=2.0,
            threshold=1.0,
            reset="hard",
            out_dir=str(ctx.out_dir / "runs"),
        )
        arms = {"LIF": "lif", "KLIF": "klif"}
        acc: dict[str, list[float]] = {}
        curves: dict[str, list[list[float]]] = {}
        epoch_time: dict[str, list[float]] = {}
        k_traj: dict[str, list[list[float]]] = {}
        for arm, neuron in arms.items():
            trainers = [
                ctx.train(
                    arm.lower(),
                    replace(base, neuron=neuron),
                    seed,
                    callbacks=[EpochMetrics(k_values)],
                )
                for seed in ctx.seeds
            ]
            acc[arm] = [t.history[-1]["test_accuracy"] for t in trainers]
            curves[arm] = [[r["test_accuracy"] for r in t.history] for t in trainers]
            # The first epoch includes one-off warm-up; per-epoch time from epoch 2 when present.
            epoch_time[arm] = [
                r["epoch_time_s"] for t in trainers for r in (t.history[1:] or t.history)
            ]
            if neuron == "klif":
                for t in trainers:
                    for key in (k for k in t.history[0] if k.startswith("k/")):
                        k_traj.setdefault(key, []).append([r[key] for r in t.history])

        figures = [
            str(
                plot_seed_bands(
                    {a: [[100 * v for v in c] for c in curves[a]] for a in arms},
                    ctx.out_dir / "test_accuracy.png",
                    f"{base.dataset}: test accuracy, KLIF vs LIF",
                    "test accuracy (%)",
                )
            ),
        ]
        if k_traj:
            figures.append(
                str(
                    plot_seed_bands(
                        {name.removeprefix("k/"): runs for name, runs in k_traj.items()},
                        ctx.out_dir / "k_trajectory.png",
                        "KLIF: learned k per layer (mean over units)",
                        "k",
                    )
                )
            )
        (m_lif, _), (m_klif, _) = mean_std(acc["LIF"]), mean_std(acc["KLIF"])
        (t_lif, _), (t_klif, _) = mean_std(epoch_time["LIF"]), mean_std(epoch_time["KLIF"])
        _, s_lif = mean_std(acc["LIF"])
        held = m_klif >= m_lif - s_lif and t_klif <= 1.1 * t_lif
        verdict = (
            f"Test accuracy KLIF {100 * m_klif:.2f}% vs LIF {100 * m_lif:.2f}% "
            f"(difference {100 * (m_klif - m_lif):+.2f} points); epoch time KLIF/LIF "
            f"{t_klif / t_lif:.2f}. Counted as held when KLIF's mean is within one LIF std of "
            "LIF's or above, and KLIF's epoch time within 10% of LIF's."
        )
        final_k = {name: [runs[-1] for runs in per_seed] for name, per_seed in k_traj.items()}
        return Report(
            name=self.name,
            title=self.title,
            claim=self.claim,
            setup={
                "data": base.dataset,
                "model": f"{base.model}, T={base.steps}, {base.epochs} epochs, batch "
                f"{base.batch_size}, AdamW lr {base.lr}, {base.schedule} schedule",
                "neurons": "tau=2, threshold=1, hard reset to 0, sigmoid surrogate alpha=4; "
                "KLIF k per layer initialised to 1",
            },
            tables=[
                Table(
                    "Final test accuracy (%) and time per epoch (s)",
                    ["arm", "test accuracy (%)", "epoch time (s)"],
                    [[a, fmt_pm(acc[a], 100), fmt_pm(epoch_time[a])] for a in arms],
                ),
                Table(
                    "KLIF: final k per layer",
                    ["layer", "k"],
                    [[name.removeprefix("k/"), fmt_pm(v, digits=3)] for name, v in final_k.items()],
                ),
            ],
            figures=figures,
            verdict=verdict,
            held=held,
            results={
                "test_accuracy": acc,
                "epoch_time_s": epoch_time,
                "k_final": final_k,
                "curves": curves,
            },
        )
