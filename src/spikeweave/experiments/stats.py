"""Statistics for verdicts: paired comparisons across seeds, McNemar's test on a shared test
set, and confidence intervals that include the test set's binomial error.

Every test comes from scipy; this module only arranges the inputs and reads the outputs, and
turns them into a verdict *part*: ``held``, ``not held`` or ``inconclusive``, with the test
and the interval that decided it.

API: :func:`paired_difference`, :func:`mcnemar`, :func:`accuracy_interval` (Wilson);
:func:`decide` (superiority / non-inferiority), :func:`decide_equivalence` ("brings little":
the interval inside ±margin); :func:`paired_part` (paired difference → part in one call)
and :func:`accuracy_part` (of two arms' test accuracies, in points), :func:`overhead_part`
(an arm's extra cost per timing round, in percent);
:func:`threshold_part` (the seeds' mean against a fixed threshold, one-sample t);
:func:`overall` (a report's ``held`` from the parts that make the claim — cost parts are kept
out of it, so an implementation's speed never flips an accuracy verdict);
:func:`area_under_log_curve` (one number per seed from a learning-rate sweep).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "Part",
    "paired_difference",
    "mcnemar",
    "accuracy_interval",
    "decide",
    "decide_equivalence",
    "paired_part",
    "accuracy_part",
    "overhead_part",
    "threshold_part",
    "overall",
    "area_under_log_curve",
    "HELD",
    "NOT_HELD",
    "INCONCLUSIVE",
]

HELD, NOT_HELD, INCONCLUSIVE = "held", "not held", "inconclusive"


@dataclass(frozen=True)
class Part:
    """One part of a claim (accuracy, cost, robustness, ...) and how it was decided.

    ``estimate`` and ``interval`` are in the units of ``unit`` (e.g. accuracy points);
    ``test`` names the test and ``p_value`` is its two-sided p-value (None when no test ran).
    """

    name: str
    status: str
    estimate: float
    interval: tuple[float, float]
    unit: str
    test: str
    p_value: float | None = None
    n: int = 0

    def to_dict(self) -> dict:
        """JSON-able form (``report.json`` ``parts``)."""
        return asdict(self)

    def sentence(self) -> str:
        """One line for a report."""
        lo, hi = self.interval
        p = "" if self.p_value is None else f", p = {self.p_value:.3g}"
        return (
            f"{self.name}: {self.status} — {self.estimate:+.3g} {self.unit} "
            f"(95% CI {lo:+.3g} to {hi:+.3g}; {self.test}{p}, n = {self.n})"
        )


def paired_difference(
    a: Sequence[float], b: Sequence[float], n_test: int | None = None, pairs: str = "seeds"
) -> tuple[float, tuple[float, float], float | None, str]:
    """Mean of ``a - b`` over paired seeds with a 95% interval and a paired test; ``pairs``
    names what the positions pair (the test's name says it: e.g. timing rounds).

    ``n_test``: when the values are accuracies on a test set of that size, the interval also
    carries the binomial error of each arm's accuracy (added in quadrature to the seed
    spread), so a 1,000-image test set cannot make a 0.2-point gap look certain. The p-value
    then comes from the same statistic (mean over that widened standard error, Student's t
    with seeds − 1 degrees of freedom), so p < 0.05 exactly when the interval excludes 0;
    without ``n_test`` it is scipy's paired t-test.
    Returns ``(mean, (lo, hi), p, test name)``; with fewer than 2 seeds no test (p None).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("paired values need the same, non-zero number of seeds")
    d = x - y
    mean = float(d.mean())
    var = float(d.var(ddof=1)) / d.size if d.size > 1 else 0.0
    if n_test:
        # Each arm's mean accuracy has binomial variance p(1-p)/(n_test·seeds).
        for acc in (x, y):
            p = float(np.clip(acc.mean(), 0.0, 1.0))
            var += p * (1 - p) / (n_test * d.size)
    df = max(d.size - 1, 1)
    half = float(stats.t.ppf(0.975, df)) * math.sqrt(var)
    if d.size > 1 and n_test and var > 0:
        p_value = float(2 * stats.t.sf(abs(mean) / math.sqrt(var), df))
        test = f"paired t-test over {pairs}, test-set binomial error added"
    elif d.size > 1 and float(d.std(ddof=1)) > 0:
        p_value = float(stats.ttest_rel(x, y).pvalue)
        test = f"paired t-test over {pairs}"
    else:
        p_value, test = None, "no test (one seed or no spread)"
    return mean, (mean - half, mean + half), p_value, test


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[int, int, float]:
    """McNemar's exact test on the same test images: ``(a right & b wrong, a wrong & b right,
    two-sided p)`` from a binomial test on the discordant pairs."""
    ca, cb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if ca.shape != cb.shape:
        raise ValueError("McNemar needs predictions of both arms on the same images")
    only_a, only_b = int((ca & ~cb).sum()), int((~ca & cb).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(stats.binomtest(only_a, n, 0.5).pvalue)
    return only_a, only_b, p


def accuracy_interval(correct: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval of an accuracy measured on ``n`` images."""
    res = stats.binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(res.low), float(res.high)


def decide(
    name: str,
    estimate: float,
    interval: tuple[float, float],
    unit: str,
    test: str,
    p_value: float | None,
    n: int,
    margin: float = 0.0,
    higher_is_claimed: bool = True,
    rule_out: float | None = None,
) -> Part:
    """``held`` if the interval lies entirely on the claimed side of ``-margin`` (a
    non-inferiority margin; 0 for superiority), ``not held`` if it lies entirely on the other
    side, else ``inconclusive``.

    ``rule_out`` (the smallest gain that would matter, in the claimed direction): an interval
    that is not held but whose claimed-side end stays below ``rule_out`` is ``not held`` too —
    the data exclude a gain that large, so "no worthwhile gain" is decided, not left open.
    """
    lo, hi = interval
    if not higher_is_claimed:
        lo, hi = -hi, -lo
    if lo > -margin:
        status = HELD
    elif hi < -margin:
        status = NOT_HELD
    elif rule_out is not None and hi < rule_out:
        status = NOT_HELD
        test = f"{test}; a gain of {rule_out:g} {unit} ruled out"
    else:
        status = INCONCLUSIVE
    return Part(name, status, estimate, interval, unit, test, p_value, n)


def decide_equivalence(
    name: str,
    estimate: float,
    interval: tuple[float, float],
    unit: str,
    test: str,
    p_value: float | None,
    n: int,
    margin: float,
) -> Part:
    """Makes little difference: ``held`` if the whole interval lies within ``±margin``,
    ``not held`` if it lies entirely beyond one side, else ``inconclusive``."""
    lo, hi = interval
    if -margin < lo and hi < margin:
        status = HELD
    elif lo > margin or hi < -margin:
        status = NOT_HELD
    else:
        status = INCONCLUSIVE
    return Part(name, status, estimate, interval, unit, f"{test}; equivalence margin ±{margin:g}",
                p_value, n)  # fmt: skip


def paired_part(
    name: str,
    a: Sequence[float],
    b: Sequence[float],
    unit: str,
    scale: float = 1.0,
    n_test: int | None = None,
    margin: float = 0.0,
    higher_is_claimed: bool = True,
    equivalence: bool = False,
    rule_out: float | None = None,
    pairs: str = "seeds",
) -> Part:
    """:func:`paired_difference` of ``a - b`` (paired by position over ``pairs``, seeds by
    default), scaled by ``scale`` (e.g. 100 for accuracy points; ``margin`` and ``rule_out``
    are in the scaled unit), decided by :func:`decide` or, with ``equivalence``,
    :func:`decide_equivalence`."""
    mean, (lo, hi), p, test = paired_difference(a, b, n_test, pairs)
    args = (name, mean * scale, (lo * scale, hi * scale), unit, test, p, len(a))
    if equivalence:
        return decide_equivalence(*args, margin=margin)
    return decide(*args, margin=margin, higher_is_claimed=higher_is_claimed, rule_out=rule_out)


def accuracy_part(
    name: str,
    a: Sequence[float],
    b: Sequence[float],
    n_test: int,
    unit: str = "accuracy points",
    **decision: Any,
) -> Part:
    """:func:`paired_part` of two arms' test accuracies (fractions, paired over seeds) in
    points (× 100), with the binomial error of the ``n_test``-image test set; ``decision``
    (``margin``, ``equivalence``, ...) as :func:`paired_part` takes it, in points."""
    return paired_part(name, a, b, unit, scale=100, n_test=n_test, **decision)


def overhead_part(name: str, overhead: Sequence[float], **decision: Any) -> Part:
    """:func:`paired_part` of an arm's extra cost per interleaved timing round (0.1 = 10%
    more; :func:`~.timing.cpu_overhead`) against none, in percent; ``decision`` (``margin``,
    ``higher_is_claimed``, ...) as :func:`paired_part` takes it, in percent."""
    return paired_part(name, overhead, [0.0] * len(overhead), "% extra", scale=100,
                       pairs="interleaved timing rounds", **decision)  # fmt: skip


def threshold_part(
    name: str,
    values: list[float],
    threshold: float,
    unit: str,
    scale: float = 1.0,
    claim_note: str = "",
) -> Part:
    """A part claiming the seeds' mean of ``values`` exceeds ``threshold``: mean with a 95%
    t interval over seeds, one-sample t-test against the threshold (scipy); ``held`` when the
    whole interval lies above it. Non-finite values (an arm that never got there) are left
    out and counted in the test's name."""
    vals = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    dropped = len(values) - vals.size
    if vals.size == 0:
        return Part(name, INCONCLUSIVE, math.nan, (math.nan, math.nan), unit,
                    "no seed produced a value", None, 0)  # fmt: skip
    m = float(vals.mean())
    if vals.size > 1 and float(vals.std(ddof=1)) > 0:
        half = float(stats.t.ppf(0.975, vals.size - 1)) * float(vals.std(ddof=1)) / vals.size**0.5
        p = float(stats.ttest_1samp(vals, threshold).pvalue)
        test = f"one-sample t-test over seeds against {threshold * scale:g}{claim_note}"
    else:
        half, p, test = 0.0, None, "no test (one seed or no spread)"
    if dropped:
        test += f"; {dropped} seed(s) without a value left out"
    return decide(name, m * scale, ((m - half) * scale, (m + half) * scale), unit, test, p,
                  int(vals.size), margin=-threshold * scale)  # fmt: skip


def overall(parts: Sequence[Part]) -> bool | None:
    """A claim made of ``parts``: False if any part is not held, else None if any is
    inconclusive (or there are none), else True."""
    if any(p.status == NOT_HELD for p in parts):
        return False
    if not parts or any(p.status == INCONCLUSIVE for p in parts):
        return None
    return True


def area_under_log_curve(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Mean of ``ys`` over ``log10(xs)`` by the trapezoid rule (the area divided by the span),
    e.g. a run's normalised loss averaged over a log-spaced learning-rate range."""
    lx = np.log10(np.asarray(xs, dtype=float))
    y = np.asarray(ys, dtype=float)
    if lx.size != y.size or lx.size == 0:
        raise ValueError("need one y per x, and at least one")
    if lx.size == 1:
        return float(y[0])
    if np.any(np.diff(lx) <= 0):
        raise ValueError("xs must be increasing")
    return float(np.trapezoid(y, lx) / (lx[-1] - lx[0]))
