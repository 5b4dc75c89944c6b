"""`provenance scan CANDIDATE... -o OUT.jsonl`: audit many candidates in parallel, one JSON line each (resumable).

Each line is a `provenance.audit/1` object or an error (schemas/scan-line.schema.json),
written by batch/; this module checks the arguments, runs the scan and
says how it ended (exit 3 on a --fail-on hit, 4 when candidates failed).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from ..cli_help import command
from ..errors import UsageError
from ..gate import EXIT_CANDIDATE_ERRORS, EXIT_FAIL_ON, EXIT_OK
from ..outputs import check_output
from .inputs import reference_database
from .options import CI_FORMATS, FAIL_ON_HELP, add_fail_on

DEFAULT_SCAN_TIMEOUT = 3600.0  # seconds per candidate: generous (a 70B checkpoint on a slow disk), but bounded
RAY_ADDRESS = r"^(auto|local|ray://\S+|\[?[\w.:-]+\]?:\d+)$"


def register(commands) -> None:
    parser = command(commands, "scan", help="audit many candidates in parallel, one JSON line each (resumable)")
    parser.add_argument("candidates", nargs="*", metavar="CANDIDATE", help="checkpoint or fingerprint file")
    parser.add_argument("--from", dest="from_file", metavar="FILE",
                        help="read candidates from FILE, one per line (blank lines and # comments skipped; - for stdin)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                        help="JSON Lines output; candidates already in it are skipped (resume)")
    parser.add_argument("--refs", metavar="DB", help="reference database (default: as for audit)")
    parser.add_argument("--no-builtin", action="store_true", help="leave out the built-in references")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="parallel audits (default: CPU count; with --ray, the cluster's CPUs); 0: in this process")
    parser.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                        help="run on Ray: a local instance, or the cluster at ADDRESS (needs the `ray` extra)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_SCAN_TIMEOUT, metavar="SECONDS",
                        help=f"seconds one candidate may take before it becomes an error line (default {DEFAULT_SCAN_TIMEOUT:g})")
    parser.add_argument("--format", choices=CI_FORMATS,
                        help="also print every candidate's outcome on stdout as github (workflow annotations), junit "
                             "(JUnit XML) or sarif (SARIF 2.1.0)")
    parser.add_argument("--retry-errors", action="store_true", help="audit again the candidates whose line is an error")
    parser.add_argument("--tasks-per-worker", type=int, metavar="N",
                        help="replace each worker process after N candidates (default 32)")
    add_fail_on(parser, FAIL_ON_HELP + " (scan: if any candidate reaches one)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:

    # lazy: the batch package (27 ms; multiprocessing), only for scan
    from ..batch import AuditSettings, executor, read_candidate_list, scan
    from ..batch.folders import expand_model_folders

    if args.ray and not re.match(RAY_ADDRESS, args.ray):
        raise UsageError("scan", f"--ray ADDRESS must be auto, HOST:PORT or ray://HOST:PORT, not {args.ray!r} "
                                 "(write --ray after the candidates, or --ray=ADDRESS)")
    if args.workers is not None and args.workers < 0:
        raise UsageError("scan", "--workers must be 0 (in this process) or more")
    if args.tasks_per_worker is not None and args.tasks_per_worker < 1:
        raise UsageError("scan", "--tasks-per-worker must be 1 or more")
    check_output(args.output, "scan output")  # provenance/outputs.py
    candidates = list(args.candidates)
    if args.from_file:
        candidates += read_candidate_list(args.from_file)
    elif not candidates:
        raise UsageError("scan", "give CANDIDATE arguments or --from FILE")
    candidates, expansions = expand_model_folders(candidates)
    for expansion in expansions:  # provenance/batch/folders.py
        left_out = f"; {expansion.skipped} sub-folders without weights left out" if expansion.skipped else ""
        print(f"scan: {expansion.folder} holds model folders: scanning its {len(expansion.models)} model "
              f"folders{left_out}", file=sys.stderr)
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("scan", "--timeout must be a positive number of seconds")
    refs = None
    registry = reference_database(args.refs)  # a missing or unusable database fails here, once, not in every worker
    if registry is not None:
        refs = str(Path(registry.path).resolve())
        registry.close()
    settings = AuditSettings(refs, include_builtin=not args.no_builtin, cwd=os.getcwd(), timeout=args.timeout)
    recycle = {} if args.tasks_per_worker is None else {"max_tasks_per_worker": args.tasks_per_worker}
    run_one = executor(args.workers, args.ray or None, use_ray=args.ray is not None, settings=settings, **recycle)
    summary = scan(candidates, args.output, run_one, retry_errors=args.retry_errors, progress=True)
    print(summary.render(), file=sys.stderr)
    if args.format:
        print(ci_output(args.format, summary, args.fail_on))
    hits = summary.hits(args.fail_on)
    if hits:
        why = ", ".join(summary.outcomes[hits[0]].tripped(args.fail_on))
        print(f"scan: {len(hits)} candidates reached a --fail-on verdict ({', '.join(sorted(args.fail_on))}), "
              f"first: {hits[0]} ({why})", file=sys.stderr)
        return EXIT_FAIL_ON
    if summary.errors:
        print(f"scan: {summary.errors} candidates could not be audited (exit {EXIT_CANDIDATE_ERRORS}; their lines in "
              f"{args.output} say why)", file=sys.stderr)
        return EXIT_CANDIDATE_ERRORS
    return EXIT_OK


def ci_output(fmt: str, summary, fail_on: frozenset[str]) -> str:
    """`scan --format`: every requested candidate's latest outcome as GitHub annotations, JUnit or SARIF."""
    # lazy: the CI renderers (xml.etree), only with --format
    from ..report.ci_formats import audit_result, error_result, render

    return render(fmt, [error_result(candidate, outcome.error or "", fail_on) if outcome.status == "error"
                        else audit_result(candidate, outcome.report, fail_on)
                        for candidate, outcome in summary.outcomes.items()])
