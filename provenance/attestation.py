"""`audit --attest OUT.json` and `provenance verify OUT.json PATH`: an audit others can check.

The attestation is an in-toto Statement v1 (the in-toto Attestation
Framework, spec/v1/statement.md): `subject` lists the candidate's files with
their sha256 digests, `predicate` what the audit found: the references
compared (name, repository, revision, sha256 of the fingerprint compared),
the verdict, the declared-versus-detected lineage, the decisive evidence of
the best match and the tool version. It is unsigned: `cosign attest
--predicate` or a sigstore client signs it (a DSSE envelope) where keys live.
Its JSON Schema is `schemas/attestation.schema.json`.

`verify` re-hashes the files under PATH against the subjects (a changed,
missing or added file fails), then audits PATH again against the same
references and fails when the verdict, the best reference, the lineage
result or a reference's fingerprint differ from what was attested.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from . import __version__
from .atomic_files import replacing
from .audit.lineage_check import hub_id
from .errors import CorruptFileError, ProvenanceError, UnreadablePathError
from .hashing import sha256_file

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
# A TypeURI naming this predicate (the in-toto spec asks for a URI the producer controls; it is never fetched).
PREDICATE_TYPE = "urn:provenance:attestation:audit:v1"
PREDICATE_SCHEMA = "provenance.attestation/1"
MAX_SUBJECT_FILES = 10_000  # a model folder holds tens of files; more means PATH is not one model


class VerificationError(ProvenanceError):
    """An attestation does not hold for the files or the audit as they are now."""


def subject_files(path: str | Path) -> list[Path]:
    """The files an attestation covers: PATH itself, or every regular file under the folder PATH (hidden ones
    such as .cache/ left out: tools write there), sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UnreadablePathError(path, "no such file or directory")
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if len(files) > MAX_SUBJECT_FILES:
        raise UnreadablePathError(path, f"holds more than {MAX_SUBJECT_FILES} files; attest one model folder")
    return files


def _subject_name(path: Path, root: Path) -> str:
    return path.name if root.is_file() else path.relative_to(root).as_posix()


def subjects(path: str | Path) -> list[dict[str, Any]]:
    """in-toto ResourceDescriptors of the candidate's files: name (relative to PATH) and sha256 digest."""
    root = Path(path)
    return [{"name": _subject_name(f, root), "digest": {"sha256": sha256_file(f)}} for f in subject_files(root)]


def fingerprint_sha256(fingerprint) -> str:
    """sha256 over a fingerprint's metadata (canonical JSON) and its arrays (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(fingerprint.metadata_json().encode())
    for name in sorted(fingerprint.arrays):
        array = fingerprint.arrays[name]
        digest.update(f"\n{name}:{array.dtype.str}:{list(array.shape)}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _reference_fingerprints(audit, registry) -> dict[str, Any]:
    """The fingerprint of every weights row's reference, by name (built-in ones, then the database's)."""
    # lazy: the built-in references load numpy-backed fingerprints, only for an attestation
    from .audit.builtin import builtin_references

    found = {name: fp for name, fp in builtin_references()}
    for row in audit.rows:
        if row.kind == "weights" and not row.origin.startswith("built-in") and registry is not None:
            found[row.reference] = registry.fingerprint(row.reference)
    return found


def _revision(fingerprint) -> str | None:
    """The hub revision a reference was synced at (refs sync records the commit), if any."""
    if fingerprint is None:
        return None
    hub = fingerprint.source.hub
    if isinstance(hub, dict):
        value = hub.get("commit") or hub.get("revision")
        return str(value) if value else None
    path = fingerprint.source.path
    if isinstance(path, str) and path.startswith("hf://") and "@" in path:
        return path.rsplit("@", 1)[1]
    return None


def _absolute(database: dict[str, Any] | None) -> dict[str, Any] | None:
    """The database as recorded, its path made absolute so `verify` finds it from any folder."""
    if not database or not isinstance(database.get("path"), str):
        return database
    return {**database, "path": str(Path(database["path"]).resolve())}


def build_statement(audit, report: dict[str, Any], candidate_path: str, registry=None,
                    include_builtin: bool = True) -> dict[str, Any]:
    """The in-toto Statement of one audit (`run_audit`'s result and its `audit_to_json` report)."""
    return {"_type": STATEMENT_TYPE, "subject": subjects(candidate_path), "predicateType": PREDICATE_TYPE,
            "predicate": build_predicate(audit, report, candidate_path, registry, include_builtin)}


def build_predicate(audit, report: dict[str, Any], candidate_path: str, registry=None,
                    include_builtin: bool = True) -> dict[str, Any]:
    """What the audit found, as the attestation states it; `registry` is the database the audit read."""
    fingerprints = _reference_fingerprints(audit, registry)
    references = []
    for row in audit.rows:
        fp = fingerprints.get(row.reference) if row.kind == "weights" else None
        repo, known = hub_id(row)
        references.append({"name": row.reference, "origin": row.origin, "kind": row.kind,
                           "repo": repo if known else None, "revision": _revision(fp),
                           "fingerprint_sha256": fingerprint_sha256(fp) if fp is not None else None,
                           "verdict": row.result.verdict, "abstained": row.result.abstained,
                           "confidence": row.result.confidence})
    best = audit.best_match.row if audit.best_match is not None else None
    decisive = [e.to_dict() for e in best.result.evidence if e.decisive] if best is not None else []
    return {
        "schema": PREDICATE_SCHEMA,
        "tool": {"name": "provenance", "version": __version__, **{k: v for k, v in audit.reproducibility.tool.items()
                                                                 if k != "version"}},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "candidate": {"path": candidate_path, "format": report["candidate"].get("format"),
                      "architecture": report["candidate"].get("architecture")},
        "verdict": report["verdict"], "best_reference": report["best_reference"], "summary": report["summary"],
        "lineage": report.get("lineage"),
        "references": references,
        "decisive_evidence": decisive,
        "audit": {"builtin": include_builtin, "database": _absolute(report.get("database"))},
    }


def write_statement(out: str | Path, statement: dict[str, Any]) -> Path:
    """Write the statement atomically (a killed run leaves the old file or none)."""
    out = Path(out)
    with replacing(out) as temporary:
        temporary.write_text(json.dumps(statement, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def read_statement(path: str | Path) -> dict[str, Any]:
    """An attestation written by `audit --attest`, checked for the fields `verify` needs (one-line errors)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(path, f"not a JSON attestation: {exc}") from exc
    if not isinstance(data, dict) or data.get("_type") != STATEMENT_TYPE:
        raise CorruptFileError(path, f"not an in-toto Statement v1 (_type must be {STATEMENT_TYPE})")
    if data.get("predicateType") != PREDICATE_TYPE or not isinstance(data.get("predicate"), dict):
        raise CorruptFileError(path, f"not a provenance attestation (predicateType must be {PREDICATE_TYPE})")
    subject = data.get("subject")
    if not isinstance(subject, list) or not subject or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("digest"), dict)
            and isinstance(s["digest"].get("sha256"), str) for s in subject):
        raise CorruptFileError(path, "subject must be a non-empty list of {name, digest: {sha256}}")
    return data


def check_files(statement: dict[str, Any], path: str | Path, itself: str | Path | None = None) -> list[str]:
    """What differs between the attested files and the files under PATH now (empty: all the same); `itself`,
    the attestation's own file, is left out when it lies under PATH."""
    skip = Path(itself).resolve() if itself is not None else None
    root = Path(path)
    now = {_subject_name(f, root): sha256_file(f) for f in subject_files(root) if f.resolve() != skip}
    then = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    problems = [f"{name} changed (sha256 {now[name][:12]}..., attested {then[name][:12]}...)"
                for name in sorted(then) if name in now and now[name] != then[name]]
    problems += [f"{name} is missing" for name in sorted(set(then) - set(now))]
    problems += [f"{name} was not attested" for name in sorted(set(now) - set(then))]
    return problems


def check_audit(statement: dict[str, Any], again: dict[str, Any]) -> list[str]:
    """What differs between the attested predicate and a fresh one (`build_statement`'s predicate)."""
    then = statement["predicate"]
    problems = []
    for key in ("verdict", "best_reference"):
        if then.get(key) != again.get(key):
            problems.append(f"{key} is now {again.get(key)!r}, attested {then.get(key)!r}")
    old = (then.get("lineage") or {}).get("result")
    new = (again.get("lineage") or {}).get("result")
    if old != new:
        problems.append(f"lineage result is now {new!r}, attested {old!r}")
    attested = {r.get("name"): r.get("fingerprint_sha256") for r in then.get("references") or [] if isinstance(r, dict)}
    for ref in again.get("references") or []:
        before = attested.get(ref["name"])
        if before and ref["fingerprint_sha256"] and before != ref["fingerprint_sha256"]:
            problems.append(f"reference {ref['name']} has another fingerprint than the one attested")
    return problems
