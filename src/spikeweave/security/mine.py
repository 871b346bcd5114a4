"""MINE: a neural estimate of mutual information (Belghazi et al. 2018), Donsker–Varadhan form.

For samples ``(x, z)`` of a joint distribution and a statistics network ``T(x, z)``:

    I(X; Z) >= E_joint[T] - log E_marginal[exp T]

where the marginal samples pair each ``x`` with a ``z`` of another sample (a permutation
of the batch). Maximising the bound over ``T`` estimates ``I`` in nats. The gradient of the
log term is biased on mini-batches; like the MINE paper, :meth:`MINE.loss` divides by a moving
average of ``E_marginal[exp T]`` instead (``ema``), which removes the bias.

MESA (:mod:`spikeweave.security.mesa`) maximises this estimate of ``I(G(z); z)`` to keep its
trigger generators' output spread out (maximum entropy).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError, InputError

__all__ = ["MINE", "dv_bound", "estimate_mutual_information"]


def dv_bound(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """The Donsker–Varadhan bound ``mean(t_joint) - log mean(exp t_marginal)`` (nats)."""
    n = t_marginal.numel()
    return t_joint.mean() - (torch.logsumexp(t_marginal.flatten(), 0) - math.log(n))


class MINE(nn.Module):
    """Statistics network ``T(x, z)``: an MLP on ``[x, z]`` (``x [B, x_dim]``, ``z [B, z_dim]``).

    Args:
        x_dim, z_dim: feature sizes of the two variables.
        hidden: width of the two hidden layers (ELU).
        ema: rate of the moving average of ``E_marginal[exp T]`` in the bias-corrected loss.
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 128, ema: float = 0.01) -> None:
        super().__init__()
        if not 0 < ema <= 1:
            raise ConfigError(f"MINE ema rate must be in (0, 1], got {ema}")
        self.net = nn.Sequential(
            nn.Linear(x_dim + z_dim, hidden),
            nn.ELU(),
            nn.Linear(hidden, hidden),
            nn.ELU(),
            nn.Linear(hidden, 1),
        )
        self.ema = ema
        self.register_buffer("running", torch.tensor(math.nan))

    def scores(
        self, x: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(T on joint pairs [B], T on shuffled pairs [B])``."""
        if x.dim() != 2 or z.dim() != 2 or x.shape[0] != z.shape[0] or x.shape[0] < 2:
            raise InputError(
                f"MINE takes x [B, x_dim] and z [B, z_dim] with the same B >= 2, got "
                f"{tuple(x.shape)} and {tuple(z.shape)}"
            )
        perm = torch.randperm(x.shape[0], generator=generator).to(z.device)
        joint = self.net(torch.cat([x, z], 1)).squeeze(1)
        marginal = self.net(torch.cat([x, z[perm]], 1)).squeeze(1)
        return joint, marginal

    def forward(
        self, x: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The DV estimate of ``I(x; z)`` on this batch (nats; differentiable)."""
        return dv_bound(*self.scores(x, z, generator))

    def loss(
        self, x: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss to minimise for T, the batch's DV estimate)``; the loss's gradient is the
        bias-corrected one (moving average in the denominator), its value is ``-estimate``."""
        joint, marginal = self.scores(x, z, generator)
        estimate = dv_bound(joint, marginal)
        mean_exp = torch.exp(
            torch.logsumexp(marginal, 0) - math.log(marginal.numel())
        )  # E[exp T] on the batch
        with torch.no_grad():
            m = float(mean_exp)
            if math.isfinite(m):
                r = float(self.running)
                self.running.fill_(m if math.isnan(r) else (1 - self.ema) * r + self.ema * m)
        denom = self.running.clamp_min(1e-12)
        # value -estimate; gradient -(∇E_joint[T] - ∇E_marg[e^T] / running average)
        surrogate = joint.mean() - mean_exp / denom
        loss = -(surrogate - surrogate.detach() + estimate.detach())
        return loss, estimate.detach()


def estimate_mutual_information(
    x: torch.Tensor,
    z: torch.Tensor,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    hidden: int = 128,
    seed: int = 0,
) -> float:
    """Train a :class:`MINE` on paired samples ``x [N, dx]``, ``z [N, dz]`` and return its DV
    estimate of ``I(x; z)`` in nats, evaluated on all ``N`` pairs (one seeded shuffle)."""
    if x.dim() == 1:
        x = x[:, None]
    if z.dim() == 1:
        z = z[:, None]
    if x.shape[0] != z.shape[0] or x.shape[0] < 2:
        raise InputError("x and z must hold the same number (>= 2) of paired samples")
    if steps < 1 or batch_size < 2:
        raise ConfigError("steps must be >= 1 and batch_size >= 2")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mine = MINE(x.shape[1], z.shape[1], hidden)
    opt = torch.optim.Adam(mine.parameters(), lr=lr)
    n = x.shape[0]
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        loss, _ = mine.loss(x[idx], z[idx], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(mine(x, z, gen))
