"""The Python API: `provenance.compare_models(a, b)`, `provenance.audit_model(path, refs=...)`,
`provenance.fingerprint_model(path)`.

    import provenance
    fp = provenance.fingerprint_model("path/to/checkpoint")        # a Fingerprint (save it with fp.save(...))
    result = provenance.compare_models("candidate", "reference")  # a Comparison: .verdict, .confidence, .evidence
    rows = provenance.audit_model("candidate", refs="refs.sqlite")  # AuditResult: its AuditRows, most serious first
    print(rows[0].reference, rows[0].result.verdict)

Each function takes what the command line takes (a checkpoint folder, a
weights file, a saved fingerprint file, a URL) or an already computed
`Fingerprint`, and returns the typed results the command line renders:
`Fingerprint`, `Comparison` (the verdict after the same structural checks as
`provenance compare`), and the `AuditResult` of `provenance audit`: it reads
as the ranked list of `AuditRow`s (`rows[0]`, `len(rows)`, iteration) and
also carries `.rows`, `.screening` (the database screening summary),
`.tokenizers`, `.best_match` and the rest the reports render. Errors are
`provenance.errors.ProvenanceError` subclasses, one line each (an argument
of the wrong type, or an empty path, is an `UnreadablePathError` too). The JSON
objects of the command line are one call away: `compare_json` and
`audit_json` below. Heavy libraries (torch, numpy) are imported with this
module, which `import provenance` leaves out until the first call.

The functions were once called `compare`, `audit` and `fingerprint`, the
names of the subpackages too; `provenance.api.compare` and the other two
still work, with a DeprecationWarning.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Union

from .audit import AuditResult, run_audit
from .compare import Comparison, compare_fingerprints
from .errors import UnreadablePathError
from .fingerprint.load import fingerprint_for
from .fingerprint.store import Fingerprint
from .registry import Registry
from .remote import is_remote
from .report.audit_json import audit_to_json
from .report.compare_json import comparison_to_json
from .visible_text import quoted

PathOrFingerprint = Union[str, Path, Any]  # Any: a provenance.fingerprint.Fingerprint


def _as_fingerprint(source: PathOrFingerprint):
    if isinstance(source, Fingerprint):
        return source
    if not isinstance(source, (str, Path)):
        raise UnreadablePathError(None, f"expected a path, URL or Fingerprint, not {type(source).__name__} "
                                        f"{quoted(source)}")
    _require_exists(source)
    return fingerprint_for(source)


def _require_exists(path: str | Path) -> None:
    if isinstance(path, str) and not path.strip():
        raise UnreadablePathError(None, f"an empty path {path!r} names nothing (write '.' for the current folder)")
    if not is_remote(str(path)) and not Path(path).exists() and not Path(path).is_symlink():
        raise UnreadablePathError(path, "no such file or directory")


def fingerprint_model(path: str | Path) -> Fingerprint:
    """The fingerprint of a checkpoint (or the saved fingerprint at `path`): a `Fingerprint`."""
    return _as_fingerprint(path)


def compare_models(candidate: PathOrFingerprint, reference: PathOrFingerprint) -> Comparison:
    """Whether `candidate`'s weights come from `reference`: a `Comparison` (`.verdict` is one of identical,
    derived, assembled, same-architecture, unrelated; `.abstained`, `.confidence`, `.evidence`, `.layers`:
    `LayerMatch` rows)."""
    return compare_fingerprints(_as_fingerprint(candidate), _as_fingerprint(reference))


def audit_model(candidate: PathOrFingerprint, refs: str | Path | Any | None = None, include_builtin: bool = True,
                hash_files: bool = False) -> AuditResult:
    """`candidate` against the built-in references and, with `refs`, a reference database (a path that must
    exist, or an open `Registry`): an `AuditResult`, which reads as the `AuditRow` list, most serious explanation
    first. `hash_files` also takes the sha256 of the candidate's files, for a report's reproducibility section."""
    if not (refs is None or isinstance(refs, (str, Path, Registry))):
        raise UnreadablePathError(None, f"refs must be a database path or a Registry, not {type(refs).__name__}")
    if isinstance(refs, str) and not refs.strip():
        raise UnreadablePathError(None, "refs is an empty path")
    fp = _as_fingerprint(candidate)
    if refs is None or isinstance(refs, Registry):
        return run_audit(fp, refs, include_builtin=include_builtin, candidate_path=_label(candidate, fp),
                         hash_files=hash_files)
    with Registry(refs, create=False) as registry:
        return run_audit(fp, registry, include_builtin=include_builtin, candidate_path=_label(candidate, fp),
                         hash_files=hash_files)


def compare_json(candidate: PathOrFingerprint, reference: PathOrFingerprint) -> dict[str, Any]:
    """The `provenance compare --json` object (schema provenance.compare/1)."""
    cand, ref = _as_fingerprint(candidate), _as_fingerprint(reference)
    return comparison_to_json(_label(candidate, cand), cand, _label(reference, ref), ref, compare_fingerprints(cand, ref))


def audit_json(candidate: PathOrFingerprint, refs: str | Path | Any | None = None, include_builtin: bool = True
               ) -> dict[str, Any]:
    """The `provenance audit --json` object (schema provenance.audit/1)."""
    return audit_to_json(audit_model(candidate, refs, include_builtin=include_builtin))


def _label(source: PathOrFingerprint, fp) -> str:
    """The path a JSON object names: the one given, or the fingerprint's recorded source."""
    if isinstance(source, (str, Path)):
        return str(source)
    return str(fp.source.path or "<fingerprint>")


def _renamed(old: str, new: str) -> None:
    warnings.warn(f"provenance.api.{old} is deprecated: call provenance.{new} (provenance.{old} is the subpackage)",
                  DeprecationWarning, stacklevel=3)


def fingerprint(path: str | Path) -> Fingerprint:
    """Deprecated name of `fingerprint_model`."""
    _renamed("fingerprint", "fingerprint_model")
    return fingerprint_model(path)


def compare(candidate: PathOrFingerprint, reference: PathOrFingerprint) -> Comparison:
    """Deprecated name of `compare_models`."""
    _renamed("compare", "compare_models")
    return compare_models(candidate, reference)


def audit(candidate: PathOrFingerprint, refs: str | Path | Any | None = None, include_builtin: bool = True,
          hash_files: bool = False) -> AuditResult:
    """Deprecated name of `audit_model`."""
    _renamed("audit", "audit_model")
    return audit_model(candidate, refs, include_builtin=include_builtin, hash_files=hash_files)
