"""Tuned baselines: small sweeps chosen on validation, with the budget stated.

A method compared with an untuned baseline wins by the baseline's bad settings. Here each
candidate setting trains with the same data, epochs and network as the evaluation runs, on a
*tuning seed* kept apart from the evaluation seeds, and the candidate with the best
validation metric (best epoch of ``val_<metric>``, the config's ``val_fraction`` > 0) wins;
the test set is never looked at. Diverged candidates count as the worst.

API:

- :func:`tune(ctx, arm, base, candidates)` -> :class:`TuneResult`: train every
  ``replace(base, **overrides)`` in ``candidates``; ``result.best`` is the winning overrides.
- :func:`sweep_lr_alpha(ctx, arm, base, lrs, alphas)` — the usual staged sweep: learning rate
  first (at the base α), then the surrogate α at the best learning rate; ``len(lrs) +
  len(alphas) - 1`` runs (the shared point is trained once).
- :meth:`TuneResult.rows` / :meth:`TuneResult.to_dict` for report tables and ``results``.

Give every arm the same learning-rate grid (same budget); the surrogate-α sweep is for the
BPTT/LIF baseline, whose surrogate width is fixed by hand where the method learns it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError, TrainingError
from ..training import Callback, TrainConfig
from .selection import best_val_row

__all__ = ["TUNING_SEED", "Trial", "TuneResult", "tune", "sweep_lr_alpha"]

TUNING_SEED = 10_000
"""Seed of tuning runs: apart from the evaluation seeds 0..N-1, so the setting is not chosen
on the very runs it is then evaluated with."""


@dataclass
class Trial:
    """One candidate: its overrides and best validation metric (None when it diverged)."""

    overrides: dict[str, Any]
    val: float | None
    epoch: int


@dataclass
class TuneResult:
    """The candidates tried for one arm and the one kept."""

    arm: str
    metric: str
    higher_is_better: bool
    epochs: int
    seed: int
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any]:
        """Overrides of the best candidate on validation (the first on ties)."""
        done = [t for t in self.trials if t.val is not None and math.isfinite(t.val)]
        if not done:
            raise TrainingError(f"every tuning candidate of {self.arm!r} diverged")
        pick = max if self.higher_is_better else min
        return dict(pick(done, key=lambda t: t.val).overrides)

    def rows(self) -> list[list[Any]]:
        """``[arm, setting, best val metric, best epoch, kept?]`` per candidate."""
        best = self.best
        return [
            [
                self.arm,
                ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in t.overrides.items()),
                "diverged" if t.val is None else round(t.val, 4),
                t.epoch,
                "kept" if t.overrides == best else "",
            ]
            for t in self.trials
        ]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:  # noqa: D102
        return {
            "arm": self.arm,
            "metric": f"val_{self.metric}",
            "epochs_per_trial": self.epochs,
            "seed": self.seed,
            "trials": [
                {"overrides": t.overrides, "val": t.val, "epoch": t.epoch} for t in self.trials
            ],
            "best": self.best,
        }


def _label(overrides: Mapping[str, Any]) -> str:
    return "-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}"
                    for k, v in overrides.items()) or "base"  # fmt: skip


def tune(
    ctx: Any,
    arm: str,
    base: TrainConfig,
    candidates: Sequence[Mapping[str, Any]],
    seed: int = TUNING_SEED,
    callbacks: Callable[[], Sequence[Callback]] = lambda: (),
    **train_kwargs: Any,
) -> TuneResult:
    """Train each candidate once (``ctx.train``, run ``tune-<arm>-<setting>``) and keep the
    best on validation. ``train_kwargs`` (``method``, ``datasets``) go to ``ctx.train``."""
    if base.val_fraction <= 0:
        raise ConfigError(
            "tuning selects on the validation split; set val_fraction > 0 in the base config"
        )
    if not candidates:
        raise ConfigError(f"no tuning candidates given for {arm!r}")
    result: TuneResult | None = None
    trials: list[Trial] = []
    for overrides in candidates:
        cfg = replace(base, **overrides)
        try:
            trainer = ctx.train(
                f"tune-{arm}-{_label(overrides)}", cfg, seed, callbacks=callbacks(), **train_kwargs
            )
        except TrainingError:
            trials.append(Trial(dict(overrides), None, 0))
            continue
        m, higher = trainer.task.metric, trainer.task.higher_is_better
        row = best_val_row(trainer.history, m, higher)
        val = row.get(f"val_{m}")
        trials.append(Trial(dict(overrides), None if val is None else float(val), row["epoch"]))
        if result is None:
            result = TuneResult(arm, m, higher, base.epochs, seed)
    if result is None:  # everything diverged: still a result, whose .best raises
        result = TuneResult(arm, "", True, base.epochs, seed)
    result.trials = trials
    return result


def sweep_lr_alpha(
    ctx: Any,
    arm: str,
    base: TrainConfig,
    lrs: Sequence[float],
    alphas: Sequence[float] = (),
    seed: int = TUNING_SEED,
    **kwargs: Any,
) -> TuneResult:
    """Learning rate first (at ``base.alpha``), then surrogate α at the best learning rate;
    one :class:`TuneResult` holding both stages."""
    first = tune(ctx, arm, base, [{"lr": float(lr)} for lr in lrs], seed, **kwargs)
    if not alphas:
        return first
    lr = first.best["lr"]
    base_alpha = base.alpha
    rest = [{"lr": lr, "alpha": float(a)} for a in alphas if base_alpha is None or a != base_alpha]
    if not rest:
        return first
    second = tune(ctx, arm, base, rest, seed, **kwargs)
    # The lr stage ran at the base α; label its points with it so the table reads as one grid.
    if base_alpha is not None:
        for t in first.trials:
            t.overrides.setdefault("alpha", float(base_alpha))
    first.trials += second.trials
    return first
