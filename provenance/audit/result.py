"""`AuditResult`: everything one audit found, typed, for the JSON, the terminal, the report and the model card.

`run_audit` (run.py) returns it; the renderers in `provenance/report/` (its
JSON object in audit_json.py) only format it. It reads as the ranked list of `AuditRow`s
(`result[0]`, `len(result)`, iteration), which is what the Python API
documents, and carries beside them what was computed once for the report
(`BestMatch`, `Reproducibility`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..compare import Comparison
from ..fingerprint import Fingerprint
from .lineage_check import LineageCheck
from .rows import AuditRow
from .scope import Scope
from .shortlist import Screen

SCHEMA = "provenance.audit/1"  # of its JSON output, report/audit_json.py


@dataclass(frozen=True)
class BestMatch:
    """The best-ranked reference whose weights were compared, and what the report shows of it beyond the row."""

    row: AuditRow
    vocabulary: dict[str, Any] | None  # the vocabulary the reference's fingerprint recorded
    vocabulary_source: str  # where the reference's vocabulary was read from, as a report may show it
    vocabulary_overlap: float | None  # estimated Jaccard overlap with the candidate's vocabulary (MinHash)
    role_profiles: tuple[dict[str, Any], ...]  # per role: {"role", "points": [{layer, partner, r, log10p}]}

    @property
    def comparison(self) -> Comparison:
        return self.row.result


@dataclass(frozen=True)
class Reproducibility:
    """What is needed to reproduce the run: file hashes and versions (the command line is the caller's)."""

    candidate: dict[str, Any]  # {"files", "fingerprint", "recorded"} (details.candidate_files)
    builtin: tuple[dict[str, str], ...] | None  # sha256 of provenance/references/ files; None: no built-in row
    tool: dict[str, str]  # tool, Python, numpy and scipy versions


@dataclass(frozen=True, eq=False)
class AuditResult(Sequence):
    """One candidate against every reference: the rows ranked, most serious explanation first."""

    candidate_path: str  # the path (or URL) the audit was asked about, as the outputs name it
    candidate: Fingerprint
    rows: tuple[AuditRow, ...]
    screening: Screen | None  # the database screening (shortlist.py), or None when nothing was screened
    database: dict[str, Any] | None  # {"path", "revision"} of the reference database, or None
    tokenizers: tuple[dict[str, Any], ...]  # closest published tokenizers (tokenizer_references.py)
    vocabulary_source: str  # where the candidate's vocabulary was read from, as a report may show it
    best_match: BestMatch | None  # the best row whose weights were compared, with its report details
    reproducibility: Reproducibility
    lineage: LineageCheck | None = None  # declared against detected lineage (lineage_check.py)
    scope: Scope | None = None  # how many references were compared, what the audit cannot see (scope.py)

    def __getitem__(self, index):
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def best(self) -> AuditRow | None:
        """The best-ranked row of any kind (the verdict of the JSON), or None without references."""
        return self.rows[0] if self.rows else None

    @property
    def notes(self) -> list[str]:
        """The notes of the best weights comparison."""
        return list(self.best_match.comparison.notes) if self.best_match is not None else []
