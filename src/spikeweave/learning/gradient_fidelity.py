"""Gradient fidelity: how well NA and surrogate gradients point along the true descent
direction of a (smoothed) spiking loss, measured on a small network.

The PSC kernel loss of a spiking network is piecewise constant in its weights, so it has no
useful gradient to compare an estimator with. Its Gaussian smoothing

    L_σ(W) = E_ε[L(W + σ·ε)],   ε ~ N(0, I)

is smooth, and its gradient can be measured by central finite differences,
``∂L_σ/∂w_i ≈ (L_σ(W + h·e_i) − L_σ(W − h·e_i)) / 2h``, with ``L_σ`` a Monte-Carlo mean over
antithetic noise samples shared by both sides (common random numbers, so the difference is
not swamped by the sampling noise of each side). An estimator ``g(W)`` (NA, surrogate) is
judged by the cosine between ``E_ε[g(W + σ·ε)]`` — its average over the same smoothing — and
that finite-difference gradient. Two independent halves of the noise give the
finite-difference estimate's own cosine, the ceiling an estimator can reach at this sample
size.

The network is a bias-free fully connected NA net (the authors' layout, :class:`NANetwork`):
input PSC, ``Linear → NANeuron`` per layer. The finite differences run a functional copy of it
with a leading sample dimension on every weight, so thousands of perturbed networks run as
one batched forward.

>>> res = gradient_fidelity(x, y, hidden=(8,), num_classes=3)
>>> res.cosine["NA (paper form)"], res.fd_self_cosine
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from .na import NANetwork, desired_spikes, kernel_loss, na_dynamics, psc

__all__ = [
    "ESTIMATOR_ARMS",
    "FidelityResult",
    "batched_kernel_loss",
    "smoothed_fd_gradient",
    "na_mlp_fd_gradient",
    "gradient_fidelity",
    "cosine",
]

ESTIMATOR_ARMS: dict[str, tuple[str, str]] = {
    "NA (paper form)": ("na", "paper"),
    "NA (code form)": ("na", "code"),
    "NA (later weighting)": ("na", "later"),
    "surrogate BPTT": ("surrogate", "paper"),
}
"""Arm label -> (estimator, NA form) compared by :func:`gradient_fidelity`."""


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two flattened tensors (0 when either is zero)."""
    a, b = a.flatten().double(), b.flatten().double()
    den = float(a.norm() * b.norm())
    return float(a @ b) / den if den > 0 else 0.0


def batched_kernel_loss(
    weights: Sequence[torch.Tensor],
    x: torch.Tensor,
    labels: torch.Tensor,
    tau_m: float = 5.0,
    tau_s: float = 2.0,
    threshold: float = 1.0,
) -> torch.Tensor:
    """The PSC kernel loss of ``S`` fully connected NA networks at once.

    ``weights``: one ``[S, out, in]`` tensor per layer (sample dimension first); ``x [T, B,
    in]`` the input (its PSC feeds the first layer, as in :class:`NANetwork`); ``labels [B]``.
    Returns ``[S]``: each network's :func:`~spikeweave.learning.na.kernel_loss`.
    """
    h = psc(x, tau_s)  # [T, B, in]: shared by every sample, so the first layer is one matmul
    for i, w in enumerate(weights):
        if i == 0:
            cur = torch.einsum("tbi,soi->tsbo", h, w)
        else:
            cur = torch.einsum("tsbi,soi->tsbo", h, w)
        spikes, _ = na_dynamics(cur, tau_m, threshold)
        h = psc(spikes, tau_s)
        if i == len(weights) - 1:
            T, S, B, C = spikes.shape
            target = psc(desired_spikes(labels, T, C).to(h), tau_s).unsqueeze(1)
            return 0.5 * (h - target).pow(2).sum((0, 2, 3)) / B
    raise ConfigError("batched_kernel_loss needs at least one layer")


def _antithetic_noise(
    who: str,
    params: Sequence[torch.Tensor],
    sigma: float,
    h: float,
    samples: int,
    generator: torch.Generator,
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """``(base, noisy, mask_a)`` of the finite-difference estimators: the parameters in
    float64, each with ``samples`` noise draws ``ε`` from ``generator`` as ``[p + σε; p − σε]``
    (``[2·samples, *p.shape]``), and the bool ``[2·samples]`` mask of noise half A."""
    if samples < 2 or sigma < 0 or h <= 0:
        raise ConfigError(f"{who} needs samples >= 2, sigma >= 0 and h > 0")
    base = [p.detach().double() for p in params]
    # drawn on the CPU from the seeded generator (the same noise on every device), then moved
    # to the parameters' device
    eps = [
        torch.randn((samples, *p.shape), generator=generator, dtype=p.dtype).to(p.device)
        for p in base
    ]
    noisy = [torch.cat([p + sigma * e, p - sigma * e]) for p, e in zip(base, eps, strict=True)]
    # half A: the first half of the pairs, both signs (so each half is antithetic too)
    mask_a = torch.zeros(2 * samples, dtype=torch.bool, device=base[0].device if base else None)
    mask_a[: samples // 2] = True
    mask_a[samples : samples + samples // 2] = True
    return base, noisy, mask_a


def smoothed_fd_gradient(
    loss_fn: Callable[[list[torch.Tensor]], torch.Tensor],
    params: Sequence[torch.Tensor],
    sigma: float,
    h: float,
    samples: int,
    generator: torch.Generator,
    chunk: int = 4096,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Central finite differences of the Gaussian-smoothed loss, per parameter entry.

    ``loss_fn`` maps batched parameters (one ``[S, *shape]`` per entry of ``params``) to
    ``[S]`` losses. ``samples`` antithetic noise pairs (``ε`` and ``−ε``, so the noise has
    mean exactly 0) are drawn once and shared by the ``+h`` and ``−h`` sides of every
    coordinate. Returns ``(gradient per parameter, [estimate from one half of the noise,
    estimate from the other half])``, the halves flattened over all parameters, so that
    :func:`cosine` of the two says how reproducible the estimate is.
    """
    base, noisy, mask_a = _antithetic_noise(
        "smoothed_fd_gradient", params, sigma, h, samples, generator
    )
    n = 2 * samples
    grads = [torch.zeros_like(p) for p in base]
    halves = [[torch.zeros_like(p) for p in base] for _ in range(2)]
    coords = [(li, j) for li, p in enumerate(base) for j in range(p.numel())]
    per_chunk = max(1, chunk // n)
    for start in range(0, len(coords), per_chunk):
        group = coords[start : start + per_chunk]
        batch = []
        for li, p in enumerate(noisy):
            rep = p.repeat(2 * len(group), *([1] * (p.dim() - 1)))
            for g, (lj, j) in enumerate(group):
                if lj != li:
                    continue
                flat = rep.view(2 * len(group), n, -1)
                flat[2 * g, :, j] += h
                flat[2 * g + 1, :, j] -= h
            batch.append(rep)
        losses = loss_fn(batch).view(len(group), 2, n)
        diff = (losses[:, 0] - losses[:, 1]) / (2 * h)  # [group, n]
        for g, (li, j) in enumerate(group):
            grads[li].view(-1)[j] = diff[g].mean()
            halves[0][li].view(-1)[j] = diff[g, mask_a].mean()
            halves[1][li].view(-1)[j] = diff[g, ~mask_a].mean()
    return grads, [torch.cat([a.flatten() for a in hv]) for hv in halves]


def _run_layers(
    h: torch.Tensor,
    cur: torch.Tensor,
    weights: Sequence[torch.Tensor],
    labels: torch.Tensor,
    tau_m: float,
    tau_s: float,
    threshold: float,
) -> torch.Tensor:
    """Loss ``[...]`` of the layers from the one whose currents are ``cur [T, ..., n, B, o]``
    on: its spikes, then ``weights`` (each ``[n, out, in]``) in turn; ``h`` is unused input
    kept for symmetry of the call sites."""
    for w in weights:
        spikes, _ = na_dynamics(cur, tau_m, threshold)
        cur = torch.einsum("t...nbi,noi->t...nbo", psc(spikes, tau_s), w)
    spikes, _ = na_dynamics(cur, tau_m, threshold)
    a = psc(spikes, tau_s)
    T, C = a.shape[0], a.shape[-1]
    target = psc(desired_spikes(labels, T, C).to(a), tau_s)  # [T, B, C]
    target = target.view(T, *([1] * (a.dim() - 3)), *target.shape[1:])
    return 0.5 * (a - target).pow(2).sum((0, -2, -1)) / labels.numel()


def na_mlp_fd_gradient(
    weights: Sequence[torch.Tensor],
    x: torch.Tensor,
    labels: torch.Tensor,
    sigma: float,
    h: float,
    samples: int,
    generator: torch.Generator,
    tau_m: float = 5.0,
    tau_s: float = 2.0,
    threshold: float = 1.0,
    group: int = 32,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """:func:`smoothed_fd_gradient` of :func:`batched_kernel_loss`, the same numbers (same
    noise from ``generator``) computed incrementally: moving weight ``(o, i)`` of layer ``l``
    changes only neuron ``o``'s current there, by ``±h·a_{l-1}[i]``, so only that neuron and
    the layers above are re-simulated — ``O(T·B·(1 + later layers))`` per coordinate instead
    of the whole network. ``weights``: ``[out, in]`` per layer; ``x [T, B, in]``."""
    base, noisy, mask_a = _antithetic_noise(
        "na_mlp_fd_gradient", weights, sigma, h, samples, generator
    )
    n = 2 * samples
    x = x.double()
    labels = labels.to(x.device)
    # the unperturbed noisy networks, layer by layer: input PSC a_{l-1}, currents, PSC
    a_in: list[torch.Tensor] = [psc(x, tau_s).unsqueeze(1).expand(-1, n, -1, -1)]
    curs: list[torch.Tensor] = []
    for w in noisy:
        cur = torch.einsum("tnbi,noi->tnbo", a_in[-1], w)
        curs.append(cur)
        a_in.append(psc(na_dynamics(cur, tau_m, threshold)[0], tau_s))
    grads = [torch.zeros_like(w) for w in base]
    halves = [[torch.zeros_like(w) for w in base] for _ in range(2)]
    where = x.device
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64, device=where).view(1, 2, 1, 1)
    for li, w in enumerate(base):
        out_n, in_n = w.shape
        coords = [(o, i) for o in range(out_n) for i in range(in_n)]
        for start in range(0, len(coords), group):
            chunk = coords[start : start + group]
            o_idx = torch.tensor([o for o, _ in chunk], device=where)
            i_idx = torch.tensor([i for _, i in chunk], device=where)
            # the moved neuron's current [T, G, 2, n, B]
            unit = curs[li][..., o_idx].permute(0, 3, 1, 2).unsqueeze(2)
            extra = a_in[li][..., i_idx].permute(0, 3, 1, 2).unsqueeze(2) * (h * sign)
            cur_o = unit + extra
            if li == len(base) - 1:
                # the output layer: only neuron o's share of the loss changes
                a_new = psc(na_dynamics(cur_o, tau_m, threshold)[0], tau_s)
                a_old = a_in[li + 1][..., o_idx].permute(0, 3, 1, 2).unsqueeze(2)
                tgt = (labels.view(1, 1, 1, 1, -1) == o_idx.view(1, -1, 1, 1, 1)).double()
                tgt = psc(tgt.expand(x.shape[0], -1, -1, -1, -1), tau_s)
                diff = 0.5 * ((a_new - tgt).pow(2) - (a_old - tgt).pow(2)).sum((0, -1))
                diff = diff / labels.numel()  # [G, 2, n]
            else:
                d_a = psc(na_dynamics(cur_o, tau_m, threshold)[0], tau_s)
                d_a = d_a - a_in[li + 1][..., o_idx].permute(0, 3, 1, 2).unsqueeze(2)
                w_next = noisy[li + 1][:, :, o_idx].permute(2, 0, 1)  # [G, n, out]
                cur_next = curs[li + 1].unsqueeze(1).unsqueeze(1) + d_a.unsqueeze(-1) * w_next.view(
                    1, len(chunk), 1, n, 1, -1
                )
                diff = _run_layers(
                    x, cur_next, noisy[li + 2 :], labels, tau_m, tau_s, threshold
                )  # [G, 2, n]
            fd = (diff[:, 0] - diff[:, 1]) / (2 * h)  # [G, n]
            flat_idx = o_idx * in_n + i_idx
            grads[li].view(-1)[flat_idx] = fd.mean(1)
            halves[0][li].view(-1)[flat_idx] = fd[:, mask_a].mean(1)
            halves[1][li].view(-1)[flat_idx] = fd[:, ~mask_a].mean(1)
    return grads, [torch.cat([a.flatten() for a in hv]) for hv in halves]


@dataclass
class FidelityResult:
    """Cosines of each estimator's smoothed gradient with the finite-difference gradient.

    ``fd_self_cosine``: cosine of the finite-difference estimates from two independent halves
    of the noise (how far the reference itself can be trusted); ``norms``: each estimator's
    gradient norm over the finite-difference norm.
    """

    cosine: dict[str, float]
    fd_self_cosine: float
    norms: dict[str, float]
    sigma: float
    h: float
    samples: int
    n_params: int
    settings: dict[str, float] = field(default_factory=dict)


def gradient_fidelity(
    x: torch.Tensor,
    labels: torch.Tensor,
    hidden: Sequence[int] = (8,),
    num_classes: int = 10,
    arms: Sequence[str] = tuple(ESTIMATOR_ARMS),
    sigma: float = 0.05,
    h: float = 0.02,
    samples: int = 256,
    estimator_samples: int = 32,
    tau_m: float = 5.0,
    tau_s: float = 2.0,
    init_scale: float = 1.0,
    seed: int = 0,
) -> FidelityResult:
    """Cosine of NA's and the surrogate's gradients with the finite-difference gradient of
    the smoothed kernel loss, on a bias-free fully connected NA net ``in-hidden-num_classes``.

    ``x [T, B, in]`` the (encoded, normalised) input, ``labels [B]``; ``sigma``: smoothing std
    of every weight; ``h``: finite-difference step; ``samples``: antithetic noise pairs for
    the finite differences; ``estimator_samples``: noise draws the estimators are averaged
    over; the net is initialised from ``seed`` (authors' init × ``init_scale``).
    """
    unknown = [a for a in arms if a not in ESTIMATOR_ARMS]
    if unknown:
        raise ConfigError(f"unknown arm(s) {unknown}; choose from {list(ESTIMATOR_ARMS)}")
    spec = "-".join(str(n) for n in hidden)
    x, labels = x.double(), labels.long().to(x.device)  # the nets are built on x's device

    def build(estimator: str, form: str) -> NANetwork:
        torch.manual_seed(seed)
        return NANetwork(
            spec, (x.shape[-1],), num_classes, tau_m=tau_m, tau_s=tau_s,
            estimator=estimator, form=form, init_scale=init_scale,
        ).double().to(x.device)  # fmt: skip

    reference = build("na", "paper")
    weights = [p.detach().clone() for p in reference.parameters()]
    gen = torch.Generator().manual_seed(seed + 1)
    fd, (half_a, half_b) = na_mlp_fd_gradient(
        weights, x, labels, sigma, h, samples, gen, tau_m, tau_s
    )
    fd_flat = torch.cat([g.flatten() for g in fd])
    noise_gen = torch.Generator().manual_seed(seed + 2)
    draws = [
        [torch.randn(w.shape, generator=noise_gen, dtype=w.dtype).to(w.device) for w in weights]
        for _ in range(estimator_samples)
    ]
    cos, norms = {}, {}
    for arm in arms:
        net = build(*ESTIMATOR_ARMS[arm])
        params = list(net.parameters())
        total = [torch.zeros_like(w) for w in weights]
        for eps in draws:
            with torch.no_grad():
                for p, w, e in zip(params, weights, eps, strict=True):
                    p.copy_(w + sigma * e)
            net.zero_grad(set_to_none=True)
            kernel_loss(net(x), labels, tau_s).backward()
            for t, p in zip(total, params, strict=True):
                t += p.grad
        flat = torch.cat([t.flatten() for t in total]) / estimator_samples
        cos[arm] = cosine(flat, fd_flat)
        fd_norm = float(fd_flat.norm())
        norms[arm] = float(flat.norm()) / fd_norm if fd_norm > 0 else float("nan")
    return FidelityResult(
        cosine=cos,
        fd_self_cosine=cosine(half_a, half_b),
        norms=norms,
        sigma=sigma,
        h=h,
        samples=samples,
        n_params=int(fd_flat.numel()),
        settings={"estimator_samples": estimator_samples, "steps": int(x.shape[0])},
    )
