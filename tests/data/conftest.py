"""Keep every data test's caches out of the user's ``~/.cache/spikeweave``, and the machine's
system dataset folder out of every data test that does not ask for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


# Module scope, not function scope: hypothesis refuses function-scoped fixtures in @given tests.
# Tests that count cache entries point SPIKEWEAVE_CACHE at their own folder with monkeypatch.
@pytest.fixture(scope="module", autouse=True)
def _private_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("spikeweave-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPIKEWEAVE_CACHE", str(root))
        yield root


@pytest.fixture(autouse=True)
def _no_system_datasets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Datasets a system package installed (Debian's /usr/share/datasets) would make "not found"
    tests pass or fail by machine; tests of that folder point it at their own."""
    from spikeweave.data import layouts

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(layouts, "SYSTEM_DATA", tmp_path_factory.mktemp("no-system-datasets"))
        yield
