"""Experiment machinery: interleaving, step timing, machine state, backends, validation
selection with per-image predictions, tuned baselines and the added statistics."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spikeweave.errors import ConfigError
from spikeweave.experiments import ExperimentContext
from spikeweave.experiments.schedule import interleave, run_interleaved
from spikeweave.experiments.selection import (
    BestValPredictions,
    best_val_row,
    per_image,
    read_records,
    run_record,
)
from spikeweave.experiments.stats import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    area_under_log_curve,
    decide_equivalence,
    overall,
    paired_part,
)
from spikeweave.experiments.timing import (
    case_from_trainer,
    cases_from_records,
    cpu_overhead,
    machine_state,
    neuron_backends,
    set_backend,
    time_arms,
    time_backends,
    timing_results,
    timing_table,
)
from spikeweave.experiments.tuning import sweep_lr_alpha, tune
from spikeweave.training import TrainConfig

TINY = TrainConfig(
    dataset="digits", model="mlp", hidden=[16], steps=2, epochs=2, batch_size=128,
    neuron="lif", val_fraction=0.2, plots=False,
)  # fmt: skip


def test_interleave_is_seed_major_and_rotates_the_first_arm():
    order = interleave(["A", "B", "C"], [0, 1, 2, 3])
    assert [s for s, _ in order] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert [a for s, a in order if s == 0] == ["A", "B", "C"]
    assert [a for s, a in order if s == 1] == ["B", "C", "A"]
    assert [a for s, a in order if s == 3] == ["A", "B", "C"]
    with pytest.raises(ConfigError, match="unique"):
        interleave(["A", "A"], [0])


def test_run_interleaved_runs_in_schedule_order_and_returns_results_by_seed():
    ran: list[tuple[str, int]] = []

    def job(arm: str):
        return lambda seed: ran.append((arm, seed)) or f"{arm}{seed}"

    out = run_interleaved({"A": job("A"), "B": job("B")}, [0, 1])
    assert ran == [("A", 0), ("B", 0), ("B", 1), ("A", 1)]  # not arm after arm
    assert out == {"A": ["A0", "A1"], "B": ["B0", "B1"]}


@pytest.mark.parametrize("workers", [1, 2])
def test_each_finished_run_is_told_to_the_parent_with_the_batch_count(workers):
    told: list[tuple[int, int]] = []
    jobs = {"A": _seeded_job("A"), "BB": _seeded_job("BB")}
    out = run_interleaved(jobs, [0, 1], workers=workers, done=lambda f, t: told.append((f, t)))
    assert told == [(1, 4), (2, 4), (3, 4), (4, 4)]
    alone = run_interleaved(jobs, [0, 1], workers=1)
    assert {a: [r["value"] for r in rs] for a, rs in out.items()} == {
        a: [r["value"] for r in rs] for a, rs in alone.items()
    }


def test_the_batch_line_waits_for_a_pace_then_estimates_the_time_left(monkeypatch, capsys):
    from spikeweave.experiments import base

    clock = iter([0.0, 0.1, 0.2, 300.0, 600.0, 700.0])
    monkeypatch.setattr(base.time, "perf_counter", lambda: next(clock))
    tell = base._BatchProgress("exp", workers=1)  # a pace over the last 2 runs
    for finished in range(1, 6):
        tell(finished, 5)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[exp] 1 of 5 runs of this batch finished, time left not known yet"
    assert lines[1].endswith("2 of 5 runs of this batch finished, time left not known yet")
    # two loaded runs, then one trained for 300 s: (300 - 0.1) / 2 per run, 2 runs left
    assert lines[2].endswith("3 of 5 runs of this batch finished, about 5 min left")
    assert lines[3].endswith("4 of 5 runs of this batch finished, about 5 min left")
    assert lines[4].endswith("5 of 5 runs of this batch finished, batch done")


def test_runs_loaded_on_a_resume_give_no_pace_and_the_clock_restarts_after_them(
    monkeypatch, capsys
):
    from spikeweave.experiments import base

    # two runs loaded (two minutes each: their per-image vectors are recomputed), then runs of
    # 20 minutes: the first estimate comes from the first run done after the last load
    clock = iter([0.0, 120.0, 240.0, 1440.0, 2640.0])
    monkeypatch.setattr(base.time, "perf_counter", lambda: next(clock))
    loaded = [0]
    tell = base._BatchProgress("exp", workers=1, loaded=lambda: loaded[0])
    for finished in range(1, 5):
        if finished <= 2:
            loaded[0] += 1
        tell(finished, 6)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("1 of 6 runs of this batch finished, time left not known yet")
    assert lines[1].endswith("2 of 6 runs of this batch finished, time left not known yet")
    assert lines[2].endswith("3 of 6 runs of this batch finished, about 60 min left")  # 3 × 20
    assert lines[3].endswith("4 of 6 runs of this batch finished, about 40 min left")


def test_the_context_counts_loaded_runs_and_saved_results_in_every_process(tmp_path):
    ctx = ExperimentContext(tmp_path, quick=True, seeds=[0, 1], log=False, workers=2)
    ctx.run_saved("b", {"A": lambda seed: seed})
    resumed = replace(ctx, resume=True)
    resumed.run_saved("b", {"A": lambda seed: seed})
    assert resumed.loaded_runs.value == 2  # counted in the forked workers, seen here


def _seeded_job(arm: str):
    import os

    import torch

    def job(seed: int):
        g = torch.Generator().manual_seed(seed * 7 + len(arm))
        return {"value": torch.randn(5, generator=g).sum().item(), "pid": os.getpid()}

    return job


def test_forked_workers_return_what_one_process_returns_in_the_same_layout():
    import os

    jobs = {"A": _seeded_job("A"), "BB": _seeded_job("BB")}
    one = run_interleaved(jobs, [0, 1, 2], workers=1)
    two = run_interleaved(jobs, [0, 1, 2], workers=2)
    strip = {a: [r["value"] for r in rs] for a, rs in one.items()}
    assert {a: [r["value"] for r in rs] for a, rs in two.items()} == strip
    assert all(r["pid"] == os.getpid() for rs in one.values() for r in rs)
    assert all(r["pid"] != os.getpid() for rs in two.values() for r in rs)  # really forked
    with pytest.raises(ConfigError, match="at least 1"):
        run_interleaved(jobs, [0], workers=0)


def _counted_jobs(log, fail: tuple[str, int] | None = None):
    """Two jobs that append ``arm seed`` to the file ``log`` when they run (in any process)."""

    def job(arm: str):
        def run(seed: int):
            if (arm, seed) == fail:
                raise RuntimeError("killed")
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"{arm}/{seed}\n")
            return {"arm": arm, "curve": [[1, 0.5 + seed / 10], [2, 1 / 3]], "none": None}

        return run

    return {"A | test": job("A | test"), "σ=0.3 → IF": job("σ=0.3 → IF")}


def _ran(log) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


@pytest.mark.parametrize("workers", [1, 2])
def test_run_saved_saves_every_result_and_a_resume_loads_them_instead_of_running_again(
    tmp_path, workers
):
    out, log = tmp_path / "exp", tmp_path / "calls.log"
    ctx = ExperimentContext(out, quick=True, seeds=[0, 1], log=False, workers=workers)
    first = ctx.run_saved("sweeps", _counted_jobs(log))
    assert len(_ran(log)) == 4 and len(list((out / "results").glob("*/*.json"))) == 4
    resumed = replace(ctx, resume=True)
    assert resumed.run_saved("sweeps", _counted_jobs(log)) == first
    assert len(_ran(log)) == 4  # loaded, not run again
    assert first["A | test"][1]["curve"] == [[1, 0.6], [2, 1 / 3]]  # floats come back exact
    ctx.run_saved("sweeps", _counted_jobs(log))  # a new experiment (no resume) runs them all
    assert len(_ran(log)) == 8


def test_an_interrupted_batch_resumes_with_only_the_missing_results(tmp_path):
    out, log = tmp_path / "exp", tmp_path / "calls.log"
    ctx = ExperimentContext(out, quick=True, seeds=[0, 1], log=False)
    with pytest.raises(RuntimeError, match="killed"):
        ctx.run_saved("sweeps", _counted_jobs(log, fail=("A | test", 1)))
    assert len(_ran(log)) == 3  # the interleaved order ran the other three first
    resumed = replace(ctx, resume=True).run_saved("sweeps", _counted_jobs(log))
    assert _ran(log)[3:] == ["A | test/1"]
    assert resumed == ctx.run_saved("sweeps", _counted_jobs(log))


def test_run_saved_refuses_results_json_would_change_and_saved_files_of_other_jobs(tmp_path):
    ctx = ExperimentContext(tmp_path, quick=True, seeds=[0], log=False)
    for bad in ((1, 2), {1: 0.5}, np.float32(0.5), {"x": [torch.tensor(1.0)]}):
        with pytest.raises(ConfigError, match="which JSON would not give back unchanged"):
            ctx.run_saved("bad", {"A": lambda seed, b=bad: b})
    ctx.run_saved("swap", {"A": lambda seed: 1.0})
    (saved,) = (tmp_path / "results").glob("swap*/*.json")
    saved.write_text(json.dumps({"arm": "B", "seed": 0, "result": 2.0}))
    with pytest.raises(ConfigError, match="is not the one of 'A', seed 0"):
        replace(ctx, resume=True).run_saved("swap", {"A": lambda seed: 1.0})
    saved.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the saved result"):
        replace(ctx, resume=True).run_saved("swap", {"A": lambda seed: 1.0})


@pytest.mark.slow
def test_soft_xor_runs_in_forked_workers_equal_the_runs_in_one_process(tmp_path):
    from spikeweave.experiments.reset_dependency import SoftXorSettings, train_soft_xor

    toy = SoftXorSettings(n_train=200, n_test=100, steps=4, epochs=2, batch_size=20)

    def jobs(ctx):
        return {
            f"{keep}": (lambda seed, keep=keep: train_soft_xor(ctx, keep, 1e-2, seed, toy))
            for keep in (True, False)
        }

    one = run_interleaved(jobs(ExperimentContext(tmp_path / "a", True, [0, 1])), [0, 1])
    two = run_interleaved(jobs(ExperimentContext(tmp_path / "b", True, [0, 1])), [0, 1], workers=2)
    for arm in one:
        assert [r["curve"] for r in two[arm]] == [r["curve"] for r in one[arm]]
    assert len(list((tmp_path / "b" / "runs").iterdir())) == 4  # the workers wrote their runs


def test_workers_are_refused_for_experiments_that_hand_trainers_to_the_report(tmp_path):
    from spikeweave.experiments import run_experiment

    with pytest.raises(ConfigError, match="--workers is for: .*klif-vs-lif"):
        run_experiment("sampling-vs-random", quick=True, out_dir=tmp_path, workers=2)
    with pytest.raises(ConfigError, match="at least 1"):
        run_experiment("reset-dependency", quick=True, out_dir=tmp_path, workers=0)


def test_machine_state_records_threads_and_load():
    state = machine_state()
    assert state["torch_threads"] >= 1 and len(state["loadavg"]) == 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ctx = ExperimentContext(tmp_path_factory.mktemp("m"), quick=True, seeds=[0])
    picks = BestValPredictions()
    trainer = ctx.train("lif", TINY, 0, callbacks=[picks])
    return ctx, trainer, picks


def test_every_run_reports_step_time_apart_from_epoch_time(trained):
    _, trainer, _ = trained
    row = trainer.history[-1]
    assert 0 < row["step_time_s"] <= row["step_time_s_sum"] <= row["epoch_time_s"]
    metrics = (trainer.run_dir / "metrics.jsonl").read_text().splitlines()
    assert "step_time_s" in json.loads(metrics[-1])
    # the process's CPU time beside the wall clock (shared machines: waiting is not work)
    assert 0 < row["train_cpu_s"] and "train_cpu_s" in json.loads(metrics[-1])


def test_predictions_at_the_best_validation_epoch_reproduce_its_test_accuracy(trained):
    _, trainer, picks = trained
    best = best_val_row(trainer.history, "accuracy", True)
    assert picks.epoch == best["epoch"]
    assert picks.correct is not None and picks.correct.dtype == bool
    assert len(picks.correct) == len(trainer.test_set)
    assert picks.correct.mean() == pytest.approx(best["test_accuracy"])


def test_backend_can_be_forced_and_is_reported(trained):
    _, trainer, _ = trained
    case = case_from_trainer(trainer, batch_size=8)
    forced = set_backend(case_from_trainer(trainer, 8).model, "torch")
    assert set(neuron_backends(forced, case.inputs).values()) == {"torch"}
    ref = set_backend(case_from_trainer(trainer, 8).model, "reference")
    assert set(neuron_backends(ref, case.inputs).values()) == {"reference"}
    with pytest.raises(ConfigError, match="unknown backend"):
        set_backend(forced, "gpu")


def test_time_arms_interleaves_rounds_on_the_chosen_backend_without_changing_the_models(trained):
    _, trainer, _ = trained
    case = case_from_trainer(trainer, batch_size=8)
    timing = time_arms({"a": case, "b": case}, backend="reference", rounds=3, steps=2, warmup=1)
    assert set(timing) == {"a", "b"}
    for t in timing.values():
        assert len(t.wall_s) == 3 and len(t.cpu_s) == 3 and min(t.wall_s) > 0
        assert set(t.resolved.values()) == {"reference"}
        assert t.to_dict()["median_wall_s"] > 0
    assert {m.backend for m in case.model.modules() if hasattr(m, "backend")} == {"auto"}
    with pytest.raises(ConfigError, match="rounds"):
        time_arms({"a": case}, rounds=0)


def test_per_image_scores_what_the_trainer_logged_and_leaves_the_random_stream_alone(trained):
    _, trainer, _ = trained
    poisson = replace(trainer.config, encoder="poisson")
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = per_image(trainer.model, trainer.task, trainer.test_set, poisson, ties=True)
    assert torch.equal(torch.rand(3), expected_next)  # the evaluation forked its RNG
    again = per_image(trainer.model, trainer.task, trainer.test_set, poisson, ties=True)
    assert np.array_equal(first.correct, again.correct)  # seeded per run, not per call
    assert first.tied is not None and first.tied.dtype == bool
    assert len(first.tied) == len(first.correct) == len(trainer.test_set)
    assert per_image(trainer.model, trainer.task, trainer.test_set, trainer.config).tied is None
    # the same images, encoding and seed as the trainer's own evaluation
    now = per_image(trainer.model, trainer.task, trainer.test_set, trainer.config).correct
    assert now.mean() == pytest.approx(trainer.evaluate("test")["test_accuracy"])
    trainer.model.train()
    per_image(trainer.model, trainer.task, trainer.test_set, trainer.config)
    assert trainer.model.training  # its mode is given back


def test_per_image_refuses_a_task_without_classes(trained):
    _, trainer, _ = trained
    task = SimpleNamespace(name="regression")
    with pytest.raises(ConfigError, match="classification"):
        per_image(trainer.model, task, trainer.test_set, trainer.config)


def test_read_records_reads_every_arm_at_its_best_validation_epoch(trained):
    _, trainer, picks = trained
    record = run_record(trainer, picks)
    read = read_records({"A": [record], "B": [record, record]})
    best = best_val_row(trainer.history, "accuracy", True)
    assert read.accuracy == {"A": [best["test_accuracy"]], "B": [best["test_accuracy"]] * 2}
    assert read.n_test == len(trainer.test_set)
    assert read.curves["A"] == [[r["test_accuracy"] for r in trainer.history]]
    assert read.step_ms["A"][0] > 0 and read.correct["B"][1] is picks.correct


def test_time_backends_times_every_arm_per_backend_with_cpu_time_and_load(trained):
    _, trainer, picks = trained
    cases = cases_from_records({"a": [run_record(trainer, picks)]})
    cases["b"] = case_from_trainer(trainer, batch_size=8)
    timing = time_backends(cases, {"shipped": None, "ref": "reference"}, rounds=2, steps=1,
                           warmup=0)  # fmt: skip
    assert list(timing) == ["shipped", "ref"] and set(timing["ref"]) == {"a", "b"}
    ref = timing["ref"]["a"]
    assert set(ref.resolved.values()) == {"reference"} and len(ref.load) == len(ref.cpu_s) == 2
    assert timing_results(timing)["ref"]["b"]["load"] == timing["ref"]["b"].load
    table = timing_table(timing)
    assert [r[:2] for r in table.rows] == [[m, a] for m in timing for a in ("a", "b")]
    a, b = timing["ref"]["a"].cpu_s, timing["ref"]["b"].cpu_s
    expected = [x / y - 1 for x, y in zip(a, b, strict=True)]
    assert cpu_overhead(timing["ref"], "a", "b") == pytest.approx(expected)


@pytest.mark.slow
def test_tuning_keeps_the_best_validation_candidate_and_never_needs_the_test_set(tmp_path, capsys):
    ctx = ExperimentContext(tmp_path, quick=True, seeds=[0])
    base = replace(TINY, epochs=1, batch_size=32)
    result = tune(ctx, "lif", base, [{"lr": 1e-6}, {"lr": 3e-2}])
    assert result.best == {"lr": 3e-2}  # an lr of 1e-6 cannot learn in one epoch
    vals = [t.val for t in result.trials]
    assert vals[1] > vals[0]
    assert [r[-1] for r in result.rows()] == ["", "kept"]
    assert result.to_dict()["metric"] == "val_accuracy"
    lines = capsys.readouterr().err.splitlines()  # per finished run: its line, the batch's
    runs = [line for line in lines if " done: " in line]
    assert len(runs) == 2 and ctx.runs_done == 2 and len(lines) == 4
    assert "run 2 done: tune-lif-" in runs[1] and "accuracy" in runs[1]
    assert lines[-1].endswith("2 of 2 runs of this batch finished, batch done")
    with pytest.raises(ConfigError, match="val_fraction"):
        tune(ctx, "lif", replace(base, val_fraction=0.0), [{"lr": 1e-2}])


@pytest.mark.slow
def test_staged_sweep_tries_alpha_at_the_best_lr_and_trains_the_shared_point_once(tmp_path):
    ctx = ExperimentContext(tmp_path, quick=True, seeds=[0])
    base = replace(TINY, epochs=1, batch_size=32, surrogate="sigmoid", alpha=4.0)
    result = sweep_lr_alpha(ctx, "lif", base, [1e-6, 3e-2], [2.0, 4.0])
    grid = [t.overrides for t in result.trials]
    assert grid == [
        {"lr": 1e-6, "alpha": 4.0},
        {"lr": 3e-2, "alpha": 4.0},
        {"lr": 3e-2, "alpha": 2.0},
    ]
    assert result.best["lr"] == 3e-2


@pytest.mark.parametrize(
    ("interval", "status"),
    [((-0.2, 0.3), HELD), ((0.6, 1.0), NOT_HELD), ((-0.2, 0.8), INCONCLUSIVE)],
)
def test_equivalence_needs_the_interval_inside_the_margin(interval, status):
    assert decide_equivalence("same", 0.1, interval, "points", "t", 0.5, 5, 0.5).status == status


def test_paired_part_scales_to_points_and_overall_ignores_nothing_it_is_given():
    a, b = [0.95, 0.96, 0.955, 0.958, 0.952], [0.90, 0.91, 0.905, 0.907, 0.903]
    part = paired_part("accuracy", a, b, "points", scale=100)
    assert part.status == HELD and part.estimate == pytest.approx(5.0)
    assert overall([part]) is True
    worse = paired_part("accuracy", b, a, "points", scale=100)
    assert worse.status == NOT_HELD and overall([part, worse]) is False
    assert overall([]) is None


def test_area_under_a_log_lr_curve_is_the_mean_over_log_lr():
    assert area_under_log_curve([1e-3, 1e-2, 1e-1], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert area_under_log_curve([1e-3, 1e-2, 1e-1], [0.0, 1.0, 0.0]) == pytest.approx(0.5)
    # A curve that fails over a wider lr range has the larger area.
    assert area_under_log_curve([1e-3, 1e-2, 1e-1, 1.0], [0.1, 0.1, 1.0, 1.0]) > (
        area_under_log_curve([1e-3, 1e-2, 1e-1, 1.0], [0.1, 0.1, 0.1, 1.0])
    )
    with pytest.raises(ValueError):
        area_under_log_curve([1e-2, 1e-3], [0.0, 1.0])
    assert np.isfinite(area_under_log_curve([0.1], [0.3]))


def test_table_candidates_are_named_and_tabled_by_the_entries_that_differ():
    from spikeweave.experiments.tuning import Trial, TuneResult, _label, _varying

    shared = {"substeps": 10, "feedback": "random"}
    cands = [{"method_options": {**shared, "lr_out": f, "lr_hidden": f / 2}} for f in (0.5, 1.0)]
    varying = _varying(cands)
    assert varying == {"method_options": {"lr_out", "lr_hidden"}}
    assert _label(cands[0], varying) == "lr_hidden0.25-lr_out0.5"  # a short folder name
    trials = [Trial(c, v, 1) for c, v in zip(cands, (0.8, 0.9), strict=True)]
    result = TuneResult("bioleaf", "accuracy", True, 2, 0, trials)
    assert [r[1] for r in result.rows()] == [
        "lr_hidden=0.25, lr_out=0.5",
        "lr_hidden=0.5, lr_out=1",
    ]
    assert result.rows()[1][-1] == "kept" and _label({"lr": 0.002}) == "lr0.002"


@pytest.fixture(scope="module")
def trained_best_val(tmp_path_factory):
    ctx = ExperimentContext(tmp_path_factory.mktemp("bv"), quick=True, seeds=[0])
    picks = BestValPredictions(ties=True)
    cfg = replace(TINY, epochs=3, test_eval="best-val")
    trainer = ctx.train("lif", cfg, 0, callbacks=[picks])
    return trainer, picks


def test_best_val_predictions_are_per_image_of_the_best_val_weights_taken_once(trained_best_val):
    from spikeweave.training import load_run

    trainer, picks = trained_best_val
    summary = json.loads((trainer.run_dir / "summary.json").read_text())
    assert picks.epoch == summary["weights_epoch"] == summary["best_epoch_by_val"]
    run = load_run(trainer.run_dir)  # the checkpoint holds the best-val weights
    found = per_image(run.model, run.task, trainer.test_set, run.config, ties=True)
    assert np.array_equal(picks.correct, found.correct) and np.array_equal(picks.tied, found.tied)
    assert picks.correct.mean() == pytest.approx(summary["test_accuracy_at_best_val"], abs=1e-12)


def test_read_records_of_best_val_runs_use_validation_curves(trained_best_val):
    trainer, picks = trained_best_val
    read = read_records({"A": [run_record(trainer, picks)]})
    assert read.curve_split == "val" and read.curve_label == "validation"
    assert read.curves["A"] == [[r["val_accuracy"] for r in trainer.history]]
    assert read.accuracy["A"] == [pytest.approx(float(picks.correct.mean()))]


@pytest.mark.parametrize("quick", [True, False])
def test_experiment_settings_evaluate_test_once_at_the_best_validation_epoch(quick):
    from spikeweave.experiments import bioleaf_vs_bp, klif_vs_lif, oscillation_defense
    from spikeweave.experiments import reset_dependency as reset

    configs = [
        klif_vs_lif.settings_for(quick).base,
        reset._settings(quick)[2].config,
        oscillation_defense._settings(quick)["config"],
        *bioleaf_vs_bp._configs(bioleaf_vs_bp.settings_for(quick), "runs").values(),
    ]
    assert all(c.test_eval == "best-val" for c in configs)
