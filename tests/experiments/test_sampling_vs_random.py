"""The sampling-vs-random experiment (quick) and the sampler on the training seam."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from spikeweave.compression.sampler import SamplerMethod, SamplingAutoencoder, topk_mask
from spikeweave.errors import ConfigError
from spikeweave.experiments import run_experiment
from spikeweave.training import TrainConfig, Trainer, load_run


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.25])
@pytest.mark.parametrize("arm", ["spiking", "random"])
def test_exact_rate_and_gradient_through_the_mask(rate, arm, one_thread):
    torch.manual_seed(0)
    model = SamplingAutoencoder((1, 12, 12), rate, arm)
    x = torch.rand(4, 3, 1, 12, 12)  # [T, B, C, H, W]
    out, mask, _ = model.run(x)
    assert out.shape == (4, 3, 144)
    k = round(rate * 144)
    assert torch.all(mask.detach().flatten(1).sum(1) == k)
    assert abs(float(mask.detach().mean()) - rate) <= 0.01
    # kept pixels come back exactly
    recon = out.mean(0).reshape(3, 1, 12, 12)
    kept = mask.detach() > 0
    assert torch.allclose(recon[kept], x.mean(0)[kept])
    ((out - 0.5) ** 2).mean().backward()
    if arm == "spiking":  # the surrogate carries the loss through the mask into the sampler
        assert model.sampler.conv1.module.weight.grad.abs().sum() > 0


def test_topk_mask():
    score = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    assert topk_mask(score, 2).tolist() == [[1.0, 0.0, 1.0, 0.0]]


def _data(n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.zeros(n, dtype=torch.long))


@pytest.mark.slow
@pytest.mark.parametrize("control", ["topk", "penalty"])
def test_trains_on_the_seam_and_loads_back(tmp_path, control, one_thread):
    cfg = TrainConfig(
        dataset="tiny", task="reconstruction", epochs=1, batch_size=16, out_dir=str(tmp_path)
    )
    method = SamplerMethod({"rate": 0.25, "rate_control": control})
    trainer = Trainer(cfg, method=method, datasets=(_data(64), _data(32)))
    trainer.fit()
    row = trainer.history[-1]
    assert {"test_psnr", "test_ssim", "test_mse"} <= set(row)
    run = load_run(trainer.run_dir)
    again = run.evaluate(dataset=_data(32))
    assert again["psnr"] == pytest.approx(row["test_psnr"], rel=1e-5)


def test_refuses_other_tasks(tmp_path):
    cfg = TrainConfig(dataset="tiny", epochs=1, out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="reconstruction"):
        Trainer(cfg, method=SamplerMethod(), datasets=(_data(16), _data(16)))


@pytest.mark.slow
def test_quick_run_reports_psnr_ssim_and_grid(tmp_path, one_thread):
    report, folder = run_experiment(
        "sampling-vs-random", quick=True, seeds=1, out_dir=tmp_path, progress=False
    )
    data = json.loads((folder / "report.json").read_text())
    keys = set(data["results"]["psnr"])
    assert keys == {f"mnist5k {r}% {a}" for r in (5, 10, 25) for a in ("spiking", "random")}
    assert set(data["results"]["ssim"]) == keys
    assert (folder / "mnist5k_grid.png").stat().st_size > 5000
    assert report.held is None
