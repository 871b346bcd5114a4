"""Encoding a dataset batch for the model and evaluating a model on a dataset.

One implementation serves the trainer's per-epoch evaluation and :func:`spikeweave.load_run`,
so a reloaded run reproduces the accuracy in its ``summary.json`` exactly.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .. import encoding
from ..errors import InputError
from ..losses import Loss
from ..tasks import DataSpec, Task
from .config import TrainConfig
from .device import autocast, full_precision, model_device, to_device

__all__ = [
    "encode_batch",
    "evaluate_model",
    "evaluation_sums",
    "averages",
    "eval_seed",
    "split_validation",
    "split_training",
    "SPLITS",
    "eval_precision",
]

SPLITS = ("train", "val", "test")
VALIDATION_SEED = 20_261_130
"""Fixed, so every arm and seed of an experiment holds out the same validation images."""
SUBSET_SEED = 20_261_207
"""Fixed, so every arm and seed of an experiment trains on the same ``train_size`` images."""


def encode_batch(
    config: TrainConfig,
    spec: DataSpec,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    window: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The model's time-major input ``[T, B, ...]`` for a dataset batch ``x``.

    Static batches ``[B, ...]`` are encoded over the configured steps; a temporal dataset's
    ``[B, T, ...]`` batch is made time-major after checking its ``T``.

    For static batches only: ``window=(start, stop)`` gives steps ``start..stop-1`` of the
    encoding (:func:`~spikeweave.encoding.encode_window`), and ``generator`` is what a random
    encoder (Poisson) draws from, on the generator's device (the result comes back to ``x``'s);
    a deterministic encoder draws nothing from it. Without one, draws come from torch's global
    RNG on ``x``'s device.
    """
    if spec.temporal:
        if window is not None:
            raise InputError("a temporal batch is already a sequence; it has no encoding window")
        if x.dim() < 2 or x.shape[1] != config.steps:
            raise InputError(
                f"a temporal batch must be [B, T={config.steps}, ...], got {tuple(x.shape)}; "
                "bin the recordings into `steps` frames"
            )
        return x.transpose(0, 1)
    if tuple(x.shape[1:]) != spec.input_shape:
        raise InputError(
            f"expected a batch of samples shaped {spec.input_shape}, got {tuple(x.shape[1:])}"
        )
    if generator is None and window is None:
        return encoding.encode(config.encoder, x, config.effective_steps)
    kwargs: dict[str, Any] = {}
    source = x
    if (
        generator is not None
        and "generator" in inspect.signature(encoding.ENCODERS.get(config.encoder)).parameters
    ):
        kwargs["generator"] = generator
        source = x.to(generator.device)
    if window is None:
        out = encoding.encode(config.encoder, source, config.effective_steps, **kwargs)
    else:
        out = encoding.encode_window(
            config.encoder, source, config.effective_steps, *window, **kwargs
        )
    return out.to(x.device)


def split_validation(
    dataset: Dataset, fraction: float, stratify: bool
) -> tuple[Dataset, Dataset | None]:
    """``(train part, validation part)`` of a training set: ``round(fraction·n_c)`` samples of
    every class ``c`` (``stratify``) or of the whole set, drawn with a fixed seed; ``fraction``
    0 gives ``(dataset, None)``."""
    if fraction <= 0:
        return dataset, None
    gen = torch.Generator().manual_seed(VALIDATION_SEED)
    n = len(dataset)  # type: ignore[arg-type]
    if stratify:
        labels = torch.tensor([int(dataset[i][1]) for i in range(n)])
        groups = [torch.nonzero(labels == c).flatten() for c in labels.unique()]
    else:
        groups = [torch.arange(n)]
    val: list[int] = []
    for idx in groups:
        perm = idx[torch.randperm(len(idx), generator=gen)]
        val += perm[: round(fraction * len(idx))].tolist()
    if not val or len(val) == n:
        raise InputError(f"val_fraction {fraction} leaves no validation or no training data")
    held = set(val)
    rest = [i for i in range(n) if i not in held]
    return Subset(dataset, rest), Subset(dataset, sorted(val))


def split_training(
    dataset: Dataset, config: TrainConfig, stratify: bool
) -> tuple[Dataset, Dataset | None]:
    """``(training part, validation part)`` of the training set ``dataset`` as the run
    ``config`` carves it: validation held out (:func:`split_validation`), then the training
    part cut to ``config.train_size`` images (0: all), a uniform subset drawn with a fixed
    seed and kept in dataset order. The one carving the trainer, a reloaded run and the
    security tools use."""
    train, val = split_validation(dataset, config.val_fraction, stratify)
    size, n = config.train_size, len(train)  # type: ignore[arg-type]
    if size == 0 or size == n:
        return train, val
    if size > n:
        held = f" after {len(val)} validation images" if val is not None else ""  # type: ignore[arg-type]
        raise InputError(
            f"train_size {size} is more than the {n} training images left{held}; choose at "
            f"most {n} (or 0 for all)"
        )
    gen = torch.Generator().manual_seed(SUBSET_SEED)
    keep = torch.randperm(n, generator=gen)[:size].sort().values.tolist()
    return Subset(train, keep), val


def eval_precision(config: TrainConfig, device: torch.device) -> str:
    """The precision a run is evaluated in on ``device``: the one it trained in, except that an
    fp16 run evaluates in fp32 on the CPU (which has no fp16 path; fp32 is the exact one)."""
    if config.precision == "fp16" and device.type != "cuda":
        return "fp32"
    return config.precision


def eval_seed(config: TrainConfig) -> int:
    """The seed of the evaluation's randomness (e.g. Poisson encoding), fixed per run."""
    return (config.seed * 1_000_003 + 999_983) % 2**63


@torch.no_grad()
def evaluation_sums(
    model: nn.Module,
    task: Task,
    loss: Loss,
    dataset: Dataset,
    config: TrainConfig,
) -> dict[str, list[float]]:
    """``{"loss": [sum, n], metric: [sum, count]}`` of ``model`` (put in eval mode) over
    ``dataset``; sums, so shares of a dataset evaluated apart add up exactly.

    Randomness (Poisson encoding) is drawn from a generator seeded from the run's seed inside
    a forked RNG, so evaluating never changes the training's random stream and always gives the
    same numbers. Batches go to the model's device and run in the run's precision
    (:func:`eval_precision`); the sums are float32 or wider whatever the precision.
    """
    device = model_device(model)
    cuda = device.type == "cuda"
    loader = DataLoader(dataset, batch_size=config.eval_batch_size, pin_memory=cuda)
    model.eval()
    totals: dict[str, list[float]] = {"loss": [0.0, 0]}
    # forking the CUDA generator too keeps a GPU run's training stream unchanged
    forked = [device] if cuda else []
    with torch.random.fork_rng(devices=forked), autocast(device, eval_precision(config, device)):
        torch.manual_seed(eval_seed(config))
        for x, y in loader:
            x, y = to_device(x, device), to_device(y, device)
            out = full_precision(model(encode_batch(config, task.spec, x)))
            target = task.target(x, y)
            totals["loss"][0] += float(loss(out, target)) * len(x)
            totals["loss"][1] += len(x)
            for key, (total, count) in task.batch_metrics(out, target).items():
                acc = totals.setdefault(key, [0.0, 0])
                acc[0] += total
                acc[1] += count
    return totals


def evaluate_model(
    model: nn.Module,
    task: Task,
    loss: Loss,
    dataset: Dataset,
    config: TrainConfig,
) -> dict[str, Any]:
    """``{"loss": ..., metric: ...}`` of ``model`` over ``dataset`` (:func:`evaluation_sums`)."""
    return averages(evaluation_sums(model, task, loss, dataset, config))


def averages(totals: dict[str, list[float]]) -> dict[str, Any]:
    """``{key: sum / count}``; an empty dataset is an error."""
    if totals["loss"][1] == 0:
        raise InputError("cannot evaluate on an empty dataset")
    return {k: total / count for k, (total, count) in totals.items()}
