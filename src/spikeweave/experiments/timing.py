"""Fair timing: per-step compute apart from epoch wall-clock, the backend each arm really ran
on, and the machine's state while it ran.

Epoch wall-clock mixes the training steps with evaluation, data loading and whatever else the
machine was doing. This module separates them:

- :class:`StepTimer` — a trainer callback (no ``Trainer`` subclass) that adds
  ``step_time_s`` (median seconds per training batch, between consecutive batch ends) and
  ``step_time_s_sum`` to every epoch's row. :class:`~.base.ExperimentContext.train` attaches
  one to every run.
- :func:`time_arms` — a micro-benchmark of forward + backward on one fixed batch for every arm,
  *interleaved* in rounds (A, B, B, A, ...), on a backend you choose. Use it to time both arms
  on the same backend class: when one arm has no compiled kernel (KLIF today), time both with
  ``backend="torch"`` as well as as-shipped (``backend=None``), and report both. The backend is
  a parameter, never an assumption: when a compiled kernel is added for an arm, the as-shipped
  timing changes and the report says which backend each arm resolved to
  (:func:`neuron_backends`).
- :func:`time_backends` — :func:`time_arms` once per backend (as shipped, then e.g. every arm
  on the torch path), the one timing block every experiment uses; :func:`timing_table` and
  :func:`timing_results` give its report table and ``results`` entry, and
  :func:`cpu_overhead` the per-round extra CPU time of one arm over another;
  :func:`cases_from_records` the timing cases of runs trained in (possibly forked) jobs.
- :func:`machine_state` — thread counts, CPU count and ``os.getloadavg()``;
  :func:`~.base.run_experiment` records it before and after every experiment, and every
  timing round records the 1-minute load it ran under (``ArmTiming.load``).

Wall-clock and process CPU time are both kept: on a shared machine the CPU time of a
single-threaded run is the steadier of the two.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..functional.fused import BACKENDS, select_backend
from ..neurons import SpikingNeuron, _charge_only
from ..training import Callback, flush_denormal, load_run
from ..training.device import model_device, synchronize
from .report import Table

__all__ = [
    "StepTimer",
    "TimingCase",
    "ArmTiming",
    "machine_state",
    "set_backend",
    "neuron_backends",
    "case_from_trainer",
    "case_from_run",
    "time_arms",
    "time_backends",
    "timing_table",
    "timing_results",
    "cpu_overhead",
    "cases_from_records",
]


class StepTimer(Callback):
    """Adds ``step_time_s`` (median seconds per training batch) and ``step_time_s_sum`` to
    every epoch row; the first interval of an epoch includes the data loader's start-up, which
    the median ignores."""

    def __init__(self) -> None:
        self._mark = 0.0
        self._steps: list[float] = []

    def on_epoch_start(self, trainer, epoch):  # noqa: D102
        self._steps = []
        synchronize(trainer.device)
        self._mark = time.perf_counter()

    def on_batch_end(self, trainer, epoch, batch, loss):  # noqa: D102
        synchronize(trainer.device)  # the step's queued GPU work belongs to this step
        now = time.perf_counter()
        self._steps.append(now - self._mark)
        self._mark = now

    def on_epoch_end(self, trainer, epoch, row):  # noqa: D102
        if self._steps:
            row["step_time_s"] = statistics.median(self._steps)
            row["step_time_s_sum"] = sum(self._steps)


def machine_state() -> dict[str, Any]:
    """Threads, CPUs and load averages now (load: 1, 5 and 15 minute averages)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        usable = os.cpu_count()
    return {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    """Set every spiking neuron of ``model`` to ``backend`` (one of the fused module's
    ``BACKENDS``); returns ``model``."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    for m in model.modules():
        if isinstance(m, SpikingNeuron):
            m.backend = backend
    return model


def neuron_backends(model: nn.Module, x: torch.Tensor) -> dict[str, str]:
    """``{neuron name: concrete backend}`` for one forward of ``model`` on ``x``: ``cpu``,
    ``triton``, ``torch``, ``reference``, or ``custom`` for a neuron whose class sets
    ``custom_forward = True`` (its own per-step loop under autograd)."""
    found: dict[str, str] = {}
    hooks = []
    for name, m in model.named_modules():
        if not isinstance(m, SpikingNeuron):
            continue

        def hook(mod: nn.Module, args: tuple, name: str = name) -> None:
            xin = args[0]
            if getattr(mod, "custom_forward", False):  # runs its own loop, not the fused one
                found[name] = "custom"
            elif _charge_only(type(mod)):
                found[name] = "reference"
            else:
                found[name] = select_backend(xin, mod.dynamics(xin), mod.fire_reset(), mod.backend)

        hooks.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return found


@dataclass
class TimingCase:
    """One arm's step to time: ``loss(model(inputs), target).backward()``."""

    model: nn.Module
    inputs: torch.Tensor
    target: torch.Tensor
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ArmTiming:
    """Per-step seconds of one arm: one median per round (wall-clock and process CPU), and the
    machine's 1-minute load average when each round started."""

    backend: str
    resolved: dict[str, str]
    device: str = "cpu"
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:  # noqa: D102
        return {
            "backend": self.backend,
            "resolved": self.resolved,
            "device": self.device,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "load": self.load,
            "median_wall_s": statistics.median(self.wall_s) if self.wall_s else None,
            "median_cpu_s": statistics.median(self.cpu_s) if self.cpu_s else None,
        }


def case_from_trainer(trainer: Any, batch_size: int | None = None) -> TimingCase:
    """A copy of a trained run's model with the first ``batch_size`` (default: the run's)
    training samples, encoded as in training, and the run's loss."""
    from torch.utils.data import DataLoader

    n = batch_size or trainer.config.batch_size
    x, y = next(iter(DataLoader(trainer.train_set, batch_size=n)))
    x, y = x.to(trainer.device), y.to(trainer.device)
    return TimingCase(
        copy.deepcopy(trainer.model), trainer.encode(x), trainer.task.target(x, y), trainer.loss
    )


def case_from_run(run: Any, batch_size: int | None = None) -> TimingCase:
    """:func:`case_from_trainer` for a run rebuilt from its folder (:func:`~spikeweave.load_run`,
    weights of its last checkpoint): the same first training batch, encoding and loss. This is
    how runs trained in other processes are timed in the parent, on one machine state."""
    from torch.utils.data import DataLoader

    n = batch_size or run.config.batch_size
    x, y = next(iter(DataLoader(run.dataset("train"), batch_size=n)))
    x, y = x.to(run.device), y.to(run.device)
    return TimingCase(copy.deepcopy(run.model), run.encode(x), run.task.target(x, y), run.loss)


def time_arms(
    cases: Mapping[str, TimingCase],
    backend: str | None = None,
    rounds: int = 5,
    steps: int = 5,
    warmup: int = 2,
) -> dict[str, ArmTiming]:
    """Time forward + backward per arm, interleaved: each round times ``steps`` steps of every
    arm (the arm order alternating between rounds) after ``warmup`` untimed steps per arm.

    ``backend``: None keeps each neuron's own backend (as shipped: ``auto``); a name forces it on
    every neuron of every arm (on copies; ``cases`` are not changed). The optimizer is left out
    on purpose: it is the same for every arm and would only add noise.
    """
    if rounds < 1 or steps < 1 or warmup < 0:
        raise ConfigError(
            f"time_arms needs rounds >= 1, steps >= 1, warmup >= 0; got {rounds}, {steps}, {warmup}"
        )
    models: dict[str, nn.Module] = {}
    result: dict[str, ArmTiming] = {}
    for arm, case in cases.items():
        model = copy.deepcopy(case.model)
        if backend is not None:
            set_backend(model, backend)
        model.train()
        models[arm] = model
        result[arm] = ArmTiming(
            backend or "as shipped", neuron_backends(model, case.inputs),
            str(model_device(model)),
        )  # fmt: skip

    def one_step(arm: str) -> None:
        model, case = models[arm], cases[arm]
        model.zero_grad(set_to_none=True)
        case.loss(model(case.inputs), case.target).backward()

    # subnormals flushed, as the trainer does by default: a timed step computes what a
    # training step computes
    with flush_denormal():
        for arm in cases:
            for _ in range(warmup):
                one_step(arm)
        names = list(cases)
        for r in range(rounds):
            for arm in names if r % 2 == 0 else names[::-1]:
                result[arm].load.append(round(os.getloadavg()[0], 2))
                walls, cpus = [], []
                device = model_device(models[arm])
                for _ in range(steps):
                    synchronize(device)  # CUDA runs asynchronously: clocks read after it ends
                    w0, c0 = time.perf_counter(), time.process_time()
                    one_step(arm)
                    synchronize(device)
                    walls.append(time.perf_counter() - w0)
                    cpus.append(time.process_time() - c0)
                result[arm].wall_s.append(statistics.median(walls))
                result[arm].cpu_s.append(statistics.median(cpus))
    return result


def time_backends(
    cases: Mapping[str, TimingCase],
    backends: Mapping[str, str | None],
    rounds: int = 5,
    steps: int = 5,
    warmup: int = 2,
) -> dict[str, dict[str, ArmTiming]]:
    """``{label: {arm: ArmTiming}}``: :func:`time_arms` of every arm once per entry of
    ``backends`` (``{label: backend}``; None = as shipped), in the order given."""
    return {
        label: time_arms(cases, backend, rounds, steps, warmup)
        for label, backend in backends.items()
    }


def timing_table(
    timing: Mapping[str, Mapping[str, ArmTiming]],
    title: str = "Step time on one training batch (median over interleaved rounds)",
) -> Table:
    """The report table of a :func:`time_backends` result: per backend label and arm, the
    backends the arm's neurons resolved to and the median wall and CPU ms over rounds."""
    rows = [
        [label, arm, ", ".join(sorted(set(t.resolved.values()))),
         f"{1000 * statistics.median(t.wall_s):.2f}", f"{1000 * statistics.median(t.cpu_s):.2f}"]
        for label, per in timing.items()
        for arm, t in per.items()
    ]  # fmt: skip
    return Table(title, ["backend", "arm", "resolved backend", "wall (ms)", "CPU (ms)"], rows)


def timing_results(timing: Mapping[str, Mapping[str, ArmTiming]]) -> dict[str, Any]:
    """JSON-able ``{label: {arm: ArmTiming.to_dict()}}`` (``results["step_timing"]``)."""
    return {label: {arm: t.to_dict() for arm, t in per.items()} for label, per in timing.items()}


def cpu_overhead(timed: Mapping[str, ArmTiming], arm: str, baseline: str) -> list[float]:
    """Per interleaved round, ``arm``'s process CPU time over ``baseline``'s, minus 1 (0.1 =
    10% extra); pair it with zeros over timing rounds in a cost part."""
    return [a / b - 1.0 for a, b in zip(timed[arm].cpu_s, timed[baseline].cpu_s, strict=True)]


def cases_from_records(
    records: Mapping[str, Sequence[Mapping[str, Any]]], device: str = "cpu"
) -> dict[str, TimingCase]:
    """``{arm: TimingCase}`` of each arm's first run, rebuilt in this process on ``device``
    from the run folder its record names (``record["run_dir"]``, as
    :func:`~.selection.run_record` gives)."""
    return {
        arm: case_from_run(load_run(recs[0]["run_dir"], device=device))
        for arm, recs in records.items()
    }
