import json

import pytest

from spikeweave.errors import ConfigError
from spikeweave.experiments import Report, Table, fmt_pm, mean_std, run_experiment


def test_mean_std_and_formatting():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(1.4142135))
    assert mean_std([5.0]) == (5.0, 0.0)
    assert fmt_pm([0.9, 0.95], scale=100) == "92.50 ± 3.54 (n=2)"


def test_report_writes_markdown_and_json(tmp_path):
    report = Report(
        "x",
        "Title",
        "A claim.",
        {"data": "digits"},
        tables=[Table("t", ["a", "b"], [[1, 2.5]])],
        verdict="v",
        held=True,
    )
    md, js = report.write(tmp_path)
    text = md.read_text()
    assert "**Claim tested.** A claim." in text and "| 1 | 2.5 |" in text and "held" in text
    assert json.loads(js.read_text())["held"] is True


def test_unknown_experiment_and_bad_seed_count_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; choose one of"):
        run_experiment("nope", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="--seeds must be at least 1"):
        run_experiment("reset-dependency", seeds=0, out_dir=tmp_path)
