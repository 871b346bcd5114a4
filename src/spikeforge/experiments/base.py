"""Experiment machinery: run both arms of a comparison on the same data, budget and seeds.

An :class:`Experiment` states the paper's claim, trains each arm for every seed through the
ordinary :class:`~spikeforge.training.Trainer` (so each arm leaves a normal run directory), and
returns a :class:`~spikeforge.experiments.report.Report`. ``quick`` selects a small version for
tests and CI; its verdict is never taken as evidence.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import ConfigError
from ..registry import Registry
from ..training import Callback, TrainConfig, Trainer, TrainingMethod, versions
from .report import Report

__all__ = ["Experiment", "ExperimentContext", "EXPERIMENTS", "register", "run_experiment"]


@dataclass
class ExperimentContext:
    """Where an experiment writes, how big it is, and which seeds it uses."""

    out_dir: Path
    quick: bool
    seeds: list[int]
    progress: bool = False

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
        :class:`Trainer` (method, injected datasets and callbacks as it takes them)."""
        trainer = Trainer(
            replace(cfg, seed=seed, out_dir=str(self.out_dir / "runs")),
            method=method,
            datasets=datasets,
            callbacks=callbacks,
            run_dir=self.out_dir / "runs" / f"{arm}-s{seed}",
            progress=self.progress,
        )
        trainer.fit()
        return trainer


class Experiment(ABC):
    """One method claim tested against its baseline."""

    name: str = ""
    title: str = ""
    claim: str = ""

    @abstractmethod
    def run(self, ctx: ExperimentContext) -> Report:
        """Run every arm for every seed and return the report (figures already written)."""


EXPERIMENTS: Registry[type[Experiment]] = Registry(
    "experiment",
    providers=tuple(
        f"spikeforge.experiments.{m}"
        for m in (
            "klif_vs_lif",
            "reset_dependency",
            "na_vs_bptt",
            "noisy_single_step",
            "bioleaf_vs_bp",
            "oscillation_defense",
            "sampling_vs_random",
        )
    ),
)


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: make the experiment available to ``spikeforge experiment NAME``."""
    return EXPERIMENTS.register(cls.name, cls, help=cls.title)


def run_experiment(
    name: str,
    quick: bool = False,
    seeds: int = 3,
    out_dir: str | Path = "runs/experiments",
    progress: bool = True,
) -> tuple[Report, Path]:
    """Run experiment ``name``; returns the report and the folder it was written to."""
    cls = EXPERIMENTS.get(name)
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(out_dir) / f"{name}{'-quick' if quick else ''}-{stamp}"
    ctx = ExperimentContext(folder, quick, list(range(seeds)), progress)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError, PermissionError) as exc:
        raise ConfigError(
            f"cannot create the report folder {folder}: {exc.strerror}; choose another --out-dir"
        ) from None
    start = time.perf_counter()
    report = cls().run(ctx)
    report.setup.setdefault("seeds", ctx.seeds)
    report.setup["quick"] = quick
    report.setup["wall_time_s"] = round(time.perf_counter() - start, 1)
    report.setup["versions"] = versions()
    if quick:
        report.held = None
        report.notes.append("--quick run: far too small to decide the claim; run without --quick.")
    report.write(folder)
    (folder / "command.json").write_text(
        json.dumps(
            {
                "command": f"spikeforge experiment {name}"
                f"{' --quick' if quick else ''} --seeds {seeds}"
            },
            indent=2,
        )
    )
    return report, folder
