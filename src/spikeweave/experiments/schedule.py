"""Interleaving arms and seeds, so that slow drifts of a shared machine hit every arm alike.

Running arm A for all seeds and then arm B puts any change of machine load (another job
starting, thermal throttling) entirely on one arm. Here the order is *seed-major round
robin*: seed 0 of every arm, then seed 1 of every arm, ... . The arm that goes first rotates
with the seed (seed index ``i`` starts with arm ``i mod n_arms``), so no arm is always the
one that runs right after a cold start.

API:

- :func:`interleave(arms, seeds)` -> ``[(seed, arm), ...]`` in run order;
- :func:`run_interleaved(jobs, seeds, workers=1)` runs ``jobs[arm](seed)`` in that order and
  returns ``{arm: [result per seed, in seed order]}`` (the order results come back in never
  depends on the order they were run in). With ``workers > 1`` the runs go to that many forked
  processes, started in the same order (so the interleaving still spreads load over the
  arms); each job must return plain picklable data (numbers, lists, dicts), not a trainer,
  and must not rely on side effects in the parent. A job seeds everything it uses, so its
  result does not depend on the process it ran in (tested). ``done(finished, total)`` (an
  optional callback) is called in the parent after each run finishes, in the order they
  finish.

>>> interleave(["A", "B"], [0, 1, 2])
[(0, 'A'), (0, 'B'), (1, 'B'), (1, 'A'), (2, 'A'), (2, 'B')]
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

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
    jobs: Mapping[str, Callable[[int], R]],
    seeds: Sequence[int],
    workers: int = 1,
    done: Callable[[int, int], None] | None = None,
) -> dict[str, list[R]]:
    """Run ``jobs[arm](seed)`` for every arm and seed in :func:`interleave` order; returns
    ``{arm: [result for seeds[0], seeds[1], ...]}`` with arms in ``jobs``' order. ``workers``
    > 1 runs them in that many forked processes (see the module doc); ``done(finished,
    total)`` follows each finished run."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    order = interleave(list(jobs), seeds)
    tick = done if done is not None else (lambda finished, total: None)
    if workers == 1 or len(order) < 2:
        results = []
        for seed, arm in order:
            results.append(jobs[arm](seed))
            tick(len(results), len(order))
    else:
        results = _forked(jobs, order, workers, tick)
    by_arm: dict[str, dict[int, R]] = {arm: {} for arm in jobs}
    for (seed, arm), result in zip(order, results, strict=True):
        by_arm[arm][seed] = result
    return {arm: [done[s] for s in seeds] for arm, done in by_arm.items()}


# The jobs are closures, which cannot be pickled; a forked worker inherits them instead and
# receives only the index of the run to do.
_FORK_JOBS: tuple[Mapping[str, Callable[[int], Any]], list[tuple[int, str]]] | None = None


def _forked_run(index: int) -> tuple[int, Any]:
    assert _FORK_JOBS is not None
    jobs, order = _FORK_JOBS
    seed, arm = order[index]
    return index, jobs[arm](seed)


def _forked_init() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism


def _forked(
    jobs: Mapping[str, Callable[[int], R]],
    order: list[tuple[int, str]],
    workers: int,
    tick: Callable[[int, int], None],
) -> list[R]:
    global _FORK_JOBS
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigError("workers > 1 needs the 'fork' start method (Linux); use workers=1")
    _FORK_JOBS = (jobs, order)
    try:
        pool = multiprocessing.get_context("fork").Pool(
            min(workers, len(order)), initializer=_forked_init
        )
        results: dict[int, R] = {}
        with pool:
            # chunksize 1 hands the runs out in run order, one at a time; they come back as
            # they finish, so progress is told when it happens
            for index, result in pool.imap_unordered(_forked_run, range(len(order)), chunksize=1):
                results[index] = result
                tick(len(results), len(order))
        return [results[i] for i in range(len(order))]
    finally:
        _FORK_JOBS = None
