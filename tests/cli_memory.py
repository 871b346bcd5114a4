"""Run ``spikeweave ARGS`` in a fresh process and measure its peak memory (the bomb tests).

A wrapper process starts the command as its only child, so ``RUSAGE_CHILDREN`` reports that
command's peak resident set alone (in pytest's own process it would be the largest child ever).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import spikeweave

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")

_WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(json.dumps([r.returncode, r.stdout, r.stderr, peak]))\n"
)
_MAIN = "import sys; from spikeweave.cli import main; sys.argv[0] = 'spikeweave'; main()"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    peak_mb: float


def run_spikeweave(*args: str | Path, timeout: float = 600) -> Run:
    """``spikeweave ARGS`` in a new process: exit status, stdout, stderr, peak RSS (MB)."""
    env = dict(os.environ)
    src = str(Path(spikeweave.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    cmd = [sys.executable, "-c", _WRAPPER, sys.executable, "-c", _MAIN, *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr
    code, out, err, peak_kib = json.loads(done.stdout)
    return Run(code, out, err, peak_kib / 1024)


def assert_one_line_error(run: Run, *needles: str) -> None:
    """Exit status 2 and exactly one ``error: ...`` line naming every needle, no traceback."""
    assert run.code == 2, (run.code, run.out, run.err)
    lines = [ln for ln in run.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.err
    assert "Traceback" not in run.err + run.out
    for needle in needles:
        assert needle in lines[0], lines[0]
