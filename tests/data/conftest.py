"""Keep every data test's caches out of the user's ``~/.cache/spikeweave``."""

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
