"""`provenance verify OUT.json PATH`: the attested files unchanged, and the audit reproduced (attestation.py)."""

from __future__ import annotations

import argparse

from ..cli_help import command
from ..gate import EXIT_OK
from .inputs import fingerprint_with_progress, require_path
from .options import add_no_progress


def register(commands) -> None:
    parser = command(commands, "verify", help="check an `audit --attest` statement: PATH's files unchanged, the audit "
                                              "reproduced (exit 1 with the difference otherwise)")
    parser.add_argument("attestation", metavar="OUT.json", help="the statement `audit --attest` wrote")
    parser.add_argument("path", metavar="PATH", help="the local checkpoint the statement is about")
    parser.add_argument("--refs", metavar="DB", help="reference database (default: the one the statement records)")
    add_no_progress(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # lazy: the attestation and audit code load numpy and torch
    from ..attestation import VerificationError, build_predicate, check_audit, check_files, read_statement
    from ..audit import run_audit
    from ..registry import Registry
    from ..report.audit_json import audit_to_json

    statement = read_statement(args.attestation)
    path = require_path(args.path, remote_ok=False)
    changed = check_files(statement, path, itself=args.attestation)
    if changed:
        raise VerificationError(path, f"does not match the attestation: {'; '.join(changed[:5])}"
                                      + (f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""))
    settings = statement["predicate"].get("audit") if isinstance(statement["predicate"].get("audit"), dict) else {}
    database = args.refs or (settings.get("database") or {}).get("path")
    builtin = settings.get("builtin", True) is not False
    registry = Registry(database, create=False) if database else None
    try:
        audit = run_audit(fingerprint_with_progress(path, args), registry, include_builtin=builtin, candidate_path=path)
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
