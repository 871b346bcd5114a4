"""Reference attacks from an independent library, the Adversarial Robustness Toolbox (ART).

Our own attacks (:mod:`spikeweave.security.attacks`) are checked against ART's on the same model
and budget, and robustness claims are evaluated with an AutoAttack-style ensemble built from ART:

- ``apgd-ce``: APGD on the cross-entropy (Croce & Hein 2020), 100 iterations;
- ``apgd-t``: targeted APGD on the difference-of-logits-ratio loss, once per target class (the
  ``targets`` highest-scoring wrong classes of each image);
- ``deepfool``: DeepFool, a minimum-norm attack. AutoAttack's FAB-T is not in ART; ART's own
  ``AutoAttack`` uses DeepFool in that slot, and so do we;
- ``square``: Square Attack, score-based and gradient-free, 5,000 queries by default.

Robust accuracy is the **per-image** worst case: an image counts as robust only if every attack
fails on it (:class:`EnsembleResult`). Every adversarial image is checked against the budget and
the valid range, and judged by *our* forward pass, not ART's bookkeeping.

ART is an optional dependency: ``pip install 'spikeweave[attacks]'`` (it installs numpy, scipy,
scikit-learn, tqdm and ``multiprocess``; never another torch). Targets are what
:func:`~spikeweave.security.attacks.as_classifier` accepts: a :class:`~spikeweave.training.Run`
or an ``nn.Module`` mapping images ``[B, C, H, W]`` in ``bounds`` to scores ``[B, K]``, on the
CPU or a CUDA device (ART is told which).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..neurons import SpikingNeuron
from .attacks import _check_eps, _check_inputs, _check_norm, _frozen, as_classifier, check_budget

__all__ = [
    "ENSEMBLE",
    "available",
    "EnsembleResult",
    "TieBroken",
    "art_classifier",
    "art_pgd",
    "ensemble",
]

ENSEMBLE = ("apgd-ce", "apgd-t", "deepfool", "square")
"""The attacks of :func:`ensemble`, in the order they run."""

_ART_NORMS = {"linf": np.inf, "l2": 2}


def available() -> bool:
    """Whether the Adversarial Robustness Toolbox is installed (without importing it)."""
    return importlib.util.find_spec("art") is not None


def _art() -> Any:
    try:
        import art.attacks.evasion as evasion
        import art.estimators.classification as classification
    except ImportError:
        raise ConfigError(
            "reference attacks need the Adversarial Robustness Toolbox; "
            "pip install 'spikeweave[attacks]'"
        ) from None
    return evasion, classification


class TieBroken(nn.Module):
    """Scores ``[B, K]`` with exact ties broken towards the lower class index.

    A spiking classifier's scores are spike counts, so two classes often tie exactly; DLR-type
    losses divide by a difference of scores and would divide by zero. Subtracting
    ``1e-6·k`` from class ``k`` keeps ``argmax`` unchanged (it already picks the first of tied
    maxima) and leaves every gradient as it was.
    """

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("offset", 1e-6 * torch.arange(num_classes, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        scores = self.model(x)
        return scores - self.offset.to(scores.dtype)


def art_classifier(
    target: Any,
    sample: torch.Tensor,
    num_classes: int,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Any:
    """ART's ``PyTorchClassifier`` around ``target`` (ties broken, see :class:`TieBroken`).

    ``sample`` is one batch ``[B, C, H, W]`` of the inputs (for the input shape and device).
    """
    _, classification = _art()
    model = TieBroken(as_classifier(target), num_classes).to(sample.device)
    return classification.PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(sample.shape[1:]),
        nb_classes=num_classes,
        clip_values=bounds,
        device_type="gpu" if sample.is_cuda else "cpu",
    )


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float32)


def _back(x_adv: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x_adv, dtype=like.dtype, device=like.device)


def art_pgd(
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    num_classes: int,
    steps: int = 20,
    norm: str = "linf",
    step_size: float | None = None,
    random_start: bool = True,
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
) -> torch.Tensor:
    """ART's projected gradient descent with the same meaning of every argument as
    :func:`~spikeweave.security.attacks.pgd` (step size ``2.5·eps/steps`` by default).

    Returns ``x_adv`` of ``x``'s shape and device, checked against the budget.
    """
    evasion, _ = _art()
    eps, norm = _check_eps(eps), _check_norm(norm)
    _check_inputs(x, y, bounds)
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    clf = art_classifier(target, x, num_classes, bounds)
    attack = evasion.ProjectedGradientDescent(
        clf,
        norm=_ART_NORMS[norm],
        eps=eps,
        eps_step=alpha,
        max_iter=steps,
        num_random_init=1 if random_start else 0,
        batch_size=len(x),
        verbose=False,
    )
    with _frozen(as_classifier(target)), _seeded(seed):
        x_adv = _back(attack.generate(_numpy(x), y=_numpy(y).astype(np.int64)), x)
    check_budget(x_adv, x, eps, norm, bounds)
    return x_adv


@dataclass
class EnsembleResult:
    """Per-image outcome of :func:`ensemble` on ``n`` images.

    ``fooled[name]`` is a bool tensor ``[n]`` (CPU): the attack found an adversarial image (an
    image the model already gets wrong counts as fooled by every attack). ``robust`` is the
    per-image worst case: correct under every attack.
    """

    clean: torch.Tensor
    fooled: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def robust(self) -> torch.Tensor:
        """``[n]`` bool: the image survives every attack."""
        out = self.clean.clone()
        for f in self.fooled.values():
            out &= ~f
        return out

    def accuracies(self) -> dict[str, float]:
        """Clean accuracy, the robust accuracy after each attack in run order (cumulative:
        the images every attack so far failed on, as AutoAttack logs it; a later attack only
        sees the images the earlier ones left, so its own success rate is not defined) and
        the per-image worst case (the last of them)."""
        n = max(len(self.clean), 1)
        acc = {"clean": float(self.clean.sum()) / n}
        standing = self.clean.clone()
        for k, f in self.fooled.items():
            standing &= ~f
            acc[k] = float(standing.sum()) / n
        acc["worst_case"] = float(self.robust.sum()) / n
        return acc


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed numpy's and torch's global generators (ART draws from both), restored afterwards."""
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)


def ensemble(
    target: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    num_classes: int,
    norm: str = "linf",
    attacks: tuple[str, ...] = ENSEMBLE,
    apgd_steps: int = 100,
    targets: int = 3,
    square_queries: int = 5000,
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    batch_size: int = 250,
) -> EnsembleResult:
    """Run the AutoAttack-style ensemble on ``x [n, C, H, W]``, ``y [n]`` at budget ``eps``.

    Each attack sees only the images that are still correctly classified, as AutoAttack does;
    the result records, per image and attack, whether that attack fooled the model (judged by
    our forward pass on the returned image, which is checked against the budget). ``targets``
    is the number of target classes for ``apgd-t``; ``square`` is L∞ only.
    """
    evasion, _ = _art()
    eps, norm = _check_eps(eps), _check_norm(norm)
    _check_inputs(x, y, bounds)
    unknown = [a for a in attacks if a not in ENSEMBLE]
    if unknown:
        raise ConfigError(f"unknown reference attack(s) {unknown}; choose from {list(ENSEMBLE)}")
    if "square" in attacks and norm != "linf":
        raise ConfigError("the square attack is L∞ only; use norm='linf' or leave it out")
    for name, value in (("apgd_steps", apgd_steps), ("square_queries", square_queries)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, got {value!r}")
    if isinstance(targets, bool) or not isinstance(targets, int) or not 1 <= targets < num_classes:
        raise ConfigError(f"targets must be an int in [1, {num_classes - 1}], got {targets!r}")
    model = as_classifier(target)
    clf = art_classifier(model, x[:1], num_classes, bounds)
    art_norm = _ART_NORMS[norm]
    step = 2 * eps if norm == "linf" else eps  # APGD adapts its step from this start

    def predict(xb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(xb).argmax(-1)

    with _frozen(model), _seeded(seed):
        pred = torch.cat([predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        clean = (pred == y).cpu()
        result = EnsembleResult(clean=clean)
        for name in attacks:
            fooled = ~clean.clone()
            idx = torch.nonzero(clean & ~_any(result.fooled, len(x))).flatten()
            for start in range(0, len(idx), batch_size):
                sel = idx[start : start + batch_size]
                xb, yb = x[sel.to(x.device)], y[sel.to(y.device)]
                hit = torch.zeros(len(sel), dtype=torch.bool)
                for x_adv in _attack_runs(
                    evasion, name, clf, model, xb, yb, eps, step, art_norm, apgd_steps,
                    targets, square_queries, num_classes,
                ):  # fmt: skip
                    check_budget(x_adv, xb, eps, norm, bounds)
                    hit |= (predict(x_adv) != yb).cpu()
                fooled[sel] = hit
            result.fooled[name] = fooled
    return result


@contextmanager
def _per_step_neurons(model: nn.Module) -> Iterator[None]:
    """Every spiking neuron of ``model`` on the per-step ``reference`` backend for the
    duration (restored afterwards): DeepFool takes the gradient of every class from one
    forward (``retain_graph``), which the fused kernels refuse, since their backward reuses the
    saved potentials. The reference backend gives the same spikes and gradients."""
    neurons = [(m, m.backend) for m in model.modules() if isinstance(m, SpikingNeuron)]
    for m, _ in neurons:
        m.backend = "reference"
    try:
        yield
    finally:
        for m, backend in neurons:
            m.backend = backend


def _any(fooled: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    out = torch.zeros(n, dtype=torch.bool)
    for f in fooled.values():
        out |= f
    return out


def _attack_runs(
    evasion: Any,
    name: str,
    clf: Any,
    model: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    eps: float,
    step: float,
    art_norm: float,
    apgd_steps: int,
    targets: int,
    square_queries: int,
    num_classes: int,
) -> list[torch.Tensor]:
    """The adversarial batches one attack produces (several for a targeted attack)."""
    xn, yn = _numpy(xb), _numpy(yb).astype(np.int64)
    if name == "apgd-ce":
        attack = evasion.AutoProjectedGradientDescent(
            clf, norm=art_norm, eps=eps, eps_step=step, max_iter=apgd_steps,
            nb_random_init=1, batch_size=len(xb), loss_type="cross_entropy", verbose=False,
        )  # fmt: skip
        return [_back(attack.generate(xn, y=yn), xb)]
    if name == "apgd-t":
        with torch.no_grad():
            scores = model(xb)
        scores = scores.scatter(1, yb.view(-1, 1), -math.inf)
        order = scores.argsort(dim=1, descending=True)[:, :targets]
        attack = evasion.AutoProjectedGradientDescent(
            clf, norm=art_norm, eps=eps, eps_step=step, max_iter=apgd_steps, targeted=True,
            nb_random_init=1, batch_size=len(xb), loss_type="difference_logits_ratio",
            verbose=False,
        )  # fmt: skip
        eye = np.eye(num_classes, dtype=np.float32)
        return [
            _back(attack.generate(xn, y=eye[order[:, k].cpu().numpy()]), xb) for k in range(targets)
        ]
    if name == "deepfool":
        attack = evasion.DeepFool(clf, max_iter=50, batch_size=len(xb), verbose=False)
        with _per_step_neurons(model):
            x_adv = _back(attack.generate(xn), xb)
        # DeepFool is minimum-norm and unbounded: project its point into the budget.
        d = x_adv - xb
        if art_norm == np.inf:
            d = d.clamp(-eps, eps)
        else:
            n = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (d.dim() - 1)))
            d = d * (eps / n).clamp(max=1.0)
        lo, hi = clf.clip_values
        return [(xb + d).clamp(float(lo), float(hi))]
    attack = evasion.SquareAttack(
        clf, norm=np.inf, eps=eps, max_iter=square_queries, nb_restarts=1,
        batch_size=len(xb), verbose=False,
    )  # fmt: skip
    return [_back(attack.generate(xn, y=yn), xb)]
