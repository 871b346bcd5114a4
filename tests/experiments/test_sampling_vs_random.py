"""The sampling-vs-random experiment (quick) and the sampler on the training seam."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from run_loading import every_run_loads
from torch.utils.data import TensorDataset

from spikeweave.compression.sampler import (
    ARMS,
    SamplerMethod,
    SamplingAutoencoder,
    stored_bits,
    topk_mask,
)
from spikeweave.errors import ConfigError
from spikeweave.experiments import run_experiment
from spikeweave.experiments.report import load_per_image
from spikeweave.experiments.sampling_vs_random import (
    ACCURACY_MARGIN_POINTS,
    BASELINES,
    BUDGET_RATES,
    PSNR_CAP_DB,
    PSNR_MARGIN_DB,
    budgets_for,
    psnr_difference,
    psnr_per_image,
)
from spikeweave.experiments.stats import difference_part
from spikeweave.training import TrainConfig, Trainer, load_run


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.25])
@pytest.mark.parametrize("arm", ARMS)
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


def test_psnr_per_image_matches_the_formula_and_caps_exact_copies():
    images = torch.zeros(3, 1, 4, 4)
    recon = images.clone()
    recon[0] += 0.1  # MSE 0.01 -> 20 dB
    recon[1, 0, 0, 0] = 2.0  # clamped to 1: MSE 1/16 -> 12.04 dB
    got = psnr_per_image(recon, images)
    assert got[0] == pytest.approx(20.0, abs=1e-4)
    assert got[1] == pytest.approx(10 * np.log10(16), abs=1e-4)
    assert got[2] == PSNR_CAP_DB


def test_psnr_difference_is_paired_over_seeds_and_images():
    rng = np.random.default_rng(0)
    image_effect = rng.normal(0, 2, size=500)  # shared by both arms: cancels in the pairing
    a = 20 + image_effect + rng.normal(0, 0.3, size=(4, 500)) + 0.8
    b = 20 + image_effect + rng.normal(0, 0.3, size=(4, 500))
    diff = psnr_difference(a, b)
    assert diff.estimate == pytest.approx(float((a - b).mean()))
    assert diff.n == 4 and diff.n_test == 500 and not diff.untestable
    part = difference_part("p", diff, "dB", rule_out=PSNR_MARGIN_DB)
    assert part.status == "held" and part.margin == PSNR_MARGIN_DB
    assert part.interval[1] - part.interval[0] < 0.2  # the image spread cancelled
    assert psnr_difference(a[:2], b[:2]).untestable  # two seeds: not testable


def test_margins_are_fixed_constants_and_budgets_are_randoms_storage():
    assert PSNR_MARGIN_DB > 0 and ACCURACY_MARGIN_POINTS > 0
    assert budgets_for(784, 1) == [8 * round(r * 784) for r in BUDGET_RATES]


@pytest.mark.slow
def test_quick_run_stores_parts_with_margins_per_image_and_equal_bits(tmp_path, one_thread):
    report, folder = run_experiment(
        "sampling-vs-random", quick=True, seeds=1, out_dir=tmp_path, progress=False
    )
    data = json.loads((folder / "report.json").read_text())
    budgets = data["setup"]["budgets (bits per image)"]
    assert budgets == budgets_for(784, 1)
    for b in budgets:  # every arm stores at most the budget, and one more pixel would not fit
        for arm, k in data["setup"]["pixels kept per arm"][f"{b} bits"].items():
            assert stored_bits(arm, k, 784) <= b < stored_bits(arm, k + 1, 784)
    keys = {f"{b} bits {a}" for b in budgets for a in ARMS}
    assert set(data["results"]["test_psnr"]) == keys
    packed = data["results"]["per_image_psnr"][f"{budgets[0]} bits spiking"]
    values = np.frombuffer(base64.b64decode(packed["float32_le_base64"]), dtype="<f4")
    assert packed["shape"] == [1, 64] and values.size == 64 and np.all(values > 0)
    per_image = load_per_image(folder)
    assert set(per_image) == keys | {"original (classifier on unsampled images)"}
    assert all(m.shape == (1, 64) for m in per_image.values())
    names = [p["name"] for p in data["parts"]]
    assert len(names) == 2 * len(budgets) * len(BASELINES)
    for p in data["parts"]:
        assert p["margin"] in (PSNR_MARGIN_DB, ACCURACY_MARGIN_POINTS)
        assert p["status"] == "not testable"  # one seed decides nothing
    assert data["results"]["better_baseline"] in BASELINES
    assert (folder / "mnist5k_grid.png").stat().st_size > 5000
    assert report.held is None
    assert set(every_run_loads(folder)) == {"sampler", "bptt"}
