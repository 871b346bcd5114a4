"""Verdict statistics: the seed × image estimator and its coverage, paired tests, McNemar,
margins, MDE, seeds needed, not testable / undecidable statuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sstats

from spikeweave.experiments.report import Report
from spikeweave.experiments.stats import (
    HELD,
    INCONCLUSIVE,
    MIN_SEEDS,
    NOT_HELD,
    NOT_TESTABLE,
    UNDECIDABLE,
    accuracy_interval,
    accuracy_part,
    decide,
    difference_part,
    image_difference,
    mcnemar,
    overhead_part,
    paired_difference,
    paired_part,
    seed_accuracy_part,
    seeds_needed,
    threshold_part,
    two_way,
)


def test_paired_difference_matches_scipys_paired_t_test():
    a, b = [0.975, 0.978, 0.974, 0.977, 0.976], [0.970, 0.972, 0.969, 0.973, 0.971]
    mean, (lo, hi), p, test = paired_difference(a, b)
    assert mean == pytest.approx(0.005)
    assert p == pytest.approx(sstats.ttest_rel(a, b).pvalue)
    half = sstats.t.ppf(0.975, 4) * np.std(np.subtract(a, b), ddof=1) / 5**0.5
    assert (lo, hi) == pytest.approx((mean - half, mean + half))
    assert "paired t-test" in test


def test_two_identical_differences_are_not_testable_and_get_no_p_value():
    # mesa's quick report once printed "CI +0.556 to +0.556, p = 8e-15" for these
    part = paired_part("asr", [55.6, 60.1], [0.0, 4.5], "points")
    assert part.status == NOT_TESTABLE and part.p_value is None and part.mde is None
    same = paired_part("asr", [55.6, 60.1, 70.0], [0.0, 4.5, 14.4], "points")
    assert same.status == NOT_TESTABLE and same.p_value is None
    assert "no spread" in same.test and "95% CI" not in same.sentence()


def test_fewer_than_three_seeds_is_not_testable_but_still_projects_the_seeds_needed():
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 2000)) < 0.9, rng.random((2, 2000)) < 0.9
    part = accuracy_part("acc", a, b, margin=1.0)
    assert part.status == NOT_TESTABLE and part.p_value is None and part.n == 2
    assert part.n_test == 2000 and part.margin == 1.0
    assert part.seeds_needed is not None and part.seeds_needed >= MIN_SEEDS


def test_image_difference_matches_the_two_way_anova_computed_directly():
    rng = np.random.default_rng(1)
    a = rng.random((4, 300)) < 0.8
    b = rng.random((4, 300)) < 0.75
    diff = image_difference(a, b)
    d = a.astype(float) - b.astype(float)
    s, n = d.shape
    g, rm, cm = d.mean(), d.mean(1), d.mean(0)
    ms_s = n * np.var(rm, ddof=1)
    ms_i = s * np.var(cm, ddof=1)
    ms_r = ((d - rm[:, None] - cm[None, :] + g) ** 2).sum() / ((s - 1) * (n - 1))
    var = (ms_s + max(ms_i - ms_r, 0)) / (s * n)
    assert diff.estimate == pytest.approx(g)
    assert diff.se == pytest.approx(var**0.5)
    assert diff.var_resid == pytest.approx(ms_r)
    # the same variance as the seed means' plus the image means' minus the interaction
    if ms_i > ms_r:
        alt = np.var(rm, ddof=1) / s + np.var(cm, ddof=1) / n - ms_r / (s * n)
        assert diff.se**2 == pytest.approx(alt)


def test_a_shared_test_set_cancels_instead_of_adding_a_binomial_floor():
    # same weights on the same images: per-seed differences of a few images out of 1,000
    rng = np.random.default_rng(2)
    a = rng.random((5, 1000)) < 0.95
    b = a.copy()
    for s in range(5):
        flip = rng.choice(1000, 3, replace=False)
        b[s, flip] = ~b[s, flip]
    part = accuracy_part("lossless", a, b, margin=1.0, equivalence=True)
    lo, hi = part.interval
    assert hi - lo < 1.0  # the old floor alone was ±0.85 points at 1,000 images and 5 seeds
    assert part.status == HELD and part.n_test == 1000


def test_non_inferiority_tests_the_margin_not_zero():
    rng = np.random.default_rng(3)
    base = rng.random((5, 10000)) < 0.9
    worse = base & (rng.random((5, 10000)) > 0.003)  # 0.3 points worse, margin 1 point
    part = accuracy_part("ni", worse, base, margin=1.0)
    assert part.status == HELD and part.interval[1] < 0  # worse, yet within the margin
    assert part.p_value < 0.025 and "against the margin" in part.test
    sup = accuracy_part("sup", worse, base)
    assert sup.status == NOT_HELD and sup.margin is None


def test_an_interval_wider_than_the_margin_is_undecidable_at_this_budget():
    part = paired_part("wide", [0.1, 2.0, -1.5, 0.3], [0.0, 0.0, 0.0, 0.0], "points",
                       margin=0.5, equivalence=True)  # fmt: skip
    assert part.status == UNDECIDABLE == "undecidable at this budget"
    assert part.seeds_needed is None or part.seeds_needed > 4
    assert part.margin == 0.5 and part.mde > 0


def test_mde_is_the_80_percent_power_effect_at_the_design_standard_error():
    a, b = [0.81, 0.83, 0.80, 0.84], [0.80, 0.80, 0.79, 0.81]
    part = paired_part("x", a, b, "points", scale=100)
    se = 100 * np.std(np.subtract(a, b), ddof=1) / 2
    assert part.mde == pytest.approx((sstats.t.ppf(0.975, 3) + sstats.t.ppf(0.8, 3)) * se)
    assert f"MDE {part.mde:.3g}" in part.sentence() and "margin none" in part.sentence()


def test_seeds_needed_is_the_fewest_seeds_whose_half_width_beats_the_margin():
    sd = 0.4
    k = seeds_needed(0.5, sd**2)
    assert sstats.t.ppf(0.975, k - 1) * sd / k**0.5 < 0.5
    assert sstats.t.ppf(0.975, k - 2) * sd / (k - 1) ** 0.5 >= 0.5 or k == MIN_SEEDS
    # an image term the test set cannot shrink puts a small margin out of reach
    assert seeds_needed(0.1, 0.01, n_test=1000, var_image=50.0) is None
    assert seeds_needed(2.0, 0.0) is None


def _simulated_differences(scenario, s, n, reps, rng):
    """Arm differences d [reps, s, n] (−1/0/1) and the true population difference.

    Image difficulty p_i ~ Beta(2.7, 0.3) (mean accuracy 0.9); a seed shifts an arm's
    accuracy by c·p(1−p) with c ~ N(0, 0.15) clipped to ±1 (symmetric: no bias).
    same-model: B is A with slightly perturbed seed shifts and the same draws (common
    random numbers: the same weights on the same images), effect 0. similar-model: the same
    image difficulty, independent seeds and draws, a small effect (B gains 0.2·p(1−p):
    −1.35 points for A). different-model: B's difficulty is A's on half the images and its
    own (Beta(2.6, 0.4)) on the rest, independent seeds and draws, a large effect (+1.67)."""
    a_, b_ = 2.7, 0.3
    p = rng.beta(a_, b_, size=(reps, 1, n)).astype(np.float32)
    c_a = rng.normal(0, 0.15, (reps, s, 1)).astype(np.float32).clip(-1, 1)
    noise = rng.normal(0, 0.15, (reps, s, 1)).astype(np.float32)
    u = rng.random((reps, s, n), dtype=np.float32)
    if scenario == "same":
        c_b, p_b, v, truth = (c_a + noise / 3).clip(-1, 1), p, u, 0.0
    elif scenario == "similar":
        c_b, p_b = noise.clip(-1, 1), p + 0.2 * p * (1 - p)
        v, truth = rng.random((reps, s, n), dtype=np.float32), -0.2 * a_ * b_ / 12
    else:
        a2, b2 = 2.6, 0.4
        q = rng.beta(a2, b2, size=(reps, 1, n)).astype(np.float32)
        p_b = np.where(rng.random((reps, 1, n)) < 0.5, p, q)
        c_b, v = noise.clip(-1, 1), rng.random((reps, s, n), dtype=np.float32)
        truth = 0.5 * (a_ / (a_ + b_) - a2 / (a2 + b2))
    right_a = u < p + c_a * p * (1 - p)
    right_b = v < p_b + c_b * p_b * (1 - p_b)
    return right_a.view(np.int8) - right_b.view(np.int8), truth


# ~2,300 simulated experiments each: one scenario in the fast tier, all three in the full run
@pytest.mark.parametrize(
    "scenario",
    [pytest.param("same", marks=pytest.mark.slow), pytest.param("similar", marks=pytest.mark.slow),
     "different"],
)  # fmt: skip
def test_the_seed_by_image_interval_covers_the_true_difference_95_percent(scenario):
    # designs: (seeds, images, simulated experiments); fixed seed, vectorised. Coverage is
    # pooled over the designs (2,300 experiments: ±0.5% standard error), each design must
    # still reach 90% (a few hundred experiments each).
    rng = np.random.default_rng(12345)
    hits = []
    for s, n, reps in [(5, 10000, 300), (3, 1000, 1500), (10, 1000, 500)]:
        d, truth = _simulated_differences(scenario, s, n, reps, rng)
        r = two_way(d)
        half = sstats.t.ppf(0.975, r["df"]) * r["se"]
        testable = r["se"] > 0  # else "not testable" (the arms never disagreed)
        assert testable.mean() > 0.98
        covered = (np.abs(r["estimate"] - truth) < half)[testable]
        assert covered.mean() >= 0.90, (scenario, s, n, covered.mean())
        hits.append(covered)
    assert 0.93 <= np.concatenate(hits).mean() <= 0.98


def test_mcnemar_counts_discordant_pairs_and_uses_an_exact_binomial_test():
    a = np.array([1, 1, 1, 0, 1, 0, 1, 1], dtype=bool)
    b = np.array([1, 0, 0, 0, 1, 1, 0, 1], dtype=bool)
    only_a, only_b, p = mcnemar(a, b)
    assert (only_a, only_b) == (3, 1)
    assert p == pytest.approx(sstats.binomtest(3, 4, 0.5).pvalue)
    assert mcnemar(a, a)[2] == 1.0


def test_wilson_interval_covers_the_accuracy():
    lo, hi = accuracy_interval(976, 1000)
    assert lo < 0.976 < hi and hi - lo < 0.025


@pytest.mark.parametrize(
    ("interval", "status"),
    [((0.1, 0.5), HELD), ((-0.5, -0.1), NOT_HELD), ((-0.1, 0.3), INCONCLUSIVE)],
)
def test_decide_needs_the_whole_interval_on_one_side(interval, status):
    assert decide("accuracy", 0.2, interval, "points", "t", 0.01, 5).status == status


@pytest.mark.parametrize(
    ("interval", "higher", "status"),
    [
        ((-1.5, 1.2), True, NOT_HELD),  # a gain of 2 is excluded
        ((-1.5, 2.5), True, INCONCLUSIVE),  # a gain of 2 is still possible
        ((0.1, 1.0), True, HELD),  # a real gain, however small, holds
        ((-1.2, 1.5), False, NOT_HELD),  # lower is claimed: a drop of 2 is excluded
    ],
)
def test_decide_rule_out_turns_an_excluded_worthwhile_gain_into_not_held(interval, higher, status):
    part = decide("gain", 0.0, interval, "points", "t", 0.5, 3, higher_is_claimed=higher,
                  rule_out=2.0)  # fmt: skip
    assert part.status == status
    assert ("ruled out" in part.test) == (status == NOT_HELD)


def test_report_stores_parts_in_json_markdown_and_html(tmp_path):
    part = decide("accuracy ≥ baseline", 0.3, (-0.1, 0.7), "points", "paired t-test", 0.2, 5)
    report = Report("x", "X", "claim", {}, verdict="v", parts=[part])
    report.write(tmp_path)
    import json

    data = json.loads((tmp_path / "report.json").read_text())
    assert data["parts"][0]["status"] == INCONCLUSIVE
    assert "inconclusive" in (tmp_path / "report.md").read_text()
    assert "inconclusive" in (tmp_path / "report.html").read_text()


def test_a_part_paired_over_timing_rounds_says_so_in_its_test_name():
    part = paired_part("cost", [1.02, 1.05, 1.01], [0.0, 0.0, 0.0], "%",
                       pairs="interleaved timing rounds")  # fmt: skip
    assert part.test == "paired t-test over interleaved timing rounds" and part.n == 3
    assert paired_part("acc", [0.9, 0.8, 0.7], [0.7, 0.75, 0.7], "points").test.endswith(
        "over seeds"
    )


def test_threshold_part_holds_only_when_the_interval_clears_the_threshold():
    held = threshold_part("t", [0.80, 0.82, 0.79, 0.81], 0.65, "%", scale=100)
    assert held.status == "held" and held.interval[0] > 65 and held.p_value < 0.05
    below = threshold_part("t", [0.1, 0.2, 0.15, 0.12], 0.65, "%", scale=100)
    assert below.status == "not held"
    mixed = threshold_part("t", [0.3, 0.9, 0.6, math.inf], 0.65, "%", scale=100)
    assert mixed.status == "inconclusive" and mixed.n == 3 and "left out" in mixed.test


def test_accuracy_and_overhead_parts_are_the_parts_they_name():
    rng = np.random.default_rng(4)
    a, b = rng.random((3, 500)) < 0.81, rng.random((3, 500)) < 0.8
    assert accuracy_part("x", a, b, margin=0.5) == difference_part(
        "x", image_difference(a, b), "accuracy points", 100, margin=0.5
    )
    accs = [0.81, 0.83, 0.80]
    seed_level = seed_accuracy_part("y", accs, [0.80, 0.80, 0.79], 500)
    assert seed_level.n_test == 500 and "no per-image record" in seed_level.test
    extra = [0.05, 0.12, 0.08]
    part = overhead_part("c", extra, margin=10.0, higher_is_claimed=False)
    assert part == paired_part(
        "c",
        extra,
        [0.0] * 3,
        "% extra",
        scale=100,
        margin=10.0,
        higher_is_claimed=False,
        pairs="interleaved timing rounds",
    )
    assert "timing rounds" in part.test and part.estimate == pytest.approx(25 / 3)
