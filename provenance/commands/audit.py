"""`provenance audit CANDIDATE`: compare a candidate with every reference model and rank the explanations.

stdout carries the audit as text, `provenance.audit/1` JSON (built by
`report.audit_json`, which scan and the Python API share), CI formats or
a model card's front matter; `--report` and `--attest` write files beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..cli_help import command
from ..console import paint
from ..errors import UnreadablePathError, UsageError
from ..gate import ACCUSING_VERDICTS, EXIT_FAIL_ON, EXIT_OK, audit_abstained, audit_trips
from ..outputs import check_output
from ..remote import is_remote
from .inputs import fingerprint_with_progress, reference_database, require_path
from .options import CI_FORMATS, add_deadline, add_fail_on, add_location, add_no_progress


def register(commands) -> None:
    parser = command(commands, "audit", help="compare a candidate with every reference model and rank the explanations")
    add_location(parser, "candidate", "CANDIDATE")
    parser.add_argument("--refs", metavar="DB", help="reference database (default: $PROVENANCE_REFS or ~/.local/share/provenance/refs.sqlite)")
    parser.add_argument("--no-builtin", action="store_true", help="leave out the built-in references")
    parser.add_argument("--json", action="store_true", help="print one JSON object (schema provenance.audit/1)")
    parser.add_argument("--format", choices=("text",) + ("json",) + CI_FORMATS, default="text",
                        help="stdout as text (default), json (as --json), github (workflow annotations), junit "
                             "(JUnit XML) or sarif (SARIF 2.1.0, for code scanning)")
    add_no_progress(parser)
    add_deadline(parser)
    add_fail_on(parser)
    parser.add_argument("--report", type=report_path, metavar="FILE",
                        help="also write a report for people: FILE.html (self-contained page) or FILE.md (for pull requests)")
    parser.add_argument("--lang", choices=("en", "zh"), help="language of the --report file: en (default) or zh (Chinese)")
    parser.add_argument("--model-card", action="store_true",
                        help="print the model card's YAML front matter (base_model, base_model_relation) that the measured "
                             "lineage calls for, beside what the files claim (with --json: a model_card field)")
    parser.add_argument("--attest", metavar="OUT.json",
                        help="also write an in-toto Statement v1 (unsigned): the candidate's files with sha256 digests, "
                             "the references, the verdict and the lineage result; check it with `provenance verify`")
    parser.set_defaults(handler=run)


def report_path(text: str) -> str:
    """--report FILE: .html or .md, checked before any work (a usage error otherwise)."""
    # lazy: jinja2 and the report code, only when --report is given
    from ..report.write import report_format

    try:
        report_format(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def run(args: argparse.Namespace) -> int:
    if args.lang and not args.report:  # --report/--lang: provenance/report/write.py
        raise UsageError("audit", "--lang chooses the language of the --report file; give --report FILE too")
    if args.report:
        check_output(args.report, "report")  # before the work, not after it (provenance/outputs.py)
    args.candidate = require_path(args.candidate, revision=args.revision, hub=args.hub)
    # lazy: numpy, scipy and torch, only for audit
    from ..audit import run_audit
    from ..report.audit_json import audit_to_json

    if args.attest and is_remote(args.candidate):
        raise UnreadablePathError(args.candidate, "--attest hashes the candidate's files: give a local path")
    registry = reference_database(args.refs)  # before the fingerprinting: a mistyped --refs fails at once
    note_unread_model_folders(args.candidate)
    try:
        candidate = fingerprint_with_progress(args.candidate, args)
        audit = run_audit(candidate, registry, include_builtin=not args.no_builtin, candidate_path=args.candidate,
                          hash_files=bool(args.report))
        report = audit_to_json(audit)
        if args.attest:  # provenance/attestation.py: reads the references' fingerprints from the open database
            # lazy: only with --attest
            from ..attestation import build_statement, write_statement

            statement = build_statement(audit, report, args.candidate, registry, include_builtin=not args.no_builtin)
            print(f"wrote attestation {write_statement(args.attest, statement)}", file=sys.stderr)
    finally:
        if registry is not None:
            registry.close()
    if args.report:
        # lazy: jinja2, only with --report
        from ..report.write import write_audit_report

        written = write_audit_report(args.report, audit, lang=args.lang or "en")
        print(f"wrote report {written}", file=sys.stderr)
    if args.model_card:
        # lazy: only with --model-card
        from ..report.model_card import measured_lineage, render_front_matter

        lineage = measured_lineage(audit.candidate, audit.rows, audit.lineage)
        report["model_card"] = lineage.to_dict()
    if args.model_card and not args.json:
        print(render_front_matter(lineage, args.candidate))
    else:
        print(audit_output(args, report))
    hits = audit_trips(args.fail_on, report)
    if hits:
        print(f"provenance: --fail-on: {', '.join(hits)} (exit 3)", file=sys.stderr)
        return EXIT_FAIL_ON
    return EXIT_OK


def note_unread_model_folders(candidate: str) -> None:
    """A folder holding weights and model sub-folders: the audit reads its own weights only; say which it leaves."""
    # lazy: the batch package, only for a folder given to audit
    from ..batch.folders import model_subfolders

    models, _ = model_subfolders(Path(candidate)) if not is_remote(candidate) else ([], 0)
    if models:
        names = ", ".join(os.path.basename(m) for m in models[:5]) + (" ..." if len(models) > 5 else "")
        print(f"provenance: note: {candidate} also holds {len(models)} model folders ({names}), which this audit does "
              f"not read; `provenance scan {candidate} -o OUT.jsonl` audits each", file=sys.stderr)


def audit_output(args: argparse.Namespace, report: dict) -> str:
    """The audit on stdout: --format text (coloured on a terminal), json (or --json), github, junit or sarif."""
    if args.json or args.format == "json":
        return json.dumps(report, indent=2)
    if args.format in CI_FORMATS:
        # lazy: the CI renderers (xml.etree), only with --format
        from ..report.ci_formats import audit_result, render

        return render(args.format, [audit_result(args.candidate, report, args.fail_on)])
    from ..report.audit_text import render_audit  # lazy: the report package, only for audit

    return coloured_verdict(render_audit(report), report)


def coloured_verdict(text: str, report: dict) -> str:
    """The audit's first line (its verdict) in colour on a terminal: red for an accusation, yellow when abstained."""
    first, newline, rest = text.partition("\n")
    accused = report.get("verdict") in ACCUSING_VERDICTS and not audit_abstained(report)
    colour = "yellow" if audit_abstained(report) else "red" if accused else "green"
    return paint(first, colour) + newline + rest
