"""klif-vs-lif: the ablation neurons and the quick run's report (parts, learned values,
tuning, interleaved timing)."""

from __future__ import annotations

import json

import pytest
import torch
from run_loading import every_run_loads

from spikeweave.ablation_neurons import (
    PLIF,
    FlooredLIF,
    LearnableWidthLIF,
    learned_values,
)
from spikeweave.errors import ConfigError
from spikeweave.experiments import run_experiment
from spikeweave.experiments.klif_vs_lif import (
    COST_MARGIN_PERCENT,
    FULL_TRAIN_SIZE,
    MARGIN_POINTS,
    compiled_backend,
    settings_for,
)
from spikeweave.experiments.report import load_per_image
from spikeweave.experiments.stats import STATUSES
from spikeweave.neurons import KLIF, LIF, NEURONS
from spikeweave.surrogate import Sigmoid


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(6, 4, 5, generator=torch.Generator().manual_seed(0)) * 1.5


@pytest.mark.parametrize("detach", [True, False])
def test_plif_fused_path_matches_autograd_reference_and_learns_tau(x, detach):
    fused = PLIF(tau=2.0, surrogate=Sigmoid(4.0), detach_reset=detach, backend="torch")
    ref = PLIF(tau=2.0, surrogate=Sigmoid(4.0), detach_reset=detach, backend="reference")
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    sa, sb = fused(xa), ref(xb)
    assert torch.equal(sa, sb) and torch.equal(sa, LIF(tau=2.0, detach_reset=detach)(x))
    w = torch.randn_like(sa)
    (sa * w).sum().backward()
    (sb * w).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-6)
    assert fused.w.grad is not None and torch.allclose(fused.w.grad, ref.w.grad, atol=1e-5)
    assert fused.tau == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="above 1"):
        PLIF(tau=1.0)


def test_floored_lif_is_klif_with_k_fixed_at_one(x):
    floored = FlooredLIF(tau=2.0, surrogate=Sigmoid(4.0))
    assert torch.equal(floored(x), KLIF(tau=2.0, surrogate=Sigmoid(4.0))(x))
    assert list(floored.parameters()) == [] and "k" in dict(floored.named_buffers())


@pytest.mark.parametrize("detach", [True, False])
def test_learnable_width_keeps_lif_forward_and_learns_only_the_surrogate(x, detach):
    width = LearnableWidthLIF(tau=2.0, surrogate=Sigmoid(4.0), detach_reset=detach)
    lif = LIF(tau=2.0, surrogate=Sigmoid(4.0), detach_reset=detach, backend="reference")
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    sa, sb = width(xa), lif(xb)
    assert torch.equal(sa, sb)
    w = torch.randn_like(sa)
    (sa * w).sum().backward()
    (sb * w).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-6)  # a = 1: LIF's gradient exactly
    assert width.log_width.grad is not None and width.log_width.grad != 0
    with torch.no_grad():
        width.log_width.fill_(torch.log(torch.tensor(2.0)))
    # a = 2 with the sigmoid surrogate is the sigmoid surrogate with alpha 8.
    xc, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    sharp = LIF(tau=2.0, surrogate=Sigmoid(8.0), detach_reset=detach, backend="reference")
    (width(xc) * w).sum().backward()
    (sharp(xd) * w).sum().backward()
    assert torch.allclose(xc.grad, xd.grad, atol=1e-5)


def test_ablation_neurons_are_registered_and_report_learned_values():
    assert {"plif", "lif-floor", "lif-width"} <= set(NEURONS.names())
    model = torch.nn.Sequential(KLIF(), PLIF(tau=3.0), LearnableWidthLIF(), FlooredLIF())
    values = learned_values(model)
    assert values == {"k/0": 1.0, "tau/1": pytest.approx(3.0), "width/2": 1.0}


def test_full_settings_use_full_fashion_mnist_with_a_stated_subset_and_fixed_margins():
    s = settings_for(quick=False)
    assert s.base.dataset == "fashion-mnist" and s.base.model == "convnet"
    assert round(s.base.val_fraction * 60000) == 5000  # validation held out of the 60k
    assert s.base.train_size == FULL_TRAIN_SIZE and 0 < FULL_TRAIN_SIZE <= 55000
    assert (s.margin, s.cost_margin) == (MARGIN_POINTS, COST_MARGIN_PERCENT) == (0.5, 10.0)
    assert settings_for(quick=True).base.dataset == "digits"


def test_the_cost_part_times_on_the_compiled_kernel_of_the_device():
    assert compiled_backend("cpu") == "cpu"
    assert compiled_backend("cuda") == compiled_backend("cuda:0") == "triton"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return run_experiment(
        "klif-vs-lif", quick=True, seeds=2, out_dir=tmp_path_factory.mktemp("k1"), progress=False
    )


@pytest.mark.slow
def test_quick_run_reports_parts_learned_values_tuning_and_same_backend_timing(quick_run):
    report, folder = quick_run
    data = json.loads((folder / "report.json").read_text())
    results = data["results"]
    arms = set(results["test_accuracy_at_best_val"])
    assert arms == {"LIF", "KLIF", "PLIF (learnable tau)", "LIF + ReLU floor",
                    "LIF + learnable width"}  # fmt: skip
    assert all(len(v) == 2 for v in results["test_accuracy_at_best_val"].values())
    names = [p["name"] for p in data["parts"]]
    assert names[0].startswith("accuracy") and names[1].startswith("cost")
    assert all(p["status"] in STATUSES for p in data["parts"])
    # the record: per-image correctness of every arm and seed, part fields, provenance
    accuracy = data["parts"][0]
    assert {"margin", "mde", "n_test", "seeds_needed"} <= set(accuracy)
    assert accuracy["margin"] is not None and accuracy["status"] == "not testable"  # 2 seeds
    per = load_per_image(data)
    assert per["KLIF"].shape == (2, accuracy["n_test"]) and set(per) == arms
    cmd = json.loads((folder / "command.json").read_text())
    assert {"command", "commit", "machine", "device", "threads", "load"} <= set(cmd)
    assert results["detach_reset"] is True
    k = results["learned_at_best_val"]["KLIF"]
    assert k and all(key.startswith("k/") for key in k)
    assert set(results["effective_leak"]) == set(k)  # k·(1 − 1/τ) per layer
    assert results["tuning"]["LIF"]["metric"] == "val_accuracy"
    # the cost part times both arms on the compiled kernel (the C kernel on a CPU); the
    # learnable-width LIF ships on it too (spec "lif_width"), so it is timed there as well
    compiled = results["step_timing"]["compiled (cpu)"]
    assert set(compiled["LIF"]["resolved"].values()) == {"cpu"}
    assert set(compiled["KLIF"]["resolved"].values()) == {"cpu"}
    assert set(compiled["LIF + learnable width"]["resolved"].values()) == {"cpu"}
    shipped = results["step_timing"]["as shipped"]
    assert set(shipped["LIF + learnable width"]["resolved"].values()) == {"cpu"}
    assert "compiled kernel (cpu)" in names[1] and data["parts"][1]["margin"] == 10.0
    assert data["setup"]["machine"]["before"]["torch_threads"] >= 1
    for png in ("val_accuracy.png", "k_trajectory.png", "step_time.png"):
        assert (folder / png).stat().st_size > 1000
    assert report.held is None  # a quick run never decides


@pytest.mark.slow
def test_two_workers_give_the_same_runs_tuning_and_verdict_parts_as_one_process(
    quick_run, tmp_path
):
    _, one = quick_run
    _, two = run_experiment(
        "klif-vs-lif", quick=True, seeds=2, out_dir=tmp_path, progress=False, workers=2
    )
    a, b = (json.loads((f / "report.json").read_text()) for f in (one, two))
    for key in ("test_accuracy_at_best_val", "best_epoch", "curves", "tuning", "chosen"):
        assert b["results"][key] == a["results"][key], key
    # learned k may differ in the last float bits (another process, other memory alignment)
    for arm, values in a["results"]["learned_at_best_val"].items():
        for name, v in values.items():
            assert b["results"]["learned_at_best_val"][arm][name] == pytest.approx(v, rel=1e-5)
    # every part but cost (a timing) comes from the runs alone
    assert [p for p in b["parts"] if not p["name"].startswith("cost")] == [
        p for p in a["parts"] if not p["name"].startswith("cost")
    ]
    assert b["setup"]["workers"] == 2 and "2 runs at once" in b["setup"]["order"]
    # every evaluation run and every tuning run left its folder, written by the workers
    assert len(list((two / "runs").iterdir())) == len(list((one / "runs").iterdir()))


@pytest.mark.slow
def test_quick_run_without_a_usable_compiled_kernel_reports_cost_not_testable(
    tmp_path, monkeypatch
):
    import spikeweave.experiments.klif_vs_lif as klif

    # Triton asked for on CPU tensors: the forced kernel cannot run, as with no C compiler
    monkeypatch.setattr(klif, "compiled_backend", lambda device: "triton")
    _, folder = run_experiment("klif-vs-lif", quick=True, seeds=1, out_dir=tmp_path, progress=False)
    data = json.loads((folder / "report.json").read_text())
    cost = data["parts"][1]
    assert cost["name"].startswith("cost") and cost["status"] == "not testable"
    assert "cannot run" in cost["test"] and cost["margin"] == COST_MARGIN_PERCENT
    assert set(data["results"]["step_timing"]) == {"as shipped"}
    assert (folder / "step_time.png").stat().st_size > 1000


@pytest.mark.slow
def test_every_run_of_the_quick_run_loads_and_evaluates_without_a_hand_made_method(quick_run):
    _, folder = quick_run
    assert set(every_run_loads(folder)) == {"bptt"}
