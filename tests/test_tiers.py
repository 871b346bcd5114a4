"""The fast tier's ``rotate`` marker (tests/tiers.py) keeps a covering subset of a grid."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
from tiers import rotated_out


def _item(rotate, axes, point):
    """A stand-in for a collected test: its parametrize marks and this point's values."""
    marks = {"rotate": SimpleNamespace(args=rotate)} if rotate else {}
    parametrize = [SimpleNamespace(args=(names, values)) for names, values in axes]
    return SimpleNamespace(
        get_closest_marker=marks.get,
        iter_markers=lambda name: iter(parametrize if name == "parametrize" else []),
        callspec=SimpleNamespace(params=point),
        nodeid="demo",
    )


AXES = [
    ("case", list(range(6))),
    ("reset,detach", [("hard", True), ("soft", False)]),
    ("surrogate", ["a", "b", pytest.param("c")]),
]


def _fast_points(rotate):
    fast = []
    for case, (reset, detach), surrogate in itertools.product(
        range(6), [("hard", True), ("soft", False)], ["a", "b", "c"]
    ):
        point = {"case": case, "reset": reset, "detach": detach, "surrogate": surrogate}
        if not rotated_out(_item(rotate, AXES, point)):
            fast.append((case, reset, surrogate))
    return fast


def test_rotate_keeps_one_point_per_other_combination_and_every_rotated_value():
    fast = _fast_points(("surrogate", "reset,detach"))
    assert sorted(c for c, _, _ in fast) == list(range(6))  # one point for each case
    assert {s for _, _, s in fast} == {"a", "b", "c"}  # a pytest.param value counts too
    assert {r for _, r, _ in fast} == {"hard", "soft"}
    # the first named axis cycles fastest
    assert [s for _, _, s in sorted(fast)] == ["a", "b", "c", "a", "b", "c"]


def test_without_rotate_every_point_stays_fast_and_a_wrong_axis_name_is_refused():
    assert len(_fast_points(())) == 6 * 2 * 3
    with pytest.raises(pytest.UsageError, match="rotate names no parametrize axis"):
        _fast_points(("dtype",))
