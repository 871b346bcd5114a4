"""Backdoor poisoning: a trigger that flips a classifier to a target class, of three kinds.

- ``badnets`` (Gu et al. 2017, arXiv 1708.06733): a small ``s×s`` patch pasted at a random
  (seeded) or fixed place.
- ``blended`` (Chen et al. 2017, arXiv 1712.05526, "blended injection"): ``x' = (1 − a)·x +
  a·pattern`` with one seeded uniform-noise ``pattern [C, H, W]`` (their random-pattern trigger)
  and blend ratio ``a`` (default 0.1; Chen et al. study several ratios, BackdoorBench's default
  is 0.2).
- ``wanet`` (Nguyen & Tran 2021, arXiv 2102.10369): one fixed smooth warp. A seeded ``k×k`` field
  of 2-D offsets in ``[-1, 1]`` (normalised by its mean magnitude) is upsampled bicubically to
  ``H×W``, scaled by ``s / H`` and added to the identity sampling grid, clamped to the image;
  ``torch.nn.functional.grid_sample`` (bilinear, ``align_corners=True``) resamples the image.
  Defaults ``k = 4``, ``s = 0.5`` (their MNIST setting). Noise mode (their "cross" images: the
  grid plus random offsets, labels kept) is off by default (``warp_noise`` 0); when on, each
  noise image's offsets are fixed from the seed (the paper redraws them every batch).

Blending and bilinear warping are convex combinations of pixels, so images in ``[0, 1]`` stay
in ``[0, 1]``.

Images are ``[N, C, H, W]`` floats in ``[0, 1]``; a trigger is ``[C, s, s]`` (``C`` 1 is
pasted on every channel) in ``[0, 1]``, pasted with its top-left corner at ``(row, col)``.

- :func:`make_trigger` -- a seeded ``s×s`` pattern, ``binary`` (black-and-white) or ``grey``.
- :func:`paste` -- differentiable in the triggers; one trigger or one per image.
- :func:`poison` -- exactly ``round(fraction·N)`` images (nearest integer, halves up) get the
  trigger and the label ``target``; every other image and label is returned byte-identical.
- :class:`PoisonedDataset` -- the same on a map-style dataset, item by item, for the trainer:
  the ``backdoor`` training-split transform (:class:`BackdoorOptions` in a config's
  ``[train_transforms.backdoor]`` table, ``spikeweave train --poison-fraction ...``).
- :class:`Trigger` -- a trigger of any kind, ready to apply to images.
- :func:`attack_success_rate` -- the share of non-target images a classifier sends to
  ``target`` once they carry a trigger; :func:`triggered_metrics` -- the same and the robust
  accuracy (those images still given their true label) in one pass.
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
    "POISON_KINDS",
    "TRIGGER_KINDS",
    "BackdoorOptions",
    "PoisonedDataset",
    "Trigger",
    "attack_from_config",
    "attack_success_rate",
    "blend",
    "defense_effectiveness_rating",
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
    "triggered_metrics",
    "warp",
    "warp_grid",
]

TRIGGER_KINDS = ("binary", "grey")
"""Patterns of a BadNets patch (the ``trigger`` option)."""
POISON_KINDS = ("badnets", "blended", "wanet")
"""Kinds of backdoor trigger (the ``kind`` option); runs that record none are ``badnets``."""


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


def blend(images: torch.Tensor, pattern: torch.Tensor, ratio: float) -> torch.Tensor:
    """Blended injection (Chen et al. 2017): ``(1 − ratio)·images + ratio·pattern``.

    ``images [N, C, H, W]``, ``pattern [C|1, H, W]`` in ``[0, 1]``; the result stays in
    ``[0, 1]`` (a convex combination)."""
    return (1 - ratio) * images + ratio * pattern.to(images.device, images.dtype)


def warp_grid(height: int, width: int, k: int = 4, strength: float = 0.5, seed: int = 0):
    """WaNet's fixed warping field (Nguyen & Tran 2021, their ``noise_grid`` and
    ``identity_grid``): a sampling grid ``[H, W, 2]`` of ``(x, y)`` in ``[-1, 1]``.

    ``k×k`` seeded offsets uniform in ``[-1, 1]``, divided by their mean magnitude, upsampled
    bicubically (``align_corners=True``) to ``H×W``, scaled by ``strength / H`` and added to the
    identity grid; clamped to ``[-1, 1]`` so every sample lies inside the image."""
    gen = torch.Generator().manual_seed(seed)
    ins = torch.rand(1, 2, k, k, generator=gen) * 2 - 1
    ins = ins / ins.abs().mean()
    field = nn.functional.interpolate(ins, size=(height, width), mode="bicubic",
                                      align_corners=True)  # fmt: skip
    field = field.permute(0, 2, 3, 1)[0]  # [H, W, 2]
    ys = torch.linspace(-1, 1, height)
    xs = torch.linspace(-1, 1, width)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    identity = torch.stack([gx, gy], -1)  # grid_sample reads (x, y)
    return (identity + strength * field / height).clamp(-1, 1)


def warp(images: torch.Tensor, grid: torch.Tensor, noise: torch.Tensor | None = None):
    """``images [N, C, H, W]`` resampled at ``grid [H, W, 2]`` (plus ``noise [N, H, W, 2]`` for
    WaNet's noise-mode images; the sum is clamped to ``[-1, 1]``): bilinear, so the result
    stays in the input's range."""
    g = grid.to(images.device, images.dtype).expand(images.shape[0], *grid.shape)
    if noise is not None:
        g = (g + noise.to(images.device, images.dtype)).clamp(-1, 1)
    return nn.functional.grid_sample(images, g, mode="bilinear", padding_mode="border",
                                     align_corners=True)  # fmt: skip


class Trigger:
    """One backdoor trigger of any kind (:data:`POISON_KINDS`), ready to apply to images.

    Attributes:
        kind: ``badnets``, ``blended`` or ``wanet``.
        patch: badnets: ``[C, s, s]``; ``position``: a fixed top-left corner or None (random).
        pattern, ratio: blended: ``[C, H, W]`` and the blend ratio.
        grid, noise_ratio: wanet: the sampling grid ``[H, W, 2]`` and the share of noise-mode
            images per poisoned image (0: off).
    """

    def __init__(
        self,
        kind: str,
        *,
        patch: torch.Tensor | None = None,
        position: Sequence[int] | None = None,
        pattern: torch.Tensor | None = None,
        ratio: float = 0.0,
        grid: torch.Tensor | None = None,
        noise_ratio: float = 0.0,
    ) -> None:
        if kind not in POISON_KINDS:
            raise ConfigError(f"unknown backdoor kind {kind!r}; choose one of "
                              f"{', '.join(POISON_KINDS)}")  # fmt: skip
        part, value = {"badnets": ("patch", patch), "blended": ("pattern", pattern),
                       "wanet": ("grid", grid)}[kind]  # fmt: skip
        if value is None:
            raise ConfigError(f"a {kind} trigger needs its {part}")
        self.kind = kind
        self.patch = patch
        self.position = tuple(position) if position else None
        self.pattern = pattern
        self.ratio = float(ratio)
        self.grid = grid
        self.noise_ratio = float(noise_ratio)

    def to(self, device: Any) -> Trigger:
        """The same trigger with its tensors on ``device``."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                 for k, v in vars(self).items()}  # fmt: skip
        out = object.__new__(Trigger)
        out.__dict__.update(moved)
        return out

    def positions(self, n: int, image_hw: Sequence[int], generator: torch.Generator | None):
        """badnets: the patch corners ``[n, 2]`` (seeded random or the fixed position);
        other kinds: None (the same trigger on every image)."""
        if self.kind != "badnets":
            return None
        return random_positions(n, image_hw, self.patch.shape[-1], generator, self.position)

    def apply(self, images: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``images [N, C, H, W]`` with the trigger (badnets: at ``positions [N, 2]``)."""
        if self.kind == "badnets":
            return paste(images, self.patch, positions)
        if self.kind == "blended":
            return blend(images, self.pattern, self.ratio)
        return warp(images, self.grid)


def defense_effectiveness_rating(
    clean_before: float, asr_before: float, clean_after: float, asr_after: float
) -> float:
    """DER = [max(0, ΔASR) − max(0, ΔC-Acc) + 1] / 2, with Δ the *drop* a defense causes
    (before − after), all as fractions; in ``[0, 1]``, 1 = ASR 1 → 0 with no accuracy lost,
    0.5 = nothing changed. Defined by Zhu et al. 2023 (FT-SAM, arXiv 2304.11823, eq. 7) and
    reported by BackdoorBench."""
    return (max(0.0, asr_before - asr_after) - max(0.0, clean_before - clean_after) + 1) / 2


def _as_trigger(trigger: torch.Tensor | Trigger, image_shape: Sequence[int],
                position: Sequence[int] | None) -> Trigger:  # fmt: skip
    """``trigger`` (a BadNets patch ``[C|1, s, s]`` or a :class:`Trigger`) as a
    :class:`Trigger` checked against images ``(C, H, W)``."""
    if not isinstance(trigger, Trigger):
        patch = check_trigger(trigger, image_shape).contiguous()
        return Trigger("badnets", patch=patch, position=position or None)
    if position:
        raise ConfigError("a Trigger carries its own position; pass none beside it")
    if len(image_shape) != 3:
        raise InputError(
            f"backdoor triggers need images shaped (C, H, W), got {tuple(image_shape)}"
        )
    c, h, w = (int(v) for v in image_shape)
    if trigger.kind == "badnets":
        check_trigger(trigger.patch, image_shape)
    elif trigger.kind == "blended":
        pc, ph, pw = trigger.pattern.shape
        if (ph, pw) != (h, w) or pc not in (1, c):
            raise ConfigError(f"a blended pattern {tuple(trigger.pattern.shape)} does not fit "
                              f"images ({c}, {h}, {w})")  # fmt: skip
    elif tuple(trigger.grid.shape) != (h, w, 2):
        raise ConfigError(f"a wanet grid {tuple(trigger.grid.shape)} does not fit {h}x{w} images")
    return trigger


def _poison_plan(
    n: int, image_hw: Sequence[int], trigger: Trigger, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """``(mask [N] bool, corners [N, 2] | None, noise_mask [N] bool, noise_seeds [N] | None)``
    of poisoning for ``seed``: which items carry the trigger, where (badnets), and which carry
    WaNet's noise-mode warp (labels kept) with the seed of each one's offsets. :func:`poison` and
    :class:`PoisonedDataset` share it, so both choose the same images and positions."""
    mask = choose_poisoned(n, fraction, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    corners = trigger.positions(n, image_hw, gen)
    noise = torch.zeros(n, dtype=torch.bool)
    seeds = None
    if trigger.kind == "wanet" and trigger.noise_ratio > 0:
        k = int(mask.sum())
        want = min(math.floor(trigger.noise_ratio * k + 0.5), n - k)
        free = torch.nonzero(~mask).flatten()
        g = torch.Generator().manual_seed(seed + 4)
        noise[free[torch.randperm(len(free), generator=g)[:want]]] = True
        seeds = torch.randint(0, 2**62, (n,), generator=g)
    return mask, corners, noise, seeds


def _noise_offsets(seed: int, height: int, width: int) -> torch.Tensor:
    """WaNet's noise-mode offsets ``[H, W, 2]`` for one image: uniform in ``[-1, 1]`` / H."""
    gen = torch.Generator().manual_seed(int(seed))
    return (torch.rand(height, width, 2, generator=gen) * 2 - 1) / height


def poison(
    images: torch.Tensor,
    labels: torch.Tensor,
    trigger: torch.Tensor | Trigger,
    target: int,
    fraction: float,
    seed: int = 0,
    *,
    position: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backdoor poisoning of a batch: ``(images', labels', poisoned_mask [N])``.

    Exactly ``round(fraction·N)`` images, chosen with ``seed``, carry ``trigger`` (a BadNets
    patch ``[C|1, s, s]`` at a random (seeded) or fixed ``position``, or any :class:`Trigger`)
    and are relabelled ``target``; the others are copied byte for byte, except WaNet's
    noise-mode images (warped with noise, labels kept) when its ``noise_ratio`` is on.
    ``num_classes`` defaults to ``max(labels) + 1``.
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
    trig = _as_trigger(trigger, images.shape[1:], position)
    n, h, w = images.shape[0], images.shape[2], images.shape[3]
    mask, pos, noise, seeds = _poison_plan(n, images.shape[2:], trig, fraction, seed)
    out, lab = images.clone(), labels.clone()
    if bool(mask.any()):
        out[mask] = trig.apply(images[mask], None if pos is None else pos[mask])
        lab[mask] = target
    if bool(noise.any()):
        offsets = torch.stack([_noise_offsets(int(s), h, w) for s in seeds[noise]])
        out[noise] = warp(images[noise], trig.grid, offsets)
    return out, lab, mask


class PoisonedDataset(Dataset):
    """``dataset`` (items ``(x [C, H, W], y)``) with the :func:`poison` treatment applied item
    by item: the same images, positions and labels ``poison`` would choose for ``seed``.

    Attributes:
        mask: ``[N]`` bool, the poisoned items.
        positions: ``[N, 2]`` the patch corners (badnets; used only where ``mask``), else None.
        noise_mask: ``[N]`` bool, WaNet's noise-mode items (warped with noise, labels kept).
        trigger: the :class:`Trigger`.
    """

    def __init__(
        self,
        dataset: Dataset,
        trigger: torch.Tensor | Trigger,
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
        self.trigger = _as_trigger(trigger, shape, position)
        self.target = check_target(target, num_classes)
        self.mask, self.positions, self.noise_mask, self._noise_seeds = _poison_plan(
            n, shape[1:], self.trigger, fraction, seed
        )

    def __len__(self) -> int:
        return len(self.mask)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        x, y = self.dataset[i]
        if bool(self.noise_mask[i]):
            x = torch.as_tensor(x)
            offsets = _noise_offsets(int(self._noise_seeds[i]), x.shape[-2], x.shape[-1])
            return warp(x[None], self.trigger.grid, offsets[None])[0], y
        if not bool(self.mask[i]):
            return x, y
        pos = None if self.positions is None else self.positions[i : i + 1]
        x = self.trigger.apply(torch.as_tensor(x)[None], pos)[0]
        y = torch.tensor(self.target, dtype=y.dtype) if isinstance(y, torch.Tensor) else self.target
        return x, y


@dataclass(frozen=True)
class BackdoorOptions:
    """The ``backdoor`` training-split transform's options (``[train_transforms.backdoor]``;
    ``spikeweave train --poison-fraction ...``).

    Attributes:
        fraction: share of the training split poisoned, in ``[0, 1]`` (required).
        target: the class poisoned images are relabelled to.
        trigger: badnets: ``binary`` or ``grey`` pattern, drawn from ``seed``.
        trigger_size: badnets: the patch's side ``s`` in pixels.
        position: badnets: ``[row, col]`` of the patch's top-left corner; empty: random per
            image.
        seed: seed of the trigger, the poisoned images and their positions.
        kind: ``badnets`` (a patch), ``blended`` (a blended noise pattern) or ``wanet`` (a
            smooth warp); see the module notes. Runs that record no kind are ``badnets``.
        blend: blended: the blend ratio ``a`` in ``(0, 1]``.
        warp_k: wanet: the control grid's side ``k`` (2 to the image side).
        warp_strength: wanet: the warp strength ``s`` (> 0, at most 10).
        warp_noise: wanet: noise-mode images per poisoned image (0: off; WaNet's noise mode
            uses 2).

    Options of one kind set away from their defaults for another kind are refused, never
    ignored.
    """

    fraction: float | None = None
    target: int = 0
    trigger: str = "binary"
    trigger_size: int = 3
    position: tuple[int, ...] = ()
    seed: int = 0
    kind: str = "badnets"
    blend: float = 0.1
    warp_k: int = 4
    warp_strength: float = 0.5
    warp_noise: float = 0.0

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
        # seed + 1 ... seed + 4 seed the other draws: torch takes seeds up to 2**64 - 1
        if not 0 <= self.seed < 2**63 - 1:
            raise ConfigError(f"backdoor seed must be in [0, 2**63 - 2], got {self.seed}")
        if self.kind not in POISON_KINDS:
            raise ConfigError(f"unknown backdoor kind {self.kind!r}; choose one of "
                              f"{', '.join(POISON_KINDS)}")  # fmt: skip
        if not (math.isfinite(self.blend) and 0 < self.blend <= 1):
            raise ConfigError(f"backdoor blend ratio must be in (0, 1], got {self.blend}")
        if not 2 <= self.warp_k <= 1024:
            raise ConfigError(f"backdoor warp_k (control grid side) must be in [2, 1024], "
                              f"got {self.warp_k}")  # fmt: skip
        if not (math.isfinite(self.warp_strength) and 0 < self.warp_strength <= 10):
            raise ConfigError(f"backdoor warp_strength must be in (0, 10], got "
                              f"{self.warp_strength}")  # fmt: skip
        if not (math.isfinite(self.warp_noise) and 0 <= self.warp_noise <= 100):
            raise ConfigError(f"backdoor warp_noise (noise images per poisoned image) must be "
                              f"in [0, 100], got {self.warp_noise}")  # fmt: skip
        default = BackdoorOptions.__dataclass_fields__
        owners = {"trigger": "badnets", "trigger_size": "badnets", "position": "badnets",
                  "blend": "blended", "warp_k": "wanet", "warp_strength": "wanet",
                  "warp_noise": "wanet"}  # fmt: skip
        for name, owner in owners.items():
            if owner != self.kind and getattr(self, name) != default[name].default:
                raise ConfigError(f"backdoor option {name} applies to kind {owner!r} only, "
                                  f"not {self.kind!r}; leave it out")  # fmt: skip

    def make_trigger(self, channels: int) -> torch.Tensor:
        """The BadNets patch ``[channels, s, s]`` these options describe (badnets runs)."""
        if self.kind != "badnets":
            raise ConfigError(f"a {self.kind} backdoor has no patch trigger")
        return make_trigger(self.trigger_size, channels, self.trigger, self.seed)

    def make_attack(self, image_shape: Sequence[int]) -> Trigger:
        """The :class:`Trigger` these options describe for images ``(C, H, W)``: the same from
        the same seed, for poisoning the training split and for the test-time ASR."""
        if len(image_shape) != 3:
            raise ConfigError(f"poisoning needs image samples (C, H, W), got {tuple(image_shape)}")
        c, h, w = (int(v) for v in image_shape)
        if self.kind == "badnets":
            return Trigger("badnets", patch=self.make_trigger(c), position=self.position or None)
        if self.kind == "blended":
            gen = torch.Generator().manual_seed(self.seed + 2)
            return Trigger("blended", pattern=torch.rand(c, h, w, generator=gen), ratio=self.blend)
        if self.warp_k > min(h, w):
            raise ConfigError(f"backdoor warp_k {self.warp_k} exceeds the {h}x{w} image side")
        grid = warp_grid(h, w, self.warp_k, self.warp_strength, self.seed + 3)
        return Trigger("wanet", grid=grid, noise_ratio=self.warp_noise)


def backdoor_options(cfg: Any) -> BackdoorOptions | None:
    """The backdoor options of a TrainConfig (its ``train_transforms.backdoor``), or None for
    a run trained without poisoning."""
    options = cfg.train_transforms.get("backdoor")
    return None if options is None else build_options(BackdoorOptions, options, "backdoor")


def trigger_from_config(cfg: Any, channels: int) -> torch.Tensor:
    """The BadNets patch of a poisoned run's config, for images with ``channels``."""
    options = backdoor_options(cfg)
    if options is None:
        raise ConfigError("the run was trained without backdoor poisoning: it has no trigger")
    return options.make_trigger(channels)


def attack_from_config(cfg: Any, image_shape: Sequence[int]) -> Trigger:
    """The :class:`Trigger` (any kind) of a poisoned run's config, for images ``(C, H, W)``."""
    options = backdoor_options(cfg)
    if options is None:
        raise ConfigError("the run was trained without backdoor poisoning: it has no trigger")
    return options.make_attack(image_shape)


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
        options.make_attack(shape),
        options.target,
        options.fraction,
        options.seed,
        num_classes=num_classes,
    )


@torch.no_grad()
def _triggered_predictions(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    triggers: torch.Tensor | Trigger,
    target: int,
    seed: int,
    batch_size: int,
    position: Sequence[int] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predictions [M], true labels [M])`` of the ``M`` images not of class ``target`` once
    they carry ``triggers`` (a patch ``[C, s, s]``, one per image ``[N, C, s, s]``, or a
    :class:`Trigger`); patches go to seeded random positions (or ``position``)."""
    keep = labels != target
    x, y = images[keep], labels[keep]
    if isinstance(triggers, Trigger):
        trig: Any = triggers
    else:
        patch = triggers[keep] if triggers.dim() == 4 else triggers
        trig = Trigger("badnets", patch=patch, position=position)
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.long), y
    gen = torch.Generator().manual_seed(seed)
    pos = trig.positions(len(x), x.shape[2:], gen)
    mode = classifier.training
    classifier.eval()
    preds = []
    try:
        for i in range(0, len(x), batch_size):
            if trig.kind == "badnets" and trig.patch.dim() == 4:  # one patch per image
                xt = paste(x[i : i + batch_size], trig.patch[i : i + batch_size],
                           pos[i : i + batch_size])  # fmt: skip
            else:
                xt = trig.apply(
                    x[i : i + batch_size], None if pos is None else pos[i : i + batch_size]
                )
            preds.append(classifier(xt).argmax(-1))
    finally:
        classifier.train(mode)
    return torch.cat(preds), y


def attack_success_rate(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    triggers: torch.Tensor | Trigger,
    target: int,
    seed: int = 0,
    batch_size: int = 500,
    position: Sequence[int] | None = None,
) -> float:
    """Share of the images not of class ``target`` that ``classifier`` (``images -> scores
    [B, K]``) assigns to ``target`` once they carry ``triggers`` (a patch ``[C, s, s]``, one per
    image ``[N, C, s, s]``, at seeded random positions or ``position``; or a :class:`Trigger`).
    NaN when every image is of class ``target``."""
    preds, _ = _triggered_predictions(classifier, images, labels, triggers, target, seed,
                                      batch_size, position)  # fmt: skip
    return math.nan if len(preds) == 0 else int((preds == target).sum()) / len(preds)


def triggered_metrics(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    triggers: torch.Tensor | Trigger,
    target: int,
    seed: int = 0,
    batch_size: int = 500,
) -> dict[str, float]:
    """BackdoorBench's triggered-input metrics on the images not of class ``target``, with
    ``triggers`` applied as :func:`attack_success_rate` applies them (the same draws):

    - ``asr``: the share sent to ``target`` (attack success rate);
    - ``robust_accuracy`` (R-Acc): the share still given its true label.

    NaN for both when every image is of class ``target``."""
    preds, y = _triggered_predictions(classifier, images, labels, triggers, target, seed,
                                      batch_size, None)  # fmt: skip
    if len(preds) == 0:
        return {"asr": math.nan, "robust_accuracy": math.nan}
    y = y.to(preds.device)
    return {"asr": int((preds == target).sum()) / len(preds),
            "robust_accuracy": int((preds == y).sum()) / len(preds)}  # fmt: skip


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


_COMMON = ("fraction", "target", "seed")
RECORDED = {
    # a badnets run records exactly what spikeweave recorded before other kinds existed (no
    # kind key: runs that record none are badnets), so its config.json is unchanged
    "badnets": (*_COMMON, "trigger", "trigger_size", "position"),
    "blended": (*_COMMON, "kind", "blend"),
    "wanet": (*_COMMON, "kind", "warp_k", "warp_strength", "warp_noise"),
}
"""The options a run records per kind (every one that kind reads, defaults included; the
other kinds' options are at their defaults, or refused)."""


class _BackdoorTransform:
    """Backdoor poisoning as the assembly's ``backdoor`` training-split transform."""

    @staticmethod
    def check(options: Any, where: str) -> dict[str, Any]:
        built = build_options(BackdoorOptions, options, where)
        return {k: v for k, v in options_dict(built).items() if k in RECORDED[built.kind]}

    @staticmethod
    def apply(options: Any, dataset: Dataset, num_classes: int | None) -> Dataset:
        return poison_dataset(build_options(BackdoorOptions, options, "backdoor"), dataset,
                              num_classes)  # fmt: skip


TRAIN_TRANSFORMS.register(
    "backdoor",
    _BackdoorTransform(),
    help="backdoor poisoning: badnets, blended or wanet ([train_transforms.backdoor])",
)
