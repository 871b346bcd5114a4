import json

import pytest
from run_loading import every_run_loads

import spikeweave.experiments.noisy_single_step as noisy_exp  # registers the experiment
from spikeweave.experiments import EXPERIMENTS, run_experiment
from spikeweave.experiments.stats import STATUSES
from spikeweave.training import METHODS, load_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_steps_within_picks_the_smallest_steps():
    acc = {1: 0.5, 2: 0.8, 4: 0.9, 8: 0.91}
    assert noisy_exp.steps_within(acc, 0.9) == 4
    assert noisy_exp.steps_within(acc, 0.95) is None


def test_full_settings_fit_the_issue():
    exp = EXPERIMENTS.get("noisy-single-step")()
    mlp, conv = exp.settings(quick=False)
    assert (1, 2, 4, 8, 16, 32) == mlp.steps_grid
    # full Fashion-MNIST: 5,000 validation images held out; the MLP trains on every other
    # image, the conv net on a stated subset
    for st in (mlp, conv):
        assert st.dataset == "fashion-mnist" and round(st.val_fraction * 60000) == 5000
    assert mlp.train_size == 0
    assert conv.train_size == noisy_exp.CONV_TRAIN_SIZE and 0 < conv.train_size <= 55000
    assert {st.dataset for st in exp.settings(quick=True)} == {"digits"}
    assert len([v for v in mlp.variants if set(v[1]) == {"sigma"}]) >= 4  # a σ sweep
    # the workload where BPTT needs several steps: avg-pooling conv net on rate-coded input
    assert (conv.model, conv.pool, conv.encoder) == ("convnet", "avg", "poisson")
    assert {1, 2, 4, 8} <= set(conv.bptt_steps) and max(conv.inference_grid) >= 128
    assert all(st.val_fraction > 0 for st in (mlp, conv))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    before = set(METHODS.names())
    out = run_experiment(
        "noisy-single-step", quick=True, seeds=2, out_dir=tmp_path_factory.mktemp("n1"),
        progress=False,
    )  # fmt: skip
    assert set(METHODS.names()) == before
    return out


@pytest.mark.slow
def test_quick_run_writes_parts_tables_figures_and_leaves_methods_clean(quick_run):
    report, folder = quick_run
    assert report.held is None
    data = json.loads((folder / "report.json").read_text())
    assert set(data["results"]) == {"digits-mlp", "digits-convnet-avgpool-poisson"}
    part = data["results"]["digits-mlp"]
    main = part["variants"]["gauss σ=0.3"]
    assert set(main["accuracy_vs_T"][0]) == {"1", "2", "4", "16"}
    assert all(0 <= v <= 1 for v in main["accuracy_vs_T"][0].values())
    assert set(part["conversions"]) == set(noisy_exp.CONVERSIONS)
    assert part["bptt_chosen_on_val"].startswith("BPTT")
    # every arm has its accuracy-vs-time curve, one point per epoch
    assert {"ANN", "gauss σ=0.3", "BPTT IF T=1"} <= set(part["runs"])
    names = [p["name"] for p in data["parts"]]
    assert sum("(claim)" in n for n in names) == 6  # 3 claim parts per workload
    assert any("accuracy cost vs the ANN" in n for n in names)
    assert all(p["status"] in STATUSES for p in data["parts"])
    assert len(data["tables"]) == 14
    timing = part["step_timing"]
    assert set(timing) == {"as shipped", "torch"}
    assert set(timing["torch"]) == {"gauss σ=0.3", "BPTT IF T=1", "BPTT IF T=2"}
    tuning = part["tuning"]
    assert set(tuning) == {"noisy", "if", "ANN"}  # the quick MLP part trains BPTT IF only
    assert [t["overrides"] for t in tuning["noisy"]["trials"]] == [{"lr": 2e-3}, {"lr": 4e-3}]
    kept = tuning["if"]["best"]["lr"]
    bptt = json.loads((folder / "runs" / "digits-mlp-bptt-if-T2-s0" / "config.json").read_text())
    assert bptt["lr"] == kept  # every T of the neuron trains with the lr kept on validation
    conv_tuning = data["results"]["digits-convnet-avgpool-poisson"]["tuning"]["lif"]
    assert any("alpha" in t["overrides"] for t in conv_tuning["trials"])
    for fig in data["figures"]:
        assert (folder / fig).stat().st_size > 1000
    assert (folder / "digits-mlp_accuracy_vs_time.png").is_file()
    run = folder / "runs" / "digits-mlp-noisy-gauss-s=0.8-s0"
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "noisy" and config["val_fraction"] == 0.2
    assert config["method_options"] == {
        "sigma": 0.8,
        "noise": "gaussian",
        "noise_mean": None,
        "grad": "surrogate",
    }
    conv_dir = folder / "runs" / "digits-convnet-avgpool-poisson-bptt-lif-T2-s1"
    conv = json.loads((conv_dir / "config.json").read_text())
    assert (conv["encoder"], conv["method"], conv["pool"]) == ("poisson", "bptt", "avg")
    pools = {
        type(m).__name__ for m in load_run(conv_dir).model.modules() if "Pool" in type(m).__name__
    }
    assert pools == {"AvgPool2d"}  # the arm's run folder rebuilds by name
    text = (folder / "report.md").read_text()
    assert "after conversion vs T" in text and "training time" in text and "McNemar" in text
    # every sweep saved for a resume: per seed, (variants + conversions) × (test, val) plus
    # each variant's single-step accuracies
    batches = (folder / "results").iterdir()
    saved = {d.name.rsplit("-", 1)[0]: len(list(d.iterdir())) for d in batches}
    assert saved == {"digits-mlp-sweeps": 2 * (5 * 2 + 2),
                     "digits-convnet-avgpool-poisson-sweeps": 2 * (4 * 2 + 1)}  # fmt: skip
    assert "(process CPU time of each run" in text and "CPU time for 360 test images" in text
    assert all(len(c) == 1 and c[0] > 0 for c in part["runs"]["ANN"]["train_cpu_s"])


@pytest.mark.slow
def test_two_workers_train_the_same_runs_and_give_the_same_accuracies(quick_run, tmp_path):
    _, one = quick_run
    _, two = run_experiment(
        "noisy-single-step", quick=True, seeds=2, out_dir=tmp_path, progress=False, workers=2
    )
    a, b = (json.loads((f / "report.json").read_text()) for f in (one, two))
    assert b["setup"]["workers"] == 2
    for tag, part in a["results"].items():
        other = b["results"][tag]
        assert other["tuning"] == part["tuning"]
        for variant, v in part["variants"].items():  # trained in workers, converted here
            assert other["variants"][variant]["accuracy_vs_T"] == v["accuracy_vs_T"]
        assert other["conversions"] == part["conversions"]
        assert other["bptt_chosen_on_val"] == part["bptt_chosen_on_val"]
    accuracy = [p for p in a["parts"] if "accuracy cost" in p["name"] or "lossless" in p["name"]]
    assert accuracy and all(p in b["parts"] for p in accuracy)


@pytest.mark.slow
def test_a_run_rebuilt_from_its_record_scores_what_training_recorded(tmp_path):
    from spikeweave.experiments.base import ExperimentContext

    st = noisy_exp.NoisySingleStepExperiment().settings(True)[1]  # conv, avg pool, Poisson
    part = noisy_exp._Part(ExperimentContext(tmp_path, True, [0], log=False), st)
    jobs, methods = part.jobs(part.tune("gauss σ=0.3"))
    for arm in ("gauss σ=0.3", "ANN"):
        record = jobs[arm](0)
        run = part.rebuild(record, methods[arm])
        # the weights of the best validation epoch, in a model built from the run folder
        assert run.source.evaluate("test")["accuracy"] == record["correct"].mean()


@pytest.mark.slow
def test_every_run_of_the_quick_run_loads_and_evaluates_without_a_hand_made_method(quick_run):
    _, folder = quick_run
    assert set(every_run_loads(folder)) == {"bptt", "noisy"}
