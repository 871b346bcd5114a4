"""Hypothesis strategies shared by the tests of what spikeweave reads back from files.

Importable by name from every test folder (pytest puts ``tests/`` on ``sys.path`` for the
conftest), like ``real_data``.
"""

from __future__ import annotations

from hypothesis import strategies as st

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(["t", "u", ""]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["__dict__", "__tuple__", "__tensor__", "k"]),
            inner,
            min_size=1,
            max_size=2,
        )
    ),
    max_leaves=12,
)
"""Any JSON value, with objects keyed by the nested-state markers (and one plain key), as a
hostile file's metadata could hold."""
