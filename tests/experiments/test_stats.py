"""Verdict statistics: paired tests, McNemar, intervals with the test set's binomial error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sstats

from spikeweave.experiments.report import Report
from spikeweave.experiments.stats import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    accuracy_interval,
    accuracy_part,
    decide,
    mcnemar,
    overhead_part,
    paired_difference,
    paired_part,
    threshold_part,
)


def test_paired_difference_matches_scipy_and_widens_with_the_binomial_error():
    a, b = [0.975, 0.978, 0.974, 0.977, 0.976], [0.970, 0.972, 0.969, 0.973, 0.971]
    mean, (lo, hi), p, test = paired_difference(a, b)
    assert mean == pytest.approx(0.005)
    assert p == pytest.approx(sstats.ttest_rel(a, b).pvalue)
    assert "paired t-test" in test and lo < mean < hi
    _, (lo2, hi2), p2, test2 = paired_difference(a, b, n_test=1000)
    assert lo2 < lo and hi2 > hi  # a 1,000-image test set adds uncertainty
    assert p2 > p and "binomial" in test2


@pytest.mark.parametrize("shift", [0.0, 0.002, 0.004, 0.008, 0.02])
def test_p_value_agrees_with_the_interval_when_the_binomial_error_is_added(shift):
    rng = np.random.default_rng(0)
    b = 0.95 + rng.normal(0, 0.003, 5)
    a = b + shift + rng.normal(0, 0.002, 5)
    mean, (lo, hi), p, _ = paired_difference(a, b, n_test=1000)
    assert (p < 0.05) == (lo > 0 or hi < 0)
    assert lo < mean < hi


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
    assert paired_part("acc", [0.9, 0.8], [0.7, 0.75], "points").test.endswith("over seeds")


def test_threshold_part_holds_only_when_the_interval_clears_the_threshold():
    held = threshold_part("t", [0.80, 0.82, 0.79, 0.81], 0.65, "%", scale=100)
    assert held.status == "held" and held.interval[0] > 65 and held.p_value < 0.05
    below = threshold_part("t", [0.1, 0.2, 0.15, 0.12], 0.65, "%", scale=100)
    assert below.status == "not held"
    mixed = threshold_part("t", [0.3, 0.9, 0.6, math.inf], 0.65, "%", scale=100)
    assert mixed.status == "inconclusive" and mixed.n == 3 and "left out" in mixed.test


def test_accuracy_and_overhead_parts_are_the_paired_part_they_name():
    a, b = [0.81, 0.83, 0.80], [0.80, 0.80, 0.79]
    assert accuracy_part("x", a, b, 500, margin=0.5) == paired_part(
        "x", a, b, "accuracy points", scale=100, n_test=500, margin=0.5
    )
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
