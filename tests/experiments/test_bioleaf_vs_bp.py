import json
import math

import pytest

from spikeweave.experiments import EXPERIMENTS, run_experiment
from spikeweave.training import METHODS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_full_settings_fit_the_issue():
    exp = EXPERIMENTS.get("bioleaf-vs-bp")()
    parts = exp.settings(quick=False)
    assert [p.dataset for p in parts] == ["digits", "mnist5k"]
    assert all(p.hidden == (500,) for p in parts)


@pytest.mark.slow
def test_quick_run_writes_tables_figures_and_the_self_predicting_state(tmp_path):
    before = set(METHODS.names())
    report, folder = run_experiment(
        "bioleaf-vs-bp", quick=True, seeds=1, out_dir=tmp_path, progress=False
    )
    assert set(METHODS.names()) == before
    assert report.held is None  # --quick never decides the claim
    data = json.loads((folder / "report.json").read_text())
    part = data["results"]["digits"]
    assert set(part["apical"]) == {"initial", "self-predicting", "final", "ideal"}
    init, sp = part["apical"]["initial"][0][0], part["apical"]["self-predicting"][0][0]
    assert not math.isnan(sp) and sp < init  # the self-predicting phase cancelled top-down input
    for arm in ("bioleaf", "bptt"):
        assert 0 <= part[arm]["final"][0] <= 1 and part[arm]["train_s"][0] > 0
    assert len(data["tables"]) == 2
    for fig in data["figures"]:
        assert (folder / fig).stat().st_size > 1000
    config = json.loads((folder / "runs" / "digits-bioleaf-s0" / "config.json").read_text())
    assert config["method"] == "bioleaf" and config["hidden"] == [100]
    assert (folder / "runs" / "digits-bioleaf-s0" / "apical_mismatch.png").is_file()
    text = (folder / "report.md").read_text()
    assert "Self-predicting state" in text and "BPTT" in text
