"""Gradient fidelity: finite differences of the smoothed loss, and NA / surrogate cosines."""

import pytest
import torch

from spikeweave.errors import ConfigError
from spikeweave.learning.gradient_fidelity import (
    ESTIMATOR_ARMS,
    batched_kernel_loss,
    cosine,
    gradient_fidelity,
    na_mlp_fd_gradient,
    smoothed_fd_gradient,
)
from spikeweave.learning.na import NANetwork, kernel_loss


def test_fd_of_a_smoothed_quadratic_is_its_exact_gradient():
    # E[(w + σε - c)²] = (w - c)² + σ²: the smoothed gradient is 2(w - c), and antithetic noise
    # with central differences recovers it exactly
    w = [torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)]
    c = torch.tensor([[1.0, 1.0], [-1.0, 0.5]], dtype=torch.float64)
    grads, halves = smoothed_fd_gradient(
        lambda ws: (ws[0] - c).pow(2).sum((1, 2)), w, 0.3, 0.1, 16, torch.Generator()
    )
    torch.testing.assert_close(grads[0], 2 * (w[0] - c))
    assert cosine(*halves) == pytest.approx(1.0)


def test_batched_loss_is_the_networks_kernel_loss():
    torch.manual_seed(0)
    net = NANetwork("4", (5,), 3, init_scale=3.0).double()
    x = torch.rand(4, 3, 5, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    want = float(kernel_loss(net(x), y).detach())
    weights = [p.detach().unsqueeze(0).expand(2, -1, -1) for p in net.parameters()]
    torch.testing.assert_close(batched_kernel_loss(weights, x, y), torch.full((2,), want).double())


def test_incremental_fd_matches_the_full_resimulation():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5).double()
    y = torch.tensor([0, 2, 1])
    w = [torch.randn(4, 5).double() * 0.8, torch.randn(3, 4).double() * 0.8,
         torch.randn(3, 3).double()]  # fmt: skip
    fast, fast_halves = na_mlp_fd_gradient(w, x, y, 0.1, 0.05, 8, torch.Generator().manual_seed(3))
    full, full_halves = smoothed_fd_gradient(
        lambda ws: batched_kernel_loss(ws, x, y), w, 0.1, 0.05, 8,
        torch.Generator().manual_seed(3),
    )  # fmt: skip
    assert any(float(g.abs().sum()) > 0 for g in full)  # some spike moved: a real check
    for a, b in zip(fast, full, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fast_halves[0], full_halves[0])


def test_fidelity_on_a_tiny_net_gives_cosines_for_every_arm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 6, generator=g)
    y = torch.randint(0, 3, (8,), generator=g)
    res = gradient_fidelity(
        x, y, hidden=(4,), num_classes=3, sigma=0.1, h=0.05, samples=64,
        estimator_samples=8, init_scale=2.0,
    )  # fmt: skip
    assert set(res.cosine) == set(ESTIMATOR_ARMS)
    assert res.n_params == 6 * 4 + 4 * 3
    assert all(-1.0 <= c <= 1.0 for c in res.cosine.values())
    assert res.fd_self_cosine > 0.5  # the reference is reproducible at this sample size
    # both estimators point downhill on the smoothed loss
    assert res.cosine["surrogate BPTT"] > 0.3 and res.cosine["NA (paper form)"] > 0.3
    with pytest.raises(ConfigError, match="unknown arm"):
        gradient_fidelity(x, y, hidden=(4,), num_classes=3, arms=("nope",))
