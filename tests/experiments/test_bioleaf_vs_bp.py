import json
import math

import pytest
from run_loading import every_run_loads

from spikeweave.experiments import EXPERIMENTS, run_experiment
from spikeweave.experiments.bioleaf_vs_bp import COMPARABLE_POINTS, _configs, _grids, settings_for
from spikeweave.experiments.report import load_per_image
from spikeweave.training import METHODS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_full_settings_use_full_fashion_mnist_and_the_same_tuning_budget_per_arm():
    s = EXPERIMENTS.get("bioleaf-vs-bp")().settings(quick=False)
    assert s.dataset == "fashion-mnist" and s.hidden == (500,)
    assert round(s.val_fraction * 60000) == 5000  # validation held out of the 60k
    grids = _grids(s, _configs(s, "runs"))
    assert len(grids["bioleaf"]) == len(grids["bptt"]) == 3
    assert COMPARABLE_POINTS == 3.0  # the margin is fixed in code, before any run


def test_bioleaf_tuning_candidates_scale_both_local_rates_and_nothing_else():
    s = settings_for(quick=False)
    configs = _configs(s, "runs")
    base = configs["bioleaf"].method_options
    for f, cand in zip(s.bioleaf_scales, _grids(s, configs)["bioleaf"], strict=True):
        opts = cand["method_options"]
        assert opts["lr_out"] == base["lr_out"] * f and opts["lr_hidden"] == base["lr_hidden"] * f
        assert {k: v for k, v in opts.items() if not k.startswith("lr_")} == {
            k: v for k, v in base.items() if not k.startswith("lr_")
        }


@pytest.mark.slow
def test_quick_run_writes_the_part_per_image_record_and_the_self_predicting_state(tmp_path):
    before = set(METHODS.names())
    report, folder = run_experiment(
        "bioleaf-vs-bp", quick=True, seeds=2, out_dir=tmp_path, progress=False
    )
    assert set(METHODS.names()) == before
    assert report.held is None  # --quick never decides the claim
    data = json.loads((folder / "report.json").read_text())
    (part,) = data["parts"]
    assert part["margin"] == COMPARABLE_POINTS and part["n_test"] == 360
    per_image = load_per_image(data)
    assert set(per_image) == {"bioleaf", "bptt"} and per_image["bptt"].shape == (2, 360)
    for arm in ("bioleaf", "bptt"):  # the tabled accuracy is the per-image record's mean
        assert per_image[arm].mean(1).tolist() == pytest.approx(data["results"]["accuracy"][arm])
    apical = data["results"]["apical"]
    init, sp = apical["initial"][0][0], apical["self-predicting"][0][0]
    assert not math.isnan(sp) and sp < init  # the self-predicting phase cancelled top-down input
    for fig in data["figures"]:
        assert (folder / fig).stat().st_size > 1000
    config = json.loads((folder / "runs" / "digits-bioleaf-s0" / "config.json").read_text())
    assert config["method"] == "bioleaf" and config["hidden"] == [100]
    assert config["val_fraction"] == 0.2
    assert (folder / "runs" / "digits-bioleaf-s0" / "apical_mismatch.png").is_file()
    text = (folder / "report.md").read_text()
    assert "Self-predicting state" in text and "BPTT" in text
    assert set(every_run_loads(folder)) == {"bioleaf", "bptt"}
