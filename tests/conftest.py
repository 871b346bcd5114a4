"""Shared test set-up.

- Real recordings: tests that read the shared recordings (``../shared/data/real`` from the
  repository root) import their location and the ``needs_real`` / ``needs_aedat4`` marks from
  ``tests/real_data.py`` (importable by name because pytest puts this folder on ``sys.path``
  for the conftest). ``SPIKEWEAVE_REAL_DATA=/some/folder`` points them elsewhere; a path that
  does not exist makes every such test skip with the reason, as on a fresh clone::

      SPIKEWEAVE_REAL_DATA=/nonexistent python -m pytest -q tests/data tests/compression

- Tiers: ``@pytest.mark.slow`` marks the long end-to-end runs; ``pytest -m "not slow"`` is the
  fast inner loop, plain ``pytest`` (what CI runs) runs everything.
"""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: on a shared, oversubscribed CPU, intra-op threads
    spin against each other and make training-heavy tests many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a GPU: skipped, saying why, where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is false here")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
