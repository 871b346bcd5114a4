"""Backdoor poisoning (BadNets style): a small trigger patch that flips a classifier to a target.

Images are ``[N, C, H, W]`` floats in ``[0, 1]``; a trigger is ``[C, s, s]`` (``C`` 1 is
pasted on every channel) in ``[0, 1]``, pasted with its top-left corner at ``(row, col)``.

- :func:`make_trigger` -- a seeded ``s×s`` pattern, ``binary`` (black-and-white) or ``grey``.
- :func:`paste` -- differentiable in the triggers; one trigger or one per image.
- :func:`poison` -- exactly ``round(fraction·N)`` images (nearest integer, halves up) get the
  trigger and the label ``target``; every other image and label is returned byte-identical.
- :class:`PoisonedDataset` -- the same on a map-style dataset, item by item, for the trainer:
  the ``backdoor`` training-split transform (:class:`BackdoorOptions` in a config's
  ``[train_transforms.backdoor]`` table, ``spikeweave train --poison-fraction ...``).
- :func:`attack_success_rate` -- the share of non-target images a classifier sends to
  ``target`` once they carry a trigger.
- :func:`heldout_triggers` -- the 51 black-and-white evaluation patterns (spikeweave's reading
  of the paper's 51 triggers: the true trigger and 50 patterns 1-3 pixel flips away from it).

Poisoned images are drawn from the whole training set, target class included (a target-class
image only gains the patch). Positions are uniform over every place the patch fits, or fixed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..errors import ConfigError, InputError
from ..options import build_options, options_dict
from ..training.assembly import TRAIN_TRANSFORMS

__all__ = [
    "TRIGGER_KINDS",
    "BackdoorOptions",
    "PoisonedDataset",
    "attack_success_rate",
    "check_fraction",
    "check_target",
    "check_trigger",
    "choose_poisoned",
    "heldout_triggers",
    "make_trigger",
    "paste",
    "backdoor_options",
    "poison",
    "poison_dataset",
    "random_positions",
    "trigger_from_config",
]

TRIGGER_KINDS = ("binary", "grey")


def check_fraction(fraction: float) -> float:
    """``fraction`` as a float in ``[0, 1]`` or a one-line ConfigError."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ConfigError(f"poison fraction must be a number in [0, 1], got {fraction!r}")
    if not math.isfinite(fraction) or not 0 <= fraction <= 1:
        raise ConfigError(
            f"poison fraction must be in [0, 1] (share of training images), got {fraction}"
        )
    return float(fraction)


def check_target(target: int, num_classes: int | None) -> int:
    """``target`` as a class index in ``[0, num_classes)`` or a one-line ConfigError."""
    if isinstance(target, bool) or not isinstance(target, int):
        raise ConfigError(f"target must be a class index (an integer), got {target!r}")
    if target < 0 or (num_classes is not None and target >= num_classes):
        top = "" if num_classes is None else f", {num_classes - 1}"
        raise ConfigError(f"target class {target} is out of range; choose one of 0{top}")
    return target


def check_trigger(trigger: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """``trigger [C, s, s]`` checked against images ``(C, H, W)``: square, in ``[0, 1]``, with
    1 or ``C`` channels and no larger than the image. Returns it expanded to ``C`` channels."""
    if not isinstance(trigger, torch.Tensor) or trigger.dim() != 3:
        raise ConfigError(
            f"a trigger is a tensor [C, s, s], got {getattr(trigger, 'shape', trigger)}"
        )
    if len(image_shape) != 3:
        raise InputError(
            f"backdoor triggers need images shaped (C, H, W), got {tuple(image_shape)}"
        )
    c, h, w = (int(v) for v in image_shape)
    tc, s1, s2 = trigger.shape
    if s1 != s2:
        raise ConfigError(f"a trigger must be square, got {s1}x{s2}")
    if s1 > h or s2 > w:
        raise ConfigError(
            f"trigger size {s1}x{s2} is larger than the {h}x{w} image; use a smaller one"
        )
    if tc not in (1, c):
        raise ConfigError(f"the trigger has {tc} channels but the images have {c}")
    if not trigger.is_floating_point() or bool((trigger < 0).any() | (trigger > 1).any()):
        raise ConfigError("trigger values must be floats in [0, 1]")
    return trigger.expand(c, s1, s2)


def make_trigger(
    size: int = 3, channels: int = 1, kind: str = "binary", seed: int = 0
) -> torch.Tensor:
    """A seeded ``[channels, size, size]`` trigger, the same on every channel.

    ``binary``: each pixel 0 or 1 with probability ½, redrawn until both values occur (a flat
    patch is indistinguishable from a white or black blob); ``grey``: uniform in ``[0, 1]``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"trigger size must be a positive integer (pixels), got {size!r}")
    if kind not in TRIGGER_KINDS:
        raise ConfigError(
            f"unknown trigger kind {kind!r}; choose one of {', '.join(TRIGGER_KINDS)}"
        )
    gen = torch.Generator().manual_seed(seed)
    if kind == "grey":
        pattern = torch.rand(size, size, generator=gen)
    else:
        while True:
            pattern = torch.randint(0, 2, (size, size), generator=gen).float()
            if size == 1 or 0 < pattern.sum() < size * size:
                break
    return pattern.expand(channels, size, size).contiguous()


def choose_poisoned(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Mask ``[n]`` (bool) with exactly ``round(fraction·n)`` (halves up) seeded ``True``s."""
    k = math.floor(check_fraction(fraction) * n + 0.5)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]] = True
    return mask


def random_positions(
    n: int,
    image_hw: Sequence[int],
    size: int,
    generator: torch.Generator | None = None,
    position: Sequence[int] | None = None,
) -> torch.Tensor:
    """Top-left corners ``[n, 2]`` (row, col): uniform over every place a ``size`` patch fits
    in ``image_hw``, or ``position`` for all (checked to fit)."""
    h, w = int(image_hw[0]), int(image_hw[1])
    if size > h or size > w:
        raise ConfigError(
            f"trigger size {size}x{size} is larger than the {h}x{w} image; use a smaller one"
        )
    if position is not None and len(position) > 0:
        if len(position) != 2:
            raise ConfigError(f"a trigger position is (row, col), got {list(position)}")
        r, c = (int(v) for v in position)
        if not (0 <= r <= h - size and 0 <= c <= w - size):
            raise ConfigError(
                f"trigger position ({r}, {c}) does not fit a {size}x{size} patch in a {h}x{w} "
                f"image; rows 0..{h - size}, cols 0..{w - size}"
            )
        return torch.tensor([[r, c]], dtype=torch.long).expand(n, 2).clone()
    rows = torch.randint(0, h - size + 1, (n,), generator=generator)
    cols = torch.randint(0, w - size + 1, (n,), generator=generator)
    return torch.stack([rows, cols], 1)


def paste(images: torch.Tensor, triggers: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``images [N, C, H, W]`` with ``triggers`` (``[C|1, s, s]`` or ``[N, C|1, s, s]``) pasted
    at ``positions [N, 2]``; a new tensor, differentiable in both ``images`` and ``triggers``."""
    n, c, h, w = images.shape
    trig = triggers if triggers.dim() == 4 else triggers.unsqueeze(0)
    s = trig.shape[-1]
    trig = trig.expand(n, c, s, s).to(images.device, images.dtype)
    pos = positions.to(images.device)
    ar = torch.arange(s, device=images.device)
    rows = (pos[:, :1] + ar)[:, :, None].expand(n, s, s)
    cols = (pos[:, 1:] + ar)[:, None, :].expand(n, s, s)
    b = torch.arange(n, device=images.device)[:, None, None].expand(n, s, s)
    # channels last, so one (batch, row, col) index places a whole channel vector
    out = images.permute(0, 2, 3, 1).index_put((b, rows, cols), trig.permute(0, 2, 3, 1))
    return out.permute(0, 3, 1, 2).contiguous()


def _poison_plan(
    n: int,
    image_hw: Sequence[int],
    size: int,
    fraction: float,
    seed: int,
    position: Sequence[int] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask [N] bool, corners [N, 2])`` of BadNets poisoning for ``seed``: which items
    carry the trigger and where; :func:`poison` and :class:`PoisonedDataset` share it, so
    both choose the same images and positions."""
    mask = choose_poisoned(n, fraction, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    return mask, random_positions(n, image_hw, size, gen, position)


def poison(
    images: torch.Tensor,
    labels: torch.Tensor,
    trigger: torch.Tensor,
    target: int,
    fraction: float,
    seed: int = 0,
    *,
    position: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BadNets poisoning of a batch: ``(images', labels', poisoned_mask [N])``.

    Exactly ``round(fraction·N)`` images, chosen with ``seed``, carry ``trigger`` at a random
    (seeded) or fixed ``position`` and are relabelled ``target``; the others are copied
    byte for byte. ``num_classes`` defaults to ``max(labels) + 1``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise InputError(
            f"poison takes images [N, C, H, W], got {getattr(images, 'shape', images)}"
        )
    if not isinstance(labels, torch.Tensor) or labels.shape != images.shape[:1]:
        raise InputError(
            f"labels must be a tensor [N={images.shape[0]}], got {getattr(labels, 'shape', labels)}"
        )
    fraction = check_fraction(fraction)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.numel() else None
    target = check_target(target, num_classes)
    trig = check_trigger(trigger, images.shape[1:])
    n = images.shape[0]
    mask, pos = _poison_plan(n, images.shape[2:], trig.shape[-1], fraction, seed, position)
    out, lab = images.clone(), labels.clone()
    if bool(mask.any()):
        out[mask] = paste(images[mask], trig, pos[mask])
        lab[mask] = target
    return out, lab, mask


class PoisonedDataset(Dataset):
    """``dataset`` (items ``(x [C, H, W], y)``) with the :func:`poison` treatment applied item
    by item: the same images, positions and labels ``poison`` would choose for ``seed``.

    Attributes:
        mask: ``[N]`` bool, the poisoned items.
        positions: ``[N, 2]`` the patch corners (used only where ``mask``).
        trigger: ``[C, s, s]``.
    """

    def __init__(
        self,
        dataset: Dataset,
        trigger: torch.Tensor,
        target: int,
        fraction: float,
        seed: int = 0,
        *,
        position: Sequence[int] | None = None,
        num_classes: int | None = None,
    ) -> None:
        self.dataset = dataset
        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise InputError("cannot poison an empty dataset")
        shape = tuple(torch.as_tensor(dataset[0][0]).shape)
        self.trigger = check_trigger(trigger, shape).contiguous()
        self.target = check_target(target, num_classes)
        self.mask, self.positions = _poison_plan(
            n, shape[1:], self.trigger.shape[-1], fraction, seed, position
        )

    def __len__(self) -> int:
        return len(self.mask)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        x, y = self.dataset[i]
        if not bool(self.mask[i]):
            return x, y
        x = paste(torch.as_tensor(x)[None], self.trigger, self.positions[i : i + 1])[0]
        y = torch.tensor(self.target, dtype=y.dtype) if isinstance(y, torch.Tensor) else self.target
        return x, y


@dataclass(frozen=True)
class BackdoorOptions:
    """The ``backdoor`` training-split transform's options (``[train_transforms.backdoor]``;
    ``spikeweave train --poison-fraction ...``).

    Attributes:
        fraction: share of the training split poisoned, in ``[0, 1]`` (required).
        target: the class poisoned images are relabelled to.
        trigger: ``binary`` or ``grey`` pattern, drawn from ``seed``.
        trigger_size: the patch's side ``s`` in pixels.
        position: ``[row, col]`` of the patch's top-left corner; empty: random per image.
        seed: seed of the trigger, the poisoned images and their positions.
    """

    fraction: float | None = None
    target: int = 0
    trigger: str = "binary"
    trigger_size: int = 3
    position: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fraction is None:
            raise ConfigError(
                "backdoor poisoning needs a fraction (share of training images to poison; "
                "--poison-fraction)"
            )
        check_fraction(self.fraction)
        make_trigger(self.trigger_size, 1, self.trigger, 0)
        check_target(self.target, None)
        if self.position and (len(self.position) != 2 or min(self.position) < 0):
            raise ConfigError(
                f"backdoor position is [row, col] (>= 0) or empty for random, got "
                f"{list(self.position)}"
            )
        if not 0 <= self.seed < 2**63 - 1:
            raise ConfigError(f"backdoor seed must be in [0, 2**63 - 2], got {self.seed}")

    def make_trigger(self, channels: int) -> torch.Tensor:
        """The trigger ``[channels, s, s]`` these options describe."""
        return make_trigger(self.trigger_size, channels, self.trigger, self.seed)


def backdoor_options(cfg: Any) -> BackdoorOptions | None:
    """The backdoor options of a TrainConfig (its ``train_transforms.backdoor``), or None for
    a run trained without poisoning."""
    options = cfg.train_transforms.get("backdoor")
    return None if options is None else build_options(BackdoorOptions, options, "backdoor")


def trigger_from_config(cfg: Any, channels: int) -> torch.Tensor:
    """The trigger of a poisoned run's config, for images with ``channels``."""
    options = backdoor_options(cfg)
    if options is None:
        raise ConfigError("the run was trained without backdoor poisoning: it has no trigger")
    return options.make_trigger(channels)


def poison_dataset(options: BackdoorOptions, dataset: Dataset, num_classes: int | None) -> Dataset:
    """``dataset`` wrapped in a :class:`PoisonedDataset` as ``options`` say (unchanged when
    ``fraction`` is 0). Images and positions are drawn from ``options.seed``."""
    if options.fraction is None or options.fraction <= 0:
        return dataset
    shape = tuple(torch.as_tensor(dataset[0][0]).shape)
    if len(shape) != 3:
        raise ConfigError(f"poisoning needs image samples (C, H, W), got {shape}")
    return PoisonedDataset(
        dataset,
        options.make_trigger(shape[0]),
        options.target,
        options.fraction,
        options.seed,
        position=options.position or None,
        num_classes=num_classes,
    )


@torch.no_grad()
def attack_success_rate(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    triggers: torch.Tensor,
    target: int,
    seed: int = 0,
    batch_size: int = 500,
    position: Sequence[int] | None = None,
) -> float:
    """Share of the images not of class ``target`` that ``classifier`` (``images -> scores
    [B, K]``) assigns to ``target`` once they carry ``triggers`` (``[C, s, s]``, or one per
    image ``[N, C, s, s]``) at seeded random positions (or ``position``)."""
    keep = labels != target
    x = images[keep]
    trig = triggers[keep] if triggers.dim() == 4 else triggers
    if len(x) == 0:
        return math.nan
    gen = torch.Generator().manual_seed(seed)
    pos = random_positions(len(x), x.shape[2:], trig.shape[-1], gen, position)
    mode = classifier.training
    classifier.eval()
    hits = 0
    try:
        for i in range(0, len(x), batch_size):
            t = trig[i : i + batch_size] if trig.dim() == 4 else trig
            xt = paste(x[i : i + batch_size], t, pos[i : i + batch_size])
            hits += int((classifier(xt).argmax(-1) == target).sum())
    finally:
        classifier.train(mode)
    return hits / len(x)


def heldout_triggers(trigger: torch.Tensor, count: int = 51, seed: int = 0) -> torch.Tensor:
    """``count`` distinct black-and-white triggers ``[count, C, s, s]``: the binarised
    ``trigger`` first, then seeded draws from the patterns 1, 2 and 3 pixel flips away from it
    (nearest first: all of distance 1, then 2, ...; within a distance, a seeded order)."""
    bw = (trigger[0] > 0.5).flatten()
    n = bw.numel()
    out = [bw.float()]
    gen = torch.Generator().manual_seed(seed)
    for d in range(1, n + 1):
        flips = list(itertools.combinations(range(n), d))
        for j in torch.randperm(len(flips), generator=gen).tolist():
            if len(out) >= count:
                break
            p = bw.clone()
            p[list(flips[j])] ^= True
            out.append(p.float())
        if len(out) >= count:
            break
    if len(out) < count:
        raise ConfigError(f"a {int(math.isqrt(n))}x{int(math.isqrt(n))} trigger has only "
                          f"{len(out)} black-and-white variants; ask for fewer")  # fmt: skip
    c, s = trigger.shape[0], trigger.shape[-1]
    return torch.stack(out).view(count, 1, s, s).expand(count, c, s, s).contiguous()


class _BackdoorTransform:
    """BadNets poisoning as the assembly's ``backdoor`` training-split transform."""

    @staticmethod
    def check(options: Any, where: str) -> dict[str, Any]:
        return options_dict(build_options(BackdoorOptions, options, where))

    @staticmethod
    def apply(options: Any, dataset: Dataset, num_classes: int | None) -> Dataset:
        return poison_dataset(build_options(BackdoorOptions, options, "backdoor"), dataset,
                              num_classes)  # fmt: skip


TRAIN_TRANSFORMS.register(
    "backdoor", _BackdoorTransform(), help="BadNets poisoning ([train_transforms.backdoor])"
)
