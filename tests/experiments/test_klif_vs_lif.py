import json

from spikeforge.experiments import run_experiment


def test_quick_run_reports_accuracy_k_trajectory_and_step_time(tmp_path):
    report, folder = run_experiment(
        "klif-vs-lif", quick=True, seeds=1, out_dir=tmp_path, progress=False
    )
    data = json.loads((folder / "report.json").read_text())
    assert set(data["results"]["test_accuracy"]) == {"LIF", "KLIF"}
    assert data["results"]["k_final"]  # one k per KLIF layer was traced
    assert all(k.startswith("k/") for k in data["results"]["k_final"])
    assert (folder / "k_trajectory.png").stat().st_size > 1000
    assert (folder / "test_accuracy.png").stat().st_size > 1000
    assert report.held is None
