"""One registry pattern: every choice is registered beside its definition, and help texts and
"choose one of" errors come from the registries."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from spikeweave.encoding import ENCODERS
from spikeweave.errors import ConfigError
from spikeweave.experiments import EXPERIMENTS
from spikeweave.models import MODELS
from spikeweave.neurons import NEURONS
from spikeweave.registry import Registry
from spikeweave.surrogate import SURROGATES
from spikeweave.tasks import TASKS
from spikeweave.training import METHODS

ALL = {
    "neuron": NEURONS,
    "surrogate": SURROGATES,
    "encoder": ENCODERS,
    "model": MODELS,
    "task": TASKS,
    "training method": METHODS,
    "experiment": EXPERIMENTS,
}


def test_every_registry_lists_its_entries_and_errors_with_the_choices():
    for kind, registry in ALL.items():
        assert len(registry) >= 2, kind
        with pytest.raises(ConfigError, match=f"unknown {kind} 'nope'; choose one of"):
            registry.get("nope")


def test_lazily_provided_entries_appear_without_importing_their_modules_first():
    assert {"bptt", "na", "noisy"} <= set(METHODS.names())
    assert {"klif-vs-lif", "reset-dependency", "na-vs-bptt", "noisy-single-step"} <= set(
        EXPERIMENTS.names()
    )


def test_a_name_cannot_be_registered_twice_for_different_objects():
    reg: Registry = Registry("thing")
    reg.register("a", int)
    reg.register("a", int)  # the same object again is fine (module reloads)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a", float)


def test_train_help_shows_every_registered_choice_and_the_defaults():
    from spikeweave.cli import app

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    text = " ".join(result.output.split())
    for registry in (NEURONS, SURROGATES, ENCODERS, TASKS, METHODS):
        assert registry.choices() in text
    assert "(default: mnist5k)" in text and "(default: lif)" in text and "(default: bptt)" in text


def test_version_flag_prints_the_version():
    from spikeweave import __version__
    from spikeweave.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"spikeweave {__version__}"


def test_a_registered_name_is_found_without_importing_the_providers():
    reg = Registry("thing", providers=("spikeweave.no_such_provider",))
    reg.register("a", 1)
    assert reg.get("a") == 1 and "a" in reg  # the (missing) provider was never imported
    with pytest.raises(ModuleNotFoundError):
        reg.get("b")  # an unknown name loads the providers first
