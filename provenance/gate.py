"""What a CI gate relies on: the exit codes, the names `--fail-on` accepts, and which of them an audit reached.

Every command's exit code comes from here, so the top-level help, the README
and the code list the same numbers. `--fail-on` names are parsed in one place
(`FAIL_ON_NAMES`): a new outcome a gate may fail on (a lineage word, say) is
one entry there plus what trips it in `audit_trips`. Names are
case-insensitive (`DERIVED` is `derived`).
"""

from __future__ import annotations

from typing import Any

from .verdicts import ACCUSING, VERDICT_NAMES

EXIT_OK = 0
EXIT_ERROR = 1  # one line on stderr naming the file and the problem
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_FAIL_ON = 3  # a name given to --fail-on was reached
EXIT_CANDIDATE_ERRORS = 4  # scan: a candidate could not be audited (and no --fail-on name was reached)
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it

EXIT_CODES = (
    (EXIT_OK, "success (for audit and scan: no --fail-on name reached)"),
    (EXIT_ERROR, "error: one line on stderr naming the file and the problem"),
    (EXIT_USAGE, "usage error"),
    (EXIT_FAIL_ON, "a name given to --fail-on was reached (stderr says which, against which reference)"),
    (EXIT_CANDIDATE_ERRORS, "scan: at least one candidate could not be audited (its line in OUT says why)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)

VERDICTS = VERDICT_NAMES  # plain strings, as --fail-on parses them (verdicts.py is numpy-free)
ACCUSING_VERDICTS = tuple(v.value for v in ACCUSING)  # a claim that the weights come from the reference
# Beyond the verdicts: `abstained` (the best explanation could not be decided, or there was nothing to
# compare with) and `error` (scan: a candidate could not be audited; audit and compare exit 1 on an error).
# The lineage results that find a claim false (audit/lineage_check.py FAILING, where the audit reports a
# `lineage` object): a gate fails on them like on a verdict. Without a lineage result they never trip.
LINEAGE_FAIL_ON = ("undeclared-parent", "wrong-parent", "wrong-relation")
FAIL_ON_NAMES = VERDICTS + ("abstained", "error") + LINEAGE_FAIL_ON


def exit_codes_help() -> str:
    """The exit codes as the top-level `--help` lists them."""
    return "exit codes:\n" + "\n".join(f"  {code:<4}{meaning}" for code, meaning in EXIT_CODES)


def parse_fail_on(text: str | None, allowed: tuple[str, ...] = FAIL_ON_NAMES) -> frozenset[str]:
    """The names of a `--fail-on` value (comma-separated, any case); ValueError names the unknown ones."""
    chosen = frozenset(name.strip().lower() for name in (text or "").split(",") if name.strip())
    unknown = chosen - set(allowed)
    if unknown:
        raise ValueError(f"unknown verdict(s) in --fail-on: {', '.join(sorted(unknown))}; choose from {', '.join(allowed)}")
    return chosen


def audit_abstained(report: dict[str, Any]) -> bool:
    """True when an audit (its `provenance.audit/1` object) reached no decision: no reference, or the best abstained."""
    rows = report.get("references") or []
    return not rows or bool(rows[0].get("abstained"))


def audit_trips(fail_on: frozenset[str] | set[str], report: dict[str, Any]) -> list[str]:
    """What an audit reached of `fail_on`: 'VERDICT vs REFERENCE' per non-abstained row, and 'abstained'."""
    hits = [f"{r['verdict']} vs {r['reference']}" for r in report.get("references") or []
            if not r.get("abstained") and r.get("verdict") in fail_on]
    if "abstained" in fail_on and audit_abstained(report):
        hits.append("abstained")
    lineage = report.get("lineage") if isinstance(report.get("lineage"), dict) else {}
    if lineage.get("result") in fail_on:  # declared against detected lineage
        hits.append(f"lineage {lineage['result']}")
    return hits


__all__ = ["ACCUSING_VERDICTS", "EXIT_CANDIDATE_ERRORS", "EXIT_CODES", "EXIT_ERROR", "EXIT_FAIL_ON", "EXIT_INTERRUPTED", "EXIT_OK",
           "EXIT_USAGE", "FAIL_ON_NAMES", "LINEAGE_FAIL_ON", "VERDICTS", "audit_abstained", "audit_trips", "exit_codes_help",
           "parse_fail_on"]
