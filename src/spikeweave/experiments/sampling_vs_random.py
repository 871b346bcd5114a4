"""Experiment ``sampling-vs-random``: a learned spiking sampler against random and
busiest-pixel sampling, **at equal stored bits**.

Claim (methods.md §8, abstract only): pixels kept by a spiking sampling network reconstruct the
image better than random sampling. Every arm copies its kept pixels and trains a decoder of
the same architecture to fill the rest (:mod:`spikeweave.compression.sampler`); the arms
differ in the mask: ``spiking`` (learned per image by LIF sampling neurons), ``random``
(uniform, seeded) and ``activity`` (the k busiest = brightest pixels of the image).

**Bit accounting** (:func:`~spikeweave.compression.sampler.stored_bits`). A budget is a number
of bits per image; each arm keeps the most pixels whose storage fits it
(:func:`~spikeweave.compression.sampler.samples_for_budget`):

- every kept pixel stores its values at 8 bits per channel;
- ``random`` stores no positions: the decoder redraws the mask from the seed (one per file);
- ``spiking`` and ``activity`` store their positions, ``ceil(log2 C(H·W, k))`` bits per image
  (an enumerative code of the k-subset): both masks are computed from the image, which the
  decoder does not have, so running the sampler at the decoder cannot recompute them.

The budgets are what random sampling stores at 5 %, 10 % and 25 % of the pixels
(``8 · C · round(rate · H · W)`` bits); on 28×28 images the position-storing arms then keep
21, 46 and 132 pixels where random keeps 39, 78 and 196. All arms store at most the budget,
and one more pixel would not fit.

**Measures**, on the whole test split, per image and paired over seeds: frame PSNR of the
reconstruction (clamped to [0, 1]), and the accuracy of one classifier (spikeweave's
``convnet``, trained on the original training images, never on reconstructions) on each
arm's reconstructions. The parts, fixed before any run: for each budget, the spiking sampler
beats each baseline in PSNR (seed × image two-way paired difference, the smallest gain that
matters :data:`PSNR_MARGIN_DB`) and in classifier accuracy (:func:`~.stats.accuracy_part`,
:data:`ACCURACY_MARGIN_POINTS`). The one choice, the *better baseline* (the default candidate
for sampled mode), is made on validation PSNR (held out of the training split), never on the
test set.

Full settings: Fashion-MNIST, 5,000 validation images held out of the 60,000 training images,
a stated ``train_size`` of the rest (CPU), the 10,000 test images whole. ``--quick``: mnist5k,
256 training / 64 validation / 64 test images, one epoch.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from ..errors import ConfigError
from ..training import TrainConfig
from .base import Experiment, ExperimentContext, register
from .report import Report, Table, fmt_pm, mean_std
from .stats import Difference, accuracy_part, difference_part, grid_difference, overall

__all__ = [
    "SamplingVsRandom",
    "SamplingSettings",
    "settings_for",
    "budgets_for",
    "psnr_per_image",
    "psnr_difference",
    "BUDGET_RATES",
    "ARMS",
    "BASELINES",
    "PSNR_MARGIN_DB",
    "ACCURACY_MARGIN_POINTS",
]

BUDGET_RATES = (0.05, 0.10, 0.25)
"""Budgets: the bits random sampling stores at these fractions of the pixels."""
ARMS = ("spiking", "random", "activity")
BASELINES = ("random", "activity")
PSNR_MARGIN_DB = 0.5
"""Smallest PSNR gain of the spiking sampler over a baseline that matters (dB; fixed before
any run): an interval whose upper end stays below it decides "not held"."""
ACCURACY_MARGIN_POINTS = 1.0
"""Smallest classifier-accuracy gain that matters (points; fixed before any run)."""
PSNR_CAP_DB = 100.0
"""PSNR of an exact reconstruction (MSE 0) is capped here (10·log10(1/1e-10))."""
SPLIT_SEED = 0
"""Seed of the permutation that holds the validation images out of the training split."""
CLASSIFIER_SEED = 0
MASK_SEED = 10_000
"""Evaluation masks of the random arm are drawn from ``MASK_SEED + seed`` (the stored seed)."""


@dataclass(frozen=True)
class SamplingSettings:
    """Data sizes and budgets of one run (0 = the whole split)."""

    dataset: str = "fashion-mnist"
    train_size: int = 5000
    val_size: int = 5000
    test_size: int = 0
    epochs: int = 8
    classifier_epochs: int = 4
    batch_size: int = 64

    def describe(self) -> str:
        """One line for the report's setup."""
        train = f"{self.train_size}" if self.train_size else "all remaining"
        test = f"the first {self.test_size}" if self.test_size else "all"
        return (
            f"{self.dataset}: {self.val_size} validation images held out of the training split "
            f"(permutation seed {SPLIT_SEED}), {train} training images, {test} test images"
        )


def settings_for(quick: bool) -> SamplingSettings:
    """The full experiment or the small ``--quick`` one."""
    if quick:
        return SamplingSettings("mnist5k", 256, 64, 64, epochs=1, classifier_epochs=1)
    return SamplingSettings()


def budgets_for(pixels: int, channels: int) -> list[int]:
    """Bits per image of each budget: what random sampling stores at BUDGET_RATES."""
    from ..compression.sampler import VALUE_BITS

    return [VALUE_BITS * channels * round(r * pixels) for r in BUDGET_RATES]


def psnr_per_image(recon: torch.Tensor, images: torch.Tensor) -> np.ndarray:
    """PSNR (dB, peak 1) of each reconstruction ``[N, C, H, W]`` (clamped to [0, 1]) against
    ``images`` ``[N, C, H, W]`` in [0, 1]: float64 ``[N]``, capped at PSNR_CAP_DB."""
    mse = ((recon.clamp(0, 1) - images) ** 2).flatten(1).mean(1).double()
    floor = 10 ** (-PSNR_CAP_DB / 10)
    return (-10 * torch.log10(mse.clamp_min(floor))).numpy()


def psnr_difference(a: Any, b: Any) -> Difference:
    """Paired PSNR difference ``a − b`` (dB) from per-image values ``[seeds, images]`` on one
    test set: the seed × image estimator of :mod:`.stats` (:func:`~.stats.two_way`); not
    testable below MIN_SEEDS seeds or with no spread."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 2 or d.size == 0:
        raise ValueError("paired PSNR needs both arms' [seeds, images] values")
    test = "seed × image paired PSNR difference (two-way random effects, Satterthwaite t)"
    return grid_difference(d, test, relative=True)


def _stack(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [N, C, H, W], labels [N])`` of a dataset, in its order."""
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    return torch.stack(list(xs)), torch.as_tensor([int(y) for y in ys])


def _splits(s: SamplingSettings) -> tuple[Dataset, Dataset, Dataset]:
    """``(train, validation, test)``: validation held out of the training split by a fixed
    permutation; the test split in its stored order."""
    from .. import data

    full = data.load(s.dataset, "train")
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(full))
    if s.val_size >= len(full):
        raise ConfigError(f"{s.dataset}: {s.val_size} validation images leave none to train on")
    val = Subset(full, perm[: s.val_size].tolist())
    rest = perm[s.val_size :]
    train = Subset(full, (rest[: s.train_size] if s.train_size else rest).tolist())
    test = data.load(s.dataset, "test")
    if s.test_size:
        test = Subset(test, range(min(s.test_size, len(test))))
    return train, val, test


def _reconstruct_all(
    model: torch.nn.Module, images: torch.Tensor, steps: int, seed: int, batch: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reconstructions, masks)`` of ``images`` [N, C, H, W] on the CPU; the random arm's
    masks are drawn from ``seed`` (what its file stores), the caller's RNG untouched."""
    from ..compression.sampler import reconstruct

    recon, masks = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, images.shape[0], batch):
            r, m = reconstruct(model, images[start : start + batch], steps)
            recon.append(r)
            masks.append(m)
    return torch.cat(recon), torch.cat(masks)


def _pack_floats(values: np.ndarray) -> dict[str, Any]:
    """A float32 ``[seeds, images]`` matrix as ``{"shape", "float32_le_base64"}``."""
    arr = np.ascontiguousarray(values, dtype="<f4")
    return {"shape": list(arr.shape), "float32_le_base64": base64.b64encode(arr).decode()}


def _grid(
    images: torch.Tensor,
    panels: dict[str, tuple[torch.Tensor, torch.Tensor]],
    path: Path,
    title: str,
) -> Path:
    """PNG: originals on top, then per (rate, arm) a row of masks and a row of
    reconstructions. ``images`` [N, C, H, W]; ``panels[label] = (masks [N,1,H,W], recon)``.

    An image grid: the panels have no ticks on purpose; the first column's y labels name rows."""
    from ..plots import _new_figure, _save

    n = images.shape[0]
    rows = 1 + 2 * len(panels)
    fig = _new_figure(1.1 * n + 1.6, 1.1 * rows + 0.4)
    axes = fig.subplots(rows, n, squeeze=False)

    def show(ax, img: torch.Tensor, label: str | None) -> None:
        arr = img.detach().clamp(0, 1).cpu().numpy()
        arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
        ax.imshow(arr, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if label:
            ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")

    for j in range(n):
        show(axes[0, j], images[j], "original" if j == 0 else None)
        for i, (label, (masks, recon)) in enumerate(panels.items()):
            show(axes[1 + 2 * i, j], masks[j], f"{label}\nmask" if j == 0 else None)
            show(axes[2 + 2 * i, j], recon[j], f"{label}\nrecon" if j == 0 else None)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)  # atomic, never through a link named like the figure


@register
class SamplingVsRandom(Experiment):
    """Spiking sampler vs random and busiest-pixel masks at equal stored bits per image."""

    name = "sampling-vs-random"
    title = (
        "Spiking sampler vs random and busiest-pixel sampling: image reconstruction and "
        "classification at equal stored bits"
    )
    claim = (
        "Pixels kept by a spiking sampling network (one LIF sampling neuron per pixel, trained "
        "end-to-end with the decoder) reconstruct the image better than random sampling "
        "(methods.md §8; abstract only, spikeweave's reading) — tested at equal stored bits, "
        "positions included, against random and busiest-pixel sampling."
    )

    def settings(self, quick: bool) -> SamplingSettings:
        """:func:`settings_for`."""
        return settings_for(quick)

    def run(self, ctx: ExperimentContext) -> Report:  # noqa: D102
        return self.run_with(ctx, self.settings(ctx.quick))

    def run_with(self, ctx: ExperimentContext, s: SamplingSettings) -> Report:
        """The experiment at settings ``s`` (``run`` uses :func:`settings_for`)."""
        from ..compression.sampler import SamplerMethod, samples_for_budget, stored_bits
        from .selection import per_image

        train, val, test = _splits(s)
        val_x, _ = _stack(val)
        test_x, test_y = _stack(test)
        channels, height, width = test_x.shape[1:]
        pixels = height * width
        budgets = budgets_for(pixels, channels)
        out = str(ctx.out_dir / "runs")

        # The measuring classifier: trained on original images, monitored on validation.
        ccfg = TrainConfig(dataset=s.dataset, epochs=s.classifier_epochs,
                           batch_size=s.batch_size, out_dir=out)  # fmt: skip
        clf = ctx.train(f"{s.dataset}-classifier", ccfg, CLASSIFIER_SEED, datasets=(train, val))
        clf.model.cpu()

        def correct(images: torch.Tensor) -> np.ndarray:
            return per_image(clf.model, clf.task, TensorDataset(images, test_y), clf.config).correct

        original_correct = correct(test_x)
        base = TrainConfig(
            dataset=s.dataset, task="reconstruction", encoder="direct", steps=4,
            epochs=s.epochs, batch_size=s.batch_size, lr=2e-3, out_dir=out,
        )  # fmt: skip
        keep: dict[tuple[int, str], int] = {}
        psnr_test: dict[tuple[int, str], list[np.ndarray]] = {}
        psnr_val: dict[tuple[int, str], list[np.ndarray]] = {}
        right: dict[tuple[int, str], list[np.ndarray]] = {}
        panels: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for budget in budgets:
            for arm in ARMS:
                k = samples_for_budget(arm, budget, pixels, channels)
                if k < 1:
                    raise ConfigError(f"a budget of {budget} bits keeps no pixel in arm {arm}")
                keep[budget, arm] = k
                for seed in ctx.seeds:
                    method = SamplerMethod({"rate": k / pixels, "arm": arm})
                    trainer = ctx.train(f"{s.dataset}-b{budget}-{arm}", base, seed,
                                        method=method, datasets=(train, val))  # fmt: skip
                    model = trainer.model.cpu().eval()
                    if model.k != k:  # the rate round-trips to exactly k pixels
                        raise AssertionError(f"arm {arm} keeps {model.k} pixels, not {k}")
                    rv, _ = _reconstruct_all(model, val_x, base.steps, MASK_SEED + seed)
                    rt, masks = _reconstruct_all(model, test_x, base.steps, MASK_SEED + seed)
                    psnr_val.setdefault((budget, arm), []).append(psnr_per_image(rv, val_x))
                    psnr_test.setdefault((budget, arm), []).append(psnr_per_image(rt, test_x))
                    right.setdefault((budget, arm), []).append(correct(rt))
                    if seed == ctx.seeds[0]:
                        panels[f"{budget} b {arm}"] = (masks[:8], rt[:8])

        figure = _grid(test_x[:8], panels, ctx.out_dir / f"{s.dataset}_grid.png",
                       f"{s.dataset}: originals, masks and reconstructions at equal bits "
                       f"(seed {ctx.seeds[0]})")  # fmt: skip
        # The one choice, on validation: the better baseline (mean PSNR over budgets).
        val_mean = {a: float(np.mean([np.mean(psnr_val[b, a]) for b in budgets])) for a in ARMS}
        better = max(BASELINES, key=lambda a: val_mean[a])
        parts = []
        for budget in budgets:
            for other in BASELINES:
                tag = f"{budget} bits/image, spiking vs {other}"
                parts.append(difference_part(
                    f"PSNR at {tag}: spiking higher",
                    psnr_difference(psnr_test[budget, "spiking"], psnr_test[budget, other]),
                    "dB", rule_out=PSNR_MARGIN_DB,
                ))  # fmt: skip
                parts.append(accuracy_part(
                    f"classifier accuracy at {tag}: spiking higher",
                    right[budget, "spiking"], right[budget, other], "points",
                    rule_out=ACCURACY_MARGIN_POINTS,
                ))  # fmt: skip
        held = overall(parts)
        spiking_val_wins = val_mean["spiking"] > val_mean[better]
        rows = []
        for budget in budgets:
            for arm in ARMS:
                k = keep[budget, arm]
                seeds_psnr = [float(p.mean()) for p in psnr_test[budget, arm]]
                seeds_acc = [float(c.mean()) for c in right[budget, arm]]
                rows.append([
                    str(budget), arm, str(k), str(stored_bits(arm, k, pixels, channels)),
                    fmt_pm([float(p.mean()) for p in psnr_val[budget, arm]]),
                    fmt_pm(seeds_psnr), fmt_pm(seeds_acc, 100),
                ])  # fmt: skip
        against = {
            b: mean_std([float((x - y).mean()) for x, y in
                         zip(psnr_test[b, "spiking"], psnr_test[b, better], strict=True)])[0]
            for b in budgets
        }  # fmt: skip
        verdict = (
            f"At equal stored bits the better baseline on validation PSNR is {better} "
            f"({val_mean[better]:.2f} dB vs spiking {val_mean['spiking']:.2f} dB, mean over "
            "budgets). Test PSNR of spiking minus "
            f"{better}: " + ", ".join(f"{against[b]:+.2f} dB at {b} bits" for b in budgets) + ". "
            + ("The trained spiking sampler wins on validation."
               if spiking_val_wins else
               f"The trained spiking sampler does NOT beat the {better} baseline; "
               f"{better} sampling is the better choice at these budgets.")
        )  # fmt: skip
        per_image_record = {"original (classifier on unsampled images)": [original_correct]}
        for (budget, arm), rows_c in right.items():
            per_image_record[f"{budget} bits {arm}"] = rows_c
        return self.report(
            setup={
                "data": s.describe(),
                "n_test": int(test_x.shape[0]),
                "budgets (bits per image)": budgets,
                "pixels kept per arm": {
                    f"{b} bits": {a: keep[b, a] for a in ARMS} for b in budgets
                },  # fmt: skip
                "bit accounting": "8 bits per kept value and channel; positions "
                "ceil(log2 C(H*W, k)) bits per image for spiking and activity (computed from "
                "the image, which the decoder lacks); none for random (redrawn from the seed)",
                "model": "spiking arm: conv3x3(C->16)-LIF-conv3x3(16->1)-LIF sampling neuron "
                "per pixel, T=4 direct input, top-k by spike count (ties by input current), "
                "straight-through mask gradient via the firing rate; random: k random pixels "
                "per image; activity: the k brightest pixels. All: kept pixels copied, a "
                "5-layer conv decoder (ReLU) fills the rest.",
                "training": f"{s.epochs} epochs, batch {s.batch_size}, AdamW lr {base.lr}, "
                f"{base.schedule} schedule, MSE loss (task reconstruction)",
                "classifier": f"convnet (LIF, BPTT, T={ccfg.steps}, direct), "
                f"{s.classifier_epochs} epochs on the original training images, seed "
                f"{CLASSIFIER_SEED}; test accuracy on originals "
                f"{100 * float(original_correct.mean()):.2f}%",
                "selection": "the better baseline by validation PSNR (never the test set); "
                "fixed epochs, no other choice",
                "margins": {"psnr_db": PSNR_MARGIN_DB, "accuracy_points": ACCURACY_MARGIN_POINTS},
            },
            parts=parts,
            tables=[
                Table(
                    "Per budget and arm: pixels kept, bits stored per image, PSNR (dB) on "
                    "validation and test, classifier accuracy (%) on the test reconstructions; "
                    "mean ± SD over seeds",
                    [
                        "budget (bits)",
                        "arm",
                        "pixels kept",
                        "bits stored",
                        "val PSNR",
                        "test PSNR",
                        "test accuracy",
                    ],
                    rows,
                )
            ],  # fmt: skip
            figures=[str(figure)],
            verdict=verdict,
            held=held,
            per_image=per_image_record,
            results={
                "better_baseline": better,
                "spiking_beats_better_baseline_on_validation": spiking_val_wins,
                "val_psnr_mean": val_mean,
                "test_psnr": {
                    f"{b} bits {a}": [float(p.mean()) for p in psnr_test[b, a]]
                    for b in budgets
                    for a in ARMS
                },  # fmt: skip
                "per_image_psnr": {
                    f"{b} bits {a}": _pack_floats(np.stack(psnr_test[b, a]))
                    for b in budgets
                    for a in ARMS
                },  # fmt: skip
                "settings": dict(s.__dict__),
            },
            notes=[
                "Equal stored bits, not equal sampling rates: position-storing arms keep fewer "
                "pixels for the same budget (see 'pixels kept per arm').",
                "per_image_psnr: float32 little-endian [seeds, test images], base64, test "
                "images in their stored order.",
                "Only the paper's abstract is known; the architecture is spikeweave's reading.",
            ],
        )
