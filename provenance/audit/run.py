"""`provenance audit`: compare one candidate with every reference and rank the explanations.

The candidate is fingerprinted once; each reference is a stored fingerprint
(built-in ones shipped in `provenance/references/`, and the user's database),
so the cost per reference is one fingerprint-to-fingerprint comparison. A
database is screened first (shortlist.py) and only its shortlist compared
fully; config-only references (config_references.py) add rows of kind
"architecture", and the tokenizer references (tokenizer_references.py) add
tokenizer evidence that is never part of a weights verdict. The files' claims
are set against the rows (lineage_check.py), with a bit-exact re-quantization
of the best reference when the candidate is a quantized GGUF and that
reference's folder is on this machine (quant_source.py). What the report
shows beyond the rows (details.py) is computed here too, once: the outputs
(the `provenance.audit/1` JSON of report/audit_json.py, the text, the
reports) only format the `AuditResult` (result.py).
"""

from __future__ import annotations

from typing import Any

from ..compare import compare_fingerprints
from ..fingerprint import Fingerprint, Part
from .builtin import builtin_file_hashes, builtin_references
from .config_references import architecture_rows
from .details import candidate_files, role_profiles, shared_vocabulary, versions, vocabulary_of, vocabulary_source
from .lineage_check import check_lineage, declared_references
from .quant_source import check_best_source
from .result import AuditResult, BestMatch, Reproducibility
from .rows import AuditRow, rank_key
from .scope import audit_scope
from .shortlist import screen_registry
from .tokenizer_references import match_tokenizers

class _BestWeights:
    """The best-ranked weights row seen so far and its reference's fingerprint (only that one is kept)."""

    def __init__(self) -> None:
        self.row: AuditRow | None = None
        self.reference: Fingerprint | None = None

    def offer(self, row: AuditRow, reference: Fingerprint) -> AuditRow:
        if self.row is None or rank_key(row) < rank_key(self.row):
            self.row, self.reference = row, reference
        return row


def _best_match(candidate: Fingerprint, best: _BestWeights, candidate_path: str) -> BestMatch | None:
    if best.row is None:
        return None
    reference = best.reference
    return BestMatch(best.row, vocabulary_of(reference), vocabulary_source(reference, candidate_path),
                     shared_vocabulary(candidate, reference),
                     tuple(role_profiles(candidate, reference, best.row.result.layers)))


def _label(candidate: Fingerprint) -> str:
    """The path outputs name when the caller gave none: the fingerprint's recorded source."""
    return str(candidate.source.path or "<fingerprint>")


def run_audit(candidate: Fingerprint, registry=None, include_builtin: bool = True, screen: bool = True,
              candidate_path: str | None = None, hash_files: bool = False) -> AuditResult:
    """`candidate` against the built-in references and the database's shortlist (or every database reference,
    without `screen`), ranked. `candidate_path` is how the outputs name the candidate (default: the source its
    fingerprint recorded); `hash_files` also takes the sha256 of the candidate's files and of the built-in
    reference files for a report's reproducibility section (reading every file once more)."""
    candidate_path = _label(candidate) if candidate_path is None else str(candidate_path)
    rows: list[AuditRow] = []
    best = _BestWeights()
    vocabularies: list[dict[str, Any]] = []  # the compared references' own tokenizers, matched like published ones
    if include_builtin:
        for name, reference in builtin_references():
            vocabularies.extend(_reference_tokenizer(name, reference))
            rows.append(best.offer(AuditRow(name, "built-in", compare_fingerprints(candidate, reference),
                                            source=_source_path(reference)), reference))
    screening = None
    if registry is not None:
        if not candidate.holds(Part.SKETCHES, Part.UNIT_SIGNATURES):
            screen = False  # no sketches or unit signatures to screen on (rows read remotely): compare with all
        # screening (shortlist.py): only the shortlist is compared fully
        screening = screen_registry(candidate, registry) if screen else None
        if screen:  # a declared parent is always compared (lineage_check.py), screened out or not
            for name in declared_references(candidate, [e.name for e in registry.entries()]):
                screening.add(name, "declared as the parent by the candidate's files")
        names = screening.shortlist if screen else [e.name for e in registry.entries()]
        for name in names:
            reference = registry.fingerprint(name)
            vocabularies.extend(_reference_tokenizer(name, reference))
            rows.append(best.offer(AuditRow(name, str(registry.path), compare_fingerprints(candidate, reference),
                                            source=_source_path(reference)), reference))
    if include_builtin:  # architecture-only references (config shapes, no weights): config_references.py
        rows.extend(architecture_rows(candidate))
    rows.sort(key=rank_key)
    builtin_used = any(r.origin.startswith("built-in") for r in rows)
    scope = audit_scope(rows, registry.names() if registry is not None else None)
    return AuditResult(
        candidate_path=candidate_path, candidate=candidate, rows=tuple(rows), screening=screening,
        database={"path": str(registry.path), "revision": registry.revision} if registry is not None else None,
        tokenizers=tuple(match_tokenizers(candidate.vocabulary.to_dict() if candidate.vocabulary else None, exact=tuple(vocabularies))),
        vocabulary_source=vocabulary_source(candidate, candidate_path),
        best_match=_best_match(candidate, best, candidate_path),
        reproducibility=Reproducibility(candidate_files(candidate_path, candidate, hash_files),
                                        builtin_file_hashes() if hash_files and builtin_used else None, versions()),
        lineage=check_lineage(candidate, rows, check_best_source(candidate, candidate_path, rows)),
        scope=scope)


def _reference_tokenizer(name: str, reference: Fingerprint) -> list[dict[str, Any]]:
    """A weights reference's recorded vocabulary as a tokenizer reference (an exact copy of it is then named)."""
    vocabulary = reference.vocabulary
    return [{"name": name, "signature": vocabulary.to_dict()}] if vocabulary is not None else []


def _source_path(reference: Fingerprint) -> str:
    """Where a reference's fingerprint was made from (`hf://ORG/NAME@REV`, a folder), as it recorded it."""
    path = reference.source.path
    return path if isinstance(path, str) else ""
