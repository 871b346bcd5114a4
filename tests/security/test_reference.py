"""Reference attacks from ART: our PGD agrees with ART's on the same model and budget; the
AutoAttack-style ensemble is a per-image worst case that respects the budget."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeweave import data
from spikeweave.errors import ConfigError
from spikeweave.security.attacks import pgd
from spikeweave.training import TrainConfig, Trainer, load_run

pytest.importorskip("art", reason="the attacks extra (adversarial-robustness-toolbox) is missing")

from spikeweave.security.reference import (  # noqa: E402
    ENSEMBLE,
    TieBroken,
    art_pgd,
    ensemble,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _digits(n: int, split: str):
    x, y = data.load("digits", split).tensors
    return x[:n], y[:n]


@pytest.fixture(scope="module")
def ann() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x, y = _digits(1437, "train")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def snn_run(tmp_path_factory):
    cfg = TrainConfig(
        dataset="digits", model="mlp", hidden=[64], steps=4, epochs=3, lr=1e-2,
        batch_size=64, out_dir=str(tmp_path_factory.mktemp("runs")), seed=0, plots=False,
    )  # fmt: skip
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    return load_run(trainer.run_dir)


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(-1) == y


def _agree_within_sampling_error(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Paired per image: with ``d`` images where exactly one attack succeeds, equal attack
    strength puts the difference of successes at 0 ± sqrt(d) (McNemar's normal form)."""
    b = int((ours & ~theirs).sum())
    c = int((~ours & theirs).sum())
    assert abs(b - c) <= 3 * math.sqrt(b + c) + 1, (b, c)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_our_pgd_and_arts_pgd_agree_within_sampling_error_on_an_ann(ann, norm, eps):
    x, y = _digits(300, "test")
    g = torch.Generator().manual_seed(0)
    ours = ~_correct(ann, pgd(ann, x, y, eps, steps=20, norm=norm, generator=g), y)
    theirs = ~_correct(ann, art_pgd(ann, x, y, eps, num_classes=10, steps=20, norm=norm), y)
    clean_wrong = ~_correct(ann, x, y)
    assert int(ours.sum()) > int(clean_wrong.sum()) + 20, "the budget must matter for the check"
    _agree_within_sampling_error(ours, theirs)


def test_our_pgd_and_arts_pgd_agree_within_sampling_error_on_a_spiking_run(snn_run):
    from spikeweave.security.attacks import as_classifier

    model = as_classifier(snn_run)
    x, y = _digits(300, "test")
    eps = 0.1
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        ours = ~_correct(model, pgd(snn_run, x, y, eps, steps=20, generator=g), y)
        theirs = ~_correct(model, art_pgd(snn_run, x, y, eps, num_classes=10, steps=20), y)
    assert int(ours.sum()) > int((~_correct(model, x, y)).sum()) + 20
    _agree_within_sampling_error(ours, theirs)


def test_the_ensemble_is_a_per_image_worst_case_within_the_budget(ann):
    x, y = _digits(120, "test")
    res = ensemble(
        ann, x, y, 0.08, num_classes=10, apgd_steps=10, targets=2, square_queries=50, seed=0
    )
    assert list(res.fooled) == list(ENSEMBLE)
    acc = res.accuracies()
    robust = _correct(ann, x, y)
    for f in res.fooled.values():
        robust &= ~f
    assert torch.equal(res.robust, robust)
    assert acc["worst_case"] <= min(acc[a] for a in ENSEMBLE)
    assert acc["worst_case"] < acc["clean"]
    # after each attack in run order: cumulative, never rising, ending at the worst case
    standing = _correct(ann, x, y)
    for a in ENSEMBLE:
        standing &= ~res.fooled[a]
        assert acc[a] == pytest.approx(float(standing.float().mean()))
    assert acc[ENSEMBLE[-1]] == acc["worst_case"]
    assert acc["clean"] == pytest.approx(float(_correct(ann, x, y).float().mean()))


def test_the_ensemble_runs_deepfool_on_a_spiking_run_with_fused_kernels_and_restores_them(
    snn_run,
):
    # DeepFool takes every class's gradient from one forward (retain_graph), which the fused
    # kernels refuse; the ensemble runs it on the per-step backend and puts the backends back
    from spikeweave.neurons import SpikingNeuron

    x, y = _digits(60, "test")
    before = [m.backend for m in snn_run.model.modules() if isinstance(m, SpikingNeuron)]
    res = ensemble(snn_run, x, y, 0.1, num_classes=10, attacks=("deepfool",), seed=0)
    after = [m.backend for m in snn_run.model.modules() if isinstance(m, SpikingNeuron)]
    assert after == before and "reference" not in before
    acc = res.accuracies()
    assert acc["deepfool"] < acc["clean"]  # it found adversarial images within the budget


def test_the_ensemble_is_repeatable_with_a_seed(ann):
    x, y = _digits(40, "test")
    kw = dict(num_classes=10, attacks=("apgd-ce", "square"), apgd_steps=5, square_queries=30)
    a = ensemble(ann, x, y, 0.08, seed=3, **kw)
    b = ensemble(ann, x, y, 0.08, seed=3, **kw)
    for k in a.fooled:
        assert torch.equal(a.fooled[k], b.fooled[k])


def test_tie_breaking_keeps_every_prediction_and_gradient():
    scores = torch.tensor([[0.5, 0.5, 0.25], [0.0, 0.75, 0.75]], requires_grad=True)
    wrapped = TieBroken(nn.Identity(), 3)
    out = wrapped(scores)
    assert torch.equal(out.argmax(-1), scores.argmax(-1))
    assert len(set(out[0].tolist())) == 3
    out.sum().backward()
    assert torch.equal(scores.grad, torch.ones_like(scores))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"attacks": ("fab",)}, "unknown reference attack"),
        ({"norm": "l2"}, "L∞ only"),
        ({"targets": 10}, "targets must be"),
        ({"square_queries": 0}, "square_queries must be"),
    ],
)
def test_the_ensemble_refuses_bad_options_in_one_line(ann, kwargs, words):
    x, y = _digits(4, "test")
    with pytest.raises(ConfigError) as excinfo:
        ensemble(ann, x, y, 0.1, num_classes=10, **kwargs)
    assert words in str(excinfo.value) and "\n" not in str(excinfo.value)
