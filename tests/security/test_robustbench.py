"""RobustBench-style records: built from fractions, written atomically, read back checked; the
attack command writes one per ε."""

from __future__ import annotations

import json
import os

import pytest

from spikeweave.errors import ConfigError, DataError
from spikeweave.security.robustbench import (
    FORMAT,
    read_record,
    robustbench_record,
    write_record,
)
from spikeweave.version import __version__


def _record(**over):
    fields = dict(name="run-a", dataset="mnist5k", norm="linf", eps=0.1, clean_accuracy=0.9,
                  robust_accuracy={"pgd": 0.4, "square": 0.5}, worst_case=0.35,
                  n_examples=1000, seeds=[0, 1])  # fmt: skip
    return robustbench_record(**{**fields, **over})


def test_record_round_trips_with_robustbench_names_and_percent_units(tmp_path):
    path = write_record(tmp_path / "rb.json", _record(extra={"steps": 20}))
    back = read_record(path)
    assert back["format"] == FORMAT and back["threat_model"] == "Linf" and back["eps"] == 0.1
    assert back["clean_acc"] == pytest.approx(90.0)
    assert back["robust_acc"] == {"pgd": pytest.approx(40.0), "square": pytest.approx(50.0)}
    assert back["worst_case_acc"] == pytest.approx(35.0) and back["autoattack_acc"] is None
    assert back["n_examples"] == 1000 and back["seeds"] == [0, 1]
    assert back["library"] == {"name": "spikeweave", "version": __version__}
    assert back["commit"] is None or len(back["commit"]) == 40
    assert back["extra"] == {"steps": 20}


def test_autoattack_accuracy_is_the_ensembles_per_image_worst_case_and_l2_is_named_so():
    r = _record(norm="l2", autoattack=True)
    assert r["threat_model"] == "L2" and r["autoattack_acc"] == r["worst_case_acc"]
    assert r["worst_case_acc"] == pytest.approx(35.0)
    with pytest.raises(ConfigError, match="needs the per-image worst case"):
        _record(autoattack=True, worst_case=None)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"norm": "l1"}, "unknown norm"),
        ({"eps": -0.1}, "eps must be"),
        ({"eps": float("nan")}, "eps must be"),
        ({"clean_accuracy": 1.5}, "clean accuracy must be"),
        ({"robust_accuracy": {}}, "at least one attack"),
        ({"robust_accuracy": {"pgd": 90}}, "robust accuracy of pgd"),
        ({"n_examples": 0}, "n_examples"),
    ],
)
def test_a_bad_field_is_a_one_line_config_error(over, message):
    with pytest.raises(ConfigError, match=message) as e:
        _record(**over)
    assert "\n" not in str(e.value)


def test_reading_refuses_links_foreign_and_oversized_files(tmp_path):
    good = write_record(tmp_path / "good.json", _record())
    os.symlink(good, tmp_path / "link.json")
    (tmp_path / "foreign.json").write_text(json.dumps({"name": "x", "clean_acc": 1}))
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "big.json").write_bytes(b" " * (2 << 20))
    for name, message in [("link.json", "is a link"), ("foreign.json", "not a robustness"),
                          ("broken.json", "cannot read"), ("big.json", "larger than"),
                          ("absent.json", "cannot read")]:  # fmt: skip
        with pytest.raises(DataError, match=message) as e:
            read_record(tmp_path / name)
        assert "\n" not in str(e.value)


def test_writing_never_follows_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    os.symlink(victim, tmp_path / "rb.json")
    write_record(tmp_path / "rb.json", _record())
    assert victim.read_text() == "keep"  # the link is replaced, its target untouched
    assert not (tmp_path / "rb.json").is_symlink()
    assert read_record(tmp_path / "rb.json")["name"] == "run-a"


@pytest.mark.slow
def test_attack_command_writes_a_record_per_eps_that_reads_back(tmp_path):
    from typer.testing import CliRunner

    from spikeweave.cli import app
    from spikeweave.training import TrainConfig, Trainer

    cfg = TrainConfig(dataset="digits", model="mlp", steps=2, epochs=2, lr=1e-2,
                      out_dir=str(tmp_path), plots=False)  # fmt: skip
    Trainer(cfg, run_dir=tmp_path / "run").fit()
    args = ["attack", str(tmp_path / "run"), "--attack", "pgd", "--eps", "0,0.2",
            "--samples", "80", "--steps", "10", "--robustbench", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "attack.json").read_text())
    for eps, acc in zip(saved["eps"], saved["robust_accuracy"], strict=True):
        rb = read_record(tmp_path / "run" / f"robustbench-linf-{eps:g}.json")
        assert rb["name"] == "run" and rb["dataset"] == "digits" and rb["eps"] == eps
        assert rb["robust_acc"] == {"pgd": pytest.approx(100 * acc)}
        assert rb["clean_acc"] == pytest.approx(100 * saved["clean_accuracy"])
        # an image counts only if right without attack and the attack failed on it
        assert rb["worst_case_acc"] <= min(rb["clean_acc"], rb["robust_acc"]["pgd"]) + 1e-9
        assert rb["n_examples"] == 80 and rb["seeds"] == [0]
        assert rb["extra"]["steps"] == 10
    at_zero = read_record(tmp_path / "run" / "robustbench-linf-0.json")
    assert at_zero["worst_case_acc"] == pytest.approx(at_zero["clean_acc"])
    assert not list((tmp_path / "run").glob("robustbench-*.json.*"))  # no temporary left
    # the reference ensemble through the same command: one record per ε marked AutoAttack,
    # each attack's accuracy in it and the per-image worst case over them
    pytest.importorskip(
        "art", reason="the attacks extra (adversarial-robustness-toolbox) is missing"
    )
    args = ["attack", str(tmp_path / "run"), "--attack", "autoattack", "--eps", "0,0.2",
            "--samples", "60", "--steps", "5", "--queries", "40", "--robustbench",
            "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "attack.json").read_text())
    assert saved["attack"] == "autoattack" and saved["steps"] == 5 and saved["queries"] == 40
    rb = read_record(tmp_path / "run" / "robustbench-linf-0.2.json")
    assert set(rb["robust_acc"]) == {"apgd-ce", "apgd-t", "deepfool", "square"}
    assert (
        rb["autoattack_acc"]
        == rb["worst_case_acc"]
        == pytest.approx(100 * saved["robust_accuracy"][1])
    )
    assert rb["worst_case_acc"] <= min(rb["robust_acc"].values()) + 1e-9
    assert saved["ensemble"][1] == {k: pytest.approx(v / 100) for k, v in rb["robust_acc"].items()}
    # both attack settings stay in attack.json's records
    assert {r["attack"] for r in saved["records"]} == {"pgd", "autoattack"}


def test_autoattack_is_refused_in_one_line_without_its_library_or_with_options_it_ignores(
    tmp_path, monkeypatch
):
    import importlib.util

    from spikeweave.errors import ConfigError
    from spikeweave.security import cli

    with pytest.raises(ConfigError, match="--source does not apply to the autoattack attack"):
        cli.attack_command(tmp_path, "autoattack", [0.1], source=tmp_path)
    with pytest.raises(ConfigError, match="--queries does not apply to the pgd attack"):
        cli.attack_command(tmp_path, "pgd", [0.1], queries=100)
    with pytest.raises(ConfigError, match="runs without Square"):
        cli.attack_command(tmp_path, "autoattack", [0.1], norm="l2", queries=100)
    with pytest.raises(ConfigError, match="unknown attack 'aa'; choose one of .*autoattack"):
        cli.attack_command(tmp_path, "aa", [0.1])
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "art" else real(n, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install 'spikeweave\[attacks\]'") as e:
        cli.attack_command(tmp_path, "autoattack", [0.1])
    assert "\n" not in str(e.value)
