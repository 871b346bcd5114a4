import json

import pytest
import torch
from run_loading import every_run_loads

import spikeweave.experiments.na_vs_bptt as na_vs_bptt  # registers the experiment
from spikeweave.experiments import EXPERIMENTS, run_experiment
from spikeweave.experiments.stats import STATUSES
from spikeweave.training import METHODS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_registered():
    assert EXPERIMENTS.get("na-vs-bptt") is na_vs_bptt.NAvsBPTT


def test_full_setting_uses_full_fashion_mnist_and_the_papers_network_fits_its_images():
    st = na_vs_bptt.FULL_SETTING
    assert (st.dataset, st.network) == ("fashion-mnist", "na-mnist")
    assert round(st.val_fraction * 60000) == 5000  # validation held out of the 60k
    assert st.train_size == na_vs_bptt.FULL_TRAIN_SIZE and 0 < st.train_size <= 55000
    assert not any("mnist5k" in line for line in na_vs_bptt.REMAINING_DIFFERENCES)
    # the paper's MNIST network takes Fashion-MNIST's 1×28×28 images as they are
    net = na_vs_bptt.na_network("na-mnist", (1, 28, 28), 10)
    out = net(torch.rand(2, 3, 1, 28, 28))
    assert out.shape[-1] == 10


def test_input_stats_are_the_training_images_pixel_mean_and_sample_sd():
    from spikeweave import data

    train = data.load("digits", "train")
    x = torch.stack([train[i][0] for i in range(len(train))]).double()
    mean, std = na_vs_bptt._input_stats("digits")
    assert mean == pytest.approx(float(x.mean()), rel=1e-9)
    assert std == pytest.approx(float(x.std()), rel=1e-9)


def test_backward_cost_reports_forward_and_backward():
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    for est in ("na", "surrogate"):
        cost = na_vs_bptt.backward_cost("2C3-P2", (1, 8, 8), 10, 3, est, x, y, reps=1)
        assert cost["forward_s"] > 0 and cost["backward_s"] > 0


@pytest.mark.slow
def test_quick_run_stops_on_plateau_and_reports_parts_ties_and_fidelity(tmp_path):
    before = set(METHODS.names())
    report, folder = run_experiment(
        "na-vs-bptt", quick=True, seeds=2, out_dir=tmp_path, progress=False
    )
    assert set(METHODS.names()) == before  # no experiment registers methods at run time
    assert report.held is None
    data = json.loads((folder / "report.json").read_text())
    res = data["results"]
    assert set(res["test_accuracy"]) == set(na_vs_bptt.ARMS)
    assert all(len(v) == 2 for v in res["test_accuracy"].values())
    assert all(0 <= v <= 1 for vs in res["tie_rate"].values() for v in vs)
    assert all(1 <= e <= 3 for es in res["epochs_run"].values() for e in es)
    for arm, best in res["best_epoch"].items():  # stopped at most patience epochs after the best
        assert all(e - b <= 1 or e == 3 for e, b in zip(res["epochs_run"][arm], best, strict=True))
    assert res["step_cost"]["steps"] == [2, 4]
    fid = res["gradient_fidelity"][0]
    assert set(fid["cosine"]) == set(na_vs_bptt.ARMS)
    assert all(-1 <= c <= 1 for c in fid["cosine"].values())
    names = [p["name"] for p in data["parts"]]
    assert names[0].startswith("accuracy (the claim)") and len(names) == 4
    assert all(p["status"] in STATUSES for p in data["parts"])
    assert len(res["mcnemar"]["NA (later weighting)"]) == 2
    assert len(data["tables"]) == 5
    tuning = res["tuning"]
    assert set(tuning) == set(na_vs_bptt.ARMS)
    assert [t["overrides"] for t in tuning["NA (paper form)"]["trials"]] == [
        {"lr": 5e-4},
        {"lr": 2e-3},
    ]
    assert any("alpha" in t["overrides"] for t in tuning["surrogate BPTT"]["trials"])
    kept = tuning["surrogate BPTT"]["best"]
    later = json.loads((folder / "runs" / "digits-surrogate-s0" / "config.json").read_text())
    assert later["lr"] == kept["lr"]  # the evaluation runs use the setting kept on validation
    for fig in data["figures"]:
        assert (folder / fig).stat().st_size > 1000
    md = (folder / "report.md").read_text()
    assert "Claim tested" in md and "99.69" in md and "augmentation" in md
    for arm in ("na-paper", "na-code", "na-later", "surrogate"):
        run = folder / "runs" / f"digits-{arm}-s1"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["config"]["val_fraction"] == 0.2 and "best_epoch_by_val" in summary
    opts = json.loads((folder / "runs" / "digits-na-later-s0" / "config.json").read_text())
    assert opts["method_options"]["form"] == "later"
    assert opts["method_options"]["pool"] == "sum" and opts["method_options"]["input_psc"]
    assert set(every_run_loads(folder)) == {"na"}
    # the same runs in two forked workers: the same per-image parts and tuning
    _, two = run_experiment(
        "na-vs-bptt", quick=True, seeds=2, out_dir=tmp_path / "two", progress=False, workers=2
    )
    other = json.loads((two / "report.json").read_text())
    accuracy = [p for p in data["parts"] if p["name"].startswith("accuracy")]
    assert accuracy and all(p in other["parts"] for p in accuracy)  # cost parts are timings
    assert other["results"]["tuning"] == tuning
    assert other["results"]["best_epoch"] == res["best_epoch"]
