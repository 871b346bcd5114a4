"""The files a reader follows for ``spikeweave train``: from the CLI entry to the checkpoint.

Runs ``spikeweave train`` on the embedded digits set for one short epoch, with a profiler
that records every spikeweave source file in which a function is called, from ``cli.main``
until the first ``save_checkpoint`` returns. Calls made while a module is being imported (a
registry filled at import, a schema built at import) do not count: they are not the path a
reader follows. Prints each file with its line count (as ``wc -l``) and the function first
called in it, then the totals: all files, and the orchestration part (``cli``, ``training/``,
``atomic`` and the checkpoint modules) apart from the numerical core.

    MPLBACKEND=Agg PYTHONPATH=src python benchmarks/train_path.py /tmp/train-path-runs
"""

from __future__ import annotations

import inspect
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import spikeweave

ROOT = Path(spikeweave.__file__).parent
ORCHESTRATION = ("cli", "training/", "atomic", "checkpoint_file", "nested_state")


def trace_train(out_dir: str) -> dict[Path, str]:
    """``{file: first function called in it}`` for one ``spikeweave train`` up to the checkpoint."""
    seen: dict[Path, str] = {}
    done = False

    def during_import(frame: FrameType) -> bool:
        back = frame.f_back
        while back is not None:
            code = back.f_code
            if code.co_name == "<module>" and code.co_filename.startswith(str(ROOT)):
                return True
            back = back.f_back
        return False

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal done
        code = frame.f_code
        if done:
            return
        if event == "return" and code.co_name == "save_checkpoint":
            done = True
            return
        # only functions: module and class bodies also run as "calls" when they are imported
        if event != "call" or not code.co_flags & inspect.CO_OPTIMIZED:
            return
        path = Path(code.co_filename)
        if path.is_relative_to(ROOT) and path not in seen and not during_import(frame):
            seen[path] = code.co_name

    from spikeweave import cli

    argv = sys.argv
    sys.argv = ["spikeweave", "train", "--dataset", "digits", "--epochs", "1", "--steps", "2",
                "--out-dir", out_dir, "--no-plots", "--no-progress",
                "--no-tensorboard"]  # fmt: skip
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        cli.main()
    except SystemExit:
        pass
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        sys.argv = argv
    return seen


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: train_path.py OUT_DIR")
    seen = trace_train(sys.argv[1])
    rows = sorted((p.relative_to(ROOT).as_posix(), len(p.read_bytes().splitlines()), f)
                  for p, f in seen.items())  # fmt: skip
    for name, lines, first in rows:
        print(f"{lines:6d} {name}  ({first})")
    core = [(n, lines) for n, lines, _ in rows if n.startswith(ORCHESTRATION)]
    print(f"all: {len(rows)} files, {sum(r[1] for r in rows)} lines")
    lines = sum(r[1] for r in core)
    print(f"cli + training + atomic + checkpoint: {len(core)} files, {lines} lines")


if __name__ == "__main__":
    main()
