"""Adversarial attacks on image classifiers, for spikeweave runs and plain ``nn.Module``\\s.

Every attack takes a *target* -- a :class:`~spikeweave.training.Run` from
:func:`~spikeweave.load_run` or any ``nn.Module`` mapping images ``[B, C, H, W]`` (values in
``bounds``, default ``[0, 1]``) to class scores ``[B, K]`` -- plus images ``x [B, ...]``, labels
``y [B]`` and a budget ``eps`` in input units (``[0, 1]`` pixels), and returns adversarial
images ``x_adv`` of ``x``'s shape. Guarantees, checked on every result:

- ``x_adv`` lies in ``bounds`` and within ``eps`` of ``x`` in the attack's norm
  (``max |x_adv - x| <= eps`` for L∞, per-sample ``||x_adv - x||₂ <= eps`` for L2);
- the model's weights, buffers, ``.grad`` and train/eval mode are left as they were (gradients
  are taken with respect to the input only, in eval mode).

Iterative attacks keep, per sample, the first point that fools the model (a sample the model
already gets wrong counts as fooled), so more steps never raise robust accuracy.

Attacks (``ATTACKS`` registry): ``fgsm``; ``pgd`` (L∞ or L2, random start, ``steps`` ≥ 1,
default 20); ``adaptive`` (PGD with every oscillating neuron's *true* gradient -- BPDA through
the defense -- and EOT: the gradient averaged over ``eot`` forward passes, which matters when
the forward is random, e.g. Poisson encoding); ``adaptive-surrogate`` (the attacker chooses the
surrogate: ``adaptive`` once with the model's own surrogate, then again with every shape and
sharpness of :data:`SURROGATE_GRID` in the backward pass, keeping per image the first success);
``transfer`` (PGD on a separately trained ``source`` model, evaluated on the target); ``square``
(Square Attack, Andriushchenko et al. 2020: score-based, gradient-free, L∞).

Robust accuracy over several attacks is the **per-image** worst case
(:func:`per_image_worst_case`): an image counts only if every attack failed on it.

A run's non-differentiable encoder (Poisson, latency) is bypassed in backward by the identity
on the repeated image (BPDA), so gradient attacks work on every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ..neurons import SpikingNeuron
from ..registry import Registry
from ..surrogate import Surrogate, get_surrogate
from ..training.device import model_device
from .defense import true_gradients

__all__ = [
    "ATTACKS",
    "NORMS",
    "RunClassifier",
    "as_classifier",
    "fgsm",
    "pgd",
    "adaptive_pgd",
    "adaptive_surrogate_pgd",
    "backward_surrogate",
    "SURROGATE_GRID",
    "transfer",
    "square",
    "run_attack",
    "robust_accuracy",
    "robust_mask",
    "per_image_worst_case",
    "check_budget",
]

NORMS = ("linf", "l2")
Bounds = tuple[float, float]


class RunClassifier(nn.Module):
    """A trained run as an image classifier: ``x [B, ...] -> scores [B, K]``.

    Encodes with the run's encoder (``direct`` is differentiable; others get the identity on
    the repeated image in backward, BPDA), runs the model and reads out rates; for a spiking
    run trained with cross-entropy the rates are multiplied by the run's ``rate_scale`` so the
    scores are the logits its loss saw (the argmax is the run's prediction either way).
    """

    def __init__(self, run: Any) -> None:
        super().__init__()
        if getattr(run.task, "name", "") != "classification":
            raise ConfigError(
                f"attacks need a classification run, got task {run.task.name!r} in {run.path}"
            )
        self.model = run.model
        self.task = run.task
        self.config = run.config
        self.encoder = run.config.encoder
        self.steps = run.config.effective_steps
        self.scale = run.task.rate_scale if run.task.spiking and run.task.loss_kind == "ce" else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        from .. import encoding

        rep = encoding.direct(x, self.steps)
        if self.encoder == "direct":
            enc = rep
        else:  # BPDA: the encoder's expectation is the image itself
            enc = encoding.encode(self.encoder, x.detach(), self.steps) + (rep - rep.detach())
        return self.task.readout(self.model(enc)) * self.scale


def as_classifier(target: Any) -> nn.Module:
    """``target`` as an ``nn.Module`` ``images -> scores [B, K]`` (a Run is wrapped)."""
    if isinstance(target, nn.Module):
        return target
    if hasattr(target, "model") and hasattr(target, "task") and hasattr(target, "config"):
        return RunClassifier(target)
    raise ConfigError(
        f"an attack target must be a spikeweave Run or an nn.Module, got {type(target).__name__}"
    )


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration; both restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)  # the input is the only leaf we differentiate
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not math.isfinite(eps):
        raise ConfigError(f"eps must be a finite number (input units), got {eps!r}")
    if eps < 0:
        raise ConfigError(f"eps must be >= 0 (input units, e.g. 0.1 of a [0, 1] range), got {eps}")
    return float(eps)


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return norm


def _check_inputs(x: torch.Tensor, y: torch.Tensor, bounds: Bounds) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise InputError("attacks take a float batch of images x [B, ...]")
    if not isinstance(y, torch.Tensor) or y.shape != x.shape[:1]:
        raise InputError(f"labels must be a tensor [B={x.shape[0]}], got {getattr(y, 'shape', y)}")
    lo, hi = bounds
    if bool((x < lo).any()) or bool((x > hi).any()):
        raise InputError(f"images must lie in the valid range [{lo}, {hi}]")


def _norms(d: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms ``[B, 1, ...]`` broadcastable against ``d``."""
    n = d.flatten(1).norm(dim=1)
    return n.view(-1, *([1] * (d.dim() - 1)))


def check_budget(
    x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, bounds: Bounds = (0.0, 1.0)
) -> None:
    """Raise ``RuntimeError`` unless ``x_adv`` is in ``bounds`` and within ``eps`` of ``x``."""
    lo, hi = bounds
    if bool((x_adv < lo).any()) or bool((x_adv > hi).any()):
        raise RuntimeError("attack left the valid input range")
    d = (x_adv - x).double()
    size = float(d.abs().max()) if norm == "linf" else float(_norms(d).max())
    if size > eps * (1 + 1e-5) + 1e-6:  # float32 rounding of x + delta, nothing more
        raise RuntimeError(f"attack exceeded its budget: {norm} distance {size} > eps {eps}")


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, bounds: Bounds):
    d = x_adv - x
    if norm == "linf":
        d = d.clamp(-eps, eps)
    else:
        d = d * (eps / _norms(d).clamp_min(1e-12)).clamp(max=1.0)
    return (x + d).clamp(*bounds)


def _loss_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eot: int) -> torch.Tensor:
    """``∂ CE(model(x), y) / ∂x`` averaged over ``eot`` forward passes (EOT)."""
    g = torch.zeros_like(x)
    for _ in range(eot):
        xi = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xi), y, reduction="sum")
        g += torch.autograd.grad(loss, xi)[0]
    return g / eot


@torch.no_grad()
def _wrong(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eot: int = 1) -> torch.Tensor:
    """Misclassified samples ``[B]`` (bool); a random forward is judged on ``eot`` passes'
    mean scores, so one lucky pass does not end the attack on a sample."""
    scores = model(x)
    for _ in range(eot - 1):
        scores = scores + model(x)
    return scores.argmax(-1) != y


def fgsm(
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    bounds: Bounds = (0.0, 1.0),
) -> torch.Tensor:
    """Fast gradient sign method (L∞): ``x + eps·sign(∇ₓ CE)``, clamped to ``bounds``."""
    eps = _check_eps(eps)
    _check_inputs(x, y, bounds)
    model = as_classifier(target)
    with _frozen(model):
        g = _loss_grad(model, x, y, 1)
        x_adv = (x + eps * g.sign()).clamp(*bounds).detach()
    check_budget(x_adv, x, eps, "linf", bounds)
    return x_adv


def pgd(
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 20,
    norm: str = "linf",
    step_size: float | None = None,
    random_start: bool = True,
    eot: int = 1,
    bounds: Bounds = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent on the cross-entropy (Madry et al. 2018).

    Args:
        eps: the budget in input units (L∞: per pixel; L2: per sample).
        steps: gradient steps (≥ 1; evaluations use ≥ 20).
        norm: ``"linf"`` (sign steps) or ``"l2"`` (normalised gradient steps).
        step_size: per step, in input units; default ``2.5·eps/steps``.
        random_start: start from a uniform point of the ball (L∞) or a random direction
            with a uniform radius (L2).
        eot: gradients averaged over this many forward passes per step.
        generator: for the random start (reproducible attacks).

    Returns ``x_adv``, per sample the first iterate the model misclassified, else the last.
    """
    eps = _check_eps(eps)
    norm = _check_norm(norm)
    _check_inputs(x, y, bounds)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive int, got {steps!r}")
    if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
        raise ConfigError(f"eot must be a positive int, got {eot!r}")
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    if not math.isfinite(alpha) or alpha < 0:
        raise ConfigError(f"step_size must be >= 0 (input units), got {step_size!r}")
    model = as_classifier(target)
    with _frozen(model):
        best = x.clone()
        done = _wrong(model, x, y, eot)  # already wrong on the clean image: fooled at no cost
        x_adv = x.clone()
        if random_start and eps > 0:
            r = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            if norm == "linf":
                x_adv = x + eps * (2 * r - 1)
            else:
                d = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
                radius = torch.rand(x.shape[0], generator=generator, dtype=x.dtype).to(x.device)
                d = d / _norms(d).clamp_min(1e-12) * (eps * radius).view_as(_norms(d))
                x_adv = x + d
            x_adv = _project(x_adv, x, eps, norm, bounds)
        for _ in range(steps):
            g = _loss_grad(model, x_adv, y, eot)
            if norm == "linf":
                x_adv = x_adv + alpha * g.sign()
            else:
                x_adv = x_adv + alpha * g / _norms(g).clamp_min(1e-12)
            x_adv = _project(x_adv, x, eps, norm, bounds).detach()
            fooled = _wrong(model, x_adv, y, eot) & ~done
            best[fooled] = x_adv[fooled]
            done |= fooled
        best[~done] = x_adv[~done]
    check_budget(best, x, eps, norm, bounds)
    return best


def adaptive_pgd(
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    eot: int = 1,
    **kwargs: Any,
) -> torch.Tensor:
    """PGD with the defense switched off in backward: every oscillating neuron backpropagates
    its true oscillation (:func:`~spikeweave.security.true_gradients`; the spike's Heaviside
    is already straight-through via the surrogate, BPDA), gradients averaged over ``eot``
    forward passes (EOT, for random forwards). Other arguments as :func:`pgd`."""
    model = as_classifier(target)
    with true_gradients(model):
        return pgd(model, x, y, eps, eot=eot, **kwargs)


SURROGATE_GRID: tuple[tuple[str, float], ...] = (
    ("atan", 1.0),
    ("atan", 4.0),
    ("sigmoid", 2.0),
    ("sigmoid", 8.0),
    ("rectangular", 0.5),
    ("rectangular", 2.0),
    ("triangle", 0.5),
    ("triangle", 2.0),
)
"""The surrogates :func:`adaptive_surrogate_pgd` tries by default: four shapes of
:data:`~spikeweave.surrogate.SURROGATES`, each at half and twice its default sharpness ``α``
(a wider and a narrower backward window than training used)."""


@contextmanager
def backward_surrogate(model: nn.Module, surrogate: Surrogate) -> Iterator[nn.Module]:
    """Within the block every spiking neuron of ``model`` uses ``surrogate`` in backward (the
    forward is the Heaviside step whatever the surrogate, so outputs are unchanged). Each
    neuron's own surrogate is restored on exit, also after an exception."""
    neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
    before = [n.surrogate for n in neurons]
    for n in neurons:
        n.surrogate = surrogate
    try:
        yield model
    finally:
        for n, sg in zip(neurons, before, strict=True):
            n.surrogate = sg


def _surrogates(grid: Sequence[Any]) -> list[Surrogate]:
    """``grid`` items -- a Surrogate, or a ``(name, alpha)`` pair -- as surrogates."""
    if isinstance(grid, str | bytes) or not isinstance(grid, Sequence):
        raise ConfigError("surrogates must be a sequence of (name, alpha) pairs or Surrogates")
    out = []
    for item in grid:
        if isinstance(item, Surrogate):
            out.append(item)
        elif isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str):
            out.append(get_surrogate(item[0], item[1]))  # one-line ConfigErrors
        else:
            raise ConfigError(
                f"a surrogate to try must be a Surrogate or a (name, alpha) pair, got {item!r}"
            )
    return out


def adaptive_surrogate_pgd(
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    surrogates: Sequence[Any] = SURROGATE_GRID,
    eot: int = 1,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """The attacker chooses the surrogate: :func:`adaptive_pgd` (true gradients through the
    defense, EOT) first with the model's own surrogates, then once per entry of
    ``surrogates`` (a :class:`~spikeweave.surrogate.Surrogate` or ``(name, alpha)``; default
    :data:`SURROGATE_GRID`) put into every spiking neuron's backward pass. Each try attacks
    only the images no earlier try fooled, from the random start ``generator`` gave the first
    (its state is rewound per try); per image the first successful try's image is kept, so an
    image survives only if every surrogate's attack failed on it, and the result fools every
    image the plain adaptive attack with the same ``generator`` state fools. The model's own
    surrogates are restored afterwards. Other arguments as :func:`pgd`; a model without spiking
    neurons gets the first try only (the others would repeat it)."""
    model = as_classifier(target)
    tries: list[Surrogate | None] = [None, *_surrogates(surrogates)]
    if not any(isinstance(m, SpikingNeuron) for m in model.modules()):
        tries = [None]
    state = None if generator is None else generator.get_state()
    best: torch.Tensor | None = None
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    with true_gradients(model):
        for sg in tries:
            idx = (~done).nonzero()[:, 0]
            if idx.numel() == 0:
                break
            if state is not None:
                generator.set_state(state)  # type: ignore[union-attr]
            swap = nullcontext() if sg is None else backward_surrogate(model, sg)
            with swap:
                x_try = pgd(model, x[idx], y[idx], eps, eot=eot, generator=generator, **kwargs)
            with _frozen(model):
                hit = _wrong(model, x_try, y[idx], eot)
            if best is None:  # the first try covers every image: its result is the default
                best = x_try.clone()
                done = hit.clone()
                continue
            best[idx[hit]] = x_try[hit]
            done[idx[hit]] = True
    assert best is not None  # the first try always runs
    check_budget(
        best, x, _check_eps(eps), kwargs.get("norm", "linf"), kwargs.get("bounds", (0.0, 1.0))
    )
    return best


def transfer(
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    source: Any = None,
    **kwargs: Any,
) -> torch.Tensor:
    """PGD computed on ``source`` (a separately trained model: Run or ``nn.Module``) and
    handed to ``target`` unchanged -- the black-box transfer attack. Arguments as :func:`pgd`."""
    if source is None:
        raise ConfigError("the transfer attack needs a source model (--source RUN_DIR)")
    return pgd(as_classifier(source), x, y, eps, **kwargs)


def _margin(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``score_y - max_{k≠y} score_k`` per sample (< 0: misclassified)."""
    true = scores.gather(1, y[:, None])[:, 0]
    other = scores.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def _p_schedule(i: int, queries: int, p_init: float) -> float:
    """Square Attack's square-area fraction at iteration ``i`` (the paper's halving schedule,
    given for 10,000 queries, rescaled to ``queries``)."""
    j = int(i / queries * 10000)
    for k, step in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)):
        if j <= step:
            return p_init / 2**k
    return p_init / 2**9


@torch.no_grad()
def square(
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    queries: int = 1000,
    p_init: float = 0.05,
    norm: str = "linf",
    bounds: Bounds = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Square Attack, L∞ (Andriushchenko et al. 2020): random search over vertical-stripe
    initialisation and ±eps squares, accepting a change when the margin loss drops. Uses only
    the model's scores (``queries`` forward passes at most, no gradients), so gradient masking
    cannot stop it. Images ``[B, C, H, W]``; other shapes are searched as ``[B, 1, 1, N]``."""
    eps = _check_eps(eps)
    if _check_norm(norm) != "linf":
        raise ConfigError("the square attack is implemented for norm 'linf' only")
    _check_inputs(x, y, bounds)
    model = as_classifier(target)
    shape = x.shape
    xs = x if x.dim() == 4 else x.reshape(x.shape[0], 1, 1, -1)
    B, C, H, W = xs.shape

    def rand_sign(*size: int) -> torch.Tensor:
        r = torch.randint(0, 2, size, generator=generator).to(device=x.device, dtype=x.dtype)
        return 2 * r - 1

    def scores(z: torch.Tensor) -> torch.Tensor:
        return model(z.reshape(-1, *shape[1:]))

    with _frozen(model):
        x_adv = (xs + eps * rand_sign(B, C, 1, W)).clamp(*bounds)
        margin = _margin(scores(x_adv), y)
        clean_wrong = _margin(scores(xs), y) < 0
        x_adv[clean_wrong] = xs[clean_wrong]
        margin[clean_wrong] = -1.0
        for i in range(queries - 1):
            active = (margin >= 0).nonzero()[:, 0]
            if active.numel() == 0:
                break
            p = _p_schedule(i, queries, p_init)
            s = min(max(int(round(math.sqrt(p * H * W / 1.0))), 1), H, W)
            n = active.numel()
            r0 = torch.randint(0, H - s + 1, (n,), generator=generator).to(x.device)
            c0 = torch.randint(0, W - s + 1, (n,), generator=generator).to(x.device)
            rows = torch.arange(H, device=x.device)
            cols = torch.arange(W, device=x.device)
            in_r = (rows[None] >= r0[:, None]) & (rows[None] < (r0 + s)[:, None])
            in_c = (cols[None] >= c0[:, None]) & (cols[None] < (c0 + s)[:, None])
            window = (in_r[:, :, None] & in_c[:, None, :])[:, None]  # [n, 1, H, W]
            xa, x0 = x_adv[active], xs[active]
            delta = torch.where(window, eps * rand_sign(n, C, 1, 1), xa - x0)
            cand = (x0 + delta).clamp(*bounds)
            m_new = _margin(scores(cand), y[active])
            better = m_new < margin[active]
            idx = active[better]
            x_adv[idx] = cand[better]
            margin[idx] = m_new[better]
        x_adv = x_adv.reshape(shape)
    check_budget(x_adv, x, eps, "linf", bounds)
    return x_adv


ATTACKS: Registry[Callable[..., torch.Tensor]] = Registry("attack")
ATTACKS.register("fgsm", fgsm, help="fast gradient sign method, one L∞ step")
ATTACKS.register("pgd", pgd, help="projected gradient descent, L∞ or L2, random start")
ATTACKS.register("adaptive", adaptive_pgd, help="PGD through the true forward (BPDA) with EOT")
ATTACKS.register(
    "adaptive-surrogate",
    adaptive_surrogate_pgd,
    help="adaptive PGD once per backward surrogate (shape and sharpness); per-image worst case",
)
ATTACKS.register("transfer", transfer, help="PGD on a separately trained source model")
ATTACKS.register("square", square, help="Square Attack: score-based, gradient-free, L∞")


def run_attack(
    name: str, target: Any, x: torch.Tensor, y: torch.Tensor, eps: float, **options: Any
) -> torch.Tensor:
    """The attack registered as ``name`` on ``target`` (``ConfigError`` if unknown)."""
    return ATTACKS.get(name)(target, x, y, eps, **options)


def robust_mask(
    name: str,
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    batch_size: int = 250,
    seed: int = 0,
    **options: Any,
) -> torch.Tensor:
    """Per image of ``x``, whether the target still classifies it correctly under attack
    ``name`` at ``eps``: a bool tensor ``[len(x)]`` on the CPU. Batches of ``batch_size``; the
    attack's randomness is seeded by ``seed``."""
    _check_eps(eps)
    model = as_classifier(target)
    gen = torch.Generator().manual_seed(seed)
    if name in ("pgd", "adaptive", "adaptive-surrogate", "transfer", "square"):
        options = {"generator": gen, **options}
    masks = []
    device = model_device(model)  # the images go where the model is
    with torch.random.fork_rng(devices=[]):  # the model's own randomness is seeded too
        torch.manual_seed(seed)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            x_adv = run_attack(name, model, xb, yb, eps, **options)
            with _frozen(model):
                masks.append((~_wrong(model, x_adv, yb)).cpu())
    return torch.cat(masks) if masks else torch.zeros(0, dtype=torch.bool)


def robust_accuracy(
    name: str,
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    batch_size: int = 250,
    seed: int = 0,
    **options: Any,
) -> float:
    """Fraction of ``x`` the target still classifies correctly under attack ``name`` at
    ``eps`` (:func:`robust_mask`'s mean), in batches of ``batch_size``; the attack's
    randomness is seeded by ``seed``."""
    mask = robust_mask(name, target, x, y, eps, batch_size=batch_size, seed=seed, **options)
    return int(mask.sum()) / max(len(x), 1)


def per_image_worst_case(success: Mapping[str, torch.Tensor]) -> float:
    """Robust accuracy over several attacks on the same images, per image: the share of images
    on which **every** attack failed.

    ``success[attack]`` is a bool tensor ``[n]``, True where that attack fooled the model on
    image ``i`` (an image misclassified without attack counts as fooled). This is at most the
    minimum over the attacks' own robust accuracies, and lower when different attacks break
    different images. InputError for no attacks, no images, or masks of different shapes."""
    if not isinstance(success, Mapping) or not success:
        raise InputError("per_image_worst_case needs at least one attack's per-image success")
    masks = list(success.values())
    n = None
    for name, m in success.items():
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.dim() != 1:
            raise InputError(f"success of {name!r} must be a 1-D bool tensor [n], got {m!r}")
        if n is not None and len(m) != n:
            raise InputError(
                f"every attack must be judged on the same images: {name!r} has {len(m)}, not {n}"
            )
        n = len(m)
    if not n:
        raise InputError("per_image_worst_case needs at least one image")
    fooled = torch.zeros(n, dtype=torch.bool)
    for m in masks:
        fooled |= m.cpu()
    return int((~fooled).sum()) / n
