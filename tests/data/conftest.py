"""Keep every data test's caches out of the user's ``~/.cache/spikeforge``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


# Module scope, not function scope: hypothesis refuses function-scoped fixtures in @given tests.
# Tests that count cache entries point SPIKEFORGE_CACHE at their own folder with monkeypatch.
@pytest.fixture(scope="module", autouse=True)
def _private_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("spikeforge-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPIKEFORGE_CACHE", str(root))
        yield root
