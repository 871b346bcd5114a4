"""The backdoor-strength rule (issue 30): the weakest setting that reaches the ASR target
within the clean-accuracy budget, else the strongest-ASR one, said plainly."""

from __future__ import annotations

import math

import pytest

from spikeweave.errors import ConfigError
from spikeweave.experiments.backdoor_strength import (
    MAX_CLEAN_LOSS,
    MIN_ASR,
    RATES,
    TRIGGER_GRID,
    choose_strength,
    grid,
    rule_record,
    trigger_options,
)


def _row(rate, strength, asr, loss):
    return {"rate": rate, "strength": strength, "asr": asr, "clean_loss": loss}


def test_rule_constants_are_the_issues_targets():
    assert (MIN_ASR, MAX_CLEAN_LOSS, RATES) == (0.95, 0.01, (0.01, 0.05, 0.10))
    assert rule_record()["min_asr"] == 0.95 and rule_record()["split"] == "validation"


def test_rule_picks_the_lowest_rate_that_qualifies_before_a_weaker_trigger():
    rows = [
        _row(0.10, 0, 0.99, 0.0),
        _row(0.05, 1, 0.97, 0.005),
        _row(0.05, 0, 0.90, 0.0),
        _row(0.01, 1, 0.80, 0.0),
    ]
    pick = choose_strength(rows)
    assert pick.met and (pick.row["rate"], pick.row["strength"]) == (0.05, 1)


def test_rule_picks_the_weakest_trigger_within_a_rate():
    rows = [_row(0.05, 1, 0.99, 0.0), _row(0.05, 0, 0.96, 0.0)]
    assert choose_strength(rows).row["strength"] == 0


def test_rule_refuses_a_setting_that_costs_more_than_one_point_of_clean_accuracy():
    rows = [_row(0.01, 0, 0.99, 0.011), _row(0.10, 0, 0.96, 0.01)]
    pick = choose_strength(rows)
    assert pick.met and pick.row["rate"] == 0.10


def test_rule_accepts_the_boundaries_exactly_and_a_clean_accuracy_gain():
    assert choose_strength([_row(0.01, 0, 0.95, 0.01)]).met
    assert choose_strength([_row(0.01, 0, 0.95, -0.03)]).met
    assert not choose_strength([_row(0.01, 0, 0.9499, 0.0)]).met


def test_rule_without_a_qualifying_setting_takes_the_strongest_asr_and_says_so():
    rows = [_row(0.01, 0, 0.60, 0.0), _row(0.10, 1, 0.99, 0.05), _row(0.05, 0, 0.72, 0.0)]
    pick = choose_strength(rows)
    assert not pick.met and pick.row["asr"] == 0.99
    assert "NOT met" in pick.reason


def test_rule_breaks_an_asr_tie_toward_the_weaker_setting_when_the_target_is_missed():
    rows = [_row(0.10, 1, 0.80, 0.0), _row(0.05, 0, 0.80, 0.0)]
    assert choose_strength(rows).row["rate"] == 0.05


def test_rule_never_qualifies_a_nan_measurement():
    rows = [_row(0.01, 0, math.nan, 0.0), _row(0.05, 0, 0.5, 0.0)]
    pick = choose_strength(rows)
    assert not pick.met and pick.row["rate"] == 0.05


def test_rule_on_no_rows_is_a_config_error():
    with pytest.raises(ConfigError):
        choose_strength([])


def test_grid_orders_settings_weakest_first_for_every_kind():
    for kind in TRIGGER_GRID:
        g = grid(kind, (0.10, 0.01))
        assert [(r["rate"], r["strength"]) for r in g] == sorted((r["rate"], r["strength"])
                                                                 for r in g)  # fmt: skip
        assert len(g) == 2 * len(TRIGGER_GRID[kind])
    with pytest.raises(ConfigError, match="no strength grid"):
        grid("sig")


def test_every_grid_setting_is_a_valid_backdoor_transform():
    from spikeweave.security.backdoor import BackdoorOptions

    for kind in TRIGGER_GRID:
        for setting in grid(kind):
            opts = BackdoorOptions(**trigger_options(kind, setting), target=1, seed=2)
            assert opts.kind == kind and opts.fraction == setting["rate"]
