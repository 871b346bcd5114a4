"""Tests for spikeweave.errors: the helpers that keep a message on one short line."""

from __future__ import annotations

from spikeweave.errors import one_line, shown


def test_one_line_collapses_whitespace_and_cuts_long_text_with_an_ellipsis() -> None:
    assert one_line("disk\n  full\t(28)") == "disk full (28)"
    assert one_line(OSError(28, "No space left")) == "[Errno 28] No space left"
    cut = one_line("x" * 500)
    assert len(cut) == 200 and cut.endswith("...") and cut.startswith("x" * 197)
    assert one_line("abcdef", limit=5) == "ab..."
    assert one_line("abcde", limit=5) == "abcde"


def test_shown_quotes_a_short_repr_and_the_type_name() -> None:
    assert shown("abc") == "'abc' (str)"
    assert shown([1]) == "[1] (list)"
    long = shown("y" * 100)
    assert long == f"'{'y' * 56}... (str)"
