"""Run the ``spikeweave`` command in the test's own process, as the console script runs it.

Importable by name from every test folder (pytest puts ``tests/`` on ``sys.path`` for the
conftest), like ``real_data``.
"""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout

from spikeweave import cli


def run_main(*args: object) -> tuple[int, str, str]:
    """``spikeweave ARGS`` (each turned into a string): exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["spikeweave", *map(str, args)]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()
