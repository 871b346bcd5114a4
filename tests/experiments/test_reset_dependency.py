import json

import torch

from spikeforge.experiments import ExperimentContext, run_experiment
from spikeforge.experiments.reset_dependency import SoftXorSettings, soft_xor_data, train_soft_xor


def test_soft_xor_targets_follow_the_formula():
    x, y = soft_xor_data(1000, torch.Generator().manual_seed(0))
    assert x.shape == (1000, 2) and x.abs().max() <= 1
    assert (y[(x[:, 0] > 0.5) & (x[:, 1] > 0.5)] < -0.8).all()
    assert (y[(x[:, 0] > 0.5) & (x[:, 1] < -0.5)] > 0.8).all()


def test_regression_task_trains_the_soft_xor_toy_through_the_trainer_and_is_seeded(tmp_path):
    settings = SoftXorSettings(n_train=400, n_test=200, steps=6, epochs=3, batch_size=20)
    ctx_a = ExperimentContext(tmp_path / "a", quick=True, seeds=[0])
    ctx_b = ExperimentContext(tmp_path / "b", quick=True, seeds=[0])
    a = train_soft_xor(ctx_a, False, 1e-2, 0, settings)
    b = train_soft_xor(ctx_b, False, 1e-2, 0, settings)
    assert a["curve"] == b["curve"]
    assert a["curve"][-1] < 0.9 * soft_xor_data(200, torch.Generator().manual_seed(1))[1].var()
    run = next((tmp_path / "a" / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "regression" and summary["loss_name"] == "MSE"
    assert summary["test_mse"] == a["final_loss"]
    assert summary["data_spec"] == {"input_shape": [2], "num_outputs": 1, "temporal": False}


def test_quick_run_writes_report_and_plots(tmp_path):
    report, folder = run_experiment(
        "reset-dependency", quick=True, seeds=1, out_dir=tmp_path, progress=False
    )
    assert report.held is None
    data = json.loads((folder / "report.json").read_text())
    assert len(data["results"]["learning_rates"]) >= 5
    for png in ("soft_xor_lr_sweep.png", "image_test_accuracy.png", "step_time.png"):
        assert (folder / png).stat().st_size > 1000
    assert "Claim tested" in (folder / "report.md").read_text()
