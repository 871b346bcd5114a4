"""``--method oscillation-bptt``: surrogate BPTT on a model whose neurons all oscillate.

The oscillation-defense experiment trains its oscillation arms with it; being registered like
every other method, its runs load with :func:`~spikeweave.training.load_run` and work with
``spikeweave eval`` and ``spikeweave attack`` as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..neurons import OscillatingLIF
from ..training import TrainConfig
from ..training.build import default_model
from ..training.methods import METHODS, SurrogateBPTT

__all__ = ["OscillationBPTT", "OscillationOptions"]


@dataclass(frozen=True)
class OscillationOptions:
    """Options of the oscillation arms' method: the neurons' oscillation and its fake form.

    ``amplitude`` in membrane units (θ = 1), ``frequency`` in cycles per step, phases in
    radians; ``fake_form``/``fake_phase`` None: no defense.
    """

    amplitude: float = 0.3
    frequency: float = 0.25
    form: str = "sine"
    fake_form: str | None = None
    fake_phase: float | None = None

    def __post_init__(self) -> None:
        with torch.random.fork_rng(devices=[]):
            OscillatingLIF(**vars(self))  # the neuron's own checks, one-line ConfigErrors


@METHODS.register("oscillation-bptt")
class OscillationBPTT(SurrogateBPTT):
    """Surrogate BPTT on the config's model with every neuron an :class:`OscillatingLIF`.

    Registered as ``oscillation-bptt``: its options live in the run's config
    (``method_options``), so ``load_run``, ``spikeweave eval`` and ``spikeweave attack`` rebuild
    its runs without being handed the method.
    """

    name = "oscillation-bptt"
    Options = OscillationOptions

    def build_model(self, config: TrainConfig, task):  # noqa: D102
        from .defense import set_oscillation

        model = default_model(replace(config, neuron="oscillating"), task)
        return set_oscillation(model, **vars(self.options))
