"""Plain ANN-to-SNN conversion: the baseline for noisy single-step training (methods.md §4).

Train the ReLU ANN twin of a spikeweave model (``model="ann"`` / ``"ann-mlp"``), copy its weights
into the same architecture built with IF neurons (soft reset, threshold 1), and balance the
layers by activation percentiles ("robust normalisation", Rueckauer et al. 2017): with ``λ_l``
the ``percentile``-th percentile of layer ``l``'s positive ANN activations on calibration data,
each layer's input weights are multiplied by ``λ_{l-1}`` and its output affine map (Linear bias,
or the BatchNorm that closes the block) divided by ``λ_l``, so the IF neurons, firing at rate
``≈ clip(a_l/λ_l, 0, 1)``, carry the ANN activations in units of ``λ_l``. Activations are then
rate-coded: spike count / T. The output layer (linear logits in the ANN) gets IF neurons too and
is normalised by the percentile of its positive logits; the class with most output spikes wins.

The input is the analog image repeated every step (direct encoding, as for the noisy arm); pass
``encoder="poisson"`` to the trainer config for Poisson rate-coded input instead. Max-pooling is
kept as in the ANN (it acts on spikes in the SNN — a known source of conversion error that the
noisy arm shares). Membranes start at ``v_init`` (0 for the plain method; ``θ/2`` is the usual
"half-threshold" refinement).

>>> snn, snn_cfg = convert_from_config(ann_cfg, ann, calibration_images)
>>> rates = snn(spikeweave.encoding.direct(x, 128)).mean(0)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..neurons import IF, SpikingNeuron
from ..training.device import model_device

__all__ = [
    "AFFINE",
    "neuron_blocks",
    "activation_percentiles",
    "normalize_weights",
    "ann_to_snn",
    "snn_config",
    "convert_from_config",
    "accuracy_over_time",
    "avg_pooled",
]

AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def neuron_blocks(snn: nn.Module) -> list[tuple[str, str]]:
    """``[(block_name, neuron_name), ...]``: each spiking neuron of the ``nn.Sequential``
    ``snn`` with the child just before it, which must hold its Linear/Conv (+ BatchNorm)."""
    if not isinstance(snn, nn.Sequential):
        raise ConfigError(
            "ANN-to-SNN conversion expects an nn.Sequential model (spikeweave's ConvNet / MLP), "
            f"got {type(snn).__name__}"
        )
    names = list(snn._modules)
    pairs = []
    for i, name in enumerate(names):
        if isinstance(snn._modules[name], SpikingNeuron):
            if i == 0 or not _affines(snn._modules[names[i - 1]]):
                raise ConfigError(
                    f"neuron {name!r} does not follow a Linear/Conv block; cannot convert"
                )
            pairs.append((names[i - 1], name))
    if not pairs:
        raise ConfigError("the model has no spiking neurons to convert into")
    return pairs


def _affines(block: nn.Module) -> list[nn.Module]:
    return [m for m in block.modules() if isinstance(m, AFFINE + _NORMS)]


def _percentile(values: torch.Tensor, q: float) -> float:
    """The ``q``-th percentile (0-100] of the positive entries of ``values`` (1.0 if none)."""
    pos = values[values > 0].flatten().double()
    if pos.numel() == 0:
        return 1.0
    k = max(1, min(pos.numel(), int(round(q / 100.0 * pos.numel()))))
    return float(pos.kthvalue(k).values)


@torch.no_grad()
def activation_percentiles(
    ann: nn.Module,
    blocks: Sequence[str],
    x: torch.Tensor,
    percentile: float = 99.9,
    batch_size: int = 500,
) -> list[float]:
    """``λ`` per block: the percentile of the positive outputs of ``ann``'s child ``block`` (i.e.
    of its ReLU activations) on the encoded calibration input ``x [1, N, ...]``."""
    if not 0 < percentile <= 100:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    modules = dict(ann.named_children())
    missing = [b for b in blocks if b not in modules]
    if missing:
        raise ConfigError(f"the ANN has no layer(s) {', '.join(missing)} to calibrate")
    outputs: dict[str, list[torch.Tensor]] = {b: [] for b in blocks}
    handles = [
        modules[b].register_forward_hook(
            lambda _m, _i, out, b=b: outputs[b].append(out.detach().relu().flatten())
        )
        for b in blocks
    ]
    was_training = ann.training
    ann.eval()
    try:
        where = model_device(ann)  # calibration images may live on the CPU, the ANN on a GPU
        for i in range(0, x.shape[1], batch_size):
            ann(x[:, i : i + batch_size].to(where))
    finally:
        for h in handles:
            h.remove()
        ann.train(was_training)
    return [_percentile(torch.cat(outputs[b]), percentile) for b in blocks]


@torch.no_grad()
def normalize_weights(snn: nn.Module, scales: Sequence[float]) -> nn.Module:
    """Layer-wise weight normalisation in place: block ``l`` (see :func:`neuron_blocks`) gets
    its first Linear/Conv weight × ``λ_{l-1}`` and its last affine map ÷ ``λ_l`` (λ_0 = 1)."""
    pairs = neuron_blocks(snn)
    if len(scales) != len(pairs):
        raise ConfigError(f"need one scale per neuron layer ({len(pairs)}), got {len(scales)}")
    prev = 1.0
    for (block, _), lam in zip(pairs, scales, strict=True):
        if not lam > 0:
            raise ConfigError(f"scale for {block!r} must be positive, got {lam}")
        mods = _affines(snn._modules[block])
        first = next(m for m in mods if isinstance(m, AFFINE))
        last = mods[-1]
        first.weight.mul_(prev)
        if isinstance(last, _NORMS):
            if last.weight is None or last.bias is None:
                raise ConfigError(f"{block!r}: BatchNorm without affine parameters")
            last.weight.div_(lam)
            last.bias.div_(lam)
        else:
            if last is not first:  # pragma: no cover - blocks end in a norm or are one affine
                raise ConfigError(f"{block!r}: unexpected layout")
            last.weight.div_(lam)
            if last.bias is not None:
                last.bias.div_(lam)
        prev = lam
    return snn


def ann_to_snn(
    ann: nn.Module,
    snn: nn.Module,
    calibration: torch.Tensor,
    percentile: float = 99.9,
) -> tuple[nn.Module, list[float]]:
    """Convert: copy ``ann``'s weights into a deep copy of ``snn`` (the same architecture with
    IF neurons, soft reset, threshold 1), then balance thresholds by activation percentiles on
    the static calibration batch ``calibration [N, ...]``. Returns ``(snn, λ per layer)``."""
    net = copy.deepcopy(snn)
    pairs = neuron_blocks(net)
    for _, name in pairs:
        neuron = net._modules[name]
        if not isinstance(neuron, IF) or neuron.reset != "soft" or neuron.threshold != 1.0:
            raise ConfigError(
                f"{name!r}: the target model needs IF neurons with soft reset and threshold 1 "
                "(build it with snn_config(...))"
            )
    net.load_state_dict(ann.state_dict(), strict=True)
    scales = activation_percentiles(
        ann, [b for b, _ in pairs], calibration.unsqueeze(0), percentile
    )
    normalize_weights(net, scales)
    return net.eval(), scales


def snn_config(ann_config: Any, v_init: float = 0.0, steps: int | None = None) -> Any:
    """The :class:`~spikeweave.training.TrainConfig` of the converted SNN: the ANN's
    architecture with IF neurons, soft reset, threshold 1, membranes starting at ``v_init``."""
    return replace(
        ann_config,
        model=ann_config.architecture,
        neuron="if",
        reset="soft",
        threshold=1.0,
        v_reset=float(v_init),
        method="bptt",
        steps=ann_config.steps if steps is None else steps,
    )


def convert_from_config(
    ann_config: Any,
    ann: nn.Module,
    calibration: torch.Tensor,
    percentile: float = 99.9,
    v_init: float = 0.0,
) -> tuple[nn.Module, Any, list[float]]:
    """Build the SNN twin of ``ann_config`` and convert ``ann`` into it.

    Returns ``(snn, snn_config, λ per layer)``; ``model_from_config(snn_config)`` +
    ``load_state_dict(snn.state_dict())`` rebuilds the converted network.
    """
    from ..training.assembly import model_from_config

    if ann_config.spiking:
        raise ConfigError("convert_from_config needs the ANN's config (model 'ann' / 'ann-mlp')")
    cfg = snn_config(ann_config, v_init)
    snn, scales = ann_to_snn(ann, model_from_config(cfg), calibration, percentile)
    return snn, cfg, scales


def avg_pooled(model: nn.Module) -> nn.Module:
    """Replace every ``MaxPool2d`` of ``model`` (in place, also inside time-folded wrappers)
    with an ``AvgPool2d`` of the same kernel and stride; returns the model.

    In a spiking net the max of spikes is an OR: during noisy single-step training it takes
    the max of independent noisy samples and saturates, while the converted IF network pools
    phase-locked spikes. The average of spikes is linear, so it keeps rates (and their
    expectation) through the layer, for noisy training, BPTT and ANN-to-SNN conversion alike.
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
                count += 1
    if count == 0:
        raise ConfigError(f"{type(model).__name__} has no MaxPool2d layer to replace")
    return model


@torch.no_grad()
def accuracy_over_time(
    snn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: Sequence[int],
    batch_size: int = 250,
    encoder: str = "direct",
    seed: int = 0,
) -> dict[int, float]:
    """Accuracy of the spike count / T at every ``T`` in ``steps``, from one run of
    ``max(steps)`` steps (the network is causal, so its first T outputs are the T-step run's).

    ``x [N, ...]`` static inputs encoded with ``encoder`` (``direct``: repeated every step;
    ``poisson``: a rate code, drawn inside a forked RNG seeded with ``seed``); ``y [N]``
    labels; ties go to the lowest class index (argmax), as in the trainer's ``evaluate``."""
    from ..encoding import encode

    steps = sorted(set(int(t) for t in steps))
    if not steps or steps[0] < 1:
        raise ConfigError(f"steps must be positive ints, got {steps}")
    t_max = steps[-1]
    where = model_device(snn)  # x and y may be on the CPU: each batch goes to the model
    idx = torch.tensor([t - 1 for t in steps], device=where)
    correct = torch.zeros(len(steps), dtype=torch.long, device=where)
    snn.eval()
    # the Poisson draws come from the device's generator: fork (and restore) that one
    with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(x), batch_size):
            out = snn(encode(encoder, x[i : i + batch_size].to(where), t_max))  # [T, B, C]
            rates = out.cumsum(0)[idx]  # spike counts after each T (/T does not change argmax)
            correct += (rates.argmax(-1) == y[i : i + batch_size].to(where)).sum(-1)
    return {t: int(c) / len(x) for t, c in zip(steps, correct.tolist(), strict=True)}
