"""The reset path's derivative (methods.md §1) against the hand-derived recursion."""

import pytest
import torch

import spikeweave as sf


def hand_gradient(x, w, tau, theta, alpha, keep_reset_term):
    """dL/dx for L = sum_t w[t]·s[t] of one LIF with multiplicative (hard, to 0) reset.

    h[t] = λ·v[t-1] + x[t], s[t] = H(h[t] - θ), v[t] = h[t]·(1 - s[t]), λ = 1 - 1/τ, so
    ∂h[t+1]/∂h[t] = λ·[(1 - s[t]) - h[t]·g'(h[t] - θ)]; the second term exists only when the
    reset is not detached.
    """
    lam = 1 - 1 / tau
    surrogate = sf.surrogate.Sigmoid(alpha)
    h, s, v = [], [], 0.0
    for t in range(len(x)):
        ht = lam * v + x[t]
        st = float(ht >= theta)
        h.append(ht)
        s.append(st)
        v = ht * (1 - st)
    g = [float(surrogate.derivative(torch.tensor(hi - theta, dtype=torch.float64))) for hi in h]
    delta = [0.0] * len(x)
    for t in reversed(range(len(x))):
        delta[t] = w[t] * g[t]
        if t + 1 < len(x):
            jac = lam * ((1 - s[t]) - (h[t] * g[t] if keep_reset_term else 0.0))
            delta[t] += delta[t + 1] * jac
    return torch.tensor(delta, dtype=torch.float64)


@pytest.mark.parametrize("detach_reset", [True, False])
def test_backward_matches_hand_recursion_with_reset_term_only_when_not_detached(detach_reset):
    torch.manual_seed(0)
    T, tau, theta, alpha = 9, 4.0, 1.0, 5.0
    x = (torch.rand(T, dtype=torch.float64) * 1.2).requires_grad_()
    w = torch.randn(T, dtype=torch.float64)
    lif = sf.LIF(
        tau=tau,
        threshold=theta,
        decay_input=False,
        reset="hard",
        surrogate=sf.surrogate.Sigmoid(alpha),
        detach_reset=detach_reset,
    )
    s = lif(x.view(T, 1))
    assert 0 < s.sum() < T
    (s.view(T) * w).sum().backward()
    expected = hand_gradient(
        x.detach().tolist(), w.tolist(), tau, theta, alpha, keep_reset_term=not detach_reset
    )
    other = hand_gradient(
        x.detach().tolist(), w.tolist(), tau, theta, alpha, keep_reset_term=detach_reset
    )
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(x.grad, other)
