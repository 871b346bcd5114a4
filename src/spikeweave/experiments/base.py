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
  metric, seconds, runs so far and time since the experiment started), and
  :meth:`ExperimentContext.run_interleaved` one per finished run of its batch (how many of
  how many, and about how long the rest takes), so a long experiment shows progress without
  per-run bars (``log=False`` silences both);
- :func:`run_experiment` records the machine (threads, load averages) before and after the
  run in ``report.json`` (``setup.machine``), and writes ``command.json``: the exact command,
  ``commit`` (:func:`git_commit`), ``machine``, ``device``, ``threads`` and ``load``
  (:func:`provenance`); every margin part's projected ``seeds_needed`` becomes a note when the
  run used fewer seeds (power by design: the run is its own pilot);
- ``workers`` (``--workers N``): experiments whose runs return plain data
  (:attr:`Experiment.parallel_runs`) may run them in N forked processes, one torch thread
  each, through :meth:`ExperimentContext.run_interleaved`; the count is recorded in
  ``setup.workers``, since runs that share the machine also share its time;
- work after training whose results are plain data (sweeps, attacks) goes through
  :meth:`ExperimentContext.run_saved`: the same workers, and each result saved as it
  finishes, so ``--resume`` loads it instead of computing it again;
- interleaving arms and seeds: :mod:`.schedule`; fair step timing on a chosen backend (the
  one timing block, :func:`~.timing.time_backends`): :mod:`.timing`; validation selection and
  the one per-image evaluation (:func:`~.selection.per_image`): :mod:`.selection`; tuned
  baselines: :mod:`.tuning`; every statistical test and verdict part: :mod:`.stats`; report
  writing and merging a report's parts (:func:`~.report.merge_parts`): :mod:`.report`.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
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
from ..training import Callback, RunDir, TrainConfig, Trainer, TrainingMethod, versions
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
    resume: bool = False
    """Continue an interrupted experiment: :meth:`train` loads finished runs and resumes
    checkpointed ones instead of training them anew (``--resume``)."""
    loaded_runs: Any = field(default_factory=lambda: multiprocessing.Value("q", 0))
    """How many runs and saved results were loaded instead of run (shared with forked
    workers, so the batch lines can leave them out of the pace)."""

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
        :class:`~.timing.StepTimer` adds ``step_time_s`` to every epoch row.

        With :attr:`resume`, a run directory that already has a checkpoint is not trained
        anew: a finished one (``summary.json``) is loaded (its checkpoint's weights, the
        best-validation ones under ``test_eval = "best-val"``, and history) and the callbacks'
        ``on_fit_end`` get its summary, as at the end of training (so
        :class:`~.selection.BestValPredictions` recomputes its per-image vector, which is
        deterministic); an unfinished one continues through :meth:`Trainer.resume`. Either
        way the run's config must equal the one asked for (else a one-line ConfigError)."""
        run_dir = self.out_dir / "runs" / f"{arm}-s{seed}"
        config = replace(cfg, seed=seed, out_dir=str(self.out_dir / "runs"), device=self.device)
        every = [*callbacks, StepTimer()]
        resumed = self.resume and (run_dir / RunDir.CHECKPOINT).is_file()
        finished = resumed and (run_dir / RunDir.SUMMARY).is_file()
        if resumed:
            trainer = Trainer.resume(
                run_dir, progress=self.progress, method=method, datasets=datasets,
                callbacks=every, device=self.device,
            )  # fmt: skip
            _check_same_run(run_dir, trainer.config, config, method)
        else:
            trainer = Trainer(config, method=method, datasets=datasets, callbacks=every,
                              run_dir=run_dir, progress=self.progress)  # fmt: skip
        if finished:
            with self.loaded_runs.get_lock():
                self.loaded_runs.value += 1
            summary = RunDir(run_dir).read_json(RunDir.SUMMARY)
            for cb in trainer.callbacks:
                cb.on_fit_end(trainer, summary)
        else:
            summary = trainer.fit()
        self.runs_done += 1
        if self.log:
            m = trainer.task.metric
            value = summary.get(f"test_{m}_at_best_val", summary.get(f"test_{m}"))
            shown = f"{m} {value:.4g}" if isinstance(value, float) else f"{m} n/a"
            # a forked worker counts only its own runs: name the worker instead (the parent's
            # batch line counts them all)
            who = f"run {self.runs_done}" if os.getpid() == self.pid else f"worker {os.getpid()}"
            done = "loaded (finished before)" if finished else "done"
            print(
                f"[{self.out_dir.name}] {who} {done}: {arm}-s{seed}, {shown}, "
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
        :attr:`runs_done` here, since each worker counted them in its own copy. With
        :attr:`log`, a line per finished run tells how many of the batch are done and about
        how long the rest will take (:class:`_BatchProgress`)."""
        seeds = self.seeds if seeds is None else seeds
        tell = (
            _BatchProgress(self.out_dir.name, self.workers, lambda: self.loaded_runs.value)
            if self.log
            else None
        )
        done = run_interleaved(jobs, seeds, workers=self.workers, done=tell)
        if self.workers > 1:
            self.runs_done += len(jobs) * len(seeds)
        return done

    def run_saved(
        self, batch: str, jobs: Mapping[str, Callable[[int], R]], seeds: Sequence[int] | None = None
    ) -> dict[str, list[R]]:
        """:meth:`run_interleaved` for work after training (sweeps, attacks) whose results are
        plain JSON data: each ``(arm, seed)`` result is saved as it finishes, atomically, in
        ``out_dir/results/<batch>/`` (by the process that computed it), and with
        :attr:`resume` the saved ones are loaded instead of computed again, so an interrupted
        experiment loses at most the jobs that were running. A result must be ``None``, a
        bool, int, float, str, or a list or str-keyed dict of those (a ConfigError otherwise:
        JSON would not give it back unchanged). A saved file that does not hold this batch's
        arm and seed is a one-line ConfigError."""
        seeds = self.seeds if seeds is None else seeds
        folder = self.out_dir / "results" / _file_name(batch)
        folder.mkdir(parents=True, exist_ok=True)
        saved: dict[tuple[str, int], Any] = {}
        if self.resume:
            for arm in jobs:
                for seed in seeds:
                    path = folder / _result_name(arm, seed)
                    if path.is_file():
                        saved[(arm, seed)] = _read_result(path, arm, seed)

        def run_and_save(arm: str, job: Callable[[int], R], seed: int) -> R:
            if (arm, seed) in saved:
                with self.loaded_runs.get_lock():
                    self.loaded_runs.value += 1
                return saved[(arm, seed)]
            result = job(seed)
            _check_plain(result, f"{batch}: the result of {arm!r}, seed {seed}")
            record = {"arm": arm, "seed": seed, "result": result}
            text = json.dumps(record, ensure_ascii=False, allow_nan=True)
            atomic_write_bytes(folder / _result_name(arm, seed), text.encode() + b"\n")
            return result

        wrapped = {
            arm: (lambda seed, a=arm, j=job: run_and_save(a, j, seed)) for arm, job in jobs.items()
        }
        if saved and self.log:
            print(f"[{self.out_dir.name}] {batch}: {len(saved)} of {len(jobs) * len(seeds)} "
                  "results loaded (saved before)", file=sys.stderr, flush=True)  # fmt: skip
        return self.run_interleaved(wrapped, seeds)


def _file_name(label: str) -> str:
    """A file name for ``label`` that no two labels share: the label's letters and digits,
    then a hash of the whole label."""
    keep = "".join(c if c.isascii() and (c.isalnum() or c in ".=") else "-" for c in label)
    digest = hashlib.sha1(label.encode()).hexdigest()[:8]
    return f"{keep.strip('-')[:60]}-{digest}"


def _result_name(arm: str, seed: int) -> str:
    return f"{_file_name(arm)}-s{seed}.json"


_PLAIN_LEAVES = (type(None), bool, int, float, str)


def _check_plain(value: Any, what: str) -> None:
    if isinstance(value, _PLAIN_LEAVES):
        return
    if isinstance(value, list):
        for v in value:
            _check_plain(v, what)
        return
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for v in value.values():
            _check_plain(v, what)
        return
    raise ConfigError(
        f"{what} holds a {type(value).__name__}, which JSON would not give back unchanged; "
        "return lists, str-keyed dicts, numbers, strings, bools or None"
    )


def _read_result(path: Path, arm: str, seed: int) -> Any:
    """The saved result of ``(arm, seed)``; a one-line ConfigError if the file is not one."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the saved result {path}: {exc}") from None
    if not (isinstance(record, dict) and record.get("arm") == arm and record.get("seed") == seed
            and "result" in record):  # fmt: skip
        raise ConfigError(
            f"the saved result {path} is not the one of {arm!r}, seed {seed}; remove it to "
            "compute it again"
        )
    return record["result"]


class _BatchProgress:
    """``done(finished, total)`` for :func:`~.schedule.run_interleaved`: one stderr line per
    finished run with the batch's count and the time left at the pace of the last
    ``2 × workers`` runs done since the last loaded one. ``loaded()`` counts the runs loaded
    so far (finished before a ``--resume``; in any process): loading a run can take minutes
    (its per-image vector is recomputed), so its time is no pace to go by, and the clock
    restarts after it."""

    def __init__(self, name: str, workers: int, loaded: Callable[[], int] = lambda: 0) -> None:
        self.name, self.window, self.loaded = name, 2 * max(workers, 1), loaded
        self.seen = loaded()
        self.times = [time.perf_counter()]  # the batch's start (or last load), then run ends

    def __call__(self, finished: int, total: int) -> None:
        now = time.perf_counter()
        if self.loaded() > self.seen:  # this one (or one told next) was loaded, not run
            self.seen += 1
            self.times = [now]
        else:
            self.times.append(now)
        k = min(len(self.times) - 1, self.window)
        span = self.times[-1] - self.times[-1 - k] if k else 0.0
        left = total - finished
        if left == 0:
            when = "batch done"
        elif span < 1.0:  # nothing run since the start or the last load: no pace yet
            when = "time left not known yet"
        else:
            when = f"about {_duration(span / k * left)} left"
        print(f"[{self.name}] {finished} of {total} runs of this batch finished, {when}",
              file=sys.stderr, flush=True)  # fmt: skip


def _duration(seconds: float) -> str:
    """``'40 s'``, ``'12 min'``, ``'1.5 h'``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


_MISSING = object()


def _covers(have: Any, want: Any) -> bool:
    """``have == want``, except that a dict (at any depth) may hold entries ``want`` leaves
    out: options a run filled in with their defaults (``method_options``, a transform's)."""
    if isinstance(want, dict) and isinstance(have, dict):
        return all(k in have and _covers(have[k], v) for k, v in want.items())
    return have == want


_FILLED_BY_THE_RUN = ("out_dir", "device", "threads", "data_root")
"""Config fields a resumed run may differ in: where it writes and computes, not what it is."""


def _check_same_run(
    run_dir: Path, saved: TrainConfig, asked: TrainConfig, method: object = None
) -> None:
    """Refuse to resume or load the run in ``run_dir`` when its config differs from the one
    the experiment asks for now (changed settings or code). Fields the assembly fills in
    (left empty in ``asked``), entries of a dict field that ``asked`` leaves out (the method's
    options at their defaults) and :data:`_FILLED_BY_THE_RUN` are not compared; a ``method``
    given as an instance records its own name and options, so those compare only when the
    method is named by the config."""
    skip = set(_FILLED_BY_THE_RUN)
    if method is not None and not isinstance(method, str):
        skip |= {"method", "method_options"}
    have, want = saved.to_dict(), asked.to_dict()

    differ = [
        k for k, v in want.items()
        if k not in skip and v not in ("", None, [], {}) and not _covers(have.get(k, _MISSING), v)
    ]  # fmt: skip
    if differ:
        k = differ[0]
        raise ConfigError(
            f"{run_dir} was trained with {k} = {have.get(k)!r}, the experiment now asks for "
            f"{want[k]!r} ({len(differ)} field(s) differ); resume it with the settings and code "
            "it started with, or start a new experiment"
        )


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


SETTINGS = "settings.json"
"""The experiment folder's record of what it runs: name, quick, seeds, device, workers, and
``commits`` (every commit it ran under: the start and each resume)."""


def _start_folder(folder: Path, settings: dict[str, Any]) -> list[str | None]:
    """Create the report folder of a new experiment and record its settings atomically;
    returns the commits it has run under (this one)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError, PermissionError) as exc:
        raise ConfigError(
            f"cannot create the report folder {folder}: {exc.strerror}; choose another --out-dir"
        ) from None
    commits = [git_commit()[0]]
    _write_settings(folder, {**settings, "commits": commits})
    return commits


def _write_settings(folder: Path, record: dict[str, Any]) -> None:
    atomic_write_bytes(folder / SETTINGS, (json.dumps(record, indent=2) + "\n").encode())


def _resume_folder(folder: Path, settings: dict[str, Any]) -> list[str | None]:
    """Check that ``folder`` is an unfinished experiment started with ``settings``, record
    this resume's commit in its settings, and return every commit it has run under. A
    finished folder (``report.json`` written) is refused: there is nothing to resume."""
    path = folder / SETTINGS
    if not folder.is_dir():
        raise ConfigError(f"--resume {folder}: no such experiment folder")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"--resume {folder}: no {SETTINGS}; it is not an experiment folder this version "
            "started (or it was started before experiments could resume)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--resume {folder}: cannot read {SETTINGS}: {exc}") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"--resume {folder}: {SETTINGS} does not hold a JSON object")
    differ = [k for k, v in settings.items() if saved.get(k) != v]
    if differ:
        shown = ", ".join(f"{k} {saved.get(k)!r} (now {settings[k]!r})" for k in differ)
        raise ConfigError(
            f"--resume {folder}: it was started with {shown}; resume with the same settings"
        )
    if (folder / "report.json").exists():
        raise ConfigError(
            f"--resume {folder}: the experiment is finished (report.json is written); nothing "
            "to resume. Start a new one to run it again"
        )
    commits = saved.get("commits")
    commits = list(commits) if isinstance(commits, list) else []
    commits.append(git_commit()[0])
    _write_settings(folder, {**saved, "commits": commits})
    return commits


def run_experiment(
    name: str,
    quick: bool = False,
    seeds: int | None = None,
    out_dir: str | Path = "runs/experiments",
    progress: bool = True,
    workers: int = 1,
    device: str = "cpu",
    resume: str | Path | None = None,
) -> tuple[Report, Path]:
    """Run experiment ``name``; returns the report and the folder it was written to.

    ``seeds`` per arm default to :data:`DEFAULT_SEEDS` (full) or :data:`QUICK_SEEDS` (quick).
    ``workers`` > 1 is for experiments with :attr:`Experiment.parallel_runs`. ``device``: where
    every arm trains and is timed (resolved here: a GPU that is not there is refused before any
    run); the report's setup records it.

    The folder records its settings (name, quick, seeds, device, workers) in
    ``settings.json`` when it starts. ``resume`` (a folder an interrupted run left) continues
    it instead of starting a new one (``out_dir`` is then unused): the settings must be the
    ones it started with (else a one-line ConfigError); finished runs are loaded, checkpointed
    ones resumed (:meth:`ExperimentContext.train`), results saved through
    :meth:`ExperimentContext.run_saved` loaded; the rest (timing, work not saved) runs
    again. A finished folder is refused. ``command.json`` lists every commit the
    experiment ran under, and the report's setup says so when there were several.
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
    settings = {
        "name": name, "quick": quick, "seeds": seeds, "device": str(where), "workers": workers,
    }  # fmt: skip
    if resume is not None:
        folder = Path(resume)
        commits = _resume_folder(folder, settings)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = Path(out_dir) / f"{name}{'-quick' if quick else ''}-{stamp}"
        commits = _start_folder(folder, settings)
    ctx = ExperimentContext(
        folder, quick, list(range(seeds)), progress, workers=workers, device=str(where),
        resume=resume is not None,
    )  # fmt: skip
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
    if resume is not None:
        report.setup["resumed"] = len(commits) - 1
        report.setup["wall_time_s_note"] = "this session only: the experiment was resumed"
    if len(set(commits)) > 1:
        report.setup["commits"] = commits
        report.notes.append(
            f"The experiment ran under {len(set(commits))} commits (it was interrupted and "
            f"resumed): {', '.join(str(c)[:12] for c in commits)}; command.json lists them."
        )
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
    record["commits"] = commits
    if resume is not None:
        record["resumed"] = f"--resume {folder}, {len(commits) - 1} time(s)"
    atomic_write_bytes(folder / "command.json", json.dumps(record, indent=2).encode())
    return report, folder
