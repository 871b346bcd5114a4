"""Tasks: readout, target, loss and metrics for classification, regression, reconstruction."""

from __future__ import annotations

import math

import pytest
import torch

from spikeweave.errors import ConfigError, InputError
from spikeweave.tasks import TASKS, DataSpec, make_task
from spikeweave.training import TrainConfig, Trainer


def test_classification_predicts_the_most_active_class_and_counts_accuracy():
    task = make_task("classification", DataSpec((4,), 3), rate_scale=8.0)
    out = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]])
    assert task.predict(out).tolist() == [1, 0]
    assert task.batch_metrics(out, torch.tensor([1, 2])) == {"accuracy": (1, 2)}
    assert task.loss().name == "cross-entropy on rates ×8"
    assert make_task("classification", DataSpec((4,), 3), loss="mse").loss().name.startswith("MSE")


def test_regression_metric_is_the_mean_squared_error_of_the_time_average():
    task = make_task("regression", DataSpec((2,), 1))
    out = torch.tensor([[[1.0], [0.0]], [[0.0], [0.0]]])  # [T=2, B=2, 1] -> means 0.5, 0
    target = torch.tensor([0.5, 1.0])
    total, count = task.batch_metrics(out, target)["mse"]
    assert (total, count) == (1.0, 2)
    assert float(task.loss()(out, target)) == pytest.approx(0.5)
    assert not task.higher_is_better


def test_reconstruction_targets_the_input_and_reports_psnr_and_ssim():
    spec = DataSpec((1, 8, 8), 64)
    task = make_task("reconstruction", spec)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(task.target(x, torch.zeros(3)), x)
    perfect = x.reshape(3, 64).unsqueeze(0).expand(2, 3, 64)
    metrics = task.batch_metrics(perfect, x)
    assert metrics["mse"] == (0.0, 3) and metrics["ssim"][0] == pytest.approx(3.0)
    noisy = (perfect + 0.1).clamp(0, 1)
    m = {k: t / c for k, (t, c) in task.batch_metrics(noisy, x).items()}
    mse = float(((noisy.mean(0).reshape(3, 1, 8, 8) - x) ** 2).mean(dim=(1, 2, 3)).mean())
    assert m["psnr"] == pytest.approx(
        float(
            (
                10
                * torch.log10(
                    1 / ((noisy.mean(0).reshape(3, 1, 8, 8) - x) ** 2).mean(dim=(1, 2, 3))
                )
            ).mean()
        ),
        rel=1e-5,
    )
    assert m["mse"] == pytest.approx(mse) and 0 < m["ssim"] < 1
    with pytest.raises(InputError, match="as many outputs as input values"):
        make_task("reconstruction", DataSpec((1, 8, 8), 10))


def test_unknown_task_and_a_loss_that_does_not_fit_are_refused():
    with pytest.raises(ConfigError, match="unknown task 'segmentation'; choose one of"):
        TASKS.get("segmentation")
    with pytest.raises(ConfigError, match="loss 'ce' does not fit the regression task"):
        make_task("regression", DataSpec((2,), 1), loss="ce")


@pytest.mark.slow
def test_reconstruction_task_trains_an_mlp_to_reproduce_digits(tmp_path):
    cfg = TrainConfig(
        dataset="digits",
        task="reconstruction",
        model="mlp",
        steps=4,
        epochs=3,
        population=1,
        lr=5e-3,
        out_dir=str(tmp_path),
    )
    trainer = Trainer(cfg, progress=False)
    summary = trainer.fit()
    psnr = [row["test_psnr"] for row in trainer.history]
    assert summary["task"] == "reconstruction" and math.isfinite(psnr[-1])
    assert psnr[-1] > psnr[0] and summary["best_test_psnr"] == max(psnr)
    assert {"test_mse", "test_psnr", "test_ssim"} <= set(summary)


def test_improves_is_strict_and_follows_the_metric_direction():
    cls, reg = TASKS.get("classification"), TASKS.get("regression")
    assert cls.improves(0.5, None) and reg.improves(0.5, None)
    assert cls.improves(0.6, 0.5) and not cls.improves(0.5, 0.5) and not cls.improves(0.4, 0.5)
    assert reg.improves(0.4, 0.5) and not reg.improves(0.5, 0.5) and not reg.improves(0.6, 0.5)
