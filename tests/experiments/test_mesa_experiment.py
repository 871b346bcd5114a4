"""The mesa experiment's quick run end to end: the attack strength is chosen by the fixed rule
on the validation split before any defense, and report.json records the grid and the choice."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from run_loading import every_run_loads

from spikeweave.experiments import run_experiment
from spikeweave.experiments.backdoor_strength import TRIGGER_GRID, choose_strength


@pytest.mark.slow
def test_quick_run_chooses_the_strength_by_the_rule_and_attacks_with_it(tmp_path, monkeypatch):
    from spikeweave.experiments import mesa as exp

    # the quick settings with the ANN arm only and smaller searches: the same code path in a
    # fifth of the time (the SNN arm's training is covered by the other mesa tests)
    quick = exp._settings(True)[0]
    small = replace(
        quick, models=(("ANN", "ann"),), mesa_steps=5, generator_hidden=16, detect_steps=3,
        finetune_epochs=1, heldout_images=30, betas=(0.9,),
    )  # fmt: skip
    monkeypatch.setattr(exp, "_settings", lambda q: [small])
    report, folder = run_experiment("mesa", quick=True, seeds=2, out_dir=tmp_path, progress=False)
    data = json.loads((folder / "report.json").read_text())
    record = data["results"]["strength"]
    assert record["rule"]["min_asr"] == 0.95 and record["rule"]["max_clean_loss"] == 0.01
    picks = record["digits"]["badnets"]
    assert set(picks) == {"ANN"}
    for label, pick in picks.items():
        rows = pick["rows"]
        assert [(r["rate"], r["strength"]) for r in rows] == [
            (0.1, i) for i in range(len(TRIGGER_GRID["badnets"]))
        ]
        for r in rows:  # measured on the validation split against the clean model
            assert r["images"] == pick["clean"]["images"]
            assert r["clean_loss"] == pytest.approx(
                pick["clean"]["clean_accuracy"] - r["clean_accuracy"]
            )
        again = choose_strength(rows)  # the recorded choice is the rule's on the recorded rows
        assert (again.row["strength"], again.met) == (pick["chosen"]["strength"], pick["met"])
        chosen = pick["chosen"]["options"]
        # every seed's backdoored run was trained with the chosen setting
        for seed in (0, 1):
            cfg = json.loads(
                (folder / "runs" / f"digits-{label.lower()}-badnets-0.1-s{seed}" / "config.json")
                .read_text()
            )  # fmt: skip
            backdoor = cfg["train_transforms"]["backdoor"]
            assert backdoor["fraction"] == 0.1
            assert backdoor["trigger_size"] == chosen["trigger_size"]
            assert backdoor["position"] == chosen.get("position", [])
        before = data["results"]["asr_before_badnets"]["digits"][label]
        assert set(before) == {"0.1"}
        if not pick["met"]:
            assert "NOT met" in (folder / "report.md").read_text()
    assert "attack strength grid on the validation split" in (folder / "report.md").read_text()
    assert data["results"]["seeds"] == [0, 1]
    assert set(every_run_loads(folder)) == {"bptt"}
    # each (kind, model) arm and seed was saved as it finished, for a resume
    assert len(list((folder / "results").glob("digits-defenses-*/*.json"))) == 2
    assert any("triggers_digits_ANN_badnets" in f for f in data["figures"])
    # a resume (here of a finished folder whose report is removed) loads every run and row
    (folder / "report.json").unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (folder / "runs").glob("*/checkpoint.safetensors")}
    run_experiment("mesa", quick=True, seeds=2, resume=folder, progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing trained again
    again = json.loads((folder / "report.json").read_text())
    assert again["parts"] == data["parts"] and again["tables"] == data["tables"]
