"""The oscillation-defense experiment end to end, shrunk to digits so it runs in seconds (the
real ``--quick`` run uses mnist5k and is timed separately)."""

from __future__ import annotations

import json
import math

import pytest
from run_loading import every_run_loads

from spikeweave.experiments import oscillation_defense as od
from spikeweave.experiments import run_experiment
from spikeweave.experiments.stats import STATUSES
from spikeweave.security.robustbench import read_record
from spikeweave.training import TrainConfig


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (see conftest): the shared CPU is oversubscribed."""


def test_full_settings_use_full_fashion_mnist_and_attack_a_thousand_test_images():
    full = od._settings(quick=False)
    cfg = full["config"]
    assert cfg.dataset == "fashion-mnist" and round(cfg.val_fraction * 60000) == 5000
    assert 0 <= cfg.train_size <= 55000  # all (0) or a stated subset of the 55,000 left
    assert full["samples"] >= 1000  # robustness parts: at least 1,000 attacked images
    assert od._settings(quick=True)["config"].dataset == "mnist5k"  # quick only


def _tiny(quick: bool):
    return {
        "config": TrainConfig(
            dataset="digits", model="mlp", hidden=[32], steps=4, epochs=1, lr=1e-2,
            val_fraction=0.1,
        ),
        "samples": 30,
        "eps": [0.0, 0.1, 0.2, 0.3],
        "steps": 20,
        "queries": 30,
        "adv": {"eps": 0.1, "steps": 1},
        "sweep": {"amplitude": [0.3], "frequency": [0.25], "fake_form": ["square"],
                  "fake_phase": [math.pi / 2, math.pi]},
        "sweep_eps": [0.1],
        "val_samples": 40,
        "reference": {"apgd_steps": 3, "targets": 1, "square_queries": 20},
    }  # fmt: skip


@pytest.mark.slow
def test_tiny_run_writes_every_table_check_and_claim(tmp_path, monkeypatch):
    monkeypatch.setattr(od, "_settings", _tiny)
    report, folder = run_experiment(
        "oscillation-defense", quick=True, seeds=1, out_dir=tmp_path, progress=False
    )
    data = json.loads((folder / "report.json").read_text())
    res = data["results"]
    assert set(res["per_seed"]) == set(od.ARMS)
    assert res["images"] == 30 and res["seeds"] == [0]
    # one RobustBench-style record per arm, at RECORD_EPS, from the per-seed results
    i = res["eps"].index(od.RECORD_EPS)
    assert set(res["robustbench"]) == set(od.ARMS)
    for arm, name in res["robustbench"].items():
        rb = read_record(folder / name)
        (row,) = res["per_seed"][arm]
        assert rb["name"] == arm and rb["eps"] == od.RECORD_EPS and rb["n_examples"] == 30
        # the worst case over our attacks and the reference ensemble (ART, in the test extra)
        assert rb["worst_case_acc"] == pytest.approx(100 * row["worst_case_with_reference"])
        assert rb["robust_acc"]["square"] == pytest.approx(100 * row["square"][i])
        assert rb["robust_acc"]["reference square"] == pytest.approx(
            100 * row["reference"]["square"]
        )
        assert rb["extra"]["reference"]["square_queries"] == 20
    # the positive control: every setting of the sweep, on validation images, before the rest
    sweep = res["sweep"]
    assert sweep["split"].startswith("validation") and sweep["images"] == 40
    assert [(p["fake_form"], p["fake_phase"]) for p in sweep["points"]] == [
        ("square", math.pi / 2),
        ("square", math.pi),
    ]
    for p in sweep["points"]:
        (curve,) = p["per_seed"]
        assert len(curve) == 1 and 0.0 <= curve[0] <= 1.0
    means = [p["mean"] for p in sweep["points"]]
    chosen = next(p for p in sweep["points"] if p["mean"] == max(means))
    assert sweep["best"] == {k: chosen[k] for k in sweep["best"]}
    lif_sweep = sweep["lif"][0][0]
    assert sweep["best_minus_lif_points"] == pytest.approx(100 * (max(means) - lif_sweep))
    assert sweep["margin_points"] == od.APPARENT_MARGIN
    assert sweep["apparent_robustness"] == (sweep["best_minus_lif_points"] > od.APPARENT_MARGIN)
    assert (folder / "defense_sweep.png").stat().st_size > 1000
    verdict = data["verdict"]
    assert ("Positive control failed" in verdict) != sweep["apparent_robustness"]
    assert res["forward_identical"] == [True]  # defense leaves the forward bit-identical
    for arm in od.ARMS:
        (r,) = res["per_seed"][arm]
        for attack in od.ATTACK_NAMES:
            assert len(r[attack]) == 4
            assert r[attack][0] == pytest.approx(r["clean"])
            assert all(a <= r["clean"] + 1e-9 for a in r[attack])  # attacks never help
        # per image: no higher than any attack, nor than the minimum over their means
        for i in range(4):
            assert r["worst_case"][i] <= r["min_of_attack_means"][i] + 1e-12
            assert r["min_of_attack_means"][i] == min(r[a][i] for a in od.ATTACK_NAMES)
        # per image over both: never above either side's own worst case, and the ensemble
        # judged the same images (its clean accuracy is ours)
        both = r["worst_case_with_reference"]
        assert both <= r["worst_case"][res["eps"].index(od.RECORD_EPS)] + 1e-12
        assert both <= r["reference"]["worst_case"] + 1e-12
        assert r["reference"]["clean"] == pytest.approx(r["clean"])
        # the surrogate-choosing attack starts with the adaptive attack's own try
        assert all(s <= a for s, a in zip(r["adaptive-surrogate"], r["adaptive"], strict=True))
        assert set(res["sanity"][arm]) == {
            "iterative_at_least_single_step",
            "more_steps_do_not_help",
            "near_zero_at_eps_0.5",
            "black_box_not_stronger",
        }
    # LIF has no oscillating neurons: the adaptive attack is PGD itself
    (lif,) = res["per_seed"]["LIF"]
    assert lif["adaptive"] == lif["pgd"]
    assert set(res["claims"]) == {"oscillation > LIF", "defense > oscillation"}
    # the two worst-case robustness parts, the two with the reference ensemble, then cost
    parts = data["parts"]
    assert [("worst case" in p["name"], "reference ensemble" in p["name"],
             p["name"].startswith("cost")) for p in parts] == [
        (True, False, False), (True, False, False), (False, True, False), (False, True, False),
        (False, False, True),
    ]  # fmt: skip
    assert all(p["status"] in STATUSES for p in parts)
    md = (folder / "report.md").read_text()
    assert "Sanity checks (Carlini et al. 2019)" in md and "Did the claim hold?" in md
    assert "Reference ensemble (ART, AutoAttack-style)" in md
    assert (folder / "robust_accuracy.png").stat().st_size > 1000
    assert report.held is None  # quick runs decide nothing
    _every_run_loads_and_is_attacked_without_a_hand_made_method(tmp_path)


@pytest.mark.slow
def test_attacks_in_workers_and_a_resume_after_a_kill_give_the_uninterrupted_results(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(od, "_settings", _tiny)
    kw = {"quick": True, "seeds": 1, "progress": False}
    _, two = run_experiment("oscillation-defense", out_dir=tmp_path / "two", workers=2, **kw)
    real, calls = od._attack_arm, []

    def dies_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the session ends in the middle of the attacks
        return real(*args, **kwargs)

    monkeypatch.setattr(od, "_attack_arm", dies_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("oscillation-defense", out_dir=tmp_path / "one", **kw)
    (folder,) = (tmp_path / "one").iterdir()
    assert len(list((folder / "results").glob("attacks-*/*.json"))) == 2
    calls.clear()
    run_experiment("oscillation-defense", resume=folder, **kw)
    assert len(calls) == 2  # the two saved arms were loaded, not attacked again
    a, b = (json.loads((f / "report.json").read_text())["results"] for f in (two, folder))
    assert a["per_seed"] == b["per_seed"] and a["sweep"] == b["sweep"]
    assert a["forward_identical"] == b["forward_identical"] == [True]


def _every_run_loads_and_is_attacked_without_a_hand_made_method(out_dir):
    from typer.testing import CliRunner

    from spikeweave.cli import app

    methods = every_run_loads(out_dir)
    assert {"bptt", "oscillation-bptt", "adv-train"} <= set(methods), methods
    osc = methods["oscillation-bptt"][0]
    attack = ["attack", str(osc), "--attack", "pgd", "--eps", "0.1", "--samples", "20"]
    for args in (["eval", str(osc)], attack):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output


def test_without_the_reference_library_the_records_keep_our_worst_case_and_no_part_is_made():
    eps = [0.0, od.RECORD_EPS]
    row = {"clean": 0.9, "worst_case": [0.9, 0.2], **{a: [0.9, 0.5] for a in od.ATTACK_NAMES}}
    res = {a: [row, row] for a in od.ARMS}
    pairs = {"oscillation > LIF": ("oscillation", "LIF")}
    assert od.OscillationDefense._reference_parts({"eps": eps}, res, pairs) == {}
    with_ref = {a: [{**row, "reference": {}, "worst_case_with_reference": 0.1}] * 2 for a in res}
    (part,) = od.OscillationDefense._reference_parts({"eps": eps}, with_ref, pairs).values()
    assert part.estimate == 0.0 and "reference ensemble" in part.name


def test_options_are_checked():
    from spikeweave.errors import ConfigError

    with pytest.raises(ConfigError, match="form must be one of"):
        od.OscillationOptions(form="cosine")


def test_each_arms_record_is_the_seed_mean_at_the_record_eps_and_reads_back(tmp_path):
    eps = [0.0, od.RECORD_EPS, 0.3]

    def row(clean, worst, base):
        attacks = {a: [clean, base + k / 100, 0.0] for k, a in enumerate(od.ATTACK_NAMES)}
        return {"clean": clean, "worst_case": [clean, worst, 0.0], **attacks}

    res = {"LIF": [row(0.9, 0.2, 0.3), row(0.8, 0.4, 0.5)],
           "oscillation + defense": [row(0.7, 0.1, 0.2), row(0.7, 0.1, 0.2)]}  # fmt: skip
    s = {"eps": eps, "samples": 50, "steps": 20, "queries": 500}
    paths = od.write_arm_records(tmp_path, "mnist5k", s, res, [0, 1])
    assert paths == {"LIF": "robustbench-lif.json",
                     "oscillation + defense": "robustbench-oscillation-defense.json"}  # fmt: skip
    lif = read_record(tmp_path / paths["LIF"])
    assert lif["threat_model"] == "Linf" and lif["eps"] == od.RECORD_EPS
    assert lif["clean_acc"] == pytest.approx(85.0) and lif["worst_case_acc"] == pytest.approx(30.0)
    assert lif["robust_acc"]["fgsm"] == pytest.approx(40.0)
    assert lif["robust_acc"]["square"] == pytest.approx(45.0)
    assert lif["seeds"] == [0, 1] and lif["n_examples"] == 50 and lif["autoattack_acc"] is None
