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


def _require_path(path: str) -> None:
    """Fail fast, before the heavy imports, when a PATH does not exist."""
    from pathlib import Path

    from .errors import UnreadablePathError

    if not Path(path).exists() and not Path(path).is_symlink():
        raise UnreadablePathError(path, "no such file or directory")


def _cmd_inspect(args: argparse.Namespace) -> int:
    _require_path(args.path)
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
    _require_path(args.path)
    from .fingerprint import build_fingerprint
    from .model import Checkpoint

    with Checkpoint.open(args.path) as checkpoint:
        fingerprint = build_fingerprint(checkpoint)
    out = fingerprint.save(args.output)
    print(f"wrote {out} ({fingerprint.nbytes() / 1e6:.1f} MB of arrays, {len(fingerprint.tensors)} canonical tensors)",
          file=sys.stderr)
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    _require_path(args.candidate)
    _require_path(args.reference)
    from .compare import compare_fingerprints
    from .fingerprint.load import fingerprint_for
    from .report.compare_json import comparison_to_json, render_comparison

    candidate = fingerprint_for(args.candidate)
    reference = fingerprint_for(args.reference)
    result = compare_fingerprints(candidate, reference)
    report = comparison_to_json(args.candidate, candidate, args.reference, reference, result)
    print(json.dumps(report, indent=2) if args.json else render_comparison(report))
    return EXIT_OK


VERDICTS = ("identical", "derived", "assembled", "same-architecture", "unrelated")


def _parse_fail_on(text: str | None) -> set[str]:
    if not text:
        return set()
    chosen = {v.strip() for v in text.split(",") if v.strip()}
    unknown = chosen - set(VERDICTS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown verdict(s) in --fail-on: {', '.join(sorted(unknown))}; choose from {', '.join(VERDICTS)}")
    return chosen


def _cmd_audit(args: argparse.Namespace) -> int:
    _require_path(args.candidate)
    from .audit import audit_to_json, render_audit, run_audit
    from .fingerprint.load import fingerprint_for
    from .registry import Registry, default_path

    candidate = fingerprint_for(args.candidate)
    registry = None
    refs_path = args.refs or default_path()
    if args.refs or refs_path.exists():
        registry = Registry(refs_path)
    try:
        rows = run_audit(candidate, registry, include_builtin=not args.no_builtin)
        report = audit_to_json(args.candidate, candidate, rows, registry)
    finally:
        if registry is not None:
            registry.close()
    print(json.dumps(report, indent=2) if args.json else render_audit(report))
    if args.fail_on & {r["verdict"] for r in report["references"] if not r["abstained"]}:
        return EXIT_FAIL_ON
    return EXIT_OK


def _cmd_refs(args: argparse.Namespace) -> int:
    from .registry import Registry

    with Registry(args.refs) as registry:
        if args.refs_command == "add":
            from .fingerprint.load import fingerprint_for

            entry = registry.add(args.name, fingerprint_for(args.path), replace=args.replace)
            print(f"added {entry.name} ({entry.family or 'unknown family'}) to {registry.path} (revision {registry.revision})",
                  file=sys.stderr)
        elif args.refs_command == "remove":
            registry.remove(args.name)
            print(f"removed {args.name} from {registry.path} (revision {registry.revision})", file=sys.stderr)
        else:
            entries = registry.entries()
            if args.json:
                print(json.dumps({"path": str(registry.path), "revision": registry.revision,
                                  "references": [e.__dict__ for e in entries]}, indent=2))
            else:
                for e in entries:
                    arch = e.architecture
                    print(f"{e.name:<32} {e.family or '?':<12} layers={arch.get('num_layers')} hidden={arch.get('hidden_size')} "
                          f"added {e.added}")
                print(f"{len(entries)} references in {registry.path} (revision {registry.revision})", file=sys.stderr)
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

    audit = commands.add_parser("audit", help="compare a candidate with every reference model and rank the explanations")
    audit.add_argument("candidate", metavar="CANDIDATE", help="checkpoint or fingerprint file")
    audit.add_argument("--refs", metavar="DB", help="reference database (default: $PROVENANCE_REFS or ~/.local/share/provenance/refs.sqlite)")
    audit.add_argument("--no-builtin", action="store_true", help="leave out the built-in references")
    audit.add_argument("--json", action="store_true", help="print one JSON object (schema provenance.audit/1)")
    audit.add_argument("--fail-on", type=_parse_fail_on, default=set(), metavar="VERDICTS",
                       help="comma-separated verdicts that make the exit code 3, e.g. identical,derived,assembled")
    audit.set_defaults(handler=_cmd_audit)

    refs = commands.add_parser("refs", help="manage the reference database")
    refs.add_argument("--refs", metavar="DB", help="reference database path")
    refs_commands = refs.add_subparsers(dest="refs_command", metavar="ACTION")
    refs_commands.required = True
    refs_add = refs_commands.add_parser("add", help="fingerprint PATH and store it under NAME")
    refs_add.add_argument("path", metavar="PATH")
    refs_add.add_argument("--name", required=True)
    refs_add.add_argument("--replace", action="store_true", help="replace an existing reference of that name")
    refs_list = refs_commands.add_parser("list", help="list the references")
    refs_list.add_argument("--json", action="store_true")
    refs_remove = refs_commands.add_parser("remove", help="remove the reference NAME")
    refs_remove.add_argument("name", metavar="NAME")
    refs.set_defaults(handler=_cmd_refs)
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
