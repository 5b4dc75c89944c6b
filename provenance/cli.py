"""The `provenance` command line: wire the command modules (provenance/commands/), run one, map its outcome.

Data goes to stdout, diagnostics to stderr, so `--json` output always parses.
Exit codes: 0 success, 1 error (one line on stderr; a traceback only with
PROVENANCE_DEBUG=1 or -v), 2 usage error, 3 a verdict named in --fail-on was
reached (provenance/gate.py). What each exception becomes is one table,
commands/failures.py. Heavy imports (numpy, torch, jinja2, the database)
happen inside the command that needs them, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from contextlib import nullcontext

from . import __version__
from .cli_help import add_verbosity
from .commands import COMMANDS
from .commands.failures import failure_for
from .config import load_config
from .console import closed_pipe_safe_stdout, quiet_stderr
from .gate import exit_codes_help
from .remote.budget import deadline_scope
from .remote.scratch import exit_on_sigterm


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="provenance", description="Audit where a model checkpoint's weights come from.",
                                     epilog=exit_codes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"provenance {__version__}")
    add_verbosity(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for module in COMMANDS:
        module.register(commands)
    return parser


def _apply_project_config(args: argparse.Namespace) -> None:
    """Defaults from [tool.provenance] (provenance/config.py) for what the command line left unsaid."""
    if args.command not in ("audit", "scan", "compare", "refs"):
        return
    config = load_config()
    if config.path is None:
        return
    if config.refs and getattr(args, "refs", "given") is None and not os.environ.get("PROVENANCE_REFS"):
        args.refs = config.refs
    if config.builtin is False and hasattr(args, "no_builtin"):
        args.no_builtin = True
    if config.fail_on and hasattr(args, "fail_on") and not args.fail_on:
        args.fail_on = config.fail_on


def _failed(exc: BaseException, verbose: int) -> int:
    """The exit code and the one line commands/failures.py gives `exc` (its traceback too, on request)."""
    failure = failure_for(exc)
    if failure.traceback and (os.environ.get("PROVENANCE_DEBUG") == "1" or verbose):
        traceback.print_exc()
    line = failure.line(exc)
    if line is not None:
        print(line, file=sys.stderr)
    return failure.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    quiet, verbose = getattr(args, "quiet", 0), getattr(args, "verbose", 0)
    try:
        _apply_project_config(args)
    except Exception as exc:  # a malformed [tool.provenance]: one line, as any error
        return _failed(exc, 0)
    if args.command != "scan":  # scan's pool has its own way of stopping workers
        exit_on_sigterm()  # a SIGTERM runs the cleanups (temporary folders) like an error would
    if quiet and hasattr(args, "no_progress"):
        args.no_progress = True
    try:
        # `| head` must not turn an accusation (exit 3) into a pass; -q keeps errors and the --fail-on line only
        with closed_pipe_safe_stdout(), quiet_stderr(bool(quiet)), \
                (deadline_scope(args.deadline) if hasattr(args, "deadline") else nullcontext()):
            return args.handler(args)
    except (Exception, KeyboardInterrupt) as exc:  # one line for the user (commands/failures.py); a traceback on request
        return _failed(exc, verbose)


if __name__ == "__main__":
    sys.exit(main())
