"""Training configuration: one flat dataclass, validated, loadable from TOML.

Every field can be set from ``spikeforge train --config FILE.toml`` (top-level keys with the
field names below) and overridden by command-line options. Unknown keys are refused.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TrainConfig", "load_config", "NEURONS", "MODEL_NAMES", "SCHEDULES", "LOSSES"]

NEURONS = ("lif", "klif", "if", "relu")
MODEL_NAMES = ("convnet", "mlp", "ann", "ann-mlp")
SCHEDULES = ("cosine", "exponential", "constant")
LOSSES = ("ce", "mse")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Times are in steps, rates in spikes/step."""

    dataset: str = "mnist5k"
    data_root: str = ""
    model: str = "convnet"
    neuron: str = "lif"
    method: str = "bptt"
    steps: int = 4
    encoder: str = "direct"
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    schedule: str = "cosine"
    gamma: float = 0.9
    grad_clip: float = 1.0
    loss: str = "ce"
    rate_scale: float = 8.0
    population: int = 10
    tau: float = 2.0
    threshold: float = 1.0
    v_reset: float = 0.0
    reset: str = "hard"
    decay_input: bool = True
    surrogate: str = "atan"
    alpha: float | None = None
    detach_reset: bool = True
    dropout: float = 0.0
    seed: int = 0
    eval_batch_size: int = 500
    out_dir: str = "runs"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spiking(self) -> bool:
        """False for the ANN baselines (ReLU, no time dimension needed)."""
        return self.neuron != "relu" and not self.model.startswith("ann")

    @property
    def architecture(self) -> str:
        """The layer layout: ``convnet`` or ``mlp``, whatever the neuron."""
        return {"ann": "convnet", "ann-mlp": "mlp"}.get(self.model, self.model)

    @property
    def effective_steps(self) -> int:
        """Steps actually simulated: an ANN needs only one."""
        return self.steps if self.spiking else 1

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` with a one-line fix for the first invalid field."""
        from .. import data, encoding, surrogate

        data.info(self.dataset)
        _choice("model", self.model, MODEL_NAMES)
        _choice("neuron", self.neuron, NEURONS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("loss", self.loss, LOSSES)
        _choice("reset", self.reset, ("hard", "soft"))
        _choice("encoder", self.encoder, tuple(encoding.ENCODERS))
        from .methods import METHODS

        _choice("method", self.method, tuple(METHODS))
        surrogate.get_surrogate(self.surrogate, self.alpha)
        for name in ("steps", "epochs", "batch_size", "population", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "rate_scale", "tau"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        for name in ("weight_decay", "grad_clip", "dropout"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ConfigError(
                    f"{name} must be a non-negative number (0 disables), got {value!r}"
                )
        if self.dropout >= 1:
            raise ConfigError(f"dropout must be below 1, got {self.dropout}")
        if not _is_number(self.gamma) or not 0 < self.gamma <= 1:
            raise ConfigError(
                f"gamma (exponential lr decay per epoch) must be in (0, 1], got {self.gamma!r}"
            )
        if self.tau < 1:
            raise ConfigError(f"tau is in steps and must be >= 1, got {self.tau}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys raise :class:`ConfigError` naming ``source``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys are "
                f"{', '.join(sorted(known))}"
            )
        cfg = cls()
        for key, value in values.items():
            default = getattr(cfg, key)
            if (
                isinstance(default, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if default is not None and key != "alpha" and type(value) is not type(default):
                raise ConfigError(
                    f"{source}: {key} must be of type {type(default).__name__}, got {value!r}"
                )
            setattr(cfg, key, value)
        return cfg


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a dict of overrides (validated later)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    TrainConfig.from_dict(values, source=str(path))
    return values
