"""The measured reports in docs/results name commits that exist in this history (issue 29's
provenance rule): a ``command.json`` that names its commit (``commit``, or ``commits`` for a
resumed experiment) must name one that ``HEAD`` descends from."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def _full_history() -> str | None:
    """None when the whole history is here, else why the test cannot check it."""
    if shutil.which("git") is None:
        return "git is not installed"
    inside = _git("rev-parse", "--is-inside-work-tree")
    if inside.returncode or inside.stdout.strip() != "true":
        return "not a git checkout"
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        return "a shallow clone lacks the history the reports name"
    return None


def _named_commits() -> list[tuple[str, str]]:
    out = []
    for path in sorted(RESULTS.glob("*/command.json")):
        record = json.loads(path.read_text())
        named = [record["commit"]] if record.get("commit") else []
        named += [c for c in record.get("commits") or [] if c]
        out += [(path.parent.name, commit) for commit in named]
    return out


def test_every_commit_a_results_report_names_is_in_the_history_of_head():
    why = _full_history()
    if why:
        pytest.skip(why)
    named = _named_commits()
    assert named, "no report in docs/results names its commit"
    missing = [
        (report, commit)
        for report, commit in named
        if _git("merge-base", "--is-ancestor", commit, "HEAD").returncode != 0
    ]
    assert not missing, f"reports naming commits that HEAD does not descend from: {missing}"
