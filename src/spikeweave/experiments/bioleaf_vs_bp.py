"""Experiment ``bioleaf-vs-bp``: the spiking dendritic microcircuit vs surrogate-gradient BPTT.

Claim (arXiv 2111.13188, abstract only; methods.md §5): BioLeaF trains multi-layer SNNs with
local STDP-like rules in a microcircuit of pyramidal cells and interneurons, with accuracy
comparable to BP. spikeweave's reading is in :mod:`spikeweave.learning.bioleaf`.

Arms, on the same data, layer sizes (in-500-out), epochs, batch size, seeds and tuning budget:

- ``bioleaf``: :class:`~spikeweave.learning.bioleaf.BioLeaF` (local rules, no optimizer);
- ``bptt``: an MLP of LIF neurons (τ = 2, hard reset, atan surrogate, no batch norm) of the
  same sizes, trained by surrogate-gradient BPTT with AdamW, T = 4.

Design (issue 29): full Fashion-MNIST (the validation split, 5,000 images, held out of the
60,000 training images; the 10,000 test images whole; on a CPU a stated ``train_size`` of the
rest); each arm tuned on validation on a tuning seed apart from the evaluation seeds with the
same budget (three learning-rate points: BPTT's AdamW rate, BioLeaF's local rates scaled
together); every run scored on the test set at its best validation epoch, per image.

The one part, fixed before any run: "comparable" = non-inferiority of BioLeaF against BPTT
with a margin of :data:`COMPARABLE_POINTS` accuracy points, on the seed × image paired
difference (:func:`~.stats.accuracy_part`); a half-width not below the margin is "undecidable
at this budget".

The self-predicting state is measured on 256 test images without a target: mean ``|v_A|`` of
each hidden layer at initialisation, after the self-predicting phase, after learning, and in
the ideal self-predicting state of the final weights (the spike-noise floor).

Runs return plain data, so ``--workers`` trains them in forked processes, one torch thread
each; training time excludes evaluation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..learning.bioleaf import BioLeaF, Microcircuit, apical_on
from ..training import Callback, TrainConfig, Trainer
from .base import Experiment, ExperimentContext, register
from .figures import plot_accuracy_bands, plot_seed_bands
from .report import Report, Table, fmt_pm, mean_std
from .selection import BestValPredictions, read_records, run_record
from .stats import accuracy_part, overall
from .tuning import TuneResult, tune_arms

__all__ = [
    "BioLeaFSettings",
    "BioLeaFVsBPExperiment",
    "SelfPredictingProbe",
    "COMPARABLE_POINTS",
    "ARMS",
]

COMPARABLE_POINTS = 3.0
"""'Comparable to BP': BioLeaF at most this many accuracy points below BPTT (non-inferiority
margin, fixed before any run)."""
ARMS = ("bioleaf", "bptt")
PHASES = ("initial", "self-predicting", "final", "ideal")


@dataclass(frozen=True)
class BioLeaFSettings:
    """The experiment's size: data, layers, budget and the tuning grids (equal sizes)."""

    dataset: str = "fashion-mnist"
    hidden: tuple[int, ...] = (500,)
    epochs: int = 8
    batch_size: int = 64
    bptt_steps: int = 4
    val_fraction: float = 5000 / 60000
    train_size: int = 5000
    bptt_lrs: tuple[float, ...] = (1e-3, 2e-3, 5e-3)
    bioleaf_scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Factors applied to BioLeaF's local learning rates (``lr_out``, ``lr_hidden``) together."""
    options: dict[str, Any] = field(default_factory=dict)
    """``[method.bioleaf]`` options (defaults otherwise)."""

    def describe(self) -> str:
        """One line for the report's setup."""
        size = f"{self.train_size} training images" if self.train_size else "every training image"
        return (
            f"{self.dataset}, in-{'-'.join(map(str, self.hidden))}-10, {self.epochs} epochs, "
            f"batch {self.batch_size}, {size} after holding out a {self.val_fraction:.4g} "
            "validation share, the whole test split"
        )


def settings_for(quick: bool) -> BioLeaFSettings:
    """The full experiment, or the small ``--quick`` one (tests and CI: one-point grids)."""
    if quick:
        return BioLeaFSettings(
            dataset="digits", hidden=(100,), epochs=2, batch_size=32, val_fraction=0.2,
            train_size=0, bptt_lrs=(2e-3,), bioleaf_scales=(1.0,),
            options={"self_predict_batches": 20},
        )  # fmt: skip
    return BioLeaFSettings()


class SelfPredictingProbe(Callback):
    """Measures the apical mismatch on fixed test images without a target at the start, at
    the end of the self-predicting phase, at the end, and in the ideal self-predicting state.

    The probes taken during training are kept in the run directory (:data:`PROBE_FILE`), so a
    run resumed after an interruption, or a finished run an experiment resumes and loads,
    reports the probes its training took."""

    PROBE_FILE = "self_predicting_probe.json"

    def __init__(self, samples: int = 256) -> None:
        self.samples = samples
        self.values: dict[str, list[float]] = {}
        self.topdown: dict[str, list[float]] = {}
        self._x: torch.Tensor | None = None

    def _probe(self, trainer: Trainer, key: str, model: Microcircuit | None = None) -> None:
        assert self._x is not None
        net = model if model is not None else trainer.model
        self.values[key], self.topdown[key] = apical_on(net, self._x, trainer.config.steps)

    def _sample(self, trainer: Trainer) -> None:
        if self._x is None:
            n = min(self.samples, len(trainer.test_set))
            self._x = torch.stack([trainer.test_set[i][0] for i in range(n)]).to(trainer.device)

    def _save(self, trainer: Trainer) -> None:
        if trainer.dist.is_main:
            record = {"values": self.values, "topdown": self.topdown}
            trainer.rundir.write_json(self.PROBE_FILE, record)

    def _load(self, trainer: Trainer) -> None:
        """The probes a resumed run took before it was interrupted."""
        record = trainer.rundir.read_json(self.PROBE_FILE)
        self.values = dict(record.get("values", {}))
        self.topdown = dict(record.get("topdown", {}))

    def on_fit_start(self, trainer):  # noqa: D102
        self._sample(trainer)
        if trainer.history:  # resumed: its initial (and maybe self-predicting) probes were taken
            self._load(trainer)
            return
        self._probe(trainer, "initial")
        self._save(trainer)

    def on_batch_end(self, trainer, epoch, batch, loss):  # noqa: D102
        if "self-predicting" not in self.values and int(trainer.model.batches_seen) == (
            trainer.method.options.self_predict_batches
        ):
            self._probe(trainer, "self-predicting")
            self._save(trainer)

    def on_fit_end(self, trainer, summary):  # noqa: D102
        self._sample(trainer)
        if "initial" not in self.values:  # a finished run loaded, not trained, here
            self._load(trainer)
        self._probe(trainer, "final")
        ideal = copy.deepcopy(trainer.model)
        ideal.set_self_predicting()
        self._probe(trainer, "ideal", ideal)


def _configs(s: BioLeaFSettings, out_dir: str) -> dict[str, TrainConfig]:
    """Each arm's base config (before tuning)."""
    base = TrainConfig(
        dataset=s.dataset, model="mlp", hidden=list(s.hidden), epochs=s.epochs,
        batch_size=s.batch_size, steps=4, val_fraction=s.val_fraction, train_size=s.train_size,
        out_dir=out_dir, test_eval="best-val",
    )  # fmt: skip
    bioleaf = replace(base, method="bioleaf", method_options=BioLeaF(s.options).options_dict())
    bptt = replace(base, neuron="lif", batch_norm=False, steps=s.bptt_steps)
    return {"bioleaf": bioleaf, "bptt": bptt}


def _grids(s: BioLeaFSettings, configs: dict[str, TrainConfig]) -> dict[str, list[dict]]:
    """The tuning candidates: the same number of points for each arm."""
    opts = configs["bioleaf"].method_options
    scaled = [
        {"method_options": {**opts, "lr_out": opts["lr_out"] * f,
                            "lr_hidden": opts["lr_hidden"] * f}}
        for f in s.bioleaf_scales
    ]  # fmt: skip
    return {"bioleaf": scaled, "bptt": [{"lr": float(lr)} for lr in s.bptt_lrs]}


def _tuned(ctx: ExperimentContext, s: BioLeaFSettings) -> tuple[dict, dict[str, TuneResult]]:
    """Each arm's config after tuning on validation (a one-point grid is not tuned)."""
    configs = _configs(s, str(ctx.out_dir / "runs"))
    grids = _grids(s, configs)
    todo = {a: (configs[a], grids[a]) for a in ARMS if len(grids[a]) > 1}
    results = tune_arms(ctx, todo) if todo else {}
    for arm in ARMS:
        best = results[arm].best if arm in results else grids[arm][0]
        configs[arm] = replace(configs[arm], **best)
    return configs, results


def _job(ctx: ExperimentContext, arm: str, cfg: TrainConfig):
    def train(seed: int) -> dict[str, Any]:
        pick = BestValPredictions()
        probe = SelfPredictingProbe() if arm == "bioleaf" else None
        callbacks = [pick] if probe is None else [pick, probe]
        trainer = ctx.train(f"{cfg.dataset}-{arm}", cfg, seed, callbacks=callbacks)
        record = run_record(trainer, pick)
        record["train_s"] = sum(r["train_time_s"] for r in trainer.history)
        if probe is not None:
            record["apical"], record["topdown"] = probe.values, probe.topdown
            record["layers"] = list(trainer.model.hidden_names)
        return record

    return train


def _apical_rows(s: BioLeaFSettings, records: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for layer, name in enumerate(records[0]["layers"]):
        # a run that never left the self-predicting phase has no such probe: nan
        per_phase = [
            [r["apical"].get(k, [float("nan")] * len(r["layers"]))[layer] for r in records]
            for k in PHASES
        ]
        topdown = [r["topdown"]["final"][layer] for r in records]
        rows.append([s.dataset, name, *(fmt_pm(v, digits=3) for v in per_phase),
                     fmt_pm(topdown, digits=3)])  # fmt: skip
    return rows


@register
class BioLeaFVsBPExperiment(Experiment):
    """BioLeaF's local rules vs surrogate BPTT on the same layer sizes, tuned alike."""

    name = "bioleaf-vs-bp"
    parallel_runs = True  # every run returns plain data
    title = "BioLeaF (spiking dendritic microcircuit, local rules) vs surrogate-gradient BPTT"
    claim = (
        "A microcircuit of pyramidal cells and interneurons trained only by local STDP-like "
        "rules, with errors carried by apical compartments, reaches accuracy comparable to BP "
        "(arXiv 2111.13188; spikeweave's reading, methods.md §5)."
    )

    def settings(self, quick: bool) -> BioLeaFSettings:
        """:func:`settings_for`."""
        return settings_for(quick)

    def run(self, ctx: ExperimentContext) -> Report:  # noqa: D102
        s = self.settings(ctx.quick)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            configs, tuned = _tuned(ctx, s)
            records = ctx.run_interleaved({a: _job(ctx, a, configs[a]) for a in ARMS})
        finally:
            torch.set_num_threads(threads)
        read = read_records(records)
        part = accuracy_part(
            f"accuracy: BioLeaF comparable to BPTT (non-inferiority, margin "
            f"{COMPARABLE_POINTS:g} points)",
            read.correct["bioleaf"], read.correct["bptt"], "points", margin=COMPARABLE_POINTS,
        )  # fmt: skip
        held = overall([part])
        m_b, m_p = mean_std(read.accuracy["bioleaf"])[0], mean_std(read.accuracy["bptt"])[0]
        verdict = (
            f"{s.dataset}: BioLeaF {100 * m_b:.2f}% vs BPTT {100 * m_p:.2f}% at the best "
            f"validation epoch ({part.estimate:+.2f} points, 95% interval {part.interval[0]:+.2f} "
            f"to {part.interval[1]:+.2f}); the part is {part.status}."
        )
        acc_rows = [
            [a, fmt_pm(read.accuracy[a], 100), fmt_pm([r["epoch"] for r in read.rows[a]], digits=1),
             fmt_pm([r["train_s"] for r in records[a]], digits=1)]
            for a in ARMS
        ]  # fmt: skip
        tune_rows = [row for a in ARMS if a in tuned for row in tuned[a].rows()]
        figures = [
            plot_accuracy_bands(
                {a: read.curves[a] for a in ARMS},
                ctx.out_dir / f"{s.dataset}_{read.curve_split}_accuracy.png",
                # best-val runs evaluate test once, so the per-epoch curves are validation's
                f"{s.dataset}: {read.curve_label} accuracy per epoch, BioLeaF vs BPTT (mean ± SD "
                "over seeds)",
                read.curve_label,
            ),
            plot_seed_bands(
                {f"{mode} {name}": [[r[f"apical_{mode}/{name}"] for r in h]
                                    for h in read.histories["bioleaf"]]
                 for mode in ("train", "test") for name in records["bioleaf"][0]["layers"]},
                ctx.out_dir / f"{s.dataset}_apical_mismatch.png",
                f"{s.dataset}: BioLeaF apical mismatch per epoch (mean ± SD over seeds)",
                "mean |v_A| (membrane units)",
            ),
        ]  # fmt: skip
        tables = [
            Table(
                "Test accuracy (%) at the best validation epoch, that epoch, and training time "
                "per run (s, one torch thread, evaluation excluded)",
                ["arm", "test accuracy", "epoch", "training s"],
                acc_rows,
            ),
            Table(
                "Self-predicting state: mean |v_A| on 256 test images without a target "
                "(membrane units); 'ideal' = the final weights with interneurons set to the "
                "exact self-predicting state (the spike-noise floor)",
                ["dataset", "layer", "initial", "after self-predicting phase", "after learning",
                 "ideal", "top-down input (mean abs W_down·r)"],
                _apical_rows(s, records["bioleaf"]),
            ),
        ]  # fmt: skip
        if tune_rows:
            header = ["arm", "setting", "best val accuracy", "epoch", ""]
            tables.append(
                Table("Tuning on validation (tuning seed, same budget)", header, tune_rows)
            )
        return self.report(
            setup={
                "data": s.describe(),
                "bioleaf": f"Microcircuit, direct input, T=4 input steps × substeps; options "
                f"{configs['bioleaf'].method_options}",
                "bptt": f"MLP of LIF (τ=2, hard reset, atan), no batch norm, T={s.bptt_steps}, "
                f"AdamW lr {configs['bptt'].lr:g}, cosine",
                "selection": "best validation epoch per run; settings tuned on validation",
                "threads": 1,
                "n_test": read.n_test,
            },
            parts=[part],
            tables=tables,
            figures=[str(f) for f in figures],
            verdict=verdict,
            held=held,
            per_image=read.correct,
            results={
                "settings": {**s.__dict__, "hidden": list(s.hidden)},
                "accuracy": read.accuracy,
                "best_val_epoch": {a: [r["epoch"] for r in read.rows[a]] for a in ARMS},
                "train_s": {a: [r["train_s"] for r in records[a]] for a in ARMS},
                "apical": {k: [r["apical"].get(k) for r in records["bioleaf"]] for k in PHASES},
                "topdown": {k: [r["topdown"].get(k) for r in records["bioleaf"]] for k in PHASES},
                "tuning": {a: tuned[a].to_dict() for a in tuned},
            },
        )
