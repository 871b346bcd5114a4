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


def test_merge_parts_keeps_every_part_in_order_and_keys_results_by_tag():
    from types import SimpleNamespace

    from spikeweave.experiments.report import merge_parts
    from spikeweave.experiments.stats import Part

    def part(tag: str, notes: list[str]) -> dict:
        return {
            "tag": tag, "setup": f"setup {tag}", "tables": [Table(tag, ["c"], [[1]])],
            "figures": [f"{tag}.png"], "verdict": f"verdict {tag}", "results": {"r": tag},
            "parts": [Part(f"p {tag}", "held", 1.0, (0.5, 1.5), "points", "t")], "notes": notes,
        }  # fmt: skip

    exp = SimpleNamespace(name="x", title="T", claim="C")
    merged = merge_parts(exp, [part("a", ["na"]), part("b", [])], False, ["first"], True)
    assert (merged.name, merged.title, merged.claim, merged.held) == ("x", "T", "C", False)
    assert merged.setup == {"part 1": "setup a", "part 2": "setup b"}
    assert [t.title for t in merged.tables] == ["a", "b"]
    assert merged.figures == ["a.png", "b.png"] and merged.notes == ["first", "na"]
    assert merged.verdict == "[a] verdict a [b] verdict b"
    assert [p.name for p in merged.parts] == ["p a", "p b"]
    assert merged.results == {"a": {"r": "a"}, "b": {"r": "b"}}
    untagged = merge_parts(exp, [part("a", [])], None)
    assert untagged.verdict == "verdict a" and untagged.notes == []
