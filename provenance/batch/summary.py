"""What a scan reports: each candidate's outcome (for the summary and --fail-on) and the run's summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..gate import audit_trips


@dataclass(frozen=True)
class Outcome:
    """What the summary and --fail-on need from one record (records themselves are not kept in memory)."""

    status: str
    verdict: str | None = None  # best explanation
    report: dict = field(default_factory=dict)  # the audit's verdict and rows: what `audit --fail-on` checks
    error: str | None = None  # why the candidate could not be audited

    @classmethod
    def of(cls, record: dict) -> "Outcome":
        if record.get("status") != "ok":
            return cls("error", error=str(record.get("error") or "unknown error"))
        report = record.get("audit") or {}
        rows = [{k: r.get(k) for k in ("verdict", "reference", "abstained")} for r in report.get("references", [])]
        kept = {k: report.get(k) for k in ("verdict", "best_reference", "summary", "lineage")}
        return cls("ok", report.get("verdict"), {**kept, "references": rows})

    def tripped(self, fail_on: set[str]) -> list[str]:
        """'VERDICT vs REFERENCE', 'abstained' or 'error' for what this outcome reached of `fail_on`."""
        if self.status == "error":
            return ["error"] if "error" in fail_on else []
        return audit_trips(fail_on, self.report)


@dataclass
class ScanSummary:
    out: Path
    requested: int = 0
    skipped: int = 0  # already in OUT
    audited: int = 0  # this run
    errors_now: int = 0  # this run
    repaired_bytes: int = 0  # partial last line cut off before appending
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # every requested candidate's latest outcome

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == "error")

    def verdicts(self) -> Counter:
        return Counter(o.verdict for o in self.outcomes.values() if o.status == "ok")

    def hits(self, fail_on: set[str]) -> list[str]:
        """Requested candidates that reached a verdict in fail_on (`error` counts error records)."""
        return [c for c, o in self.outcomes.items() if o.tripped(fail_on)]

    def render(self) -> str:
        verdicts = ", ".join(f"{v} {n}" for v, n in sorted(self.verdicts().items(), key=lambda i: (-i[1], str(i[0]))))
        lines = [f"scan: {self.requested} candidates -> {self.out}: {self.audited} audited now "
                 f"({self.errors_now} errors), {self.skipped} skipped (already in the output)",
                 f"scan: all {len(self.outcomes)}: {len(self.outcomes) - self.errors} ok, {self.errors} errors; "
                 f"verdicts: {verdicts or 'none'}"]
        if self.repaired_bytes:
            lines.insert(0, f"scan: cut off a partial last line ({self.repaired_bytes} bytes) left by an interrupted run")
        return "\n".join(lines)
