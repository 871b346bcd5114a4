"""Interleaving arms and seeds, so that slow drifts of a shared machine hit every arm alike.

Running arm A for all seeds and then arm B puts any change of machine load (another job
starting, thermal throttling) entirely on one arm. Here the order is *seed-major round
robin*: seed 0 of every arm, then seed 1 of every arm, ... . The arm that goes first rotates
with the seed (seed index ``i`` starts with arm ``i mod n_arms``), so no arm is always the
one that runs right after a cold start.

API:

- :func:`interleave(arms, seeds)` -> ``[(seed, arm), ...]`` in run order;
- :func:`run_interleaved(jobs, seeds)` runs ``jobs[arm](seed)`` in that order and returns
  ``{arm: [result per seed, in seed order]}`` (the order results come back in never depends
  on the order they were run in).

>>> interleave(["A", "B"], [0, 1, 2])
[(0, 'A'), (0, 'B'), (1, 'B'), (1, 'A'), (2, 'A'), (2, 'B')]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from ..errors import ConfigError

__all__ = ["interleave", "run_interleaved"]

R = TypeVar("R")


def interleave(arms: Sequence[str], seeds: Sequence[int]) -> list[tuple[int, str]]:
    """The run order ``[(seed, arm), ...]``: seed-major, the first arm rotating per seed."""
    arms = list(arms)
    if not arms:
        raise ConfigError("an experiment needs at least one arm to schedule")
    if len(set(arms)) != len(arms):
        raise ConfigError(f"arm names must be unique, got {arms}")
    order: list[tuple[int, str]] = []
    for i, seed in enumerate(seeds):
        shift = i % len(arms)
        order += [(seed, arm) for arm in arms[shift:] + arms[:shift]]
    return order


def run_interleaved(
    jobs: Mapping[str, Callable[[int], R]], seeds: Sequence[int]
) -> dict[str, list[R]]:
    """Run ``jobs[arm](seed)`` for every arm and seed in :func:`interleave` order; returns
    ``{arm: [result for seeds[0], seeds[1], ...]}`` with arms in ``jobs``' order."""
    by_arm: dict[str, dict[int, R]] = {arm: {} for arm in jobs}
    for seed, arm in interleave(list(jobs), seeds):
        by_arm[arm][seed] = jobs[arm](seed)
    return {arm: [results[s] for s in seeds] for arm, results in by_arm.items()}
