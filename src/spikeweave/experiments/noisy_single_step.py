"""Experiment ``noisy-single-step``: noisy single-step training converted to a multi-step SNN.

Claims (arXiv 2211.05453, abstract only; methods.md §4): a single-step SNN trained with noise
standing in for the membrane-potential distribution converts to a multi-step SNN without loss;
it needs 65–75% less training time than multi-step BPTT and inference > 100× faster than
ANN-to-SNN conversion. spikeweave's reading is in :mod:`spikeweave.learning.noisy`.

Two workloads, each with all arms on the same data, architecture, epochs, optimiser and seeds,
on full Fashion-MNIST (5,000 validation images held out of the 60,000 training images,
stratified; the 10,000 test images whole; the MLP trains on all of the remaining 55,000, the
conv net on a CPU on a stated subset of :data:`CONV_TRAIN_SIZE` of them, fixed seed,
``TrainConfig.train_size``, on a GPU on all; ``--quick``: digits). The full run takes about
10–11 hours on the project's 2-core CPU with ``--workers 2`` (:data:`CONV_TRAIN_SIZE` gives the
estimate), most of it the conv net's inference sweeps over the test and validation images;
those run in the workers too and each is saved as it finishes, so ``--resume`` continues an
interrupted run without repeating them:

- the MLP with the analog image repeated every step (direct input);
- a conv net with **average pooling** (``TrainConfig.pool = "avg"``, so every arm's run
  folder rebuilds by name with ``load_run``; max
  pooling of spikes saturated under noisy training) on **rate-coded (Poisson) input**, where one
  step carries one binary sample of the image, so BPTT needs several steps.

Arms: ``noisy`` (:class:`~spikeweave.learning.noisy.NoisySingleStep`, T = 1 while training,
evaluated converted to IF with soft reset) with a σ sweep and variants; multi-step surrogate
BPTT at T = 1, 2, 4, 8 (LIF τ = 2 hard reset, and IF soft reset on the MLP); the ReLU ANN twin,
converted three ways (:mod:`spikeweave.learning.conversion`): max-activation normalisation
(percentile 100, membranes at 0 — the classic conversion that needs long T), the 99.9th
percentile with membranes at 0 (the claim's baseline), and at θ/2.

Selection is on a validation split (``val_fraction``): each run is scored at its best
validation epoch; the BPTT arm compared is the one with the best validation accuracy; accuracy
targets (training time to target) and inference T are chosen on validation. Arms and seeds
are interleaved; timings run with ``torch.set_num_threads(settings.threads)`` (1 by default),
training time excludes evaluation, and step time is recorded apart from epoch time.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from .. import data as datasets
from ..encoding import direct, encode
from ..learning.conversion import accuracy_over_time, ann_to_snn, snn_config
from ..learning.noisy import RESIDUAL_SIGMA, NoisySingleStep, set_noisy_mode, to_multistep
from ..plots import _layer_color, _new_figure, _save, _series_marker, _style_axes
from ..training import Run, TrainConfig, load_run, model_from_config
from ..training.device import model_device, synchronize
from ..training.methods import SurrogateBPTT
from .base import Experiment, ExperimentContext, register
from .figures import plot_bars, plot_sweep
from .report import Report, Table, fmt_pm, mean_std, merge_parts
from .selection import BestValPredictions, best_val_row
from .stats import Part, accuracy_part, mcnemar, overall, seed_accuracy_part, threshold_part
from .timing import TimingCase, case_from_run, time_backends, timing_results
from .tuning import TuneResult, sweep_lr_alpha, tune

__all__ = [
    "NoisySettings",
    "NoisySingleStepExperiment",
    "steps_within",
    "plot_accuracy_vs_time",
    "run_part",
    "CONVERSIONS",
    "CONV_TRAIN_SIZE",
]

MAIN = "gauss σ=0.3"
ANN = "ANN"
CONVERSIONS: dict[str, tuple[float, float]] = {
    "ANN→SNN max-norm (v₀=0)": (100.0, 0.0),
    "ANN→SNN p99.9 (v₀=0)": (99.9, 0.0),
    "ANN→SNN p99.9 (v₀=θ/2)": (99.9, 0.5),
}
"""Conversion baselines: label -> (activation percentile, initial membrane in units of θ)."""
CLAIM_BASELINE = "ANN→SNN p99.9 (v₀=0)"
CONV_TRAIN_SIZE = 10_000
"""Training images of the full conv workload on a CPU (after 5,000 validation images are held
out of Fashion-MNIST's 60,000); the MLP workload trains on all 55,000.

Chosen from the measured cost (process CPU time, one torch thread, the project's 2-core CPU,
2026-12-07). MLP: 0.12 (T = 1) to 0.21 (T = 8) ms per training image, so its 18 arms × 5 seeds
× 15 epochs on every training image are about 4 CPU hours. Conv net with average pooling: 1.2
(T = 1) to 12.7 (T = 8) ms per training image and up to 8.7 ms per evaluated image at T = 8
(5,000 validation + 10,000 test images every epoch): with 10,000 training images its 7 arms ×
5 seeds × 8 epochs were about 7.5 CPU hours. With ``test_eval = "best-val"`` each run scores
the test set once instead of every epoch: 7 of 8 test passes saved, at T = 4 about 51 s each
(measured, process CPU time, 10,000 test images, conv net T = 4, one torch thread,
2026-12-07), so about 3 CPU hours less over the 35 runs: about 4.5 CPU hours. The inference
sweeps dominate: the main noisy net and the three conversions are each scored on the 10,000
test and the 5,000 validation images in one run of T = 128 steps (about 1.1 ms per image and
step), about 35 CPU minutes per network and seed, 20 of them: about 12 CPU hours (the other
variant's sweeps to T = 32, under an hour more). With ``--workers 2`` the sweeps share the
two workers (6–7 hours; before, they ran one after another in the parent: 15 hours,
with the inference timing of the whole test set, now of :attr:`NoisySettings.timing_images`).
In all **about 10–11 hours with** ``--workers 2`` (estimated from these measurements; 18–20
before)."""
NOISY_NET = "noisy → IF"


def _variants() -> tuple[tuple[str, dict[str, Any]], ...]:
    gauss = tuple((f"gauss σ={s:g}", {"sigma": s}) for s in (0.0, 0.1, 0.2, 0.3, 0.5, 0.8))
    return gauss + (
        ("uniform σ=θ/√12", {"sigma": RESIDUAL_SIGMA, "noise": "uniform"}),
        ("gauss σ=0.3, μ=0", {"sigma": 0.3, "noise_mean": 0.0}),
        ("gauss σ=0.3, expected grad", {"sigma": 0.3, "grad": "expected"}),
    )


@dataclass(frozen=True)
class NoisySettings:
    """Size of one part of the experiment (one dataset / architecture / input code)."""

    dataset: str = "fashion-mnist"
    model: str = "mlp"
    pool: str = "max"
    """``TrainConfig.pool`` of every arm: ``avg`` replaces the conv net's max pooling."""
    encoder: str = "direct"
    """Input code of the spiking arms (the ANN always trains on the analog image)."""
    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3
    val_fraction: float = 5000 / 60000
    """Share of the training set held out for validation (5,000 of Fashion-MNIST's 60,000)."""
    train_size: int = 0
    """Training images kept after validation is held out (``TrainConfig.train_size``; 0: all)."""
    eval_steps: int = 8
    """T of the noisy runs' per-epoch evaluation (the converted network)."""
    steps_grid: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    inference_grid: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    """T evaluated for the main noisy arm and the conversion arms (other variants:
    ``steps_grid``)."""
    variants: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=_variants)
    bptt_steps: tuple[int, ...] = (1, 2, 4, 8)
    bptt_neurons: tuple[str, ...] = ("lif", "if")
    """``lif``: τ = 2, hard reset; ``if``: soft reset (the converted network's neuron)."""
    calibration: int = 1000
    timing_repeats: int = 5
    timing_images: int = 1000
    """Test images the inference timing runs (the first ones): the time per image does not
    depend on which, and the whole test set at the T a conversion needs took hours."""
    threads: int = 1
    lrs: tuple[float, ...] = (1e-3, 2e-3, 4e-3)
    """Learning rates tried (on validation) for the noisy arm, each BPTT neuron and the ANN."""
    alphas: tuple[float, ...] = (1.0, 4.0)
    """Surrogate widths tried for BPTT LIF beside the default, at its best lr."""
    tune_epochs: int = 5
    tune_steps: int = 4
    """T of the BPTT tuning runs (the lr and α kept apply to every T of that neuron)."""

    @property
    def tag(self) -> str:
        """Short name of the part (run folders, figures, results keys)."""
        return (
            f"{self.dataset}-{self.model}"
            + ("-avgpool" if self.pool == "avg" else "")
            + ("" if self.encoder == "direct" else f"-{self.encoder}")
        )


def steps_within(accuracy: dict[int, float], target: float) -> int | None:
    """The smallest T whose accuracy reaches ``target`` (None if none does)."""
    for T in sorted(accuracy):
        if accuracy[T] >= target - 1e-12:
            return T
    return None


def plot_accuracy_vs_time(
    curves: dict[str, list[tuple[list[float], list[float]]]],
    path: Path,
    title: str,
    clock: str = "training time",
) -> Path:
    """Validation accuracy against cumulative training time (``clock`` names which: wall or
    CPU), one line per arm (seed means per epoch; the seeds' own points faint).
    ``curves[arm]`` = ``[(times, accs)]`` per seed, accuracies in %."""
    fig = _new_figure(8.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    for i, (arm, runs) in enumerate(curves.items()):
        n = min(len(t) for t, _ in runs)
        ts = np.array([t[:n] for t, _ in runs], dtype=float)
        acc = np.array([a[:n] for _, a in runs], dtype=float)
        color = _layer_color(i)
        style = "-" if arm.startswith(("noisy", "gauss", "uniform")) else "--"
        ax.plot(ts.mean(0), acc.mean(0), style, color=color, marker=_series_marker(i), ms=3.5,
                lw=1.2, label=arm)  # fmt: skip
        ax.scatter(ts.flatten(), acc.flatten(), color=color, s=4, alpha=0.25)
    ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel(f"cumulative {clock} (s, evaluation excluded; log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(max(ax.get_ylim()[0], -1.0), min(ax.get_ylim()[1], 101.0))
    ax.legend(fontsize=8, ncol=2, title="solid: noise-trained, dashed: other arms",
              title_fontsize=8)  # fmt: skip
    _style_axes(ax)
    fig.tight_layout()
    return _save(fig, path)


class _BestValState(BestValPredictions):
    """:class:`BestValPredictions` that also keeps a copy of the weights of the best
    validation epoch, so conversions and T sweeps use the selected model."""

    def __init__(self) -> None:
        super().__init__()
        self.state: dict[str, torch.Tensor] | None = None

    def captured(self, trainer):  # noqa: D102
        self.state = copy.deepcopy(trainer.model.state_dict())


@dataclass
class _Run:
    """One trained run, rebuilt in this process from what its (possibly forked) job returned:
    the model at its best validation epoch, its history and per-image test correctness."""

    source: Run
    history: list[dict[str, Any]]
    correct: np.ndarray
    best_epoch: int

    @property
    def model(self) -> nn.Module:
        return self.source.model

    @property
    def config(self) -> TrainConfig:
        return self.source.config

    def case(self) -> TimingCase:
        """The first training batch and a copy of the model, to time one step."""
        return case_from_run(self.source)

    @property
    def test(self) -> float:
        return float(self.correct.mean())

    @property
    def best_val(self) -> float:
        return float(best_val_row(self.history, "accuracy", True)["val_accuracy"])

    def curve(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.history]

    @property
    def cpu_time_recorded(self) -> bool:
        """Whether every epoch row has the process CPU seconds of training (``train_cpu_s``)
        and they measure it: on a GPU the host's CPU time is not the training time, and runs
        trained before the trainer recorded it lack the column."""
        on_gpu = str(self.config.device).startswith("cuda")
        return not on_gpu and all("train_cpu_s" in r for r in self.history)

    def time_to(self, target: float, clock: str) -> float:
        """Cumulative training seconds (evaluation excluded; the rows' ``clock`` column) until
        validation accuracy first reaches ``target``; inf if it never does."""
        total = 0.0
        for row in self.history:
            total += float(row[clock])
            if row["val_accuracy"] >= target - 1e-12:
                return total
        return math.inf


def _stack(dataset, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(dataset) if limit is None else min(limit, len(dataset))
    items = [dataset[i] for i in range(n)]
    return torch.stack([a for a, _ in items]), torch.tensor([int(b) for _, b in items])


def _slug(label: str) -> str:
    keep = "".join(c if c.isalnum() or c in ".=" else "-" for c in label)
    return keep.replace("σ", "s").replace("θ", "th").strip("-")


@torch.no_grad()
def _time_inference(net: nn.Module, x: torch.Tensor, T: int, repeats: int, encoder: str) -> float:
    """Median seconds to run the whole of ``x`` for ``T`` steps (batches of 500) on the
    network's device (``x`` is copied there first, outside the clock): on a CPU the process's
    CPU time, which on a shared machine does not count waiting for a core; on a GPU the wall
    clock, CUDA synchronised before each reading (:func:`_inference_clock`)."""
    net.eval()
    where = model_device(net)
    x = x.to(where)
    clock = time.process_time if _inference_clock(where) == "CPU" else time.perf_counter
    times = []
    for _ in range(repeats):
        synchronize(where)
        start = clock()
        for i in range(0, len(x), 500):
            net(encode(encoder, x[i : i + 500], T))
        synchronize(where)
        times.append(clock() - start)
    return statistics.median(times)


def _inference_clock(where: torch.device) -> str:
    """``CPU`` (process time) on a CPU, ``wall`` on a GPU."""
    return "CPU" if where.type == "cpu" else "wall"


@torch.no_grad()
def _single_step_accuracy(model: nn.Module, x, y, mode: str, seed: int) -> float:
    """Accuracy of the single-step network on the analog image (the expected input);
    ``mode`` noisy: one noise draw (from a forked RNG seeded with ``seed``, so the result
    does not depend on the process it runs in); expected: the mean-field output."""
    model.eval()
    where = model_device(model)  # the test images stay on the CPU; each batch moves
    correct = 0
    set_noisy_mode(model, mode)
    try:
        with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []):
            torch.manual_seed(seed)
            for i in range(0, len(x), 500):
                out = model(direct(x[i : i + 500].to(where), 1)).mean(0)
                correct += int((out.argmax(-1) == y[i : i + 500].to(where)).sum())
    finally:
        set_noisy_mode(model, "auto")
    return correct / len(x)


def _pct(values: list[float]) -> str:
    return fmt_pm(values, 100)


def _mean(values: list[float | None]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


class _Part:
    """Trains, converts and tabulates one workload."""

    def __init__(self, ctx: ExperimentContext, st: NoisySettings) -> None:
        self.ctx, self.st = ctx, st
        self.base = TrainConfig(
            dataset=st.dataset, model=st.model, epochs=st.epochs, batch_size=st.batch_size,
            lr=st.lr, encoder=st.encoder, val_fraction=st.val_fraction, pool=st.pool,
            train_size=st.train_size, out_dir=str(ctx.out_dir / "runs"), test_eval="best-val",
        )  # fmt: skip
        self.x_test, self.y_test = _stack(datasets.load(st.dataset, "test"))
        self.x_calib = _stack(datasets.load(st.dataset, "train"), st.calibration)[0]

    def _train(self, arm: str, cfg: TrainConfig, seed: int, method: Any) -> dict[str, Any]:
        """Train one run; plain data back (a forked worker returns it): history, test
        correctness and epoch of the best validation epoch, its weights as safetensors
        bytes, and the run folder."""
        best = _BestValState()
        trainer = self.ctx.train(f"{self.st.tag}-{arm}", cfg, seed, method=method,
                                 callbacks=[best])  # fmt: skip
        assert best.correct is not None and best.state is not None
        return {
            "history": trainer.history, "correct": best.correct, "best_epoch": best.epoch,
            "state": safetensors.torch.save({k: v.contiguous() for k, v in best.state.items()}),
            "run_dir": str(trainer.run_dir),
        }  # fmt: skip

    def rebuild(self, record: dict[str, Any], method: Any) -> _Run:
        """The run of ``record`` in this process: its model from the run folder, with the
        weights of the best validation epoch, on the experiment's device (``load_run`` places
        it with the one placement function, :func:`~spikeweave.training.assembly.place`)."""
        run = load_run(record["run_dir"], method=method, device=self.ctx.device)
        run.model.load_state_dict(safetensors.torch.load(record["state"]))
        if self.x_val is None:
            self.x_val, self.y_val = _stack(run.dataset("val"))
        return _Run(run, record["history"], record["correct"], record["best_epoch"])

    def tune(self, main_label: str) -> dict[str, TuneResult]:
        """Learning rates chosen on validation from one grid for the noisy arm, each BPTT
        neuron (at T = ``tune_steps``) and the ANN; the LIF surrogate's α as well. Every noisy
        variant takes the noisy arm's lr, every T of a neuron that neuron's lr and α."""
        st, ctx = self.st, self.ctx
        base = replace(self.base, epochs=st.tune_epochs)
        lrs = [{"lr": lr} for lr in st.lrs]
        opts = dict(st.variants)[main_label]
        noisy = NoisySingleStep(dict(opts))
        out = {
            "noisy": tune(
                ctx,
                f"{st.tag}-noisy",
                replace(base, neuron="if", steps=st.eval_steps),
                lrs,
                method=noisy,
            )
        }
        for neuron in st.bptt_neurons:
            cfg = replace(
                base, neuron=neuron, reset="soft" if neuron == "if" else "hard", steps=st.tune_steps
            )
            out[neuron] = sweep_lr_alpha(
                ctx,
                f"{st.tag}-bptt-{neuron}-T{st.tune_steps}",
                cfg,
                st.lrs,
                st.alphas if neuron == "lif" else (),
                method=SurrogateBPTT(),
            )
        out[ANN] = tune(
            ctx,
            f"{st.tag}-ann",
            replace(self._ann_cfg(), epochs=st.tune_epochs),
            lrs,
            method=SurrogateBPTT(),
        )
        return out  # fmt: skip

    def _ann_cfg(self) -> TrainConfig:
        return replace(self.base, model="ann" if self.st.model == "convnet" else "ann-mlp",
                       neuron="relu", steps=1, encoder="direct")  # fmt: skip

    def jobs(self, tuned: dict[str, TuneResult]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``({arm: job(seed) -> record}, {arm: training method})``."""
        st, jobs, methods = self.st, {}, {}
        self.x_val: torch.Tensor | None = None
        for label, opts in st.variants:
            cfg = replace(self.base, neuron="if", steps=st.eval_steps, **tuned["noisy"].best)
            method = methods[label] = NoisySingleStep(dict(opts))
            name = f"noisy-{_slug(label)}"
            jobs[label] = lambda seed, c=cfg, m=method, a=name: self._train(a, c, seed, m)
        for neuron in st.bptt_neurons:
            for T in st.bptt_steps:
                reset = "soft" if neuron == "if" else "hard"
                cfg = replace(self.base, neuron=neuron, reset=reset, steps=T,
                              **tuned[neuron].best)  # fmt: skip
                arm, name = f"BPTT {neuron.upper()} T={T}", f"bptt-{neuron}-T{T}"
                method = methods[arm] = SurrogateBPTT()
                jobs[arm] = lambda seed, c=cfg, m=method, a=name: self._train(a, c, seed, m)
        ann_cfg = replace(self._ann_cfg(), **tuned[ANN].best)
        ann_method = methods[ANN] = SurrogateBPTT()
        jobs[ANN] = lambda seed: self._train("ann", ann_cfg, seed, ann_method)
        return jobs, methods

    def conversions(self, ann: _Run, seed: int) -> dict[str, nn.Module]:
        """The ANN run converted three ways (:data:`CONVERSIONS`)."""
        out = {}
        for label, (pct, v0) in CONVERSIONS.items():
            # placed where the rebuilt ANN is (its config records the experiment's device)
            snn = model_from_config(snn_config(ann.config, v0))
            out[label], _ = ann_to_snn(ann.model.eval(), snn, self.x_calib, pct)
        return out

    def sweep(self, net: nn.Module, x, y, grid, seed: int) -> dict[int, float]:
        return accuracy_over_time(net, x, y, grid, encoder=self.st.encoder, seed=seed)


@register
class NoisySingleStepExperiment(Experiment):
    """Noisy single-step training + conversion vs multi-step BPTT and ANN-to-SNN conversion."""

    name = "noisy-single-step"
    parallel_runs = True  # training runs return plain records; models are rebuilt here
    title = "Noise-based single-step training converted to a multi-step SNN"
    claim = (
        "A single-step SNN trained with Gaussian noise standing in for the membrane-potential "
        "distribution converts to a multi-step SNN without loss, with 65–75% less training "
        "time than multi-step BPTT and more than 100× faster inference than ANN-to-SNN "
        "conversion (arXiv 2211.05453; spikeweave's reading, methods.md §4)."
    )

    def settings(self, quick: bool) -> list[NoisySettings]:
        """The workloads: the MLP (direct input) and the average-pooling conv net (Poisson
        input) on full Fashion-MNIST (a stated training subset on a CPU); tiny versions on
        digits with ``quick``."""
        if quick:
            small = dict(
                dataset="digits", epochs=1, val_fraction=0.2, train_size=0, eval_steps=4,
                steps_grid=(1, 2, 4), inference_grid=(1, 4, 16), bptt_steps=(1, 2),
                calibration=200, timing_repeats=1,
                lrs=(2e-3, 4e-3), alphas=(4.0,), tune_epochs=1, tune_steps=2,
            )  # fmt: skip
            return [
                NoisySettings(
                    **small,
                    bptt_neurons=("if",),
                    variants=(("gauss σ=0.3", {"sigma": 0.3}), ("gauss σ=0.8", {"sigma": 0.8})),
                ),  # fmt: skip
                NoisySettings(
                    **{**small, "epochs": 1},
                    model="convnet",
                    pool="avg",
                    encoder="poisson",
                    bptt_neurons=("lif",),
                    variants=(("gauss σ=0.3", {"sigma": 0.3}),),
                ),  # fmt: skip
            ]
        return [
            NoisySettings(),
            NoisySettings(
                model="convnet",
                pool="avg",
                encoder="poisson",
                epochs=8,
                eval_steps=8,
                steps_grid=(1, 2, 4, 8, 16, 32),
                inference_grid=(1, 2, 4, 8, 16, 32, 64, 128),
                variants=(
                    ("gauss σ=0.3", {"sigma": 0.3}),
                    ("uniform σ=θ/√12", {"sigma": RESIDUAL_SIGMA, "noise": "uniform"}),
                ),
                bptt_neurons=("lif",),
                train_size=CONV_TRAIN_SIZE,
                timing_repeats=3,
                tune_epochs=3,
            ),  # fmt: skip
        ]

    def run(self, ctx: ExperimentContext) -> Report:  # noqa: D102
        parts = self.settings(ctx.quick)
        threads = torch.get_num_threads()
        torch.set_num_threads(parts[0].threads)
        try:
            results = [_run_part(ctx, st) for st in parts]
        finally:
            torch.set_num_threads(threads)
        return _report(self, results, parts[0].threads)


def _report(exp: Experiment, results: list[dict[str, Any]], threads: int) -> Report:
    notes = [
        f"Times are wall-clock on a shared 2-core CPU, {threads} torch thread(s); the machine's "
        "load before and after is in setup.machine. Compare them within this report only.",
        "Selection on validation (val_fraction of the training data): every run is scored at "
        "its best validation epoch; the BPTT arm compared is the one with the best validation "
        "accuracy; the training target is the lower of the two arms' best validation accuracy "
        "(the best every seed reached) minus 0.5 point; inference T is the smallest T whose "
        "validation accuracy is within 1 point of the arm's best over T (or reaches the common "
        "target), and the test accuracy is read at that T.",
        "Claim parts: lossless conversion (converted accuracy at the largest T minus the "
        "single-step expected accuracy, equivalence within ±0.5 point), training time (time "
        "saved against the BPTT arm reaching the common validation target soonest, one-sample "
        "t against 65%), inference (log10 of the speed-up over the p99.9 conversion at each "
        "arm's own T, against log10 100 = 2). Every workload must hold every claim part for the "
        "claim to hold. The accuracy-cost parts and the parts against the other conversions "
        "are reported beside them and do not change the verdict.",
        "Intervals: 95% over seeds (t), widened by the test set's binomial error for "
        "accuracies; McNemar's exact test per seed on the shared test images.",
    ]
    claim_parts = [p for r in results for p in r["parts"] if "(claim)" in p.name]
    return merge_parts(exp, results, overall(claim_parts), notes, tag_verdicts=True)


@dataclass
class _Trained:
    """One workload after training: every arm's runs rebuilt in this process, the tuning that
    chose their settings, and the test and validation images the later steps score on."""

    st: NoisySettings
    part: _Part
    seeds: list[int]
    tuned: dict[str, TuneResult]
    runs: dict[str, list[_Run]]
    main_label: str

    @property
    def tag(self) -> str:
        return self.st.tag

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.st.variants]

    @property
    def bptt_arms(self) -> list[str]:
        return [a for a in self.runs if a.startswith("BPTT")]

    @property
    def n_test(self) -> int:
        return len(self.part.y_test)

    @property
    def clock(self) -> str:
        """The epoch rows' training-time column every arm is compared on: process CPU
        seconds (``train_cpu_s``) when every run recorded them on a CPU, else the wall clock
        (``train_time_s``), so that no comparison mixes the two."""
        cpu = all(r.cpu_time_recorded for rs in self.runs.values() for r in rs)
        return "train_cpu_s" if cpu else "train_time_s"

    @property
    def full_grid(self) -> list[int]:
        return sorted(set(self.st.steps_grid) | set(self.st.inference_grid))


def _at(accs: list[dict[int, float]], T: int) -> list[float]:
    return [a[T] for a in accs]


def _train_every_arm(ctx: ExperimentContext, st: NoisySettings) -> _Trained:
    """Tune on validation, train every arm for every seed (interleaved, possibly in forked
    workers) and rebuild each run here at its best validation epoch."""
    part = _Part(ctx, st)
    labels = [label for label, _ in st.variants]
    main_label = MAIN if MAIN in labels else labels[0]
    tuned = part.tune(main_label)
    jobs, methods = part.jobs(tuned)
    records = ctx.run_interleaved(jobs)
    runs = {a: [part.rebuild(r, methods[a]) for r in rs] for a, rs in records.items()}
    return _Trained(st, part, ctx.seeds, tuned, runs, main_label)


def _convert_and_sweep_steps(
    ctx: ExperimentContext, tr: _Trained
) -> tuple[dict[str, dict[str, list[Any]]], dict[str, dict[str, list[Any]]]]:
    """``(variants, conversions)``: every noisy variant converted to IF and every ANN
    conversion, each network's accuracy vs T on the test and validation images (``acc_T``,
    ``val_T``) and the networks (``nets``); the variants also their single-step accuracies
    (one noise draw ``noisy1``, mean-field ``expected``).

    The networks are built here; the sweeps (most of the workload's time after training)
    run through :meth:`~.base.ExperimentContext.run_saved`: in the experiment's workers, each
    result saved as it finishes and loaded on ``--resume``."""
    st, part = tr.st, tr.part
    x, y, xv, yv = part.x_test, part.y_test, part.x_val, part.y_val
    at = {seed: i for i, seed in enumerate(tr.seeds)}
    grids = {label: tr.full_grid if label == tr.main_label else sorted(st.steps_grid)
             for label in tr.labels}  # fmt: skip
    nets = {label: [to_multistep(r.model, max(grids[label])) for r in tr.runs[label]]
            for label in tr.labels}  # fmt: skip
    conv_nets: dict[str, list[nn.Module]] = {c: [] for c in CONVERSIONS}
    for seed, ann in zip(tr.seeds, tr.runs[ANN], strict=True):
        for c, net in part.conversions(ann, seed).items():
            conv_nets[c].append(net)
            grids[c] = tr.full_grid

    def sweep(ns: list[nn.Module], grid: list[int], xs, ys) -> Any:
        def job(seed: int) -> list[list[float]]:  # JSON keeps no int keys: [[T, accuracy], ...]
            return [[T, a] for T, a in part.sweep(ns[at[seed]], xs, ys, grid, seed).items()]

        return job

    def single_step(runs: list[_Run]) -> Any:
        return lambda seed: [_single_step_accuracy(runs[at[seed]].model, x, y, mode, seed)
                             for mode in ("noisy", "expected")]  # fmt: skip

    jobs: dict[str, Any] = {}
    for name, ns in {**nets, **conv_nets}.items():
        jobs[f"{name} | test"] = sweep(ns, grids[name], x, y)
        jobs[f"{name} | val"] = sweep(ns, grids[name], xv, yv)
    for label in tr.labels:
        jobs[f"{label} | single step"] = single_step(tr.runs[label])
    done = ctx.run_saved(f"{tr.tag}-sweeps", jobs, tr.seeds)

    def per_steps(name: str, split: str) -> list[dict[int, float]]:
        return [{int(T): float(a) for T, a in pairs} for pairs in done[f"{name} | {split}"]]

    variants = {
        label: {
            "acc_T": per_steps(label, "test"), "val_T": per_steps(label, "val"),
            "noisy1": [r[0] for r in done[f"{label} | single step"]],
            "expected": [r[1] for r in done[f"{label} | single step"]],
            "nets": nets[label],
        }
        for label in tr.labels
    }  # fmt: skip
    conv = {
        c: {"acc_T": per_steps(c, "test"), "val_T": per_steps(c, "val"), "nets": conv_nets[c]}
        for c in CONVERSIONS
    }
    return variants, conv


def _sigma_sweep_steps(st: NoisySettings) -> list[int]:
    """The T of the σ-sweep table and figure."""
    return [T for T in (1, 4, 8, 32) if T in st.steps_grid]


def _conversion_tables(
    tr: _Trained, variants: dict[str, dict[str, list[Any]]], conv: dict[str, dict[str, list[Any]]]
) -> tuple[Table, Table]:
    """Test accuracy after conversion vs T (main noisy arm and every conversion), and the
    noise variants' single-step and converted accuracies."""
    st, tag, main_label, noisy = tr.st, tr.tag, tr.main_label, variants[tr.main_label]
    rows = [
        [T, _pct(_at(noisy["acc_T"], T)), *(_pct(_at(conv[c]["acc_T"], T)) for c in CONVERSIONS)]
        for T in st.steps_grid
    ]
    rows.append(["ANN (noise-free reference, best val epoch)", "",
                 _pct([r.test for r in tr.runs[ANN]]), "", ""])  # fmt: skip
    rows.append(["single step, expected / one noise draw",
                 f"{_pct(noisy['expected'])} / {_pct(noisy['noisy1'])}", "", "", ""])  # fmt: skip
    t_acc = Table(
        f"{tag}: test accuracy (%) after conversion vs T (noisy: {main_label}; models of the "
        "best validation epoch)",
        ["T", NOISY_NET, *CONVERSIONS],
        rows,
    )
    sweep_T = _sigma_sweep_steps(st)
    t_sweep = Table(
        f"{tag}: noise variants — test accuracy (%) of the single-step net and after "
        f"conversion (best validation epoch of {st.epochs})",
        ["variant", "one noise draw", "expected (mean-field)"]
        + [f"converted T={T}" for T in sweep_T],
        [
            [label, _pct(v["noisy1"]), _pct(v["expected"])]
            + [_pct(_at(v["acc_T"], T)) for T in sweep_T]
            for label, v in variants.items()
        ],
    )
    return t_acc, t_sweep


@dataclass
class _TrainingTime:
    """Training time of the noisy arm against each BPTT arm to a common validation target."""

    table: Table
    savings: dict[str, list[float]]
    """Per BPTT arm, per seed: share of BPTT's time to the target the noisy arm saved."""
    fastest: str
    """The BPTT arm that reaches its target soonest (mean over seeds)."""
    chosen: str
    """The BPTT arm with the best validation accuracy (the one compared for accuracy)."""
    needs_steps: dict[str, int]
    """BPTT arms within 0.5 point of the chosen arm's validation accuracy, with their T."""


def _training_time_to_target(tr: _Trained) -> _TrainingTime:
    """Per BPTT arm: the common validation target (the lower of both arms' best, minus 0.5
    point), each arm's cumulative training time to it and the share the noisy arm saves."""
    st, runs, bptt_arms, main_label = tr.st, tr.runs, tr.bptt_arms, tr.main_label
    noisy_runs = runs[main_label]
    noisy_best = min(r.best_val for r in noisy_runs)
    time_rows, savings, reach = [], {}, {}
    for arm in bptt_arms:
        target = min(noisy_best, min(r.best_val for r in runs[arm])) - 0.005
        t_b = [r.time_to(target, tr.clock) for r in runs[arm]]
        t_n = [r.time_to(target, tr.clock) for r in noisy_runs]
        savings[arm] = [1 - n / b if math.isfinite(n) and math.isfinite(b) else math.nan
                        for n, b in zip(t_n, t_b, strict=True)]  # fmt: skip
        reach[arm] = _mean(t_b)
        step = [statistics.median(r.curve("step_time_s")) for r in runs[arm]]
        time_rows.append([
            arm, _pct([r.best_val for r in runs[arm]]), _pct([r.test for r in runs[arm]]),
            fmt_pm(step, 1000, 1), fmt_pm([t for r in runs[arm] for t in r.curve(tr.clock)]),
            f"{100 * target:.2f}", fmt_pm(t_b), fmt_pm(t_n),
            f"{100 * _mean(savings[arm]):.0f}%",
        ])  # fmt: skip
    noisy_step = [statistics.median(r.curve("step_time_s")) for r in noisy_runs]
    time_rows.append([
        f"noisy single-step ({main_label}), T={st.eval_steps} eval",
        _pct([r.best_val for r in noisy_runs]), _pct([r.test for r in noisy_runs]),
        fmt_pm(noisy_step, 1000, 1),
        fmt_pm([t for r in noisy_runs for t in r.curve(tr.clock)]), "", "", "", "",
    ])  # fmt: skip
    t_time = Table(
        f"{tr.tag}: training time against multi-step BPTT, {st.epochs} epochs each ("
        + _clock_words(tr) + ")",
        ["arm", "best val acc (%)", "test acc at best val (%)", "step time (ms)",
         "train time per epoch (s)", "val target (%)", "BPTT time to target (s)",
         "noisy time to target (s)", "time saved by noisy"],
        time_rows,
    )  # fmt: skip
    fastest = min(bptt_arms, key=lambda a: reach[a])
    chosen = max(bptt_arms, key=lambda a: _mean([r.best_val for r in runs[a]]))
    needs_steps = {
        a: int(a.split("T=")[1]) for a in bptt_arms
        if _mean([r.best_val for r in runs[a]])
        >= _mean([r.best_val for r in runs[chosen]]) - 0.005
    }  # fmt: skip
    return _TrainingTime(t_time, savings, fastest, chosen, needs_steps)


def _clock_label(tr: _Trained) -> str:
    return "training CPU time" if tr.clock == "train_cpu_s" else "training wall-clock time"


def _clock_words(tr: _Trained) -> str:
    """What the training times of ``tr`` measure, in words."""
    if tr.clock == "train_cpu_s":
        return "process CPU time of each run, evaluation excluded"
    return "wall clock, evaluation excluded (a GPU, or runs trained before CPU time was recorded)"


@dataclass
class _Inference:
    """Inference of the converted noisy net and each conversion at T chosen on validation."""

    table: Table
    per_arm: dict[str, dict[str, list[Any]]]
    """``{arm: {"T", "s", "test_acc"}}`` per seed."""
    speedup: dict[str, list[float]]
    """``{conversion: log10(its time / the noisy net's time)}`` per seed."""
    common: dict[str, dict[str, Any]]
    """``{conversion: the common validation target and the T each side needs for it}``."""


def _inference_at_chosen_steps(
    tr: _Trained, arms_inf: dict[str, dict[str, list[Any]]]
) -> _Inference:
    """Per arm and seed, the smallest T within 1 point of the arm's best validation accuracy
    over T, the test accuracy there and the time to run the test images at that T; the
    speed-up of the noisy net over each conversion, and the T both need for a common target."""
    st = tr.st
    x = tr.part.x_test[: st.timing_images]
    noisy = arms_inf[NOISY_NET]
    best_val_T = {a: min(max(v.values()) for v in d["val_T"]) for a, d in arms_inf.items()}
    inference: dict[str, dict[str, list[Any]]] = {}
    for arm, d in arms_inf.items():
        own_T, own_s, own_acc = [], [], []
        for acc_v, acc_t, net in zip(d["val_T"], d["acc_T"], d["nets"], strict=True):
            T = steps_within(acc_v, max(acc_v.values()) - 0.01)
            own_T.append(T)
            own_acc.append(acc_t[T])
            own_s.append(_time_inference(net, x, T, st.timing_repeats, st.encoder))
        inference[arm] = {"T": own_T, "s": own_s, "test_acc": own_acc}
    speedup: dict[str, list[float]] = {}
    common: dict[str, dict[str, Any]] = {}
    for c in CONVERSIONS:
        speedup[c] = [math.log10(b / n) for b, n in
                      zip(inference[c]["s"], inference[NOISY_NET]["s"], strict=True)]  # fmt: skip
        target = min(best_val_T[NOISY_NET], best_val_T[c]) - 0.01
        common[c] = {
            "target": target,
            "noisy_T": [steps_within(a, target) for a in noisy["val_T"]],
            "conv_T": [steps_within(a, target) for a in arms_inf[c]["val_T"]],
        }
    inf_rows = [
        [arm, _pct([max(a.values()) for a in arms_inf[arm]["val_T"]]),
         ", ".join(map(str, inference[arm]["T"])), _pct(inference[arm]["test_acc"]),
         fmt_pm(inference[arm]["s"], digits=3),
         "" if arm == NOISY_NET else f"{_mean([10**v for v in speedup[arm]]):.1f}×",
         "" if arm == NOISY_NET else
         f"{100 * common[arm]['target']:.2f}: T {common[arm]['conv_T']} vs noisy "
         f"{common[arm]['noisy_T']}"]
        for arm in arms_inf
    ]  # fmt: skip
    t_inf = Table(
        f"{tr.tag}: inference on the {tr.n_test} test images ({st.encoder} input) — T chosen on "
        "validation (within 1 point of the arm's best over T "
        f"{', '.join(map(str, tr.full_grid))})",
        ["arm", "best val acc over T (%)", "T per seed", "test acc at that T (%)",
         f"{_inference_clock(model_device(noisy['nets'][0]))} time for {len(x)} test "
         "images at that T (s)", "noisy → IF speed-up",
         "common val target (%): T needed"],
        inf_rows,
    )  # fmt: skip
    return _Inference(t_inf, inference, speedup, common)


def _mcnemar_table(tr: _Trained, chosen: str) -> Table:
    """McNemar's exact test per seed: the noisy arm against the chosen BPTT arm and the ANN."""
    noisy_correct = [r.correct for r in tr.runs[tr.main_label]]
    mc_rows = []
    for other in (chosen, ANN):
        for seed, a, b in zip(tr.seeds, noisy_correct, tr.runs[other], strict=True):
            only_n, only_o, p = mcnemar(a, b.correct)
            mc_rows.append([other, seed, only_n, only_o, f"{p:.3g}"])
    return Table(
        f"{tr.tag}: McNemar's exact test per seed — noisy single-step ({tr.main_label}, "
        f"converted at T={tr.st.eval_steps}) against the BPTT arm chosen on validation "
        f"({chosen}) and the ANN",
        ["against", "seed", "right only with noisy", "right only with the other", "p"],
        mc_rows,
    )


def _time_training_steps(tr: _Trained) -> tuple[Table, dict[str, Any]]:
    """Forward + backward of one training batch, the noisy arm interleaved with every BPTT
    arm (first seed's trained models), as shipped and on the torch path: the table and
    ``results["step_timing"]``.

    The noisy arm runs its own single-step forward (no fused loop to pick a kernel for);
    BPTT's neurons pick a compiled kernel where one exists, so BPTT is timed both ways."""
    st, main_label = tr.st, tr.main_label
    step_arms = [main_label, *tr.bptt_arms]
    cases = {a: tr.runs[a][0].case() for a in step_arms}
    timing = time_backends(cases, {"as shipped": None, "torch": "torch"},
                           rounds=st.timing_repeats, steps=3, warmup=1)  # fmt: skip
    step_timing = timing_results(timing)
    t_step = Table(
        f"{tr.tag}: forward + backward of one training batch ({st.batch_size}), median over "
        f"{st.timing_repeats} interleaved rounds (ms; wall / process CPU)",
        ["arm", "as shipped", "resolved backend", "torch path"],
        [
            [a, f"{1000 * step_timing['as shipped'][a]['median_wall_s']:.1f} / "
                f"{1000 * step_timing['as shipped'][a]['median_cpu_s']:.1f}",
             "own single-step forward (no fused loop)" if a == main_label
             else ", ".join(sorted(set(step_timing["as shipped"][a]["resolved"].values()))),
             f"{1000 * step_timing['torch'][a]['median_wall_s']:.1f} / "
             f"{1000 * step_timing['torch'][a]['median_cpu_s']:.1f}"]
            for a in step_arms
        ],
    )  # fmt: skip
    return t_step, step_timing


def _verdict_parts(
    tr: _Trained,
    noisy: dict[str, list[Any]],
    train_time: _TrainingTime,
    speedup: dict[str, list[float]],
) -> list[Part]:
    """The claim parts (lossless conversion, training time, inference against the p99.9
    conversion) and the parts reported beside them (accuracy cost, other conversions)."""
    tag, n_test, runs, t_max = tr.tag, tr.n_test, tr.runs, max(tr.st.steps_grid)
    noisy_correct = [r.correct for r in runs[tr.main_label]]
    fastest, chosen = train_time.fastest, train_time.chosen
    return [
        seed_accuracy_part(
            f"[{tag}] lossless conversion (claim): converted at T={t_max} − single-step expected",
            _at(noisy["acc_T"], t_max), noisy["expected"], n_test, margin=0.5, equivalence=True,
        ),
        threshold_part(
            f"[{tag}] training time (claim): share of {fastest}'s time to the common "
            "validation target saved", train_time.savings[fastest], 0.65, "% of BPTT's time",
            scale=100,
        ),
        threshold_part(
            f"[{tag}] inference (claim): log10 speed-up over {CLAIM_BASELINE}",
            speedup[CLAIM_BASELINE], 2.0, "log10 ×",
        ),
        accuracy_part(
            f"[{tag}] accuracy cost vs BPTT (chosen on validation: {chosen}): noisy − BPTT",
            noisy_correct, [r.correct for r in runs[chosen]], margin=1.0,
        ),
        accuracy_part(
            f"[{tag}] accuracy cost vs the ANN: noisy − ANN", noisy_correct,
            [r.correct for r in runs[ANN]], margin=1.0,
        ),
    ] + [
        threshold_part(f"[{tag}] inference vs {c}: log10 speed-up", speedup[c], 2.0, "log10 ×")
        for c in CONVERSIONS if c != CLAIM_BASELINE
    ]  # fmt: skip


def _draw_figures(
    tr: _Trained,
    variants: dict[str, dict[str, list[Any]]],
    arms_inf: dict[str, dict[str, list[Any]]],
    out: Path,
) -> list[str]:
    """Validation accuracy vs training time, test accuracy vs T after conversion, accuracy
    per noise variant and, with two or more Gaussian σ, the σ sweep."""
    st, tag, full_grid = tr.st, tr.tag, tr.full_grid
    time_curves = {
        arm: [
            (list(np.cumsum(r.curve(tr.clock))), [100 * v for v in r.curve("val_accuracy")])
            for r in rs
        ]
        for arm, rs in tr.runs.items()
    }
    figures = [
        str(plot_accuracy_vs_time(time_curves, out / f"{tag}_accuracy_vs_time.png",
                                  f"{tag}: validation accuracy vs training time, every arm",
                                  _clock_label(tr))),
        str(plot_sweep(
            full_grid,
            {a: [[100 * acc[T] for acc in d["acc_T"]] for T in full_grid]
             for a, d in arms_inf.items()},
            out / f"{tag}_accuracy_vs_T.png", f"{tag}: test accuracy after conversion vs T",
            "T (steps)", "test accuracy (%)",
        )),
        str(plot_bars(
            {label: [100 * v for v in _at(v["acc_T"], st.eval_steps)]
             for label, v in variants.items()},
            out / f"{tag}_variants.png",
            f"{tag}: converted accuracy at T={st.eval_steps} per noise variant",
            "test accuracy (%)", "noise variant",
        )),
    ]  # fmt: skip
    gauss = sorted((opts["sigma"], label) for label, opts in st.variants if set(opts) == {"sigma"})
    if len(gauss) >= 2:
        figures.append(str(plot_sweep(
            [max(s, 1e-2) for s, _ in gauss],
            {f"converted T={T}": [[100 * a for a in _at(variants[lab]["acc_T"], T)]
                                  for _, lab in gauss] for T in _sigma_sweep_steps(st)},
            out / f"{tag}_sigma_sweep.png",
            f"{tag}: σ sweep (Gaussian, μ=θ/2; σ=0 drawn at 0.01)", "σ", "test accuracy (%)",
        )))  # fmt: skip
    return figures


def _verdict_text(tr: _Trained, parts: list[Part], train_time: _TrainingTime) -> str:
    """The workload's verdict: accuracies at the best validation epoch and the claim parts."""
    runs, chosen = tr.runs, train_time.chosen
    from_steps = min(train_time.needs_steps.values())
    m = {k: 100 * mean_std(v)[0] for k, v in (
        ("noisy", [r.test for r in runs[tr.main_label]]), ("bptt", [r.test for r in runs[chosen]]),
        ("ann", [r.test for r in runs[ANN]]))}  # fmt: skip
    return (
        f"Accuracy at the best validation epoch: noisy single-step {m['noisy']:.2f}%, "
        f"{chosen} {m['bptt']:.2f}% (the BPTT arm best on validation; BPTT's validation "
        f"accuracy is within 0.5 point of its best from T={from_steps}), ANN "
        f"{m['ann']:.2f}% — single-step training costs {m['bptt'] - m['noisy']:+.2f} points "
        f"against BPTT and {m['ann'] - m['noisy']:+.2f} against the ANN. "
        + " ".join(p.sentence() + "." for p in parts[:3])
    )


def _setup_text(tr: _Trained) -> str:
    """The workload's set-up in one line: data, model, training, arms and the tuning kept."""
    st, tuned = tr.st, tr.tuned
    size = (
        f"{st.train_size} training images (fixed-seed subset of the rest)"
        if st.train_size
        else "every other training image"
    )
    return (
        f"{st.dataset}, {st.model}{' with average pooling' if st.pool == 'avg' else ''}, "
        f"{st.encoder} input, {st.epochs} epochs, batch {st.batch_size}, AdamW lr {st.lr} "
        f"cosine, val_fraction {st.val_fraction:.4g} (stratified), "
        f"{size}, the whole test split; noisy arm evaluated at T={st.eval_steps} per "
        f"epoch; BPTT {'/'.join(n.upper() for n in st.bptt_neurons)} (LIF τ=2 hard reset; IF "
        f"soft reset; atan surrogate) at T={list(st.bptt_steps)}; ANN twin (analog input) "
        f"converted with activation percentiles {sorted({p for p, _ in CONVERSIONS.values()})} "
        f"on {st.calibration} training images; {st.threads} torch thread(s); arms and seeds "
        f"interleaved; lr from {list(st.lrs)} chosen on validation per arm family (noisy: "
        f"{tuned['noisy'].best}, "
        + ", ".join(f"BPTT {n.upper()}: {tuned[n].best}" for n in st.bptt_neurons)
        + f", ANN: {tuned[ANN].best}), α from {[2.0, *st.alphas]} for BPTT LIF"
    )


def _tuning_table(tr: _Trained) -> Table:
    """Every tuning candidate of every arm family and the one kept."""
    st, tuned = tr.st, tr.tuned
    return Table(
        f"{tr.tag}: tuning on validation ({st.tune_epochs} epochs per candidate, seed "
        f"{tuned['noisy'].seed}; BPTT at T={st.tune_steps}); the kept setting trains every "
        "evaluation seed",
        ["arm", "setting", "best val accuracy", "best epoch", "kept"],
        [row for res in tuned.values() for row in res.rows()],
    )


def _json_by_steps(accs: list[dict[int, float]]) -> list[dict[str, float]]:
    """Accuracy-vs-T dicts with string keys (JSON)."""
    return [{str(k): a for k, a in d.items()} for d in accs]


def _part_results(
    tr: _Trained,
    variants: dict[str, dict[str, list[Any]]],
    conv: dict[str, dict[str, list[Any]]],
    train_time: _TrainingTime,
    inf: _Inference,
    step_timing: dict[str, Any],
) -> dict[str, Any]:
    """The workload's ``results`` entry of ``report.json`` (plain data)."""
    st, runs = tr.st, tr.runs
    return {
        "settings": {k: v for k, v in asdict(st).items() if k != "variants"},
        "variants": {
            label: {
                "options": dict(opts),
                "accuracy_vs_T": _json_by_steps(variants[label]["acc_T"]),
                "val_accuracy_vs_T": _json_by_steps(variants[label]["val_T"]),
                "single_step_noisy": variants[label]["noisy1"],
                "single_step_expected": variants[label]["expected"],
                "test_accuracy_at_best_val": [r.test for r in runs[label]],
                "best_epoch": [r.best_epoch for r in runs[label]],
            }
            for label, opts in st.variants
        },
        "runs": {
            arm: {
                "val_accuracy_curves": [r.curve("val_accuracy") for r in rs],
                "train_time_s": [r.curve("train_time_s") for r in rs],
                "train_cpu_s": [r.curve("train_cpu_s") if r.cpu_time_recorded else None
                                for r in rs],  # fmt: skip
                "step_time_s": [r.curve("step_time_s") for r in rs],
                "test_accuracy_at_best_val": [r.test for r in rs],
                "best_epoch": [r.best_epoch for r in rs],
            }
            for arm, rs in runs.items()
        },
        "conversions": {
            c: {"accuracy_vs_T": _json_by_steps(conv[c]["acc_T"]),
                "val_accuracy_vs_T": _json_by_steps(conv[c]["val_T"])}
            for c in CONVERSIONS
        },
        "bptt_chosen_on_val": train_time.chosen,
        "step_timing": step_timing,
        "tuning": {k: v.to_dict() for k, v in tr.tuned.items()},
        "bptt_within_half_point_of_best_from_T": min(train_time.needs_steps.values()),
        "training_time_saving": train_time.savings,
        "inference": inf.per_arm,
        "inference_log10_speedup": inf.speedup,
        "common_inference_target": inf.common,
    }  # fmt: skip


def _run_part(ctx: ExperimentContext, st: NoisySettings) -> dict[str, Any]:
    """One workload, step by step: train, convert and sweep T, tabulate accuracy, training
    time, inference, McNemar and step time, decide the parts, draw the figures."""
    tr = _train_every_arm(ctx, st)
    variants, conv = _convert_and_sweep_steps(ctx, tr)
    noisy = variants[tr.main_label]
    t_acc, t_sweep = _conversion_tables(tr, variants, conv)
    train_time = _training_time_to_target(tr)
    arms_inf = {NOISY_NET: noisy, **conv}
    inf = _inference_at_chosen_steps(tr, arms_inf)
    t_cost = _mcnemar_table(tr, train_time.chosen)
    t_step, step_timing = _time_training_steps(tr)
    parts = _verdict_parts(tr, noisy, train_time, inf.speedup)
    figures = _draw_figures(tr, variants, arms_inf, ctx.out_dir)
    return {
        "tag": tr.tag,
        "setup": _setup_text(tr),
        "tables": [t_acc, t_sweep, train_time.table, t_step, inf.table, t_cost, _tuning_table(tr)],
        "figures": figures,
        "verdict": _verdict_text(tr, parts, train_time),
        "parts": parts,
        "per_image": {a: [r.correct for r in rs] for a, rs in tr.runs.items()},
        "notes": [],
        "results": _part_results(tr, variants, conv, train_time, inf, step_timing),
    }  # fmt: skip


def run_part(
    settings: NoisySettings,
    seeds: int = 5,
    out_dir: str | Path = "runs/experiments",
    progress: bool = False,
) -> tuple[Report, Path]:
    """Run the experiment for one custom :class:`NoisySettings` and write its report; the
    registered experiment runs the fixed workloads instead."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(out_dir) / f"noisy-single-step-{settings.tag}-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    ctx = ExperimentContext(folder, False, list(range(seeds)), progress)
    exp = NoisySingleStepExperiment()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        result = _run_part(ctx, settings)
    finally:
        torch.set_num_threads(threads)
    report = _report(exp, [result], settings.threads)
    report.setup["seeds"] = ctx.seeds
    report.write(folder)
    return report, folder
