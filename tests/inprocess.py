"""Run the command line in this process: `provenance ARGS` through `cli.main`, output captured.

A subprocess costs an interpreter and the torch import (2-4 s) and proves
nothing more for most tests: `cli.main` is what `cli.py` and the `provenance`
entry point call, exit codes are its return value, and it writes its data to
stdout and its diagnostics to stderr. Tests that need a fresh process (what a
bare `--help` imports, the script's own exit status, a killed run) keep one.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from unittest import mock


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Like `subprocess.run([python, cli.py, *args], capture_output=True, text=True, env=env)`."""
    from provenance import cli

    out, err = io.StringIO(), io.StringIO()
    environment = mock.patch.dict(os.environ, env, clear=True) if env is not None else contextlib.nullcontext()
    with environment, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return subprocess.CompletedProcess(["provenance", *args], code, out.getvalue(), err.getvalue())
