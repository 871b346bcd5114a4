"""The spiking sampling network (methods.md §8, spikeweave's reading) and its training method.

Only the paper's abstract is known. spikeweave's reading:

- :class:`SpikingSampler`: a small spiking encoder reads the image over T steps
  (``[T, B, C, H, W]``, time-major) and drives **one sampling LIF neuron per pixel**; a pixel is
  kept if its neuron fires. The rate is controlled either by **top-k** (exactly
  ``k = round(rate · H · W)`` pixels per image: the neurons with the most spikes, ties broken
  by their mean input current, so a pixel whose neuron stayed silent is only taken when fewer
  than k fired) or by a **penalty** ``λ · (mean firing rate − rate)²`` added to the loss (a
  pixel is kept iff its neuron fired at least once; the rate is then only approximately met).
- The hard keep-mask is made differentiable with a **straight-through** estimator: forward the
  0/1 mask, backward through the sampling neurons' firing rate ``s.mean(0)``, whose gradient
  is the LIF surrogate derivative. So the reconstruction loss trains the sampler end to end.
- :class:`MaskedDecoder`: a conventional (non-spiking) conv net that sees only the kept pixels
  and the mask (2 channels per colour channel: ``x · mask`` and ``mask``) and outputs the whole
  image in [0, 1]. The baseline arms keep the same k per image and train their own decoder
  of the same architecture: ``random`` draws a **random mask**; ``activity`` keeps the k
  **busiest** pixels (the brightest, summed over channels: under direct or rate encoding a
  pixel's input drive is its intensity), ties to the lower pixel index.

**Stored bits** (:func:`stored_bits`, what comparing arms at equal storage counts): each kept
pixel stores its ``C`` values at :data:`VALUE_BITS` bits (8: the datasets' own depth, so kept
values are exact); the positions cost ``ceil(log2 C(H·W, k))`` bits per image (an enumerative
code of the k-subset, the least any code for arbitrary masks needs) unless the decoder can
recompute them. A seeded random mask is recomputed from the seed (one per file, not per
image: 0 bits per image). The spiking sampler's mask and the activity mask are computed *from
the image*, which the decoder does not have, so running the sampler at the decoder does not
help: both store their positions. :func:`samples_for_budget` gives each arm the most kept
pixels that fit a budget of bits per image.

On the training seam: the method ``sampler`` (``TrainConfig(task="reconstruction", ...)``)
builds the model in ``build_model``; the task's metrics (mse, psnr, ssim) are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..layers import TimeFolded
from ..neurons import LIF
from ..surrogate import Atan
from ..tasks import Task
from ..training.config import TrainConfig
from ..training.methods import METHODS, StepContext, TrainingMethod, gradient_step

__all__ = [
    "SpikingSampler",
    "MaskedDecoder",
    "SamplingAutoencoder",
    "SamplerMethod",
    "topk_mask",
    "keep_score",
    "reconstruct",
    "ARMS",
    "VALUE_BITS",
    "POSITIONS_STORED",
    "position_bits",
    "stored_bits",
    "samples_for_budget",
    "activity_score",
]

ARMS = ("spiking", "random", "activity")
VALUE_BITS = 8
"""Bits per stored pixel value and channel (8-bit images: a kept value is stored exactly)."""
POSITIONS_STORED = {"spiking": True, "random": False, "activity": True}
"""Whether an arm's mask must be stored: the random mask is recomputed from its seed; the
spiking and activity masks depend on the image, which the decoder does not have."""


def position_bits(pixels: int, k: int) -> int:
    """``ceil(log2 C(pixels, k))``: the bits of an enumerative code of one k-subset of
    ``pixels`` positions (exact integer arithmetic)."""
    if not 0 <= k <= pixels:
        raise ValueError(f"k must be in [0, {pixels}], got {k}")
    return (math.comb(pixels, k) - 1).bit_length()


def stored_bits(arm: str, k: int, pixels: int, channels: int = 1) -> int:
    """Bits one image costs in ``arm`` with ``k`` kept pixels of ``pixels``: the kept values
    (``k · channels · VALUE_BITS``) plus the positions where the arm must store them."""
    if arm not in POSITIONS_STORED:
        raise ConfigError(f"unknown sampling arm {arm!r}; choose one of {', '.join(ARMS)}")
    values = k * channels * VALUE_BITS
    return values + (position_bits(pixels, k) if POSITIONS_STORED[arm] else 0)


def samples_for_budget(arm: str, budget_bits: int, pixels: int, channels: int = 1) -> int:
    """The most kept pixels ``k`` (0 .. ``pixels``) whose :func:`stored_bits` fit
    ``budget_bits`` per image, so every arm stores at most the budget and one more pixel
    would not fit."""
    if arm not in POSITIONS_STORED:
        raise ConfigError(f"unknown sampling arm {arm!r}; choose one of {', '.join(ARMS)}")
    best = 0
    comb = 1  # C(pixels, k), updated exactly as k grows
    for k in range(pixels + 1):
        bits = k * channels * VALUE_BITS
        if POSITIONS_STORED[arm]:
            bits += (comb - 1).bit_length()
        if bits <= budget_bits:
            best = k
        comb = comb * (pixels - k) // (k + 1)
    return best


def activity_score(image: torch.Tensor) -> torch.Tensor:
    """The ``activity`` arm's ranking ``[B, 1, H, W]`` of images ``[B, C, H, W]`` in [0, 1]:
    intensity summed over channels, equal values to the lower pixel index (a 1e-4 offset,
    below one 8-bit level)."""
    b, _, h, w = image.shape
    total = image.sum(1, keepdim=True)
    order = torch.arange(h * w, device=image.device, dtype=image.dtype).reshape(1, 1, h, w)
    return total + (h * w - 1 - order) / (h * w) * 1e-4


RATE_CONTROLS = ("topk", "penalty")


def topk_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 float mask [B, ...] with the ``k`` highest-``score`` entries of each sample set."""
    flat = score.reshape(score.shape[0], -1)
    mask = torch.zeros_like(flat)
    if k > 0:
        mask.scatter_(1, flat.topk(k, dim=1).indices, 1.0)
    return mask.reshape(score.shape)


def keep_score(spikes: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Top-k ranking score of the sampling neurons, no gradient: spike count over T, with the
    mean input current (squashed into [0, 0.5)) breaking ties between equal counts.
    ``spikes``, ``current`` [T, B, 1, H, W] -> [B, 1, H, W]."""
    tie = torch.sigmoid(current.mean(0)).detach() * 0.5
    return spikes.sum(0).detach() + tie


class SpikingSampler(nn.Module):
    """A spiking encoder with one sampling LIF neuron per pixel.

    ``forward(x [T, B, C, H, W]) -> (spikes [T, B, 1, H, W], current [T, B, 1, H, W])``: the
    sampling neurons' spikes and their input current. Conv 3×3 (C → hidden) → LIF → conv 3×3
    (hidden → 1) → LIF (the sampling neurons); τ in steps, threshold 1, hard reset.
    """

    def __init__(self, channels: int, hidden: int = 16, tau: float = 2.0) -> None:
        super().__init__()
        surrogate = Atan(alpha=2.0)
        self.conv1 = TimeFolded(nn.Conv2d(channels, hidden, 3, padding=1))
        self.lif1 = LIF(tau=tau, surrogate=surrogate)
        self.conv2 = TimeFolded(nn.Conv2d(hidden, 1, 3, padding=1))
        self.sample = LIF(tau=tau, surrogate=surrogate)
        # Start with about half the sampling neurons driven above threshold, so gradients
        # reach both kept and dropped pixels from the first step.
        nn.init.constant_(self.conv2.module.bias, 1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        current = self.conv2(self.lif1(self.conv1(x)))
        return self.sample(current), current


class MaskedDecoder(nn.Module):
    """Fills in an image ``[B, C, H, W]`` (unbounded; metrics clamp to [0, 1]) from ``x · mask``
    ``[B, C, H, W]`` and ``mask`` ``[B, 1, H, W]``. Five 3×3 convs, one dilated: a 13-pixel
    receptive field, enough to span the ~4.5-pixel gaps between kept pixels at a 5 % rate."""

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # A linear output: a sigmoid here saturated at 0 within the first epoch on random masks
        # (the "all background" minimum) and never recovered.
        return self.net(torch.cat([masked, mask], dim=1))


class SamplingAutoencoder(nn.Module):
    """Sampler (spiking or random) + decoder, ``[T, B, C, H, W] -> [T, B, C·H·W]``.

    The output repeats the reconstruction at every step, so the reconstruction task's readout
    (mean over T) is the reconstruction. ``run(x)`` also returns the keep-mask ``[B, 1, H, W]``
    and the sampling neurons' mean firing rate (for the penalty).
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        rate: float,
        arm: str = "spiking",
        rate_control: str = "topk",
        hidden: int = 16,
        tau: float = 2.0,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.input_shape = tuple(input_shape)
        self.rate = rate
        self.k = int(round(rate * height * width))
        self.arm = arm
        self.rate_control = rate_control
        self.sampler = SpikingSampler(channels, hidden, tau) if arm == "spiking" else None
        self.decoder = MaskedDecoder(channels)

    def masks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mask [B, 1, H, W] of 0/1 with straight-through gradients, soft firing rate)``
        for the time-major input ``x`` [T, B, C, H, W]."""
        b = x.shape[1]
        _, h, w = self.input_shape
        if self.arm == "activity":
            return topk_mask(activity_score(x.mean(0)), self.k), torch.tensor(
                self.rate, device=x.device
            )
        if self.sampler is None:
            score = torch.rand(b, 1, h, w, device=x.device)
            return topk_mask(score, self.k), torch.tensor(self.rate, device=x.device)
        spikes, current = self.sampler(x)
        soft = spikes.mean(0)  # firing rate per pixel; its gradient is the surrogate's
        if self.rate_control == "topk":
            hard = topk_mask(keep_score(spikes, current), self.k)
        else:
            hard = (spikes.sum(0) > 0).to(soft.dtype)
        return hard + soft - soft.detach(), soft.mean()

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(output [T, B, C·H·W], mask [B, 1, H, W], mean firing rate)``."""
        mask, rate = self.masks(x)
        image = x.mean(0)  # direct encoding: every step is the image
        # Kept pixels are stored exactly, so they are copied; the decoder fills the rest. The
        # mask's straight-through gradient is then (image - fill): keep what the decoder
        # would get wrong.
        fill = self.decoder(image * mask, mask)
        recon = mask * image + (1 - mask) * fill
        out = recon.reshape(1, recon.shape[0], -1).expand(x.shape[0], -1, -1)
        return out, mask, rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.run(x)[0]


@METHODS.register("sampler")
class SamplerMethod(TrainingMethod):
    """Train a sampler + decoder for the ``reconstruction`` task (methods.md §8)."""

    name = "sampler"

    @dataclass(frozen=True)
    class Options:
        """``rate``: fraction of pixels kept per image; ``arm``: "spiking" (the learned
        sampler), "random" (random masks) or "activity" (the busiest pixels; baselines);
        ``rate_control``: "topk" (exact rate) or "penalty" (weight ``penalty``); ``hidden``:
        the sampler's channels."""

        rate: float = 0.1
        arm: str = "spiking"
        rate_control: str = "topk"
        penalty: float = 10.0
        hidden: int = 16

    def model_fields(self) -> frozenset[str] | None:
        """None of the config's network fields: the sampler's size is its own ``hidden``."""
        return frozenset()

    def build_model(self, config: TrainConfig, task: Task) -> nn.Module:  # noqa: D102
        o = self.options
        if task.name != "reconstruction":
            raise ConfigError(f"method sampler trains task=reconstruction, not {task.name!r}")
        if len(task.spec.input_shape) != 3 or task.spec.temporal:
            raise ConfigError(f"method sampler needs images [C, H, W], got {task.spec.input_shape}")
        if not 0.0 < o.rate <= 1.0:
            raise ConfigError(f"[method.sampler] rate must be in (0, 1], got {o.rate}")
        if o.arm not in ARMS:
            raise ConfigError(f"[method.sampler] arm must be one of {', '.join(ARMS)}")
        if o.rate_control not in RATE_CONTROLS:
            raise ConfigError(
                f"[method.sampler] rate_control must be one of {', '.join(RATE_CONTROLS)}"
            )
        if config.encoder != "direct":
            raise ConfigError("method sampler reads the image directly: use encoder = 'direct'")
        shape = tuple(task.spec.input_shape)
        self._encode_steps = config.effective_steps
        return SamplingAutoencoder(shape, o.rate, o.arm, o.rate_control, o.hidden, config.tau)

    def train_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor):  # noqa: D102
        model = ctx.model.module if hasattr(ctx.model, "module") else ctx.model
        if self.options.rate_control == "penalty" and self.options.arm == "spiking":
            steps = self._encode_steps
            x_seq = x.unsqueeze(0).expand(steps, *x.shape)  # direct encoding
            out, _, rate = model.run(x_seq)
            loss = ctx.loss(out, y)  # y is the task target: the image
            loss = loss + self.options.penalty * (rate - self.options.rate) ** 2
        else:
            out = ctx.forward(x)
            loss = ctx.loss(out, y)  # y is the task target: the image
        gradient_step(ctx, loss)
        return out.detach(), loss.detach()


def reconstruct(
    model: SamplingAutoencoder, x: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reconstruction [B, C, H, W], mask [B, 1, H, W])`` for images ``x`` [B, C, H, W],
    directly encoded over ``steps``; no gradients."""
    with torch.no_grad():
        out, mask, _ = model.run(x.unsqueeze(0).expand(steps, *x.shape))
    return out.mean(0).reshape(x.shape), mask.detach()
