"""Experiment machinery: run both arms of a comparison on the same data, budget and seeds.

An :class:`Experiment` states the paper's claim, trains each arm for every seed through the
ordinary :class:`~spikeweave.training.Trainer` (so each arm leaves a normal run directory), and
returns a :class:`~spikeweave.experiments.report.Report`. ``quick`` selects a small version for
tests and CI; its verdict is never taken as evidence.

Machinery every experiment shares (issue 17):

- seeds: full runs default to :data:`DEFAULT_SEEDS` (5), quick runs to :data:`QUICK_SEEDS`;
- :meth:`ExperimentContext.train` attaches a :class:`~.timing.StepTimer`, so every epoch row
  has ``step_time_s`` (median seconds per training batch) apart from ``epoch_time_s``;
- :meth:`ExperimentContext.train` prints one line per finished run to stderr (run name, its
  metric, seconds, runs so far and time since the experiment started), so a long experiment
  shows progress without per-run bars (``log=False`` silences it);
- :func:`run_experiment` records the machine (threads, load averages) before and after the
  run in ``report.json`` (``setup.machine``), and writes ``command.json``: the exact command,
  ``commit`` (:func:`git_commit`), ``machine``, ``device``, ``threads`` and ``load``
  (:func:`provenance`); every margin part's projected ``seeds_needed`` becomes a note when the
  run used fewer seeds (power by design: the run is its own pilot);
- ``workers`` (``--workers N``): experiments whose runs return plain data
  (:attr:`Experiment.parallel_runs`) may run them in N forked processes, one torch thread
  each, through :meth:`ExperimentContext.run_interleaved`; the count is recorded in
  ``setup.workers``, since runs that share the machine also share its time;
- interleaving arms and seeds: :mod:`.schedule`; fair step timing on a chosen backend (the
  one timing block, :func:`~.timing.time_backends`): :mod:`.timing`; validation selection and
  the one per-image evaluation (:func:`~.selection.per_image`): :mod:`.selection`; tuned
  baselines: :mod:`.tuning`; every statistical test and verdict part: :mod:`.stats`; report
  writing and merging a report's parts (:func:`~.report.merge_parts`): :mod:`.report`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.utils.data import Dataset

from ..atomic import atomic_write_bytes
from ..errors import ConfigError
from ..registry import Registry
from ..training import Callback, TrainConfig, Trainer, TrainingMethod, versions
from ..training.device import describe_device, resolve_device
from ..version import git_commit
from .report import Report
from .schedule import run_interleaved
from .timing import StepTimer, machine_state

R = TypeVar("R")

__all__ = [
    "DEFAULT_SEEDS",
    "QUICK_SEEDS",
    "Experiment",
    "ExperimentContext",
    "EXPERIMENTS",
    "register",
    "run_experiment",
    "git_commit",
    "provenance",
    "seed_notes",
]

DEFAULT_SEEDS = 5
"""Seeds per arm of a full run: enough for a paired test across seeds."""
QUICK_SEEDS = 2
"""Seeds per arm of a ``--quick`` run: two, so the paired statistics run at all."""


@dataclass
class ExperimentContext:
    """Where an experiment writes, how big it is, and which seeds it uses."""

    out_dir: Path
    quick: bool
    seeds: list[int]
    progress: bool = False
    log: bool = True
    runs_done: int = 0
    started: float = field(default_factory=time.perf_counter)
    workers: int = 1
    """Processes an experiment with :attr:`Experiment.parallel_runs` may run its runs in."""
    pid: int = field(default_factory=os.getpid)
    device: str = "cpu"
    """Where every arm trains and is timed (``--device``: ``auto``, ``cpu``, ``cuda:N``)."""

    def train(
        self,
        arm: str,
        cfg: TrainConfig,
        seed: int,
        method: TrainingMethod | str | None = None,
        datasets: tuple[Dataset, Dataset] | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> Trainer:
        """Train ``cfg`` with ``seed`` into ``out_dir/runs/<arm>-s<seed>`` through the ordinary
        :class:`Trainer` (method, injected datasets and callbacks as it takes them); a
        :class:`~.timing.StepTimer` adds ``step_time_s`` to every epoch row."""
        trainer = Trainer(
            replace(cfg, seed=seed, out_dir=str(self.out_dir / "runs"), device=self.device),
            method=method,
            datasets=datasets,
            callbacks=[*callbacks, StepTimer()],
            run_dir=self.out_dir / "runs" / f"{arm}-s{seed}",
            progress=self.progress,
        )
        summary = trainer.fit()
        self.runs_done += 1
        if self.log:
            m = trainer.task.metric
            value = summary.get(f"test_{m}_at_best_val", summary.get(f"test_{m}"))
            shown = f"{m} {value:.4g}" if isinstance(value, float) else f"{m} n/a"
            # a forked worker counts its own runs; say which worker it is
            who = f" (worker {os.getpid()})" if os.getpid() != self.pid else ""
            print(
                f"[{self.out_dir.name}] run {self.runs_done}{who} done: {arm}-s{seed}, {shown}, "
                f"{trainer.wall_time_s:.0f} s ({time.perf_counter() - self.started:.0f} s "
                "since the start)",
                file=sys.stderr,
                flush=True,
            )
        return trainer

    def run_interleaved(
        self, jobs: Mapping[str, Callable[[int], R]], seeds: Sequence[int] | None = None
    ) -> dict[str, list[R]]:
        """:func:`~.schedule.run_interleaved` over ``seeds`` (default: the experiment's) in
        :attr:`workers` processes; runs done in forked workers are added to
        :attr:`runs_done` here, since each worker counted them in its own copy."""
        seeds = self.seeds if seeds is None else seeds
        done = run_interleaved(jobs, seeds, workers=self.workers)
        if self.workers > 1:
            self.runs_done += len(jobs) * len(seeds)
        return done


class Experiment(ABC):
    """One method claim tested against its baseline."""

    name: str = ""
    title: str = ""
    claim: str = ""
    parallel_runs: bool = False
    """True where some runs return plain data and go through ``ctx.workers`` processes."""

    @abstractmethod
    def run(self, ctx: ExperimentContext) -> Report:
        """Run every arm for every seed and return the report (figures already written)."""

    def report(self, **fields: Any) -> Report:
        """A :class:`Report` under this experiment's name, title and claim; ``fields``: the
        rest of the report's fields (setup, parts, tables, ...)."""
        return Report(name=self.name, title=self.title, claim=self.claim, **fields)


EXPERIMENTS: Registry[type[Experiment]] = Registry(
    "experiment",
    providers=tuple(
        f"spikeweave.experiments.{m}"
        for m in (
            "klif_vs_lif",
            "reset_dependency",
            "na_vs_bptt",
            "noisy_single_step",
            "bioleaf_vs_bp",
            "oscillation_defense",
            "sampling_vs_random",
            "mesa",
        )
    ),
)


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: make the experiment available to ``spikeweave experiment NAME``."""
    return EXPERIMENTS.register(cls.name, cls, help=cls.title)


def provenance(command: str, device: str | None = None) -> dict[str, object]:
    """``command.json``: the exact ``command``, ``commit`` (null with ``commit_note`` when
    unknown), ``machine`` (host, OS, processor, Python), ``device`` (default ``cpu``),
    ``threads`` (torch intra-op threads) and ``load`` (1/5/15-minute load averages)."""
    commit, note = git_commit()
    record: dict[str, object] = {"command": command, "commit": commit}
    if note:
        record["commit_note"] = note
    record.update(
        machine={
            "host": platform.node(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        device=device or "cpu",
        threads=torch.get_num_threads(),
        load=[round(v, 2) for v in os.getloadavg()],
    )
    return record


def seed_notes(report: Report) -> list[str]:
    """One note per margin part whose projected ``seeds_needed`` exceeds the seeds it had (or
    is out of reach): how many seeds a decisive run needs, from this run's variance."""
    notes = []
    for p in report.parts:
        if getattr(p, "margin", None) is None:
            continue
        if p.seeds_needed is None and p.status in ("not testable", "undecidable at this budget"):
            notes.append(
                f"{p.name}: no seed count up to the search limit brings the interval below "
                f"the margin {p.margin:g} (or the pilot had no spread)."
            )
        elif p.seeds_needed is not None and p.seeds_needed > p.n:
            notes.append(f"{p.name}: needs {p.seeds_needed} seeds for its margin {p.margin:g} "
                         f"(projected from this run's {p.n}); run with --seeds "
                         f"{p.seeds_needed} or more.")  # fmt: skip
    return notes


def run_experiment(
    name: str,
    quick: bool = False,
    seeds: int | None = None,
    out_dir: str | Path = "runs/experiments",
    progress: bool = True,
    workers: int = 1,
    device: str = "cpu",
) -> tuple[Report, Path]:
    """Run experiment ``name``; returns the report and the folder it was written to.

    ``seeds`` per arm default to :data:`DEFAULT_SEEDS` (full) or :data:`QUICK_SEEDS` (quick).
    ``workers`` > 1 is for experiments with :attr:`Experiment.parallel_runs`. ``device``: where
    every arm trains and is timed (resolved here: a GPU that is not there is refused before any
    run); the report's setup records it.
    """
    cls = EXPERIMENTS.get(name)
    if seeds is None:
        seeds = QUICK_SEEDS if quick else DEFAULT_SEEDS
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and not cls.parallel_runs:
        parallel = sorted(n for n in EXPERIMENTS.names() if EXPERIMENTS.get(n).parallel_runs)
        raise ConfigError(
            f"experiment {name} runs in one process (its runs hand trainers to the report); "
            f"--workers is for: {', '.join(parallel) or 'none'}"
        )
    where = resolve_device(device)
    if workers > 1 and where.type == "cuda":
        raise ConfigError(
            "--workers forks processes, which cannot share a CUDA context; use --workers 1 "
            "with a GPU (its runs are fast enough one after another)"
        )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(out_dir) / f"{name}{'-quick' if quick else ''}-{stamp}"
    ctx = ExperimentContext(
        folder, quick, list(range(seeds)), progress, workers=workers, device=str(where)
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError, PermissionError) as exc:
        raise ConfigError(
            f"cannot create the report folder {folder}: {exc.strerror}; choose another --out-dir"
        ) from None
    before = machine_state()
    start = time.perf_counter()
    report = cls().run(ctx)
    report.setup.setdefault("seeds", ctx.seeds)
    report.setup["machine"] = {"before": before, "after": machine_state()}
    report.setup["quick"] = quick
    report.setup["workers"] = workers
    report.setup["device"] = describe_device(where)
    report.setup["wall_time_s"] = round(time.perf_counter() - start, 1)
    report.setup["versions"] = versions()
    report.notes.extend(seed_notes(report))
    if quick:
        report.held = None
        report.notes.append("--quick run: far too small to decide the claim; run without --quick.")
    report.write(folder)
    command = (
        f"spikeweave experiment {name}{' --quick' if quick else ''} --seeds {seeds}"
        f"{f' --workers {workers}' if workers > 1 else ''}"
    )
    device = report.setup.get("device") if isinstance(report.setup.get("device"), str) else None
    record = provenance(command, device)
    atomic_write_bytes(folder / "command.json", json.dumps(record, indent=2).encode())
    return report, folder
