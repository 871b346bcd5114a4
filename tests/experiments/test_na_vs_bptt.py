import json

import torch

import spikeforge.experiments.na_vs_bptt as na_vs_bptt  # registers the experiment
from spikeforge.experiments import EXPERIMENTS, run_experiment
from spikeforge.training import METHODS


def test_registered():
    assert EXPERIMENTS.get("na-vs-bptt") is na_vs_bptt.NAvsBPTT


def test_backward_cost_reports_forward_and_backward():
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    for est in ("na", "surrogate"):
        cost = na_vs_bptt.backward_cost("2C3-P2", (1, 8, 8), 10, 3, est, x, y, reps=1)
        assert cost["forward_s"] > 0 and cost["backward_s"] > 0


def test_quick_run_writes_report_tables_and_plots(tmp_path):
    before = set(METHODS.names())
    report, folder = run_experiment(
        "na-vs-bptt", quick=True, seeds=1, out_dir=tmp_path, progress=False
    )
    assert set(METHODS.names()) == before  # no experiment registers methods at run time
    assert report.held is None
    data = json.loads((folder / "report.json").read_text())
    assert set(data["results"]["test_accuracy"]["digits"]) == set(na_vs_bptt.ARMS)
    assert data["results"]["backward_cost"]["steps"] == [2, 4]
    assert len(data["tables"]) == 2
    for png in ("digits_test_accuracy.png", "digits_epoch_time.png", "backward_cost_vs_T.png"):
        assert (folder / png).stat().st_size > 1000
    md = (folder / "report.md").read_text()
    assert "Claim tested" in md and "99.69" in md
    for arm in ("na-paper", "na-code", "surrogate"):
        assert (folder / "runs" / f"digits-{arm}-s0" / "summary.json").is_file()
