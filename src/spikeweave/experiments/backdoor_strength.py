"""A backdoor at strength: the poisoning rate and trigger strength an experiment attacks with,
chosen by a rule fixed here before any run (issue 30, item 5).

For each trigger kind a fixed grid of settings (:data:`RATES` × the kind's trigger strengths in
:data:`TRIGGER_GRID`, weakest first) is trained once, with the same budget as a clean model of
the same config, and measured on the **validation** split (never the test split): attack
success (ASR) on the non-target images and the clean-accuracy (C-Acc) loss against the clean
model. :func:`choose_strength` then applies the rule:

- among settings with ``ASR ≥ MIN_ASR`` and ``C-Acc loss ≤ MAX_CLEAN_LOSS`` pick the weakest
  (lowest rate, then weakest trigger);
- if none qualifies, pick the strongest-ASR setting (ties: the weaker one) and say plainly the
  strength target was not met.

:func:`strength_search` trains the grid through any ``train(tag, cfg, seed) -> Trainer`` (an
:class:`~.base.ExperimentContext`'s ``train``) and returns the measured rows and the choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError

__all__ = [
    "MAX_CLEAN_LOSS",
    "MIN_ASR",
    "RATES",
    "TRIGGER_GRID",
    "StrengthChoice",
    "choose_strength",
    "grid",
    "rule_record",
    "strength_search",
    "trigger_options",
]

MIN_ASR = 0.95
"""Attack success (fraction of non-target validation images sent to the target) a setting must
reach: the issue's "at least 95 %"."""
MAX_CLEAN_LOSS = 0.01
"""Clean-accuracy loss (fraction; 0.01 = 1 point) against the clean model a setting may cost."""
RATES = (0.01, 0.05, 0.10)
"""Poisoning rates of the grid (share of the training split), the issue's 1 %, 5 % and 10 %."""
TRIGGER_GRID: dict[str, tuple[dict[str, Any], ...]] = {
    # weakest first: a patch anywhere (a network without translation invariance must learn it
    # at every place), then a fixed corner patch (Gu et al.'s BadNets), then a larger one; a
    # fainter blend before a stronger one; a gentler warp before a stronger one
    "badnets": (
        {"trigger_size": 3},
        {"trigger_size": 3, "position": [0, 0]},
        {"trigger_size": 5, "position": [0, 0]},
    ),
    "blended": ({"blend": 0.1}, {"blend": 0.2}),
    # WaNet's own s = 0.5 moves a pixel by about a quarter of a pixel on 28x28 images; the
    # issue-30 pilot (docs/results/mesa/README.md) found s <= 1 short of 95 % ASR on
    # Fashion-MNIST at every rate, so the grid goes on to warps of about 1 and 2 pixels
    "wanet": tuple({"warp_k": 4, "warp_strength": s} for s in (0.5, 1.0, 2.0, 4.0)),
}
"""Per kind, the trigger-strength options (``[train_transforms.backdoor]`` keys) of the grid,
weakest first. BadNets patches are binary (0/1 pixels, the strongest value contrast), at a
random place per image or fixed at the top-left corner (``position [0, 0]``, which fits any
image the patch fits)."""


@dataclass(frozen=True)
class StrengthChoice:
    """The rule's pick among measured grid rows.

    Attributes:
        row: the chosen row (a dict with at least ``rate``, ``strength``, ``asr`` and
            ``clean_loss``).
        met: True when the row meets both targets (``asr ≥ MIN_ASR``, ``clean_loss ≤
            MAX_CLEAN_LOSS``).
        reason: one sentence saying which branch of the rule chose it.
    """

    row: dict[str, Any]
    met: bool
    reason: str


def grid(kind: str, rates: Sequence[float] = RATES) -> list[dict[str, Any]]:
    """The ``kind``'s settings, weakest first (by rate, then trigger strength): dicts with
    ``rate``, ``strength`` (index into :data:`TRIGGER_GRID`, 0 weakest) and ``options``."""
    if kind not in TRIGGER_GRID:
        raise ConfigError(f"no strength grid for backdoor kind {kind!r}; choose one of "
                          f"{', '.join(TRIGGER_GRID)}")  # fmt: skip
    return [
        {"rate": float(r), "strength": i, "options": dict(o)}
        for r in sorted(rates)
        for i, o in enumerate(TRIGGER_GRID[kind])
    ]


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def choose_strength(
    rows: Sequence[Mapping[str, Any]],
    min_asr: float = MIN_ASR,
    max_clean_loss: float = MAX_CLEAN_LOSS,
) -> StrengthChoice:
    """Apply the rule to measured ``rows`` (each with ``rate``, ``strength``, ``asr`` and
    ``clean_loss`` as fractions; the loss is clean model minus poisoned model, so negative
    is a gain). Rows with a non-finite ASR or loss never qualify and are picked only when
    every row is so (then ``met`` is False)."""
    if not rows:
        raise ConfigError("the strength rule needs at least one measured setting")
    order = sorted(rows, key=lambda r: (r["rate"], r["strength"]))
    ok = [
        r for r in order
        if _finite(r["asr"]) and _finite(r["clean_loss"])
        and r["asr"] >= min_asr and r["clean_loss"] <= max_clean_loss
    ]  # fmt: skip
    if ok:
        r = ok[0]
        return StrengthChoice(dict(r), True, (
            f"weakest setting with ASR >= {min_asr:.0%} and clean-accuracy loss <= "
            f"{100 * max_clean_loss:g} point(s): rate {r['rate']:.0%}, strength {r['strength']}"
        ))  # fmt: skip
    finite = [r for r in order if _finite(r["asr"])]
    # strongest ASR; among equals the first in weakest-first order
    r = max(finite, key=lambda r: r["asr"]) if finite else order[-1]
    return StrengthChoice(dict(r), False, (
        f"strength target NOT met: no setting reached ASR >= {min_asr:.0%} with clean-accuracy "
        f"loss <= {100 * max_clean_loss:g} point(s); using the strongest-ASR setting (rate "
        f"{r['rate']:.0%}, strength {r['strength']}, ASR {r['asr']:.1%})"
    ))  # fmt: skip


def rule_record() -> dict[str, Any]:
    """The rule's constants, as ``report.json`` records them."""
    return {
        "min_asr": MIN_ASR,
        "max_clean_loss": MAX_CLEAN_LOSS,
        "rates": list(RATES),
        "trigger_grid": {k: list(v) for k, v in TRIGGER_GRID.items()},
        "split": "validation",
        "rule": "among settings with ASR >= min_asr and clean-accuracy loss <= max_clean_loss "
        "(against a clean model of the same budget) the weakest: lowest rate, then weakest "
        "trigger; if none, the strongest-ASR setting, reported as not meeting the target",
    }


def _validation_metrics(trainer: Any, target: int | None, seed: int) -> dict[str, Any]:
    """C-Acc on the validation split and, for a poisoned run, its trigger's ASR and R-Acc."""
    from types import SimpleNamespace

    from ..security.attacks import as_classifier
    from ..security.backdoor import attack_from_config
    from ..security.backdoor_cli import backdoor_metrics, tensors_of

    if trainer.val_set is None or len(trainer.val_set) == 0:
        raise ConfigError("the strength search measures on the validation split: set "
                          "val_fraction > 0")  # fmt: skip
    clf = as_classifier(SimpleNamespace(model=trainer.model, task=trainer.task,
                                        config=trainer.config, path=""))  # fmt: skip
    x, y = (t.to(trainer.device) for t in tensors_of(trainer.val_set))
    attack = None
    if target is not None:
        attack = attack_from_config(trainer.config, tuple(x.shape[1:])).to(trainer.device)
    m = backdoor_metrics(clf, x, y, -1 if target is None else target, attack, None, seed)
    return {**m, "images": len(x)}


def strength_search(
    train: Callable[[str, Any, int], Any],
    cfg: Any,
    kind: str,
    target: int,
    seed: int,
    tag: str,
    rates: Sequence[float] = RATES,
) -> dict[str, Any]:
    """Train the clean ``cfg`` and every grid setting of ``kind`` (target class ``target``,
    poisoning drawn from ``seed``) with ``train(tag, cfg, seed)``, measure each on the
    validation split and apply :func:`choose_strength`.

    Returns ``{"clean": metrics, "rows": [...], "chosen": row, "met": bool, "reason": str}``;
    each row has ``rate``, ``strength``, ``options``, ``clean_accuracy``, ``clean_loss``,
    ``asr``, ``robust_accuracy`` and ``images`` (validation images)."""
    clean = _validation_metrics(train(f"{tag}-clean", cfg, seed), None, seed)
    rows = []
    for setting in grid(kind, rates):
        backdoor = {**trigger_options(kind, setting), "target": target, "seed": seed}
        poisoned = replace(cfg, train_transforms={**cfg.train_transforms, "backdoor": backdoor})
        name = f"{tag}-{kind}-{setting['rate']:g}-t{setting['strength']}"
        m = _validation_metrics(train(name, poisoned, seed), target, seed)
        rows.append({**setting, **m, "clean_loss": clean["clean_accuracy"] - m["clean_accuracy"]})
    choice = choose_strength(rows)
    return {"clean": clean, "rows": rows, "chosen": choice.row, "met": choice.met,
            "reason": choice.reason}  # fmt: skip


def trigger_options(kind: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[train_transforms.backdoor]`` options of a chosen row (without target and seed)."""
    # a badnets run records no kind (runs that record none are badnets)
    return {
        "fraction": row["rate"],
        **({} if kind == "badnets" else {"kind": kind}),
        **row["options"],
    }
