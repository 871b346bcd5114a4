"""MESA (arXiv 1910.04749): model the *distribution* of backdoor triggers, then unlearn it.

A classifier is any ``nn.Module`` ``images [B, C, H, W] -> scores [B, K]`` (a spikeweave run
through :func:`~spikeweave.security.attacks.as_classifier`: spiking and ANN runs alike).
``F(x)`` is the softmax probability of the target class.

- :class:`TriggerGenerator` ``G(z)``: ``z ~ U[0, 1]^64`` -> trigger ``[C, s, s]``; an MLP of
  ``layers`` × ``hidden`` with BatchNorm + LeakyReLU(0.2) and a sigmoid output.
- :func:`train_generator`: for one threshold β, minimise
  ``mean(max(0, β - F(x ⊕ G(z)))) - α·Î(G(z); z)`` over ``G`` (``x ⊕ t``: clean images not of
  the target class carrying ``t`` at random positions, with ``N(0, noise²)`` added to ``t``),
  ``Î`` a :class:`~spikeweave.security.mine.MINE` estimate trained alongside.
- :func:`sample_triggers`: the ensemble of generators as an equal-weight mixture.
- :func:`detect_target`: a short search per class; the attacked class is the one whose triggers
  succeed (score = attack success of sampled triggers), with an anomaly index (MAD).
- :func:`reverse_engineer_trigger`: the single-trigger baseline (Neural-Cleanse style).
- :func:`finetune`: the defense -- fine-tune on clean images of which a share carry triggers
  drawn from a sampler, all with their *correct* labels: a run of the ordinary trainer with
  the :class:`TriggeredFinetune` method (no training loop of its own).

Settings (:class:`MesaOptions`, :class:`FinetuneOptions`) default to methods.md §7.
"""

from __future__ import annotations

import contextlib
import copy
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ..errors import ConfigError, InputError
from ..tasks import Task
from ..training.build import Optimization
from ..training.config import TrainConfig
from ..training.methods import StepContext, TrainingMethod, gradient_step
from ..training.trainer import Trainer
from .backdoor import check_target, paste, random_positions
from .mine import MINE

__all__ = [
    "FinetuneOptions",
    "MesaOptions",
    "TriggerGenerator",
    "TriggerSampler",
    "TriggeredFinetune",
    "detect_target",
    "ensemble_sampler",
    "finetune",
    "fixed_sampler",
    "reverse_engineer_trigger",
    "sample_triggers",
    "train_generator",
    "train_mesa",
]

TriggerSampler = Callable[[int, torch.Generator], torch.Tensor]
"""``sampler(n, generator) -> triggers [n, C, s, s]`` in ``[0, 1]``."""


@dataclass(frozen=True)
class MesaOptions:
    """MESA's settings (methods.md §7 unless noted).

    Attributes:
        betas: success thresholds β, one generator each.
        alpha: weight α of the mutual-information (entropy) term.
        z_dim: size of the noise ``z ~ U[0, 1]^z_dim``.
        hidden, layers: the generator MLP's width and number of hidden layers.
        lr, adam_betas: Adam for the generator and the MINE network.
        batch_size: triggers per step (each on one clean image).
        epochs: passes over the clean images; ``steps`` (> 0) overrides them.
        noise: std of the Gaussian noise added to a trigger before pasting.
        trigger_size: s, the trigger's side in pixels.
        mine_hidden: width of the MINE statistics network.
    """

    betas: tuple[float, ...] = (0.9, 0.8, 0.5)
    alpha: float = 0.1
    z_dim: int = 64
    hidden: int = 512
    layers: int = 3
    lr: float = 2e-4
    adam_betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 128
    epochs: int = 10
    steps: int = 0
    noise: float = 0.1
    trigger_size: int = 3
    mine_hidden: int = 128

    def __post_init__(self) -> None:
        if not self.betas or any(not 0 < b < 1 for b in self.betas):
            raise ConfigError(f"MESA betas must be thresholds in (0, 1), got {list(self.betas)}")
        if not math.isfinite(self.alpha) or self.alpha < 0:
            raise ConfigError(f"MESA alpha must be >= 0, got {self.alpha}")
        for name in ("z_dim", "hidden", "layers", "batch_size", "trigger_size", "mine_hidden"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"MESA {name} must be a positive integer, got {getattr(self, name)}"
                )
        if self.epochs < 1 and self.steps < 1:
            raise ConfigError("MESA needs epochs >= 1 or steps >= 1")
        if self.batch_size < 2:
            raise ConfigError("MESA batch_size must be >= 2 (MINE shuffles within the batch)")
        if not self.lr > 0 or self.noise < 0:
            raise ConfigError("MESA lr must be > 0 and noise >= 0")

    def steps_for(self, n_images: int) -> int:
        """Generator steps: ``steps`` if set, else ``epochs`` passes over ``n_images``."""
        return self.steps if self.steps > 0 else self.epochs * math.ceil(n_images / self.batch_size)


@dataclass(frozen=True)
class FinetuneOptions:
    """The defense's fine-tuning: SGD with momentum 0.9 for 10 epochs (methods.md §7).

    Two settings differ from the paper's code, because spikeweave's defender holds a few
    hundred clean images rather than a share of CIFAR-10, so 10 epochs are ~100 steps, not
    thousands: ``lr`` 1e-2 (paper 1e-3) and ``trigger_fraction`` 0.2, the share of each batch
    that carries a sampled trigger (paper "about 1%"). Labels always stay correct.
    """

    lr: float = 1e-2
    momentum: float = 0.9
    epochs: int = 10
    batch_size: int = 64
    trigger_fraction: float = 0.2
    noise: float = 0.1

    def __post_init__(self) -> None:
        if not self.lr > 0 or not 0 <= self.momentum < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(
                "fine-tuning needs lr > 0, momentum in [0, 1), epochs >= 1, batch >= 1"
            )
        if not 0 <= self.trigger_fraction <= 1:
            raise ConfigError(f"trigger_fraction must be in [0, 1], got {self.trigger_fraction}")


class TriggerGenerator(nn.Module):
    """``z [B, z_dim] -> triggers [B, channels, size, size]`` in ``(0, 1)``."""

    def __init__(
        self, channels: int, size: int = 3, z_dim: int = 64, hidden: int = 512, layers: int = 3
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = z_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2)]
            width = hidden
        blocks += [nn.Linear(width, channels * size * size), nn.Sigmoid()]
        self.net = nn.Sequential(*blocks)
        self.shape = (channels, size, size)
        self.z_dim = z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(z).view(-1, *self.shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` triggers from ``z ~ U[0, 1]`` (eval mode: BatchNorm's running statistics)."""
        mode = self.training
        self.eval()
        try:
            # drawn on the CPU from the seeded generator: the same triggers on every device
            z = torch.rand(n, self.z_dim, generator=generator)
            return self(z.to(next(self.parameters()).device))
        finally:
            self.train(mode)


def _frozen_eval(model: nn.Module) -> list[tuple[Any, bool]]:
    """Eval mode and no parameter gradients; returns what to restore."""
    saved: list[tuple[Any, bool]] = [(m, m.training) for m in model.modules()]
    saved += [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return saved


def _restore(saved: list[tuple[Any, bool]]) -> None:
    for obj, flag in saved:
        if isinstance(obj, nn.Module):
            obj.training = flag
        else:
            obj.requires_grad_(flag)


def _others(images: torch.Tensor, labels: torch.Tensor, target: int) -> torch.Tensor:
    x = images[labels != target]
    if len(x) < 2:
        raise InputError(f"MESA needs at least 2 clean images not of class {target}")
    return x


def train_generator(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    target: int,
    beta: float,
    options: MesaOptions = MesaOptions(),  # noqa: B008 - frozen dataclass
    seed: int = 0,
    steps: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TriggerGenerator, dict[str, list[float]]]:
    """Train ``G_β`` for ``target`` on clean ``images [N, C, H, W]`` (``labels [N]``).

    Returns the generator (eval mode) and its history per step: ``hinge``, ``mi`` (the MINE
    estimate, nats) and ``success`` (mean target probability of the batch). The classifier's
    weights and modes are left as they were.
    """
    if not 0 < beta < 1:
        raise ConfigError(f"beta must be in (0, 1), got {beta}")
    x_all = _others(images, labels, target)
    c = images.shape[1]
    total = steps if steps is not None else options.steps_for(len(x_all))
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = TriggerGenerator(c, options.trigger_size, options.z_dim, options.hidden, options.layers)
        mine = MINE(c * options.trigger_size**2, options.z_dim, options.mine_hidden)
    device = images.device  # the classifier's: the caller puts the images there
    g, mine = g.to(device), mine.to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=options.lr, betas=options.adam_betas)
    opt_m = torch.optim.Adam(mine.parameters(), lr=options.lr, betas=options.adam_betas)
    history: dict[str, list[float]] = {"hinge": [], "mi": [], "success": []}
    saved = _frozen_eval(classifier)
    g.train()
    try:
        for step in range(total):
            idx = torch.randint(0, len(x_all), (options.batch_size,), generator=gen)
            z = torch.rand(options.batch_size, options.z_dim, generator=gen).to(device)
            trig = g(z)
            shake = torch.randn(trig.shape, generator=gen).to(device)
            noisy = (trig + options.noise * shake).clamp(0, 1)
            pos = random_positions(len(idx), x_all.shape[2:], options.trigger_size, gen)
            p = F.softmax(classifier(paste(x_all[idx], noisy, pos)), -1)[:, target]
            hinge = F.relu(beta - p).mean()
            # the statistics network first tightens the bound on the current triggers ...
            m_loss, _ = mine.loss(trig.detach().flatten(1), z, gen)
            opt_m.zero_grad(set_to_none=True)
            m_loss.backward()
            opt_m.step()
            # ... then the generator lowers the hinge and raises Î(G(z); z)
            mi = mine(trig.flatten(1), z, gen)
            loss = hinge - options.alpha * mi
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            history["hinge"].append(float(hinge.detach()))
            history["mi"].append(float(mi.detach()))
            history["success"].append(float(p.detach().mean()))
            if progress is not None:
                progress(step + 1, total)
    finally:
        _restore(saved)
    g.eval()
    return g, history


def train_mesa(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    target: int,
    options: MesaOptions = MesaOptions(),  # noqa: B008
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[float, TriggerGenerator]:
    """One generator per β of ``options.betas`` (seeds ``seed + i``): ``{β: G_β}``."""
    out: dict[float, TriggerGenerator] = {}
    for i, beta in enumerate(options.betas):
        cb = None if progress is None else (lambda k, n, b=beta: progress(f"β={b:g}", k, n))
        out[beta], _ = train_generator(
            classifier, images, labels, target, beta, options, seed + i, progress=cb
        )
    return out


def sample_triggers(
    generators: Sequence[TriggerGenerator], n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` triggers from the equal-weight mixture of ``generators``: ``[n, C, s, s]``."""
    if not generators:
        raise ConfigError("sample_triggers needs at least one generator")
    which = torch.randint(0, len(generators), (n,), generator=generator)
    out = torch.empty(n, *generators[0].shape, device=next(generators[0].parameters()).device)
    for k, g in enumerate(generators):
        sel = which == k
        if bool(sel.any()):
            out[sel] = g.sample(int(sel.sum()), generator)
    return out


def ensemble_sampler(generators: Sequence[TriggerGenerator]) -> TriggerSampler:
    """A :data:`TriggerSampler` drawing from the mixture of ``generators``."""
    gens = list(generators)
    return lambda n, generator: sample_triggers(gens, n, generator)


def fixed_sampler(trigger: torch.Tensor) -> TriggerSampler:
    """A :data:`TriggerSampler` that always returns ``trigger [C, s, s]``."""
    return lambda n, generator: trigger.expand(n, *trigger.shape).clone()


def reverse_engineer_trigger(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    target: int,
    size: int = 3,
    steps: int = 200,
    batch_size: int = 128,
    lr: float = 0.1,
    noise: float = 0.1,
    seed: int = 0,
) -> torch.Tensor:
    """The single-trigger baseline: one ``[C, size, size]`` pattern (a sigmoid of free
    parameters) optimised by Adam to send clean images, pasted at random positions with the
    same noise as MESA, to ``target`` (cross-entropy) -- Neural Cleanse's pattern search with
    the trigger's size known, so without its mask term."""
    x_all = _others(images, labels, target)
    gen = torch.Generator().manual_seed(seed)
    w = 0.1 * torch.randn(images.shape[1], size, size, generator=gen)
    w = w.to(images.device).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    saved = _frozen_eval(classifier)
    try:
        for _ in range(steps):
            idx = torch.randint(0, len(x_all), (batch_size,), generator=gen)
            trig = torch.sigmoid(w).expand(len(idx), -1, -1, -1)
            shake = torch.randn(trig.shape, generator=gen).to(images.device)
            noisy = (trig + noise * shake).clamp(0, 1)
            pos = random_positions(len(idx), x_all.shape[2:], size, gen)
            scores = classifier(paste(x_all[idx], noisy, pos))
            loss = F.cross_entropy(scores, torch.full((len(idx),), target, device=scores.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        _restore(saved)
    return torch.sigmoid(w).detach()


@dataclass
class Detection:
    """Per-class trigger search: ``scores[k]`` = attack success of triggers found for class k;
    ``target`` the highest; ``anomaly`` its anomaly index ``(max - median) / (1.4826·MAD)``."""

    target: int
    scores: list[float]
    anomaly: float
    mean_probability: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"target": self.target, "scores": self.scores, "anomaly_index": self.anomaly,
                "mean_target_probability": self.mean_probability}  # fmt: skip


def detect_target(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    options: MesaOptions = MesaOptions(),  # noqa: B008
    steps: int = 50,
    samples: int = 256,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Detection:
    """Run a short MESA search (``steps`` per class, the highest β) for every class and score
    it by the attack success of ``samples`` sampled triggers on held images; the attacked class
    is the one whose triggers succeed. ``classes`` restricts the search (others score 0)."""
    from .backdoor import attack_success_rate

    beta = max(options.betas)
    scores = [0.0] * num_classes
    probs = [0.0] * num_classes
    for k in classes if classes is not None else range(num_classes):
        check_target(k, num_classes)
        cb = None if progress is None else (lambda i, n, k=k: progress(f"class {k}", i, n))
        g, hist = train_generator(
            classifier, images, labels, k, beta, options, seed + 7919 * k, steps, cb
        )
        gen = torch.Generator().manual_seed(seed + k)
        x = _others(images, labels, k)
        idx = torch.randint(0, len(x), (samples,), generator=gen)
        trig = g.sample(samples, gen)
        # every held image counts (none is of class k)
        y = torch.full((samples,), -1, device=images.device)
        scores[k] = attack_success_rate(classifier, x[idx], y, trig, k, seed)
        probs[k] = hist["success"][-1] if hist["success"] else 0.0
    t = torch.tensor(scores)
    med = float(t.median())
    mad = float((t - med).abs().median()) * 1.4826
    best = int(t.argmax())
    anomaly = (scores[best] - med) / mad if mad > 0 else (math.inf if scores[best] > med else 0.0)
    return Detection(best, scores, anomaly, probs)


class _TimeMajor(nn.Module):
    """A classifier ``images [B, ...] -> scores [B, K]`` as a trainer's model
    ``[T, B, ...] -> [T, B, K]`` (the fine-tune run has T = 1: it trains no time dimension
    of its own; a spiking classifier encodes its own steps inside)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class TriggeredFinetune(TrainingMethod):
    """MESA's defense as a training method: SGD with momentum on the cross-entropy of the
    defender's images; in each batch the first ``round(trigger_fraction·B)`` images carry a
    trigger from ``sampler`` (with noise, at random positions) and keep their correct labels.
    ``sampler=None``: plain clean fine-tuning (the control).

    Not registered: an instance carries its classifier (copied by :meth:`build_model`) and
    sampler. The trigger draws come from its own generator, seeded with ``seed`` and saved in
    the checkpoint's method state.
    """

    name = "mesa-finetune"
    Options = FinetuneOptions

    def __init__(
        self,
        classifier: nn.Module,
        sampler: TriggerSampler | None,
        options: FinetuneOptions | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(options)
        self.classifier = classifier
        self.sampler = sampler
        self.generator = torch.Generator().manual_seed(seed)

    def model_fields(self) -> frozenset[str]:  # noqa: D102 - the classifier is the network
        return frozenset()

    def build_model(self, config: TrainConfig, task: Task) -> nn.Module:
        """A copy of the classifier (the original is untouched), every parameter trained."""
        model = copy.deepcopy(self.classifier)
        for p in model.parameters():
            p.requires_grad_(True)
        return _TimeMajor(model)

    def configure_optimizers(self, model: nn.Module, config: TrainConfig, steps_per_epoch: int):
        """SGD with the options' lr and momentum, a constant rate."""
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=self.options.lr, momentum=self.options.momentum)
        return Optimization(opt)

    def train_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor):  # noqa: D102
        opts, gen = self.options, self.generator
        k = math.floor(opts.trigger_fraction * len(x) + 0.5) if self.sampler else 0
        if k > 0:
            trig = self.sampler(k, gen)
            # drawn on the CPU from the seeded generator, added where the triggers are
            shake = torch.randn(trig.shape, generator=gen).to(trig.device)
            trig = (trig + opts.noise * shake).clamp(0, 1)
            pos = random_positions(k, x.shape[2:], trig.shape[-1], gen)
            x = torch.cat([paste(x[:k], trig, pos), x[k:]])
        out = ctx.forward(x)
        loss = ctx.loss(out, y)
        gradient_step(ctx, loss)
        return out.detach(), loss.detach()

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: D102
        self.generator.set_state(state["generator"])


def finetune(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    sampler: TriggerSampler | None,
    options: FinetuneOptions = FinetuneOptions(),  # noqa: B008
    seed: int = 0,
    run_dir: str | Path | None = None,
) -> nn.Module:
    """A fine-tuned copy of ``classifier`` (the original is untouched), trained by the
    :class:`~spikeweave.training.Trainer` with :class:`TriggeredFinetune` on clean ``images
    [N, C, H, W]`` / ``labels [N]`` for ``options.epochs`` epochs of ``options.batch_size``
    in a seeded order (the last batch may be smaller). Returned in eval mode.

    ``run_dir``: where the fine-tune run is recorded (config, metrics, checkpoint, summary;
    its "test" metrics are on the fine-tuning images); None: a temporary directory, removed
    afterwards. The global RNG is left as it was.
    """
    cfg = TrainConfig(
        dataset="mesa-defender-data", task="classification", neuron="relu", steps=1,
        epochs=options.epochs, batch_size=options.batch_size, lr=options.lr, weight_decay=0.0,
        schedule="constant", grad_clip=0.0, seed=seed, device=str(images.device),
    )  # fmt: skip
    data = TensorDataset(images, labels)
    method = TriggeredFinetune(classifier, sampler, options, seed)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=[]))
        if run_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "finetune"
        trainer = Trainer(cfg, method, (data, data), run_dir=run_dir, progress=False)
        trainer.fit()
    model = trainer.model.classifier
    model.eval()
    return model
