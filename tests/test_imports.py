"""A fast start: ``import spikeweave`` and the CLI's help and ``data list`` leave the heavy
libraries unimported, while every public name still resolves on first use.

Each check runs in a fresh interpreter (this process has imported everything already) and
looks at ``sys.modules``: behaviour, not timing.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "sklearn", "scipy", "matplotlib", "spikeweave.training.trainer")


def _modules_after(code: str) -> set[str]:
    """The heavy modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_spikeweave_loads_no_trainer_sklearn_scipy_matplotlib_or_torch():
    assert _modules_after("import spikeweave") == set()


def test_a_submodule_is_an_attribute_without_importing_it_first_and_the_catalog_is_light():
    code = "import spikeweave\nassert spikeweave.data.catalog()[0]['name'] == 'digits'"
    assert _modules_after(code) == set()


@pytest.mark.parametrize("args", [["--help"], ["data", "list"], ["--version"]])
def test_cli_help_and_data_list_start_without_torch_or_the_trainer(args):
    run = f"""
import sys
from spikeweave import cli
sys.argv = ["spikeweave", *{args!r}]
try:
    cli.main()
except SystemExit:
    pass
"""
    assert _modules_after(run) == set()


@pytest.mark.parametrize("package", ["spikeweave", "spikeweave.data", "spikeweave.export",
                                     "spikeweave.compression", "spikeweave.models"])  # fmt: skip
def test_every_lazily_exported_name_resolves_and_is_listed_by_dir(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
        assert name in dir(module), name
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


def test_from_spikeweave_import_gives_the_defining_modules_objects():
    from spikeweave import LIF, Trainer, encoding, load_run

    assert LIF is importlib.import_module("spikeweave.neurons").LIF
    assert Trainer is importlib.import_module("spikeweave.training").Trainer
    assert load_run is importlib.import_module("spikeweave.training").load_run
    assert encoding is importlib.import_module("spikeweave.encoding")


@pytest.mark.slow
def test_training_imports_no_streaming_until_a_loaded_run_streams():
    probe = (
        "import sys\nimport spikeweave.training\n"
        "print('spikeweave.models.streaming' in sys.modules)\n"
        "from spikeweave.models import stream\n"
        "print('spikeweave.models.streaming' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
