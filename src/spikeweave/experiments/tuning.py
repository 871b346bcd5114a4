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
- :func:`tune_arms` / :func:`sweep_lr_alpha_arms` — the same for several arms at once, so the
  runs of all arms share ``ctx.workers`` processes (each trial returns plain data).
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

__all__ = [
    "TUNING_SEED",
    "Trial",
    "TuneResult",
    "tune",
    "tune_arms",
    "sweep_lr_alpha",
    "sweep_lr_alpha_arms",
]

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
        varying = _varying([t.overrides for t in self.trials])
        return [
            [
                self.arm,
                ", ".join(f"{k}={_fmt(v)}" for k, v in _flat(t.overrides, varying).items()),
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


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else f"{v}"


def _varying(candidates: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    """For each override that is a table (e.g. ``method_options``), the entries whose values
    differ between ``candidates``: what names a candidate (the rest is shared)."""
    tables: dict[str, set[str]] = {}
    for key in {k for c in candidates for k, v in c.items() if isinstance(v, Mapping)}:
        entries = {e for c in candidates for e in c.get(key, {})}
        tables[key] = {
            e for e in entries if len({repr(c.get(key, {}).get(e)) for c in candidates}) > 1
        }
    return tables


def _flat(overrides: Mapping[str, Any], varying: Mapping[str, set[str]]) -> dict[str, Any]:
    """``overrides`` with each table replaced by its :func:`_varying` entries."""
    out: dict[str, Any] = {}
    for k, v in overrides.items():
        if isinstance(v, Mapping):
            out.update({e: v[e] for e in sorted(varying.get(k, ())) if e in v})
        else:
            out[k] = v
    return out


def _label(overrides: Mapping[str, Any], varying: Mapping[str, set[str]] | None = None) -> str:
    flat = _flat(overrides, varying or {})
    return "-".join(f"{k}{_fmt(v)}" for k, v in flat.items()) or "base"


def _trial(
    ctx: Any,
    name: str,
    cfg: TrainConfig,
    callbacks: Callable[[], Sequence[Callback]],
    train_kwargs: Mapping[str, Any],
) -> Callable[[int], tuple[str, bool, float | None, int] | None]:
    """One candidate's run, returning plain data (so it may run in a forked worker):
    ``(metric, higher is better, best val metric, its epoch)``, or None when it diverged."""

    def run(seed: int) -> tuple[str, bool, float | None, int] | None:
        try:
            trainer = ctx.train(name, cfg, seed, callbacks=callbacks(), **train_kwargs)
        except TrainingError:
            return None
        m, higher = trainer.task.metric, trainer.task.higher_is_better
        row = best_val_row(trainer.history, m, higher)
        val = row.get(f"val_{m}")
        return m, higher, None if val is None else float(val), int(row["epoch"])

    return run


def tune_arms(
    ctx: Any,
    grids: Mapping[str, tuple[TrainConfig, Sequence[Mapping[str, Any]]]],
    seed: int = TUNING_SEED,
    callbacks: Callable[[], Sequence[Callback]] = lambda: (),
    **train_kwargs: Any,
) -> dict[str, TuneResult]:
    """:func:`tune` for several arms at once, ``{arm: (base, candidates)}``: every candidate of
    every arm is one run (``ctx.train``, run ``tune-<arm>-<setting>``), in ``ctx.workers``
    processes where the experiment allows more than one. Returns ``{arm: TuneResult}``."""
    jobs: dict[str, Callable[[int], Any]] = {}
    keys: dict[str, list[str]] = {}
    for arm, (base, candidates) in grids.items():
        if base.val_fraction <= 0:
            raise ConfigError(
                "tuning selects on the validation split; set val_fraction > 0 in the base config"
            )
        if not candidates:
            raise ConfigError(f"no tuning candidates given for {arm!r}")
        keys[arm] = []
        varying = _varying(candidates)
        for i, overrides in enumerate(candidates):
            key = f"{arm}#{i}"
            name = f"tune-{arm}-{_label(overrides, varying)}"
            jobs[key] = _trial(ctx, name, replace(base, **overrides), callbacks, train_kwargs)
            keys[arm].append(key)
    done = ctx.run_interleaved(jobs, [seed])
    out: dict[str, TuneResult] = {}
    for arm, (base, candidates) in grids.items():
        results = [done[key][0] for key in keys[arm]]
        finished = [r for r in results if r is not None]
        metric, higher = finished[0][:2] if finished else ("", True)
        # everything diverged: still a result, whose .best raises
        result = TuneResult(arm, metric, higher, base.epochs, seed)
        result.trials = [
            Trial(dict(overrides), None, 0) if r is None else Trial(dict(overrides), r[2], r[3])
            for overrides, r in zip(candidates, results, strict=True)
        ]
        out[arm] = result
    return out


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
    return tune_arms(ctx, {arm: (base, candidates)}, seed, callbacks, **train_kwargs)[arm]


def sweep_lr_alpha_arms(
    ctx: Any,
    grids: Mapping[str, tuple[TrainConfig, Sequence[float], Sequence[float]]],
    seed: int = TUNING_SEED,
    **kwargs: Any,
) -> dict[str, TuneResult]:
    """:func:`sweep_lr_alpha` for several arms, ``{arm: (base, lrs, alphas)}``: the learning-
    rate stage of every arm in one batch of runs, then the α stage of the arms that have one
    (so ``ctx.workers`` processes stay busy across arms)."""
    first = tune_arms(
        ctx, {a: (base, [{"lr": float(lr)} for lr in lrs]) for a, (base, lrs, _) in grids.items()},
        seed, **kwargs,
    )  # fmt: skip
    rest: dict[str, tuple[TrainConfig, list[dict[str, Any]]]] = {}
    for arm, (base, _, alphas) in grids.items():
        if not alphas:
            continue
        lr = first[arm].best["lr"]
        todo = [{"lr": lr, "alpha": float(a)} for a in alphas
                if base.alpha is None or a != base.alpha]  # fmt: skip
        if todo:
            rest[arm] = (base, todo)
    second = tune_arms(ctx, rest, seed, **kwargs) if rest else {}
    for arm, result in second.items():
        # The lr stage ran at the base α; label its points with it so the table reads as one grid.
        base_alpha = grids[arm][0].alpha
        if base_alpha is not None:
            for t in first[arm].trials:
                t.overrides.setdefault("alpha", float(base_alpha))
        first[arm].trials += result.trials
    return first


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
    return sweep_lr_alpha_arms(ctx, {arm: (base, lrs, alphas)}, seed, **kwargs)[arm]
