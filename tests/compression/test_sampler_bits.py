"""Stored-bit accounting of the image sampling arms and the busiest-pixel (activity) arm."""

from __future__ import annotations

import math

import pytest
import torch

from spikeweave.compression.sampler import (
    ARMS,
    VALUE_BITS,
    SamplingAutoencoder,
    activity_score,
    position_bits,
    samples_for_budget,
    stored_bits,
    topk_mask,
)
from spikeweave.errors import ConfigError


@pytest.mark.parametrize("pixels,k", [(10, 0), (10, 3), (784, 39), (784, 392), (64, 64)])
def test_position_bits_is_the_ceiling_of_log2_of_the_subset_count(pixels, k):
    count = math.comb(pixels, k)
    bits = position_bits(pixels, k)
    assert 2**bits >= count  # every subset gets a code
    assert bits == 0 or 2 ** (bits - 1) < count  # and no bit is spare


def test_random_stores_values_only_position_arms_pay_for_positions():
    assert stored_bits("random", 39, 784) == 39 * VALUE_BITS
    for arm in ("spiking", "activity"):
        assert stored_bits(arm, 39, 784) == 39 * VALUE_BITS + position_bits(784, 39)
    assert stored_bits("random", 10, 1024, channels=3) == 10 * 3 * VALUE_BITS


@pytest.mark.parametrize("budget", [312, 624, 1568, 5000])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_arm_fits_the_budget_and_one_more_pixel_would_not(budget, channels):
    pixels = 784
    for arm in ARMS:
        k = samples_for_budget(arm, budget, pixels, channels)
        assert stored_bits(arm, k, pixels, channels) <= budget
        assert k == pixels or stored_bits(arm, k + 1, pixels, channels) > budget
    # at equal bits the arms that store positions keep fewer pixels than random
    assert samples_for_budget("spiking", budget, pixels, channels) < samples_for_budget(
        "random", budget, pixels, channels
    )


@pytest.mark.parametrize("budget", [0, 7, 40, 100, 300, 600])
def test_samples_for_budget_is_the_largest_fitting_count_by_brute_force(budget):
    for arm in ARMS:
        fits = [k for k in range(65) if stored_bits(arm, k, 64) <= budget]
        assert samples_for_budget(arm, budget, 64) == max(fits)


def test_budgets_of_the_experiment_give_the_stated_pixel_counts():
    assert [samples_for_budget("random", 8 * k, 784) for k in (39, 78, 196)] == [39, 78, 196]
    assert [samples_for_budget("spiking", 8 * k, 784) for k in (39, 78, 196)] == [21, 46, 132]


def test_unknown_arm_is_refused():
    with pytest.raises(ConfigError, match="unknown sampling arm"):
        samples_for_budget("oracle", 100, 784)
    with pytest.raises(ConfigError, match="unknown sampling arm"):
        stored_bits("oracle", 1, 784)


def test_activity_keeps_the_brightest_pixels_ties_to_the_lower_index():
    img = torch.tensor([[[[0.5, 1.0], [1.0, 0.0]]]])  # [B=1, C=1, 2, 2]
    assert topk_mask(activity_score(img), 1).flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    assert topk_mask(activity_score(img), 3).flatten().tolist() == [1.0, 1.0, 1.0, 0.0]


def test_activity_arm_keeps_exactly_k_of_the_brightest_and_copies_them(one_thread):
    torch.manual_seed(0)
    model = SamplingAutoencoder((1, 8, 8), 10 / 64, "activity")
    x = torch.rand(3, 2, 1, 8, 8)
    out, mask, _ = model.run(x)
    image = x.mean(0)
    kept = mask > 0
    assert torch.all(kept.flatten(1).sum(1) == 10)
    for b in range(2):  # every kept pixel is at least as bright as every dropped one
        assert image[b][kept[b]].min() >= image[b][~kept[b]].max()
    assert torch.allclose(out.mean(0).reshape(2, 1, 8, 8)[kept], image[kept])
