"""Re-derive the oscillation-defense verdict parts from the full run's per-seed results."""
import json, math, shutil, sys
from dataclasses import replace
from pathlib import Path
from spikeweave.experiments.base import ExperimentContext
from spikeweave.experiments import oscillation_defense as od

src = Path(sys.argv[1]); out = Path(sys.argv[2]); commit = sys.argv[3]
old = json.loads((src / "report.json").read_text())
s = od._settings(False)
base = replace(s["config"], out_dir=str(out / "runs"))
ctx = ExperimentContext(out, False, list(old["setup"]["seeds"]), log=False)
r = old["results"]
report = od.OscillationDefense()._report(
    ctx, s, base, od.OscillationOptions(), {"fake_form": "square", "fake_phase": math.pi},
    r["per_seed"], r["training_time_s"], r["forward_identical"],
)
for key in ("seeds", "machine", "quick", "wall_time_s", "versions"):
    if key in old["setup"]:
        report.setup[key] = old["setup"][key]
report.notes = [
    n if not n.startswith("Training cost:") else next(
        o for o in old["notes"] if o.startswith("Training cost:"))
    for n in report.notes
]
report.notes.append(
    f"The verdict parts were re-derived on 2026-12-01 from this run's stored per-seed results "
    f"(report.json, results.per_seed) with the paired rule of commit {commit} "
    "(spikeweave.experiments.stats.paired_part, rule_out = 2 points); every measurement is the "
    "original run's. The original verdict used a 2-point threshold on seed means."
)
report.write(out)
print(report.verdict)
for p in report.parts:
    print(p.sentence())
