"""Statistics for verdicts: accuracy differences per image and paired (seeds × images on the
one shared test set), paired comparisons across seeds or timing rounds, McNemar's test, and
the verdict *parts* built from them.

Every test comes from scipy; this module only arranges the inputs and reads the outputs. A
part's status is ``held``, ``not held``, ``inconclusive``, ``not testable`` (fewer than
:data:`MIN_SEEDS` seeds or no spread: no interval, never a p-value) or ``undecidable at this
budget`` (a part with a margin whose 95% half-width is not below that margin).

**The accuracy estimator** (:func:`image_difference`). Two arms are trained with the same
``S`` seeds and each is scored on the same ``N`` test images, giving correctness matrices
``A, B`` (bool ``[S, N]``). With ``d[s, i] = A[s, i] − B[s, i]`` (−1, 0 or 1) the estimate is
``D = mean(d)``, the difference in mean accuracy. Its variance comes from the two-way crossed
random-effects model ``d[s, i] = μ + α[s] + β[i] + ε[s, i]`` — seeds and test images are
both draws from populations (training randomness; the image distribution), each seed meets
every image, and the arms share both:

- ``MS_seed = N·var(seed means)``, ``MS_image = S·var(image means)`` (ddof=1) and the
  residual ``MS_res`` (the seed × image interaction, ``(S−1)(N−1)`` degrees of freedom);
  components ``σ²_ε = MS_res``, ``σ²_α = (MS_seed − MS_res)/N``,
  ``σ²_β = (MS_image − MS_res)/S`` (ANOVA moment estimators);
- ``Var(D) = σ²_α/S + σ²_β/N + σ²_ε/(S·N) = var(seed means)/S + var(image means)/N −
  MS_res/(S·N)``: each one-way term holds the interaction once, so one copy is taken off.
  The seed term ``var(seed means)/S`` is used as measured; the image term
  ``(MS_image − MS_res)/(S·N)`` only where positive (a negative image component is 0),
  and, where seed means tie exactly (zero seed term), the interaction's own
  ``MS_res/(S·N)``;
- the interval is ``D ± t(0.975, ν)·√Var`` with ``ν`` from Satterthwaite's formula over the
  mean squares used (about ``S − 1`` when the seed spread dominates, large when the image
  term does), and the p-value is read from the same ``t``, so they always agree.

Assumptions: seeds independent and paired across arms by index (the same seed for both
arms); the test images an exchangeable sample of the image population, scored by every seed
of both arms; the effects additive on the difference with constant variance (the moment
estimators are unbiased without normality; the ``t`` reference with Satterthwaite's degrees
of freedom is an approximation, checked by the coverage simulation in
``tests/experiments/test_stats.py``: 95% intervals cover between 93% and 98% from 3 seeds and
1,000 images up). The old floor — each arm's binomial test-set error added as if the arms saw
independent test sets — is gone: a shared image that both arms get right (or wrong) cancels.

:func:`seed_difference` is the paired t over seeds (or interleaved timing rounds) for values
with no per-image record; on accuracies it conditions on the test set (the image term is in
the seed spread only through the interaction).

**Decision rules.** Margins are constants fixed in each experiment's code before any run and
recorded in the part (``margin``; None where the part has none). Superiority: ``held`` when
the interval lies above 0 (two-sided p against 0). Non-inferiority with margin ``m``:
``held`` when the interval lies above ``−m``; its p-value is the one-sided test of
``H0: difference ≤ −m`` (held ⇔ p < 0.025), not against 0. Equivalence within ``±m``:
``held`` when the interval lies inside; p is the TOST p-value (the larger one-sided p).
Every part records ``mde``: the true difference from the null value that a two-sided 5% test
detects with 80% power at the design's standard error, ``(t(0.975, ν) + t(0.80, ν))·se``;
``seeds_needed``: for a margin part, the fewest seeds (at least :data:`MIN_SEEDS`) whose
projected half-width, from this run's variance components and test-set size, is below the
margin (:func:`seeds_needed`); a run with fewer seeds is this part's pilot.

Standard deviations everywhere in the experiments are sample SDs (ddof=1).

API: :func:`image_difference`, :func:`seed_difference`, :func:`seeds_needed`,
:func:`difference_part`; :func:`accuracy_part` (two arms' per-image correctness, in points),
:func:`seed_accuracy_part` (per-seed accuracies only), :func:`paired_part`,
:func:`overhead_part` (an arm's extra cost per timing round, in percent),
:func:`threshold_part` (the seeds' mean against a fixed threshold); :func:`decide`,
:func:`decide_equivalence` (status from an interval); :func:`paired_difference` (mean,
interval, p and test name of a paired difference), :func:`mcnemar`,
:func:`accuracy_interval` (Wilson); :func:`overall` (a report's ``held`` from the parts that
make the claim); :func:`area_under_log_curve`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "Part",
    "Difference",
    "image_difference",
    "grid_difference",
    "two_way",
    "seed_difference",
    "seeds_needed",
    "difference_part",
    "paired_difference",
    "mcnemar",
    "accuracy_interval",
    "decide",
    "decide_equivalence",
    "paired_part",
    "accuracy_part",
    "seed_accuracy_part",
    "overhead_part",
    "threshold_part",
    "overall",
    "area_under_log_curve",
    "HELD",
    "NOT_HELD",
    "INCONCLUSIVE",
    "NOT_TESTABLE",
    "UNDECIDABLE",
    "STATUSES",
    "MIN_SEEDS",
    "MAX_SEEDS",
    "POWER",
]

HELD, NOT_HELD, INCONCLUSIVE = "held", "not held", "inconclusive"
NOT_TESTABLE = "not testable"
UNDECIDABLE = "undecidable at this budget"
STATUSES = (HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTABLE, UNDECIDABLE)
"""Every status a part can have."""
MIN_SEEDS = 3
"""Fewer paired seeds (or timing rounds) than this: the part is not testable."""
MAX_SEEDS = 200
""":func:`seeds_needed` looks no further (None: the margin is out of reach)."""
POWER = 0.80
"""Power of the minimum detectable effect (at two-sided α = 0.05)."""
_Z = 0.975  # two-sided 95%


@dataclass(frozen=True)
class Part:
    """One part of a claim (accuracy, cost, robustness, ...) and how it was decided.

    ``estimate``, ``interval``, ``margin`` and ``mde`` are in the units of ``unit`` (e.g.
    accuracy points); ``test`` names the test and ``p_value`` is its p-value (None when no
    test ran); ``n`` counts seeds (or timing rounds), ``n_test`` the test images of an
    accuracy part; ``seeds_needed`` is the projected seed count its margin needs."""

    name: str
    status: str
    estimate: float
    interval: tuple[float, float]
    unit: str
    test: str
    p_value: float | None = None
    n: int = 0
    margin: float | None = None
    mde: float | None = None
    n_test: int | None = None
    seeds_needed: int | None = None

    def to_dict(self) -> dict:
        """JSON-able form (``report.json`` ``parts``)."""
        return asdict(self)

    def sentence(self) -> str:
        """One line for a report: the interval (when tested), test, margin and MDE."""
        lo, hi = self.interval
        p = "" if self.p_value is None else f", p = {self.p_value:.3g}"
        margin = "none" if self.margin is None else f"{self.margin:g}"
        mde = "n/a" if self.mde is None else f"{self.mde:.3g}"
        sizes = f"n = {self.n}" + ("" if self.n_test is None else f", {self.n_test} test images")
        if self.seeds_needed is not None:
            sizes += f", seeds needed {self.seeds_needed}"
        ci = "" if self.status == NOT_TESTABLE else f"95% CI {lo:+.3g} to {hi:+.3g}; "
        return (
            f"{self.name}: {self.status} — {self.estimate:+.3g} {self.unit} "
            f"({ci}{self.test}{p}; margin {margin}, MDE {mde}; {sizes})"
        )


@dataclass(frozen=True)
class Difference:
    """A paired difference before any decision: ``estimate`` and its standard error ``se``
    (input units, e.g. accuracy fractions) with ``df`` degrees of freedom; ``n`` seeds (or
    pairs); ``n_test`` test images (per-image accuracy differences); the variance components
    (``var_seed``, ``var_image``, ``var_resid``, see the module doc; a seed-level difference
    has only ``var_seed``, the variance of the per-seed differences); ``untestable`` says why
    no test can run ("" when one can)."""

    estimate: float
    se: float
    df: float
    n: int
    test: str
    n_test: int | None = None
    var_seed: float = 0.0
    var_image: float = 0.0
    var_resid: float = 0.0
    untestable: str = ""

    def projected(self, seeds: int) -> tuple[float, float]:
        """``(se, df)`` this design would have with ``seeds`` seeds (same test set and
        variance components)."""
        if self.n_test is None:
            return math.sqrt(self.var_seed / seeds), float(seeds - 1)
        return _two_way_se_df(self.var_seed, self.var_image, self.var_resid, seeds, self.n_test)


def _two_way_se_df(
    var_seed: float, var_image: float, var_resid: float, s: int, n: int
) -> tuple[float, float]:
    """Projected standard error of the grand mean of an ``s × n`` crossed design and its
    Satterthwaite degrees of freedom, from the variance components (their expected mean
    squares put through :func:`two_way`'s formula)."""
    ms_seed, ms_image = var_resid + n * var_seed, var_resid + s * var_image
    sums = _from_mean_squares(np.float64(ms_seed), np.float64(ms_image), np.float64(var_resid),
                              s, n, var_image > 0)  # fmt: skip
    return float(sums[0]), float(sums[1])


def _from_mean_squares(ms_seed, ms_image, ms_resid, s, n, image_term):
    """``(se, df)`` from the mean squares (arrays broadcast): module doc, with the image term
    only where its component is positive."""
    img = np.asarray(image_term, dtype=float)
    var = (ms_seed + img * (ms_image - ms_resid)) / (s * n)
    den = ms_seed**2 / (s - 1) + img * (ms_image**2 / (n - 1) + ms_resid**2 / ((s - 1) * (n - 1)))
    den = den / (s * n) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(den > 0, var**2 / np.where(den > 0, den, 1.0), s - 1)
    # Seed means can tie exactly (discrete counts: every seed gets the same number of images
    # more right); the seed term is then 0 though the interaction is not, so the interval
    # falls back on the interaction alone, MS_res/(S·N), a lower bound of Var(D). Only there:
    # flooring every low seed term over-covers at 3 seeds (simulated: 99% for 95%).
    var = np.where(var > 0, var, ms_resid / (s * n))
    return np.sqrt(var), np.maximum(df, 1.0)


def two_way(d: np.ndarray) -> dict[str, np.ndarray]:
    """The seed × image estimator of the module doc on differences ``d`` (``[..., S, N]``,
    −1/0/1 or any reals; leading dimensions are independent designs, so a simulation can
    run thousands at once): ``estimate``, ``se``, ``df`` and the components ``var_seed``,
    ``var_image``, ``var_resid``, each ``[...]``. Needs ``S, N ≥ 2``.

    The seed term is ``var(seed means)/S`` as measured (it holds the interaction once); the
    image term ``(MS_image − MS_res)/(S·N)`` is added where positive (truncated at 0)."""
    d = np.asarray(d)
    s, n = d.shape[-2], d.shape[-1]
    if s < 2 or n < 2:
        raise ValueError("the seed × image estimator needs at least 2 seeds and 2 images")
    # Sums first (exact for integer differences), then mean squares by the shortcut formulas.
    rows = d.sum(-1, dtype=np.float64)
    cols = d.sum(-2, dtype=np.float64)
    sq = (d.astype(np.float64) ** 2).sum((-2, -1)) if d.dtype.kind == "f" else np.abs(d).sum(
        (-2, -1), dtype=np.float64)  # fmt: skip
    total = rows.sum(-1)
    grand = total / (s * n)
    corr = total * grand
    ss_seed = np.maximum((rows**2).sum(-1) / n - corr, 0.0)
    ss_image = np.maximum((cols**2).sum(-1) / s - corr, 0.0)
    ss_resid = np.maximum(sq - corr - ss_seed - ss_image, 0.0)
    ms_seed, ms_image = ss_seed / (s - 1), ss_image / (n - 1)
    ms_resid = ss_resid / ((s - 1) * (n - 1))
    image_term = ms_image > ms_resid
    se, df = _from_mean_squares(ms_seed, ms_image, ms_resid, s, n, image_term)
    return {
        "estimate": grand,
        "se": se,
        "df": df,
        "var_seed": np.maximum(ms_seed - ms_resid, 0.0) / n,
        "var_image": np.where(image_term, (ms_image - ms_resid) / s, 0.0),
        "var_resid": ms_resid,
    }


def _no_spread(var: float, scale: float) -> bool:
    """Zero variance up to rounding (two identical values differ by ~1e-16, not 0)."""
    return var <= (1e-12 * max(scale, 1.0)) ** 2


def image_difference(correct_a: Any, correct_b: Any) -> Difference:
    """Mean accuracy of arm A minus arm B from per-image correctness on one shared test set:
    ``correct_a``, ``correct_b`` bool ``[S seeds, N images]`` (a sequence of ``[N]`` vectors,
    seed order paired); the seed × image estimator of the module doc (:func:`two_way`), in
    fractions. Not testable below :data:`MIN_SEEDS` seeds or with no spread."""
    a = np.asarray([np.asarray(c, dtype=bool) for c in correct_a])
    b = np.asarray([np.asarray(c, dtype=bool) for c in correct_b])
    if a.ndim != 2 or a.shape != b.shape or a.size == 0:
        raise ValueError("per-image differences need both arms' [seeds, images] correctness")
    d = a.astype(np.int8) - b.astype(np.int8)
    test = "seed × image paired difference (two-way random effects, Satterthwaite t)"
    return grid_difference(d, test)


def grid_difference(d: Any, test: str, relative: bool = False) -> Difference:
    """The seed × image estimator (:func:`two_way`) of paired per-image differences ``d``
    ``[S seeds, N images]`` on one shared test set, named ``test``. Not testable below
    :data:`MIN_SEEDS` seeds or with no spread: zero variance up to rounding, relative to the
    estimate's size with ``relative`` (values in their own units, e.g. dB), else absolute
    (fractions)."""
    d = np.asarray(d)
    s, n = d.shape
    if s < 2 or n < 2:
        return Difference(float(d.mean()), 0.0, 1.0, s, test, n,
                          untestable=f"{s} seed(s) (at least {MIN_SEEDS} needed)")  # fmt: skip
    r = {k: float(v) for k, v in two_way(d).items()}
    why = ""
    if s < MIN_SEEDS:
        why = f"{s} seeds (at least {MIN_SEEDS} needed)"
    elif _no_spread(r["se"] ** 2, abs(r["estimate"]) if relative else 1.0):
        why = "the arms' differences do not vary over seeds or images (no spread)"
    return Difference(r["estimate"], r["se"], r["df"], s, test, n, r["var_seed"],
                      r["var_image"], r["var_resid"], why)  # fmt: skip


def seed_difference(a: Sequence[float], b: Sequence[float], pairs: str = "seeds") -> Difference:
    """Mean of ``a − b`` over paired positions (``pairs`` names them: seeds, interleaved
    timing rounds) with the paired t's standard error (ddof=1); not testable below
    :data:`MIN_SEEDS` pairs or with no spread."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError("paired values need the same, non-zero number of seeds")
    d = x - y
    mean = float(d.mean())
    var = float(d.var(ddof=1)) if d.size > 1 else 0.0
    se = math.sqrt(var / d.size)
    why = ""
    if d.size < MIN_SEEDS:
        why = f"{d.size} {pairs} (at least {MIN_SEEDS} needed)"
    elif _no_spread(var, abs(mean)):
        why = f"the differences do not vary across {pairs} (no spread)"
    return Difference(mean, se, float(max(d.size - 1, 1)), int(d.size),
                      f"paired t-test over {pairs}", var_seed=var, untestable=why)  # fmt: skip


def seeds_needed(
    margin: float,
    var_seed: float,
    n_test: int | None = None,
    var_image: float = 0.0,
    var_resid: float = 0.0,
    max_seeds: int = MAX_SEEDS,
) -> int | None:
    """The fewest seeds (at least :data:`MIN_SEEDS`) whose projected 95% half-width is below
    ``margin`` — the power-by-design count for a margin part.

    ``var_seed``: the variance of one seed's difference (a pilot's per-seed SD squared) when
    ``n_test`` is None; with ``n_test`` the seed × image components of
    :func:`image_difference` (``var_image`` and ``var_resid`` then count, divided by the
    test-set size). Same units as ``margin``. None when no count up to ``max_seeds`` gets
    there (e.g. the test set's own image term already exceeds the margin) or the pilot had
    no spread to project from."""
    if margin <= 0:
        raise ValueError("a margin must be positive")
    if var_seed + var_image + var_resid <= 0:
        return None
    probe = Difference(0.0, 0.0, 1.0, 0, "", n_test, var_seed, var_image, var_resid)
    for s in range(MIN_SEEDS, max_seeds + 1):
        se, df = probe.projected(s)
        if float(stats.t.ppf(_Z, df)) * se < margin:
            return s
    return None


def difference_part(
    name: str,
    diff: Difference,
    unit: str,
    scale: float = 1.0,
    margin: float | None = None,
    higher_is_claimed: bool = True,
    equivalence: bool = False,
    rule_out: float | None = None,
) -> Part:
    """A verdict part from ``diff`` scaled by ``scale`` (``margin`` and ``rule_out`` in the
    scaled unit): superiority, non-inferiority (``margin``) or equivalence (``equivalence``,
    within ±``margin``), with the module doc's decision rules. The part's recorded margin is
    ``margin`` (or ``rule_out``, the smallest gain that matters); with one, a half-width not
    below it gives :data:`UNDECIDABLE` and ``seeds_needed`` is projected from ``diff``."""
    if margin is not None and margin <= 0:
        margin = None
    if equivalence and margin is None:
        raise ValueError("an equivalence part needs a positive margin")
    recorded = margin if margin is not None else rule_out
    est = diff.estimate * scale
    needed = None
    if recorded is not None:
        s2 = scale**2
        needed = seeds_needed(recorded, diff.var_seed * s2, diff.n_test, diff.var_image * s2,
                              diff.var_resid * s2)  # fmt: skip
    if diff.untestable:
        return Part(name, NOT_TESTABLE, est, (math.nan, math.nan), unit,
                    f"{diff.test}: not testable, {diff.untestable}", None, diff.n, recorded,
                    None, diff.n_test, needed)  # fmt: skip
    se, df = diff.se * scale, diff.df
    tq = float(stats.t.ppf(_Z, df))
    half = tq * se
    interval = (est - half, est + half)
    mde = (tq + float(stats.t.ppf(POWER, df))) * se
    sign = 1.0 if higher_is_claimed else -1.0
    if equivalence:
        p = max(
            float(stats.t.sf((est + margin) / se, df)), float(stats.t.sf((margin - est) / se, df))
        )
        part = decide_equivalence(name, est, interval, unit, f"{diff.test}, TOST p", p, diff.n,
                                  margin)  # fmt: skip
    elif margin is not None:
        p = float(stats.t.sf((sign * est + margin) / se, df))
        test = f"{diff.test}, one-sided p against the margin (held ⇔ p < 0.025)"
        part = decide(name, est, interval, unit, test, p, diff.n, margin, higher_is_claimed)
    else:
        p = float(2 * stats.t.sf(abs(est) / se, df))
        part = decide(name, est, interval, unit, diff.test, p, diff.n, 0.0, higher_is_claimed,
                      rule_out)  # fmt: skip
    if recorded is not None and half >= recorded:
        part = replace(part, status=UNDECIDABLE,
                       test=f"{part.test}; half-width {half:.3g} not below the margin")  # fmt: skip
    return replace(part, margin=recorded, mde=mde, n_test=diff.n_test, seeds_needed=needed)


def paired_difference(
    a: Sequence[float], b: Sequence[float], pairs: str = "seeds"
) -> tuple[float, tuple[float, float], float | None, str]:
    """Mean of ``a − b`` over paired ``pairs`` with its 95% t interval and two-sided paired
    t-test (scipy's ``ttest_rel``): ``(mean, (lo, hi), p, test)``; not testable (interval
    NaN, p None) below :data:`MIN_SEEDS` pairs or with no spread."""
    diff = seed_difference(a, b, pairs)
    if diff.untestable:
        return diff.estimate, (math.nan, math.nan), None, f"not testable, {diff.untestable}"
    half = float(stats.t.ppf(_Z, diff.df)) * diff.se
    p = float(stats.ttest_rel(np.asarray(a, float), np.asarray(b, float)).pvalue)
    return diff.estimate, (diff.estimate - half, diff.estimate + half), p, diff.test


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
    The part records ``margin`` (when positive) or ``rule_out`` as its margin.
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
    recorded = margin if margin > 0 else rule_out
    return Part(name, status, estimate, interval, unit, test, p_value, n, recorded)


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
                p_value, n, margin)  # fmt: skip


def paired_part(
    name: str,
    a: Sequence[float],
    b: Sequence[float],
    unit: str,
    scale: float = 1.0,
    margin: float | None = None,
    higher_is_claimed: bool = True,
    equivalence: bool = False,
    rule_out: float | None = None,
    pairs: str = "seeds",
) -> Part:
    """:func:`difference_part` of :func:`seed_difference` of ``a − b`` (paired by position
    over ``pairs``, seeds by default), scaled by ``scale`` (e.g. 100 for points)."""
    return difference_part(name, seed_difference(a, b, pairs), unit, scale, margin,
                           higher_is_claimed, equivalence, rule_out)  # fmt: skip


def accuracy_part(
    name: str,
    correct_a: Any,
    correct_b: Any,
    unit: str = "accuracy points",
    **decision: Any,
) -> Part:
    """:func:`difference_part` of :func:`image_difference` — two arms' per-image correctness
    (bool ``[seeds, images]``, seeds paired, one shared test set) — in points (× 100);
    ``decision`` (``margin``, ``equivalence``, ...) as :func:`difference_part` takes it, in
    points."""
    return difference_part(name, image_difference(correct_a, correct_b), unit, 100, **decision)


def seed_accuracy_part(
    name: str,
    a: Sequence[float],
    b: Sequence[float],
    n_test: int,
    unit: str = "accuracy points",
    **decision: Any,
) -> Part:
    """:func:`paired_part` of two arms' test accuracies (fractions, paired over seeds) in
    points, for accuracies with no per-image record (e.g. a sweep's): conditional on the
    ``n_test``-image test set (recorded in the part; the test's name says so)."""
    diff = seed_difference(a, b)
    diff = replace(diff, test=f"{diff.test} (no per-image record; conditional on the test set)")
    return replace(difference_part(name, diff, unit, 100, **decision), n_test=n_test)


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
    """A part claiming the seeds' mean of ``values`` exceeds ``threshold`` (fixed in the
    code; not a margin): mean with a 95% t interval over seeds, one-sample t-test against the
    threshold (scipy); ``held`` when the whole interval lies above it. Non-finite values (an
    arm that never got there) are left out and counted in the test's name; fewer than
    :data:`MIN_SEEDS` values left, or no spread, is not testable."""
    vals = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    dropped = len(values) - vals.size
    diff = seed_difference(vals, np.full(vals.size, threshold)) if vals.size else None
    if diff is None:
        return Part(name, NOT_TESTABLE, math.nan, (math.nan, math.nan), unit,
                    "not testable, no seed produced a value", None, 0)  # fmt: skip
    note = f"; {dropped} seed(s) without a value left out" if dropped else ""
    test = f"one-sample t-test over seeds against {threshold * scale:g}{claim_note}{note}"
    part = difference_part(name, replace(diff, test=test), unit, scale)
    m = float(vals.mean()) * scale
    shift = threshold * scale
    lo, hi = part.interval
    return replace(part, estimate=m, interval=(lo + shift, hi + shift))


def overall(parts: Sequence[Part]) -> bool | None:
    """A claim made of ``parts``: False if any part is not held, else None if any is not
    held-or-better (inconclusive, not testable, undecidable at this budget) or there are
    none, else True."""
    if any(p.status == NOT_HELD for p in parts):
        return False
    if not parts or any(p.status != HELD for p in parts):
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
