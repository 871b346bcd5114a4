import json

import pytest

import spikeforge.experiments.noisy_single_step as noisy_exp  # registers the experiment
from spikeforge.experiments import EXPERIMENTS, run_experiment
from spikeforge.training import METHODS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_steps_within_picks_the_smallest_steps():
    acc = {1: 0.5, 2: 0.8, 4: 0.9, 8: 0.91}
    assert noisy_exp.steps_within(acc, 0.9) == 4
    assert noisy_exp.steps_within(acc, 0.95) is None


def test_full_settings_fit_the_issue():
    exp = EXPERIMENTS.get("noisy-single-step")()
    full = exp.settings(quick=False)[0]
    assert full.dataset == "mnist5k"
    assert (1, 2, 4, 8, 16, 32) == full.steps_grid
    assert len([v for v in full.variants if set(v[1]) == {"sigma"}]) >= 4  # a σ sweep


def test_quick_run_writes_tables_figures_and_leaves_methods_clean(tmp_path):
    before = set(METHODS.names())
    report, folder = run_experiment(
        "noisy-single-step", quick=True, seeds=1, out_dir=tmp_path, progress=False
    )
    assert set(METHODS.names()) == before
    assert report.held is None
    data = json.loads((folder / "report.json").read_text())
    part = data["results"]["digits-mlp"]
    main = part["variants"]["gauss σ=0.3"]
    assert set(main["accuracy_vs_T"][0]) == {"1", "2", "4", "16"}
    assert all(0 <= v <= 1 for v in main["accuracy_vs_T"][0].values())
    assert set(part["ann_to_snn"]) == {"plain", "half"}
    assert "ANN→SNN (v₀=0)" in part["inference_speedup"]
    assert len(data["tables"]) == 4
    for fig in data["figures"]:
        assert (folder / fig).stat().st_size > 1000
    config = json.loads(
        (folder / "runs" / "digits-mlp-noisy-gauss-s=0.8-s0" / "config.json").read_text()
    )
    assert config["method"] == "noisy"
    assert config["method_options"] == {
        "sigma": 0.8,
        "noise": "gaussian",
        "noise_mean": None,
        "grad": "surrogate",
    }
    text = (folder / "report.md").read_text()
    assert "after conversion vs T" in text and "training time" in text
