"""The `provenance` command line: parse arguments, call the library, print.

Data goes to stdout, diagnostics to stderr, so `--json` output always parses.
Exit codes: 0 success, 1 error (one line on stderr; a traceback only with
PROVENANCE_DEBUG=1), 2 usage error, 3 a verdict named in --fail-on was reached.
Heavy imports (numpy, torch, jinja2, the database) happen inside the command
that needs them, each with a comment saying why, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path

from . import __version__
from .config import load_config
from .console import closed_pipe_safe_stdout, paint, quiet_stderr
from .errors import ProvenanceError, UnreadablePathError
from .cli_help import add_verbosity, command
from .gate import (ACCUSING_VERDICTS, EXIT_CANDIDATE_ERRORS, EXIT_ERROR, EXIT_FAIL_ON, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,
                   FAIL_ON_NAMES, audit_abstained, audit_trips, exit_codes_help, parse_fail_on)
from .outputs import check_output
from .progress import tensor_progress, wanted
from .remote import is_remote
from .remote.budget import DEADLINE_HELP, DEFAULT_DEADLINE, deadline_scope
from .remote.locate import LOCATION_HELP, locate
from .remote.scratch import exit_on_sigterm
from .visible_text import clean

DEFAULT_SCAN_TIMEOUT = 3600.0  # seconds per candidate: generous (a 70B checkpoint on a slow disk), but bounded
CI_FORMATS = ("github", "junit", "sarif")  # provenance/report/ci_formats.py
FAIL_ON_HELP = (f"comma-separated names that make the exit code 3, any case: {', '.join(FAIL_ON_NAMES)} "
                "(abstained: no decision was reached; error: scan, a candidate could not be audited), "
                "e.g. identical,derived,assembled")
REFS_HELP = "reference database path (default: $PROVENANCE_REFS or ~/.local/share/provenance/refs.sqlite)"


def _require_path(path: str, remote_ok: bool = True, revision: str | None = None, hub: bool = False) -> str:
    """Resolve a PATH before the heavy imports: local path, URL, hf:// or repo id ORG/NAME (see remote/locate.py).

    Returns the location to read; how a repo id was resolved is said on stderr.
    """

    found = locate(path, revision, local_only=not remote_ok, hub=hub)
    if is_remote(found.location) and not remote_ok:
        raise UnreadablePathError(path, "this command reads local files only; fingerprint, compare and audit accept URLs")
    if found.note:
        print(f"provenance: {found.note}", file=sys.stderr)
    return found.location


def _fingerprint_for(path: str, args: argparse.Namespace):
    """`fingerprint_for(path)` with a per-tensor progress bar for a person at a terminal (see progress.py)."""
    # lazy: numpy and torch (fingerprint/), for the commands that read weights
    from .fingerprint.load import fingerprint_for

    show = wanted(json_output=getattr(args, "json", False), disabled=getattr(args, "no_progress", False))
    with tensor_progress(f"fingerprinting {os.path.basename(os.path.normpath(path))}", show) as on_tensor:
        return fingerprint_for(path, on_tensor=on_tensor, cache=not getattr(args, "no_cache", False))


def _saved_fingerprint(path: str):
    """The fingerprint saved at PATH (or in the folder PATH), or None when PATH is a checkpoint (or a URL)."""

    # lazy: the fingerprint package loads numpy and torch
    from .fingerprint.store import fingerprint_file_at, load_fingerprint

    saved = None if is_remote(path) else fingerprint_file_at(Path(path))  # a fingerprint file, or a folder of one
    return None if saved is None else load_fingerprint(saved)


def _cmd_inspect(args: argparse.Namespace) -> int:
    args.path = _require_path(args.path, remote_ok=False, revision=args.revision)
    saved = _saved_fingerprint(args.path)
    if saved is not None:  # a fingerprint file: describe it, never read it as a checkpoint
        # lazy: inspection loads the readers (torch)
        from .inspection import describe_fingerprint
        from .report.terminal import render_fingerprint

        report = describe_fingerprint(args.path, saved)
        print(json.dumps(report, indent=2) if args.json else render_fingerprint(report))
        return EXIT_OK
    # lazy: inspection and the readers load torch
    from .inspection import inspect_checkpoint
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
    check_output(args.output, "fingerprint")  # before the work (provenance/outputs.py)
    args.path = _require_path(args.path, revision=args.revision, hub=args.hub)
    saved = _saved_fingerprint(args.path)
    if saved is not None:

        raise UnreadablePathError(args.path, "is already a provenance fingerprint (of "
                                  f"{saved.meta['source'].get('path') or 'an unnamed checkpoint'}); compare and audit "
                                  "read it as it is, and a fingerprint of a fingerprint would describe nothing")
    # lazy: numpy and torch (fingerprint/)
    from .fingerprint.load import fingerprint_checkpoint

    with tensor_progress("fingerprinting", wanted(disabled=args.no_progress)) as on_tensor:
        fingerprint = fingerprint_checkpoint(args.path, on_tensor=on_tensor, cache=not args.no_cache)
    out = fingerprint.save(args.output)
    print(f"wrote {out} ({fingerprint.nbytes() / 1e6:.1f} MB of arrays, {len(fingerprint.tensors)} canonical tensors)",
          file=sys.stderr)
    for note in fingerprint.meta.get("notes") or []:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    args.candidate = _require_path(args.candidate, hub=args.hub)
    args.reference = _require_path(args.reference, hub=args.hub)
    # lazy: the readers (formats/) load torch
    from .formats.tokenizer import tokenizer_only_folder

    if tokenizer_only_folder(args.candidate) or tokenizer_only_folder(args.reference):
        return _compare_tokenizers(args)
    # lazy: numpy (compare/), only for compare
    from .report.compare_json import comparison_to_json, render_comparison

    candidate = _fingerprint_for(args.candidate, args)
    reference = _fingerprint_for(args.reference, args)
    # lazy: numpy and scipy
    from .compare import compare_fingerprints

    result = compare_fingerprints(candidate, reference)
    report = comparison_to_json(args.candidate, candidate, args.reference, reference, result)
    print(json.dumps(report, indent=2) if args.json else render_comparison(report))
    if args.fail_on and not report["abstained"] and report["verdict"] in args.fail_on:
        print(f"provenance: --fail-on: {report['verdict']} vs {args.reference} (exit 3)", file=sys.stderr)
        return EXIT_FAIL_ON
    if "abstained" in args.fail_on and report["abstained"]:
        print(f"provenance: --fail-on: abstained vs {args.reference} (exit 3)", file=sys.stderr)
        return EXIT_FAIL_ON
    return EXIT_OK


def _compare_tokenizers(args: argparse.Namespace) -> int:
    """Two folders of tokenizer files only (no weights): compare the vocabularies."""
    # lazy: the readers (formats/) load torch
    from .formats.tokenizer import compare_tokenizer_folders, render_tokenizer_comparison, tokenizer_only_folder

    for path in (args.candidate, args.reference):
        if not tokenizer_only_folder(path):
            other = args.reference if path == args.candidate else args.candidate
            raise UnreadablePathError(path, f"is not a folder of tokenizer files only, but {other} is; "
                                            "compare two tokenizer folders, or two checkpoints")
    report = compare_tokenizer_folders(args.candidate, args.reference)
    print(json.dumps(report, indent=2) if args.json else render_tokenizer_comparison(report))
    if args.fail_on:
        print("provenance: note: --fail-on names weight verdicts; a tokenizer comparison reaches none", file=sys.stderr)
    return EXIT_OK


def _report_path(text: str) -> str:
    """--report FILE: .html or .md, checked before any work (a usage error otherwise)."""
    # lazy: jinja2 and the report code, only when --report is given
    from .report.write import report_format

    try:
        report_format(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _parse_fail_on(text: str | None) -> frozenset[str]:
    """--fail-on NAMES (provenance/gate.py: the verdicts, abstained, error; any case)."""
    try:
        return parse_fail_on(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _reference_database(given: str | None):
    """The database an audit or scan reads: --refs, else $PROVENANCE_REFS (each must exist), else the
    default location if a database is there (None otherwise: built-in references only)."""
    # lazy: sqlite3 and the database code (12 ms), only for audit and scan
    from .registry import Registry, default_path

    if given or os.environ.get("PROVENANCE_REFS"):
        return Registry(given or default_path(), create=False)
    path = default_path()
    return Registry(path, create=False) if path.exists() else None


def _cmd_audit(args: argparse.Namespace) -> int:
    if args.lang and not args.report:  # --report/--lang: provenance/report/write.py
        print("provenance audit: error: --lang chooses the language of the --report file; give --report FILE too",
              file=sys.stderr)
        return EXIT_USAGE
    if args.report:
        check_output(args.report, "report")  # before the work, not after it (provenance/outputs.py)
    args.candidate = _require_path(args.candidate, revision=args.revision, hub=args.hub)
    # lazy: numpy, scipy and torch, only for audit
    from .audit import audit_to_json, run_audit

    if args.attest and is_remote(args.candidate):
        raise UnreadablePathError(args.candidate, "--attest hashes the candidate's files: give a local path")
    registry = _reference_database(args.refs)  # before the fingerprinting: a mistyped --refs fails at once
    _note_unread_model_folders(args.candidate)
    try:
        candidate = _fingerprint_for(args.candidate, args)
        audit = run_audit(candidate, registry, include_builtin=not args.no_builtin, candidate_path=args.candidate,
                          hash_files=bool(args.report))
        report = audit_to_json(audit)
        if args.attest:  # provenance/attestation.py: reads the references' fingerprints from the open database
            # lazy: only with --attest
            from .attestation import build_statement, write_statement

            statement = build_statement(audit, report, args.candidate, registry, include_builtin=not args.no_builtin)
            print(f"wrote attestation {write_statement(args.attest, statement)}", file=sys.stderr)
    finally:
        if registry is not None:
            registry.close()
    if args.report:
        # lazy: jinja2, only with --report
        from .report.write import write_audit_report

        written = write_audit_report(args.report, audit, lang=args.lang or "en")
        print(f"wrote report {written}", file=sys.stderr)
    if args.model_card:
        # lazy: only with --model-card
        from .report.model_card import measured_lineage, render_front_matter

        lineage = measured_lineage(audit.candidate, audit.rows, audit.lineage)
        report["model_card"] = lineage.to_dict()
    if args.model_card and not args.json:
        print(render_front_matter(lineage, args.candidate))
    else:
        print(_audit_output(args, report))
    hits = audit_trips(args.fail_on, report)
    if hits:
        print(f"provenance: --fail-on: {', '.join(hits)} (exit 3)", file=sys.stderr)
        return EXIT_FAIL_ON
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    """`verify OUT.json PATH`: the attested files unchanged, and the audit reproduced (provenance/attestation.py)."""
    # lazy: the attestation and audit code load numpy and torch
    from .attestation import VerificationError, build_predicate, check_audit, check_files, read_statement
    from .audit import audit_to_json, run_audit
    from .registry import Registry

    statement = read_statement(args.attestation)
    path = _require_path(args.path, remote_ok=False)
    changed = check_files(statement, path, itself=args.attestation)
    if changed:
        raise VerificationError(path, f"does not match the attestation: {'; '.join(changed[:5])}"
                                      + (f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""))
    settings = statement["predicate"].get("audit") if isinstance(statement["predicate"].get("audit"), dict) else {}
    database = args.refs or (settings.get("database") or {}).get("path")
    builtin = settings.get("builtin", True) is not False
    registry = Registry(database, create=False) if database else None
    try:
        audit = run_audit(_fingerprint_for(path, args), registry, include_builtin=builtin, candidate_path=path)
        again = build_predicate(audit, audit_to_json(audit), path, registry, builtin)
    finally:
        if registry is not None:
            registry.close()
    differences = check_audit(statement, again)
    if differences:
        raise VerificationError(path, f"the audit no longer gives what was attested: {'; '.join(differences)}")
    lineage = (again.get("lineage") or {}).get("result")
    print(f"verified: {len(statement['subject'])} files unchanged; verdict {again['verdict']} "
          f"(best reference {again['best_reference']}), lineage {lineage}, reproduced")
    return EXIT_OK


def _note_unread_model_folders(candidate: str) -> None:
    """A folder holding weights and model sub-folders: the audit reads its own weights only; say which it leaves."""
    # lazy: the batch package, only for a folder given to audit
    from .batch.folders import model_subfolders

    models, _ = model_subfolders(Path(candidate)) if not is_remote(candidate) else ([], 0)
    if models:
        names = ", ".join(os.path.basename(m) for m in models[:5]) + (" ..." if len(models) > 5 else "")
        print(f"provenance: note: {candidate} also holds {len(models)} model folders ({names}), which this audit does "
              f"not read; `provenance scan {candidate} -o OUT.jsonl` audits each", file=sys.stderr)


def _audit_output(args: argparse.Namespace, report: dict) -> str:
    """The audit on stdout: --format text (coloured on a terminal), json (or --json), github, junit or sarif."""
    if args.json or args.format == "json":
        return json.dumps(report, indent=2)
    if args.format in CI_FORMATS:
        # lazy: the CI renderers (xml.etree), only with --format
        from .report.ci_formats import audit_result, render

        return render(args.format, [audit_result(args.candidate, report, args.fail_on)])
    from .report.audit_text import render_audit  # lazy: the report package, only for audit

    return _coloured_verdict(render_audit(report), report)


def _scan_output(fmt: str, summary, fail_on: frozenset[str]) -> str:
    """`scan --format`: every requested candidate's latest outcome as GitHub annotations, JUnit or SARIF."""
    # lazy: the CI renderers (xml.etree), only with --format
    from .report.ci_formats import audit_result, error_result, render

    return render(fmt, [error_result(candidate, outcome.error or "", fail_on) if outcome.status == "error"
                        else audit_result(candidate, outcome.report, fail_on)
                        for candidate, outcome in summary.outcomes.items()])


def _coloured_verdict(text: str, report: dict) -> str:
    """The audit's first line (its verdict) in colour on a terminal: red for an accusation, yellow when abstained."""
    first, newline, rest = text.partition("\n")
    accused = report.get("verdict") in ACCUSING_VERDICTS and not audit_abstained(report)
    colour = "yellow" if audit_abstained(report) else "red" if accused else "green"
    return paint(first, colour) + newline + rest


def _cmd_refs(args: argparse.Namespace) -> int:
    # lazy: sqlite3 and the database code, only for refs
    from .registry import Registry, default_path

    writes = args.refs_command in ("add", "import", "sync")  # only these create a database (in an existing folder)
    path = Path(args.refs or default_path())
    given = bool(args.refs or os.environ.get("PROVENANCE_REFS"))
    if not writes and not given and not path.exists():  # a fresh machine: nothing was mistyped
        return _no_database_yet(args, path)
    if args.refs_command == "sync" and not args.list:
        # lazy: refs_sync (10 ms), only for refs sync
        from .refs_sync import OFFLINE_HINT, offline_requested

        if offline_requested(args.offline):  # before a database is created for nothing
            print(f"provenance: refs sync: offline (--offline or HF_HUB_OFFLINE): nothing to do; {OFFLINE_HINT}",
                  file=sys.stderr)
            return EXIT_ERROR
    created = writes and not path.exists()
    if writes:
        # The default location is the tool's own folder, created on first use; a path the user gave
        # (--refs, $PROVENANCE_REFS) must be in an existing folder unless --create says otherwise.
        own_folder = not (args.refs or os.environ.get("PROVENANCE_REFS"))
        registry = Registry(args.refs or default_path(), create=True, parents=args.create or own_folder)
    else:
        registry = Registry(args.refs or default_path(), create=False)
    with registry:
        if args.refs_command == "add":
            # lazy: numpy (screening signatures)
            from .audit.shortlist import add_reference

            args.path = _require_path(args.path, revision=args.revision, hub=args.hub)
            registry.check_new_name(args.name, replace=args.replace)  # before the fingerprinting, not after it
            entry = add_reference(registry, args.name, _fingerprint_for(args.path, args), replace=args.replace)
            print(f"added {entry.name} ({entry.family or 'unknown family'}) to {registry.path} (revision {registry.revision})",
                  file=sys.stderr)
        elif args.refs_command == "export":
            check_output(args.output, "bundle")
            # lazy: zipfile and the bundle code, only for refs export
            from .registry.bundles import export_bundle

            result = export_bundle(registry, args.output, args.names)
            print(f"exported {len(result.names)} references from {registry.path} (revision {result.revision}) "
                  f"to {result.path}", file=sys.stderr)
        elif args.refs_command == "import":
            # lazy: numpy (screening signatures), only for refs import
            from .audit.shortlist import signature_blob
            from .registry.bundles import import_bundle

            _require_path(args.bundle, remote_ok=False)
            result = import_bundle(registry, args.bundle, replace=args.replace, signer=signature_blob)
            print(f"imported {len(result.names)} references from {result.path} into {registry.path} "
                  f"(revision {result.revision})", file=sys.stderr)
        elif args.refs_command == "sync":  # provenance/refs_sync.py
            # lazy: the hub client, only for refs sync
            from .refs_sync import run_sync_command

            code = run_sync_command(registry, args.catalog, args.only, args.max_size, args.all, args.list,
                                    args.model_deadline)
            if created and not registry.names():
                registry.close()
                _remove_database_files(registry.path)  # a failed first sync leaves no empty database behind
                print(f"refs sync: no reference was added; {registry.path} was not kept", file=sys.stderr)
            return code
        elif args.refs_command == "remove":
            registry.remove(args.name)
            print(f"removed {args.name} from {registry.path} (revision {registry.revision})", file=sys.stderr)
        else:
            entries = registry.entries()
            if args.json:
                print(json.dumps({"schema": "provenance.refs-list/1", "path": str(registry.path),
                                  "revision": registry.revision, "references": [e.__dict__ for e in entries]},
                                 indent=2))
            else:
                for e in entries:
                    arch = e.architecture
                    print(f"{clean(e.name, 200):<32} {clean(e.family or '?', 60):<12} layers={arch.get('num_layers')} hidden={arch.get('hidden_size')} "
                          f"added {e.added}")
                print(f"{len(entries)} references in {registry.path} (revision {registry.revision})", file=sys.stderr)
    return EXIT_OK


def _no_database_yet(args: argparse.Namespace, path: Path) -> int:
    """`refs list` (and remove, export) before any database exists at the default place: say how to make one."""
    how = ("`provenance refs add PATH --name NAME` (one model), `refs import BUNDLE` (references made elsewhere) "
           "or `refs sync` (the catalog's open base models, from the hub) creates it; audits use the built-in "
           "references meanwhile")
    if args.refs_command == "list":
        if args.json:
            print(json.dumps({"schema": "provenance.refs-list/1", "path": str(path), "revision": 0, "references": []},
                             indent=2))
        print(f"provenance: no reference database yet (it would be {path}); {how}", file=sys.stderr)
        return EXIT_OK
    raise UnreadablePathError(path, f"no reference database yet; {how}")


def _remove_database_files(path: Path) -> None:
    for extra in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{extra}").unlink(missing_ok=True)


def _size_limit(text: str):
    # lazy: refs_sync (10 ms), only when --max-size is given
    from .refs_sync import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


_RAY_ADDRESS = r"^(auto|local|ray://\S+|\[?[\w.:-]+\]?:\d+)$"


def _cmd_scan(args: argparse.Namespace) -> int:

    # lazy: the batch package (27 ms; multiprocessing), only for scan
    from .batch import AuditSettings, executor, read_candidate_list, scan
    from .batch.folders import expand_model_folders

    if args.ray and not re.match(_RAY_ADDRESS, args.ray):
        print(f"provenance scan: error: --ray ADDRESS must be auto, HOST:PORT or ray://HOST:PORT, not {args.ray!r} "
              "(write --ray after the candidates, or --ray=ADDRESS)", file=sys.stderr)
        return EXIT_USAGE
    if args.workers is not None and args.workers < 0:
        print("provenance scan: error: --workers must be 0 (in this process) or more", file=sys.stderr)
        return EXIT_USAGE
    if args.tasks_per_worker is not None and args.tasks_per_worker < 1:
        print("provenance scan: error: --tasks-per-worker must be 1 or more", file=sys.stderr)
        return EXIT_USAGE
    check_output(args.output, "scan output")  # provenance/outputs.py
    candidates = list(args.candidates)
    if args.from_file:
        candidates += read_candidate_list(args.from_file)
    elif not candidates:
        print("provenance scan: error: give CANDIDATE arguments or --from FILE", file=sys.stderr)
        return EXIT_USAGE
    candidates, expansions = expand_model_folders(candidates)
    for expansion in expansions:  # provenance/batch/folders.py
        left_out = f"; {expansion.skipped} sub-folders without weights left out" if expansion.skipped else ""
        print(f"scan: {expansion.folder} holds model folders: scanning its {len(expansion.models)} model "
              f"folders{left_out}", file=sys.stderr)
    if args.timeout is not None and args.timeout <= 0:
        print("provenance scan: error: --timeout must be a positive number of seconds", file=sys.stderr)
        return EXIT_USAGE
    refs = None
    registry = _reference_database(args.refs)  # a missing or unusable database fails here, once, not in every worker
    if registry is not None:
        refs = str(Path(registry.path).resolve())
        registry.close()
    settings = AuditSettings(refs, include_builtin=not args.no_builtin, cwd=os.getcwd(), timeout=args.timeout)
    recycle = {} if args.tasks_per_worker is None else {"max_tasks_per_worker": args.tasks_per_worker}
    run = executor(args.workers, args.ray or None, use_ray=args.ray is not None, settings=settings, **recycle)
    summary = scan(candidates, args.output, run, retry_errors=args.retry_errors, progress=True)
    print(summary.render(), file=sys.stderr)
    if args.format:
        print(_scan_output(args.format, summary, args.fail_on))
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


def _cmd_env(args: argparse.Namespace) -> int:
    from huggingface_hub import constants  # lazy: huggingface_hub (100 ms), only for env

    from .environment import environment_report, render_environment  # lazy: only for env
    from .fingerprint.cache import default_directory  # lazy: the cache module loads numpy and torch
    from .registry import default_path  # lazy: sqlite3 and the database code

    config = load_config().path
    report = environment_report(default_path(), default_directory(), str(constants.HF_HUB_CACHE),
                                str(config) if config else None)
    print(json.dumps(report, indent=2) if args.json else render_environment(report))
    return EXIT_OK


def _add_location(parser: argparse.ArgumentParser, dest: str, metavar: str, local_only: bool = False) -> None:
    """A PATH argument (LOCATION_HELP lists what it may be) and --revision for a repo id or hf:// location."""

    parser.add_argument(dest, metavar=metavar, help=LOCATION_HELP + ("; read from local files only" if local_only else ""))
    parser.add_argument("--revision", metavar="REV", help="branch, tag or commit of a repo id ORG/NAME or hf:// location")
    if not local_only:
        _add_hub(parser)


def _add_hub(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", action="store_true", help="read a repo id ORG/NAME that is neither a local path nor in "
                        "the local Hugging Face cache from the hub (without it, such a name is a missing local path "
                        "and nothing goes to the network; hf://ORG/NAME always reads the hub)")


def _add_deadline(parser: argparse.ArgumentParser, dest: str = "deadline", help: str = DEADLINE_HELP) -> None:
    parser.add_argument("--deadline", dest=dest, type=_positive_seconds, metavar="SECONDS", help=help)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (one is drawn on stderr only when it is a terminal)")
    parser.add_argument("--no-cache", action="store_true",  # provenance/fingerprint/cache.py
                        help="fingerprint checkpoints anew, without reading or writing the fingerprint cache "
                             "($PROVENANCE_CACHE, default the user cache folder)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="provenance", description="Audit where a model checkpoint's weights come from.",
                                     epilog=exit_codes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"provenance {__version__}")
    add_verbosity(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    inspect = command(commands, "inspect", help="describe a checkpoint: format, architecture, tensor roles, claims")
    _add_location(inspect, "path", "PATH", local_only=True)
    inspect.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    inspect.add_argument("--no-hash", action="store_true", help="skip the sha256 of each file (faster on large files)")
    inspect.set_defaults(handler=_cmd_inspect)

    fingerprint = command(commands, "fingerprint", help="compute a checkpoint's fingerprint once, to compare many times")
    _add_location(fingerprint, "path", "PATH")
    fingerprint.add_argument("-o", "--output", required=True, metavar="OUT", help="fingerprint file to write (.safetensors)")
    _add_no_progress(fingerprint)
    _add_deadline(fingerprint)
    fingerprint.set_defaults(handler=_cmd_fingerprint)

    compare = command(commands, "compare", help="verdict on whether CANDIDATE's weights come from REFERENCE")
    compare.add_argument("candidate", metavar="CANDIDATE", help="checkpoint, fingerprint file, URL, hf:// or ORG/NAME[@REV] "
                         "(as for fingerprint PATH)")
    compare.add_argument("reference", metavar="REFERENCE", help="as CANDIDATE")
    _add_hub(compare)
    compare.add_argument("--json", action="store_true", help="print one JSON object (schema provenance.compare/1)")
    compare.add_argument("--fail-on", type=_parse_fail_on, default=set(), metavar="VERDICTS",
                         help=FAIL_ON_HELP)
    _add_no_progress(compare)
    _add_deadline(compare)
    compare.set_defaults(handler=_cmd_compare)

    audit = command(commands, "audit", help="compare a candidate with every reference model and rank the explanations")
    _add_location(audit, "candidate", "CANDIDATE")
    audit.add_argument("--refs", metavar="DB", help="reference database (default: $PROVENANCE_REFS or ~/.local/share/provenance/refs.sqlite)")
    audit.add_argument("--no-builtin", action="store_true", help="leave out the built-in references")
    audit.add_argument("--json", action="store_true", help="print one JSON object (schema provenance.audit/1)")
    audit.add_argument("--format", choices=("text",) + ("json",) + CI_FORMATS, default="text",
                       help="stdout as text (default), json (as --json), github (workflow annotations), junit "
                            "(JUnit XML) or sarif (SARIF 2.1.0, for code scanning)")
    _add_no_progress(audit)
    _add_deadline(audit)
    audit.add_argument("--fail-on", type=_parse_fail_on, default=set(), metavar="VERDICTS",
                       help=FAIL_ON_HELP)
    audit.add_argument("--report", type=_report_path, metavar="FILE",
                       help="also write a report for people: FILE.html (self-contained page) or FILE.md (for pull requests)")
    audit.add_argument("--lang", choices=("en", "zh"), help="language of the --report file: en (default) or zh (Chinese)")
    audit.add_argument("--model-card", action="store_true",
                       help="print the model card's YAML front matter (base_model, base_model_relation) that the measured "
                            "lineage calls for, beside what the files claim (with --json: a model_card field)")
    audit.add_argument("--attest", metavar="OUT.json",
                       help="also write an in-toto Statement v1 (unsigned): the candidate's files with sha256 digests, "
                            "the references, the verdict and the lineage result; check it with `provenance verify`")
    audit.set_defaults(handler=_cmd_audit)

    verify = command(commands, "verify", help="check an `audit --attest` statement: PATH's files unchanged, the audit "
                                                "reproduced (exit 1 with the difference otherwise)")
    verify.add_argument("attestation", metavar="OUT.json", help="the statement `audit --attest` wrote")
    verify.add_argument("path", metavar="PATH", help="the local checkpoint the statement is about")
    verify.add_argument("--refs", metavar="DB", help="reference database (default: the one the statement records)")
    _add_no_progress(verify)
    verify.set_defaults(handler=_cmd_verify)

    refs = command(commands, "refs", help="manage the reference database")
    refs.add_argument("--refs", metavar="DB", help=REFS_HELP)
    refs_commands = refs.add_subparsers(dest="refs_command", metavar="ACTION")
    refs_commands.required = True
    refs_add = command(refs_commands, "add", full_name="refs add", help="fingerprint PATH and store it under NAME")
    _add_location(refs_add, "path", "PATH")
    refs_add.add_argument("--name", required=True)
    refs_add.add_argument("--replace", action="store_true", help="replace an existing reference of that name")
    _add_no_progress(refs_add)
    _add_deadline(refs_add)
    refs_list = command(refs_commands, "list", full_name="refs list", help="list the references")
    refs_list.add_argument("--json", action="store_true", help="print one JSON object (schema provenance.refs-list/1)")
    refs_remove = command(refs_commands, "remove", full_name="refs remove", help="remove the reference NAME")
    refs_remove.add_argument("name", metavar="NAME")
    refs_export = command(refs_commands, "export", full_name="refs export", help="write references (fingerprints, no weights) to a bundle file")
    refs_export.add_argument("output", metavar="OUT", help="bundle file to write (a .zip; replaced atomically)")
    refs_export.add_argument("--name", dest="names", action="append", metavar="NAME",
                             help="export only this reference (repeat --name for several; default: all)")
    refs_import = command(refs_commands, "import", full_name="refs import", help="add every reference of a bundle (all or none)")
    refs_import.add_argument("bundle", metavar="BUNDLE", help="bundle file written by `refs export`")
    refs_import.add_argument("--replace", action="store_true", help="overwrite references that have the same name")
    refs_sync = command(refs_commands, "sync", full_name="refs sync", help="fingerprint the catalog's open base models (range reads from the "
                                         "hub, HF_ENDPOINT) into the database; resumable")
    refs_sync.add_argument("--only", action="extend", nargs="+", metavar="NAME", help="only these catalog names or repo ids")
    refs_sync.add_argument("--max-size", type=_size_limit, metavar="SIZE",
                           help="leave out models over SIZE: parameters (15B, 500M) or checkpoint bytes (30GB); default 15B")
    refs_sync.add_argument("--all", action="store_true", help="every catalog model, whatever its size")
    refs_sync.add_argument("--catalog", metavar="FILE", help="a catalog file (default: provenance/references/catalog.json)")
    refs_sync.add_argument("--list", action="store_true", help="print the models a sync would take, then stop (no network)")
    _add_deadline(refs_sync, "model_deadline", "seconds each model may take (default "
                  f"{DEFAULT_DEADLINE:g}, or PROVENANCE_REMOTE_DEADLINE); a model over it fails and the sync goes on")
    refs_sync.add_argument("--offline", action="store_true",
                           help="say at once that a sync needs the hub, and stop (as HF_HUB_OFFLINE=1 does)")
    for action in (refs_add, refs_list, refs_remove, refs_export, refs_import, refs_sync):
        # --refs after the action too (`refs list --refs DB`); SUPPRESS keeps a value given before the action.
        action.add_argument("--refs", metavar="DB", default=argparse.SUPPRESS, help=REFS_HELP)
    for action in (refs_add, refs_import, refs_sync):
        action.add_argument("--create", action="store_true",
                            help="create the database's folder if it does not exist (default: the folder must exist)")
    refs.set_defaults(handler=_cmd_refs, create=False)

    scan = command(commands, "scan", help="audit many candidates in parallel, one JSON line each (resumable)")
    scan.add_argument("candidates", nargs="*", metavar="CANDIDATE", help="checkpoint or fingerprint file")
    scan.add_argument("--from", dest="from_file", metavar="FILE",
                      help="read candidates from FILE, one per line (blank lines and # comments skipped; - for stdin)")
    scan.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                      help="JSON Lines output; candidates already in it are skipped (resume)")
    scan.add_argument("--refs", metavar="DB", help="reference database (default: as for audit)")
    scan.add_argument("--no-builtin", action="store_true", help="leave out the built-in references")
    scan.add_argument("--workers", type=int, metavar="N",
                      help="parallel audits (default: CPU count; with --ray, the cluster's CPUs); 0: in this process")
    scan.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                      help="run on Ray: a local instance, or the cluster at ADDRESS (needs the `ray` extra)")
    scan.add_argument("--timeout", type=float, default=DEFAULT_SCAN_TIMEOUT, metavar="SECONDS",
                      help=f"seconds one candidate may take before it becomes an error line (default {DEFAULT_SCAN_TIMEOUT:g})")
    scan.add_argument("--format", choices=CI_FORMATS,
                      help="also print every candidate's outcome on stdout as github (workflow annotations), junit "
                           "(JUnit XML) or sarif (SARIF 2.1.0)")
    scan.add_argument("--retry-errors", action="store_true", help="audit again the candidates whose line is an error")
    scan.add_argument("--tasks-per-worker", type=int, metavar="N",
                      help="replace each worker process after N candidates (default 32)")
    scan.add_argument("--fail-on", type=_parse_fail_on, default=set(), metavar="VERDICTS",
                      help=FAIL_ON_HELP + " (scan: if any candidate reaches one)")
    scan.set_defaults(handler=_cmd_scan)

    env = command(commands, "env", help="show versions, the folders provenance reads and writes, and what is installed")
    env.add_argument("--json", action="store_true", help="print one JSON object (schema provenance.env/1)")
    env.set_defaults(handler=_cmd_env)
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


def _error_line(exc: BaseException) -> str:

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
    quiet, verbose = getattr(args, "quiet", 0), getattr(args, "verbose", 0)
    try:
        _apply_project_config(args)
    except ProvenanceError as exc:
        print(_error_line(exc), file=sys.stderr)
        return EXIT_ERROR
    if args.command != "scan":  # scan's pool has its own way of stopping workers
        exit_on_sigterm()  # a SIGTERM runs the cleanups (temporary folders) like an error would
    if quiet and hasattr(args, "no_progress"):
        args.no_progress = True
    try:
        # `| head` must not turn an accusation (exit 3) into a pass; -q keeps errors and the --fail-on line only
        with closed_pipe_safe_stdout(), quiet_stderr(bool(quiet)), \
                (deadline_scope(args.deadline) if hasattr(args, "deadline") else nullcontext()):
            return args.handler(args)
    except KeyboardInterrupt:
        print(f"provenance: interrupted (exit {EXIT_INTERRUPTED})", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # a closed stderr: the outcome is unknown to the reader, never a pass
        return EXIT_ERROR
    except Exception as exc:  # one line for the user; the traceback on request
        if os.environ.get("PROVENANCE_DEBUG") == "1" or verbose:
            traceback.print_exc()
        print(_error_line(exc), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
