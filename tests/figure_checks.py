"""Check that figures read well, from the matplotlib ``Figure`` objects rather than pixels.

Importable by name from every test folder (pytest puts ``tests/`` on ``sys.path`` for the
conftest), like ``cli_run``. Use :func:`saved_figures` around code that writes PNGs: it keeps
every ``Figure`` whose ``savefig`` runs, whichever module drew it. Then
:func:`assert_readable` holds each one to the rules a reader needs:

- every plotting axes has an x label and a y label, its own or that of an axes it shares the
  axis with (a raster's stacked panels label their shared time axis once, at the bottom);
- an axes with more than one labelled series has a legend, its own or the figure's;
- every axes has a title, its own or the figure's heading.

An axes that shows an image (``imshow``: trigger grids, reconstruction grids) is deliberately
left without axis labels; for such image grids the figure's heading must say what a panel is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from matplotlib.figure import Figure


@contextmanager
def saved_figures() -> Iterator[list[Figure]]:
    """Within the block, every ``Figure.savefig`` call also appends its figure to the list."""
    kept: list[Figure] = []
    original = Figure.savefig

    def keep(self: Figure, *args: Any, **kwargs: Any) -> Any:
        kept.append(self)
        return original(self, *args, **kwargs)

    Figure.savefig = keep  # type: ignore[method-assign]
    try:
        yield kept
    finally:
        Figure.savefig = original  # type: ignore[method-assign]


def _heading(fig: Figure) -> str:
    sup = getattr(fig, "_suptitle", None)
    return sup.get_text().strip() if sup is not None else ""


def _label_of_shared(ax: Any, axis: str) -> str:
    """The axis label of ``ax``, or of any axes sharing that axis with it."""
    group = ax.get_shared_x_axes() if axis == "x" else ax.get_shared_y_axes()
    for other in [ax, *group.get_siblings(ax)]:
        text = (other.get_xlabel() if axis == "x" else other.get_ylabel()).strip()
        if text:
            return text
    return ""


def figure_problems(fig: Figure) -> list[str]:
    """What a reader would miss in ``fig``, one line per problem (empty when it reads well)."""
    problems: list[str] = []
    heading = _heading(fig)
    if not fig.axes:
        return ["the figure has no axes"]
    for i, ax in enumerate(fig.axes):
        where = f"axes {i} ({ax.get_title()!r})"
        if ax.images:  # an image grid: no axis labels on purpose, the heading explains it
            if not heading:
                problems.append(f"{where}: an image panel in a figure without a heading")
            continue
        if not _label_of_shared(ax, "x"):
            problems.append(f"{where}: no x label")
        if not _label_of_shared(ax, "y"):
            problems.append(f"{where}: no y label")
        if not (ax.get_title().strip() or heading):
            problems.append(f"{where}: no title and no figure heading")
        labels = ax.get_legend_handles_labels()[1]
        if len(labels) > 1 and ax.get_legend() is None and not fig.legends:
            problems.append(f"{where}: {len(labels)} labelled series but no legend")
    return problems


def assert_readable(figures: list[Figure], expected: int | None = None) -> None:
    """Every figure in ``figures`` reads well (see the module docstring); ``expected``: how
    many figures there must be (so a check of nothing cannot pass)."""
    assert figures, "no figure was saved"
    if expected is not None:
        assert len(figures) == expected, f"{len(figures)} figures saved, expected {expected}"
    problems = [f"figure {i}: {p}" for i, fig in enumerate(figures) for p in figure_problems(fig)]
    assert not problems, "\n".join(problems)
