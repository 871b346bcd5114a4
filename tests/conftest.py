"""Shared test set-up.

- Real recordings: tests that read the shared recordings (``../shared/data/real`` from the
  repository root) import their location and the ``needs_real`` / ``needs_aedat4`` marks from
  ``tests/real_data.py`` (importable by name because pytest puts this folder on ``sys.path``
  for the conftest). ``SPIKEWEAVE_REAL_DATA=/some/folder`` points them elsewhere; a path that
  does not exist makes every such test skip with the reason, as on a fresh clone::

      SPIKEWEAVE_REAL_DATA=/nonexistent python -m pytest -q tests/data tests/compression

- Tiers: ``@pytest.mark.slow`` marks the long end-to-end runs; ``pytest -m "not slow"`` is the
  fast inner loop, plain ``pytest`` (what CI runs) runs everything. A large grid keeps its full
  product under ``slow`` and a covering subset in the fast tier with
  ``@pytest.mark.rotate("surrogate", "dtype")``: per combination of the other parameters, the
  fast tier runs one value of each named parameter, taken in turn (``tests/tiers.py``), so
  every value still meets many of the other combinations.
  Fuzz tests take ``max_examples=examples(N)``: all N examples in the full run, a quarter
  in the fast tier.
- Threads: each test process runs torch on one intra-op thread (see below).
- Triton without a GPU: Triton decorates its own library functions when it is first imported,
  and its CPU interpreter (``TRITON_INTERPRET=1``) only works if the variable was set by then.
  Without CUDA no test can run compiled Triton, so the session sets it here, before any test
  imports triton; the interpreter tests then build spikeweave's kernels for it, and no other
  code path calls Triton on a machine without a GPU.
"""

import os

import pytest
import torch
from tiers import FAST_TIER_ENV, rotated_out

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# One intra-op thread per test process: the README's command runs two workers on two cores,
# where a worker's extra threads only spin against the other's (on the fast tier's training
# tests that doubled the CPU time). Tests that need other settings set and restore their own.
torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: on a shared, oversubscribed CPU, intra-op threads
    spin against each other and make training-heavy tests many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_configure(config):
    """The fast tier (``-m "not slow"``) runs each fuzz test at a quarter of its examples
    (``tiers.examples``); set before any test module is imported, and inherited by xdist's
    workers."""
    if "not slow" in (config.option.markexpr or ""):
        os.environ[FAST_TIER_ENV] = "1"


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Grid points that ``rotate`` leaves to the slow tier are marked ``slow``; tests marked
    ``cuda`` need a GPU: skipped, saying why, where CUDA is not available."""
    for item in items:
        if rotated_out(item):
            item.add_marker(pytest.mark.slow)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is false here")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
