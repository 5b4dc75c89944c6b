"""Audit and scan results in the formats CI systems read: GitHub workflow commands, JUnit XML and SARIF 2.1.0.

One `CandidateResult` per audited candidate (or per candidate that could not
be audited), made from the `provenance.audit/1` object and the `--fail-on`
names, is rendered three ways:

- `github`: one workflow command per candidate (`::error` when it reached a
  `--fail-on` name or could not be audited, `::warning` for another
  accusation or an abstention, `::notice` otherwise), which GitHub Actions
  shows as annotations (docs.github.com, "Workflow commands": `%`, CR and LF
  escaped in the message, `:` and `,` too in properties);
- `junit`: a `<testsuites>` document, one `<testcase>` per candidate, a
  `<failure>` for a `--fail-on` hit and an `<error>` for a candidate that
  could not be audited, as Jenkins, GitLab and most dashboards read it;
- `sarif`: one SARIF 2.1.0 log (OASIS standard; what GitHub code scanning
  uploads), one rule per verdict, one result per candidate, its level
  `error` for a `--fail-on` hit or an error, `warning` for another
  accusation or an abstention, `note` otherwise.

Renderers only: they format what the audit found and compute nothing.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..gate import ACCUSING_VERDICTS, VERDICTS, audit_abstained, audit_trips
from ..verdicts import Verdict

FORMATS = ("github", "junit", "sarif")
INFORMATION_URI = "https://pypi.org/project/provenance/"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass(frozen=True)
class CandidateResult:
    candidate: str
    verdict: str | None = None  # the best explanation (None: no reference, or an error)
    reference: str | None = None
    summary: str = ""
    abstained: bool = False
    tripped: tuple[str, ...] = ()  # what it reached of --fail-on ('derived vs X', 'abstained', 'error')
    error: str | None = None  # why it could not be audited
    rows: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def level(self) -> str:
        """error (a --fail-on hit, or not audited), warning (another accusation, or no decision), note."""
        if self.tripped or self.error is not None:
            return "error"
        if self.abstained or self.verdict in ACCUSING_VERDICTS:
            return "warning"
        return "note"

    @property
    def rule(self) -> str:
        if self.error is not None:
            return "error"
        return "abstained" if self.abstained else (self.verdict or "no-reference")

    def message(self) -> str:
        if self.error is not None:
            return f"{self.candidate}: could not be audited: {self.error}"
        what = "no decision (abstained)" if self.abstained else (self.verdict or "no references to compare with")
        against = f" of {self.reference}" if self.reference and self.verdict in ACCUSING_VERDICTS else (
            f" (closest: {self.reference})" if self.reference else "")
        gate = f"; --fail-on reached: {', '.join(self.tripped)}" if self.tripped else ""
        return f"{self.candidate}: {what}{against}: {self.summary}{gate}"


def audit_result(candidate: str, report: dict[str, Any], fail_on: frozenset[str] | set[str]) -> CandidateResult:
    """A candidate's result from its `provenance.audit/1` object."""
    tripped = tuple(audit_trips(fail_on, report))
    return CandidateResult(candidate, report.get("verdict"), report.get("best_reference"), report.get("summary") or "",
                           audit_abstained(report), tripped,
                           rows=tuple(r for r in report.get("references") or [] if isinstance(r, dict)))


def error_result(candidate: str, message: str, fail_on: frozenset[str] | set[str]) -> CandidateResult:
    return CandidateResult(candidate, tripped=("error",) if "error" in fail_on else (), error=message)


def render(fmt: str, results: list[CandidateResult]) -> str:
    return {"github": render_github, "junit": render_junit, "sarif": render_sarif}[fmt](results)


# -- GitHub workflow commands -------------------------------------------------------------------------------------

def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(results: list[CandidateResult]) -> str:
    command = {"error": "error", "warning": "warning", "note": "notice"}
    return "\n".join(f"::{command[r.level]} file={_escape_property(_relative(r.candidate))},"
                     f"title={_escape_property('provenance: ' + r.rule)}::{_escape_data(r.message())}" for r in results)


# -- JUnit XML ----------------------------------------------------------------------------------------------------

def render_junit(results: list[CandidateResult]) -> str:
    failures = sum(1 for r in results if r.tripped and r.error is None)
    errors = sum(1 for r in results if r.error is not None)
    suites = ET.Element("testsuites", name="provenance", tests=str(len(results)), failures=str(failures),
                        errors=str(errors))
    suite = ET.SubElement(suites, "testsuite", name="provenance audit", tests=str(len(results)),
                          failures=str(failures), errors=str(errors), skipped="0")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname="provenance.audit", name=r.candidate)
        if r.error is not None:
            ET.SubElement(case, "error", message=r.message(), type="not-audited").text = r.error
        elif r.tripped:
            ET.SubElement(case, "failure", message=r.message(), type="fail-on").text = "\n".join(r.tripped)
        ET.SubElement(case, "system-out").text = r.message()
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")


# -- SARIF 2.1.0 --------------------------------------------------------------------------------------------------

RULES = {
    Verdict.IDENTICAL.value: "The weights are an identical copy of a reference (up to renaming, casting or re-layout).",
    Verdict.DERIVED.value: "The weights descend from a reference (fine-tuned, quantized, pruned or merged).",
    Verdict.ASSEMBLED.value: "The weights are assembled from reference layers (repeated, reordered, or from several sources).",
    Verdict.SAME_ARCHITECTURE.value: "The architecture matches a reference; no weight signal reaches the accusation bar.",
    Verdict.UNRELATED.value: "Neither the architecture nor the weights match a reference.",
    "abstained": "The evidence is weak or conflicting: the audit reached no decision.",
    "no-reference": "There was no reference to compare with.",
    "error": "The candidate could not be audited.",
}
assert set(VERDICTS) <= set(RULES)  # every verdict has its rule


def _relative(path: str) -> str:
    """The candidate as a path relative to the working folder when it is inside it (as CI annotations want)."""
    try:
        relative = Path(os.path.relpath(Path(path).resolve(), Path.cwd()))
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.parts[:1] == ("..",) else relative.as_posix()


def render_sarif(results: list[CandidateResult]) -> str:
    rules = [{"id": f"provenance/{name}", "name": name.replace("-", " ").title().replace(" ", ""),
              "shortDescription": {"text": text}, "helpUri": INFORMATION_URI} for name, text in RULES.items()]
    index = {name: i for i, name in enumerate(RULES)}
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "provenance", "version": __version__, "informationUri": INFORMATION_URI,
                                "rules": rules}},
            "invocations": [{"executionSuccessful": all(r.error is None for r in results)}],
            "results": [{
                "ruleId": f"provenance/{r.rule}", "ruleIndex": index[r.rule], "level": r.level,
                "message": {"text": r.message()},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": _relative(r.candidate)}}}],
                "properties": {"verdict": r.verdict, "reference": r.reference, "abstained": r.abstained,
                               "failOn": list(r.tripped)},
            } for r in results],
        }],
    }
    return json.dumps(log, indent=2)


__all__ = ["FORMATS", "CandidateResult", "audit_result", "error_result", "render", "render_github", "render_junit",
           "render_sarif"]
