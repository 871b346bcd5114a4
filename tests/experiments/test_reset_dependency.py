import json
import math

import pytest
import torch
from run_loading import every_run_loads

from spikeweave.experiments import ExperimentContext, run_experiment
from spikeweave.experiments.reset_dependency import (
    IMAGE_TRAIN_SIZE,
    SoftXorSettings,
    _settings,
    normalised_loss,
    soft_xor_data,
    train_soft_xor,
)


def test_soft_xor_targets_follow_the_formula():
    x, y = soft_xor_data(1000, torch.Generator().manual_seed(0))
    assert x.shape == (1000, 2) and x.abs().max() <= 1
    assert (y[(x[:, 0] > 0.5) & (x[:, 1] > 0.5)] < -0.8).all()
    assert (y[(x[:, 0] > 0.5) & (x[:, 1] < -0.5)] > 0.8).all()


def test_default_toy_is_the_authors_setup():
    s = SoftXorSettings()
    assert (s.batch_size, s.epochs, s.steps, s.n_train, s.n_test) == (10, 50, 50, 5000, 1000)


def test_full_image_part_uses_full_fashion_mnist_with_a_stated_subset():
    _, _, image = _settings(quick=False)
    cfg = image.config
    assert cfg.dataset == "fashion-mnist" and cfg.model == "convnet"
    assert round(cfg.val_fraction * 60000) == 5000  # validation held out of the 60k
    assert cfg.train_size == IMAGE_TRAIN_SIZE and 0 < IMAGE_TRAIN_SIZE <= 55000
    assert image.margin == 0.5  # the equivalence margin, fixed in code
    assert _settings(quick=True)[2].config.dataset == "digits"


def test_normalised_loss_is_capped_and_counts_divergence_as_failure():
    assert normalised_loss({"final_loss": 0.1, "variance": 0.4}) == 0.25
    assert normalised_loss({"final_loss": 9.0, "variance": 0.4}) == 1.0
    assert normalised_loss({"final_loss": math.inf, "variance": 0.4}) == 1.0


@pytest.mark.slow
def test_regression_task_trains_the_soft_xor_toy_through_the_trainer_and_is_seeded(tmp_path):
    settings = SoftXorSettings(n_train=400, n_test=200, steps=6, epochs=3, batch_size=20)
    ctx_a = ExperimentContext(tmp_path / "a", quick=True, seeds=[0])
    ctx_b = ExperimentContext(tmp_path / "b", quick=True, seeds=[0])
    a = train_soft_xor(ctx_a, False, 1e-2, 0, settings)
    b = train_soft_xor(ctx_b, False, 1e-2, 0, settings)
    assert a["curve"] == b["curve"]
    assert a["curve"][-1] < 0.9 * a["variance"]
    run = next((tmp_path / "a" / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "regression" and summary["loss_name"] == "MSE"
    assert summary["test_mse"] == a["final_loss"]
    assert summary["data_spec"] == {"input_shape": [2], "num_outputs": 1, "temporal": False}


@pytest.mark.slow
def test_quick_run_decides_on_per_seed_areas_and_paired_image_stats(tmp_path):
    # two workers for the toy sweep: the forked path through the whole experiment
    report, folder = run_experiment(
        "reset-dependency", quick=True, seeds=2, out_dir=tmp_path, progress=False, workers=2
    )
    assert report.held is None
    data = json.loads((folder / "report.json").read_text())
    assert data["setup"]["workers"] == 2
    assert "--workers 2" in json.loads((folder / "command.json").read_text())["command"]
    res = data["results"]
    lrs = res["learning_rates"]
    assert len(lrs) >= 5 and max(lrs) >= 3 and min(lrs) <= 1e-3
    for arm in ("detached (usual)", "reset-aware"):
        assert len(res["toy_area_per_seed"][arm]) == 2  # one area per seed, not a mean
        assert all(0 <= v <= 1 for v in res["toy_area_per_seed"][arm])
        assert len(res["toy_failed_per_seed"][arm]) == 2
        assert len(res["image_accuracy_at_best_val"][arm]) == 2
    assert len(res["mcnemar"]) == 2
    names = [p["name"] for p in data["parts"]]
    assert names[0].startswith("toy") and names[1].startswith("image")
    assert names[2].startswith("cost")
    for png in ("soft_xor_lr_sweep.png", "image_val_accuracy.png", "step_time.png"):
        assert (folder / png).stat().st_size > 1000
    assert "Verdict by part" in (folder / "report.md").read_text()
    assert set(every_run_loads(folder)) == {"bptt"}
