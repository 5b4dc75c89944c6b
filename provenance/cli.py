"""The `provenance` command line: parse arguments, call the library, print.

Data goes to stdout, diagnostics to stderr, so `--json` output always parses.
Exit codes: 0 success, 1 error (one line on stderr; a traceback only with
PROVENANCE_DEBUG=1), 2 usage error, 3 a verdict named in --fail-on was reached.
Heavy imports happen inside the command that needs them, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from . import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAIL_ON = 0, 1, 2, 3


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import inspect_checkpoint
    from .model import Checkpoint
    from .report.terminal import render_inspect

    with Checkpoint.open(args.path) as checkpoint:
        report = inspect_checkpoint(checkpoint, hash_files=not args.no_hash)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_inspect(report))
    return EXIT_OK


def _cmd_fingerprint(args: argparse.Namespace) -> int:
    from .fingerprint import build_fingerprint
    from .model import Checkpoint

    with Checkpoint.open(args.path) as checkpoint:
        fingerprint = build_fingerprint(checkpoint)
    out = fingerprint.save(args.output)
    print(f"wrote {out} ({fingerprint.nbytes() / 1e6:.1f} MB of arrays, {len(fingerprint.tensors)} canonical tensors)",
          file=sys.stderr)
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_fingerprints
    from .fingerprint.load import fingerprint_for
    from .report.compare_json import comparison_to_json, render_comparison

    candidate = fingerprint_for(args.candidate)
    reference = fingerprint_for(args.reference)
    result = compare_fingerprints(candidate, reference)
    report = comparison_to_json(args.candidate, candidate, args.reference, reference, result)
    print(json.dumps(report, indent=2) if args.json else render_comparison(report))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="provenance", description="Audit where a model checkpoint's weights come from.")
    parser.add_argument("--version", action="version", version=f"provenance {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    inspect = commands.add_parser("inspect", help="describe a checkpoint: format, architecture, tensor roles, claims")
    inspect.add_argument("path", metavar="PATH", help="checkpoint directory, weights file (.safetensors/.bin/.pt/.gguf)")
    inspect.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    inspect.add_argument("--no-hash", action="store_true", help="skip the sha256 of each file (faster on large files)")
    inspect.set_defaults(handler=_cmd_inspect)

    fingerprint = commands.add_parser("fingerprint", help="compute a checkpoint's fingerprint once, to compare many times")
    fingerprint.add_argument("path", metavar="PATH")
    fingerprint.add_argument("-o", "--output", required=True, metavar="OUT", help="fingerprint file to write (.safetensors)")
    fingerprint.set_defaults(handler=_cmd_fingerprint)

    compare = commands.add_parser("compare", help="verdict on whether CANDIDATE's weights come from REFERENCE")
    compare.add_argument("candidate", metavar="CANDIDATE", help="checkpoint or fingerprint file")
    compare.add_argument("reference", metavar="REFERENCE", help="checkpoint or fingerprint file")
    compare.add_argument("--json", action="store_true", help="print one JSON object (schema provenance.compare/1)")
    compare.set_defaults(handler=_cmd_compare)
    return parser


def _error_line(exc: BaseException) -> str:
    from .errors import ProvenanceError

    if isinstance(exc, ProvenanceError):
        return f"provenance: error: {exc}"
    if isinstance(exc, MemoryError):
        return "provenance: error: out of memory"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"provenance: error: {where}{exc.strerror or exc}"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"provenance: error: unexpected {type(exc).__name__}: {first} (set PROVENANCE_DEBUG=1 for a traceback)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("provenance: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # one line for the user; the traceback on request
        if os.environ.get("PROVENANCE_DEBUG") == "1":
            traceback.print_exc()
        print(_error_line(exc), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
