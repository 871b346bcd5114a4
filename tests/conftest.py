"""Shared test set-up.

- Real recordings: tests that read the shared recordings (``../shared/data/real`` from the
  repository root) import their location and the ``needs_real`` / ``needs_aedat4`` marks from
  ``tests/real_data.py`` (importable by name because pytest puts this folder on ``sys.path``
  for the conftest). ``SPIKEWEAVE_REAL_DATA=/some/folder`` points them elsewhere; a path that
  does not exist makes every such test skip with the reason, as on a fresh clone::

      SPIKEWEAVE_REAL_DATA=/nonexistent python -m pytest -q tests/data tests/compression

- Tiers: ``@pytest.mark.slow`` marks the long end-to-end runs; ``pytest -m "not slow"`` is the
  fast inner loop, plain ``pytest`` (what CI runs) runs everything.
- Triton without a GPU: Triton decorates its own library functions when it is first imported,
  and its CPU interpreter (``TRITON_INTERPRET=1``) only works if the variable was set by then.
  Without CUDA no test can run compiled Triton, so the session sets it here, before any test
  imports triton; the interpreter tests then build spikeweave's kernels for it, and no other
  code path calls Triton on a machine without a GPU.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


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
