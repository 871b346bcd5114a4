"""Option help for the commands: registry choices and ``TrainConfig`` defaults, filled in only
when a help is shown (the registries' modules import torch, which ``--help`` must not wait for)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typer.core import TyperCommand

if TYPE_CHECKING:
    from ..training.config import TrainConfig

DEVICE_HELP = (
    "Where to compute: auto (CUDA when available, else the CPU) | cpu | cuda | cuda:N; a GPU "
    "that is not there is an error."
)


def option_help(
    text: str, field: str | None = None, choices: str | None = None, registry: str | None = None
) -> str:
    """An option's help: ``text``, the choices (literal, or those of ``registry``) and the
    :class:`TrainConfig` default of ``field``. The last two are placeholders that
    :class:`LibraryHelp` fills in when the help is shown."""
    parts = [text.replace("{", "{{").replace("}", "}}")]
    if choices:
        parts.append(f"One of: {choices.replace('{', '{{').replace('}', '}}')}.")
    if registry:
        parts.append(f"One of: {{choices[{registry}]}}.")
    if field is not None:
        parts.append(f"(default: {{default[{field}]}})")
    return " ".join(parts)


class _Defaults:
    """``TrainConfig()``'s field values as the help shows them (empty or None: auto)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def __getitem__(self, field: str) -> Any:
        value = getattr(self.config, field)
        return value if value not in ("", None) else "auto"


class LibraryHelp(TyperCommand):
    """A command whose option help names registry choices and ``TrainConfig`` defaults.

    They are read only when the help is shown: the registries' modules import torch, which
    ``spikeweave --help`` and the other commands must not wait for.
    """

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from ..encoding import ENCODERS
        from ..models import MODELS
        from ..neurons import NEURONS
        from ..surrogate import SURROGATES
        from ..tasks import TASKS
        from ..training.config import ANN_MODELS, TrainConfig
        from ..training.methods import METHODS

        values = {
            "choices": {
                "task": TASKS.choices(),
                "model": " | ".join([*MODELS.names(), *ANN_MODELS]),
                "neuron": NEURONS.choices(),
                "method": METHODS.choices(),
                "surrogate": SURROGATES.choices(),
                "encoder": ENCODERS.choices(),
            },
            "default": _Defaults(TrainConfig()),
        }
        for param in self.params:
            if param.help and "{" in param.help:  # a _help template not yet filled in
                param.help = param.help.format_map(values)
        super().format_help(ctx, formatter)
