"""The fast tier's covering subsets of large grids: the ``rotate`` marker (tests/conftest.py
marks the points it leaves out ``slow``). Importable by name, as pytest puts this folder on
``sys.path`` for the conftest."""

from __future__ import annotations

import os

import pytest

FAST_TIER_ENV = "SPIKEWEAVE_FAST_TIER"
"""Set (by tests/conftest.py) when the run leaves the slow tier out: ``pytest -m "not slow"``."""


def _param_values(value, n: int) -> tuple:
    """One parametrize entry as the tuple of its values (a ``pytest.param`` unwrapped)."""
    if isinstance(value, type(pytest.param(None))):
        value = value.values if n > 1 else value.values[0]
    return tuple(value) if n > 1 else (value,)


def rotated_out(item) -> bool:
    """Whether a ``rotate``-marked grid point belongs to the slow tier only.

    The other parametrize axes are numbered as one mixed-radix combination ``c`` (innermost
    decorator first); the fast tier keeps the point whose rotated axes' indices are the next
    digits of ``c`` (the first named axis cycles fastest), so consecutive combinations take
    consecutive values of each rotated axis."""
    marker = item.get_closest_marker("rotate")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None:
        return False
    rotated = set(marker.args)
    axes = []  # (parametrize argnames as written, index of this item's value, number of values)
    for mark in item.iter_markers("parametrize"):
        names, values = mark.args[0], list(mark.args[1])
        listed = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        mine = tuple(callspec.params[n] for n in listed)
        rows = [_param_values(v, len(listed)) for v in values]
        # the grid holds these very objects; identity first, so equal-looking values stay apart
        same = [all(a is b for a, b in zip(row, mine, strict=True)) for row in rows]
        index = same.index(True) if any(same) else rows.index(mine)
        axes.append((",".join(listed), index, len(values)))
    unknown = rotated - {a[0] for a in axes}
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: rotate names no parametrize axis {unknown}")
    combination, radix = 0, 1
    for written, index, size in axes:
        if written not in rotated:
            combination += index * radix
            radix *= size
    for name in marker.args:  # the first named axis cycles fastest
        _, index, size = next(a for a in axes if a[0] == name)
        if index != combination % size:
            return True
        combination //= size
    return False


def examples(n: int) -> int:
    """A fuzz test's ``max_examples``: all ``n`` in the full run (CI), a quarter (at least 10) in
    the fast tier, whose inner loop wants each fuzzer's smoke, not its full search."""
    return max(10, n // 4) if os.environ.get(FAST_TIER_ENV) else n
