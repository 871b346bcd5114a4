"""MINE recovers the mutual information of a correlated Gaussian pair: -½·log(1 - ρ²)."""

from __future__ import annotations

import math

import pytest
import torch

from spikeweave.errors import InputError
from spikeweave.security.mine import MINE, dv_bound, estimate_mutual_information


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.8, 0.9])
def test_mine_recovers_gaussian_mutual_information(one_thread, rho):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(10000, generator=g), torch.randn(10000, generator=g)
    x, z = a, rho * a + math.sqrt(1 - rho**2) * b
    true = -0.5 * math.log(1 - rho**2)
    est = estimate_mutual_information(x, z, steps=500, seed=0)
    assert abs(est - true) <= 0.1 * true, (est, true)


@pytest.mark.slow
def test_mine_is_near_zero_for_independent_variables(one_thread):
    g = torch.Generator().manual_seed(2)
    x, z = torch.randn(5000, generator=g), torch.randn(5000, generator=g)
    assert abs(estimate_mutual_information(x, z, steps=200, seed=0)) < 0.05


def test_dv_bound_of_constant_statistics_is_zero():
    assert float(dv_bound(torch.full((8,), 3.0), torch.full((8,), 3.0))) == pytest.approx(0.0)


def test_mine_refuses_mismatched_batches():
    with pytest.raises(InputError):
        MINE(2, 3)(torch.zeros(4, 2), torch.zeros(5, 3))
