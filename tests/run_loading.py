"""Issue 30's check that every run an experiment writes loads on its own: ``load_run`` with no
hand-made method, and (for runs on a named dataset) an evaluation. Importable by name, as
pytest puts this folder on ``sys.path`` for the conftest."""

from __future__ import annotations

from pathlib import Path

from spikeweave.errors import DataError
from spikeweave.training import load_run


def every_run_loads(out_dir: Path) -> dict[str, list[Path]]:
    """Load every run directory below ``out_dir`` and evaluate the ones trained on a named
    dataset (a run on injected data says so in one line, and is only loaded); returns the run
    directories each training method wrote. Fails on the first run that does not load or
    evaluate (a NaN loss, or an accuracy outside [0, 1])."""
    methods: dict[str, list[Path]] = {}
    runs = sorted(p.parent for p in Path(out_dir).rglob("checkpoint.safetensors"))
    assert runs, f"no run directory below {out_dir}"
    for run_dir in runs:
        run = load_run(run_dir)
        methods.setdefault(run.config.method, []).append(run_dir)
        try:
            result = run.evaluate()
        except DataError as exc:
            assert "injected datasets" in str(exc), (run_dir, exc)
            continue
        assert result["loss"] == result["loss"], (run_dir, result)  # not NaN
        assert 0.0 <= result.get("accuracy", 0.0) <= 1.0, (run_dir, result)
    return methods
