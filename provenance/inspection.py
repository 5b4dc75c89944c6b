"""`provenance inspect`: what a checkpoint is, as a plain dictionary (JSON-ready)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .formats.lineage import lineage_claims
from .hashing import sha256_file
from .model import Checkpoint

SCHEMA = "provenance.inspect/1"


def inspect_checkpoint(checkpoint: Checkpoint, hash_files: bool = True) -> dict[str, Any]:
    files = checkpoint.files
    stored_dtype = {info.name: info.dtype for info in checkpoint.infos}
    roles = []
    for a in sorted(checkpoint.roles.assignments, key=lambda a: (a.key.sort_key(), a.source)):
        entry = {
            "role": a.key.name, "label": a.key.label, "tensor": a.source, "shape": list(a.shape),
            "stored_dtype": stored_dtype.get(a.source), "how": a.how, "confidence": a.confidence,
            "transform": a.transform.describe(),
        }
        if a.how == "inferred":
            entry["candidates"] = list(a.candidates)
            entry["reason"] = a.reason
        roles.append(entry)
    metadata = checkpoint.metadata() if checkpoint.format == "gguf" else None
    file_entries = []
    for path in files.all_files():
        entry: dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size}
        if hash_files:
            entry["sha256"] = sha256_file(path)
        file_entries.append(entry)
    dtypes = Counter(info.dtype for info in checkpoint.infos)
    return {
        "schema": SCHEMA,
        "path": str(checkpoint.path),
        "format": checkpoint.format,
        "files": file_entries,
        "family": {"name": checkpoint.roles.family, "spelling_table": checkpoint.roles.spelling,
                   "reason": checkpoint.roles.family_reason},
        "architecture": checkpoint.architecture.to_dict(),
        "tensors": {"count": len(checkpoint.infos), "bytes": sum(i.nbytes for i in checkpoint.infos),
                    "parameters": sum(i.numel for i in checkpoint.infos), "dtypes": dict(dtypes)},
        "roles": roles,
        "renamed_tensors": [{"tensor": r.stored, "standard": r.standard, "role": r.role, "used_by": r.used_by}
                            for r in checkpoint.roles.renamed],
        "inferred_count": len(checkpoint.roles.inferred),
        "ignored_tensors": checkpoint.roles.ignored,
        "unmapped_tensors": checkpoint.roles.unmapped,
        "lineage_claims": [{"where": c.where, "value": c.value, "verified": c.verified}
                           for c in lineage_claims(files.config, files.model_card, metadata, files.lineage_paths)],
        "tokenizer_files": sorted(files.tokenizer_paths),
        "notes": list(files.notes),
    }


def describe_fingerprint(path: str, fingerprint) -> dict[str, Any]:
    """`provenance inspect` of a saved fingerprint file: what it was made from, never read as a checkpoint."""
    meta = fingerprint.meta
    source = meta.get("source") or {}
    vocabulary = meta.get("vocabulary") or {}
    return {
        "schema": SCHEMA,
        "kind": "fingerprint",
        "path": str(path),
        "format": "provenance-fingerprint",
        "fingerprint": {"schema": meta.get("schema"), "tool_version": meta.get("tool_version"),
                        "created": meta.get("created"), "variant": meta.get("variant", "full"),
                        "arrays": len(fingerprint.arrays), "array_bytes": fingerprint.nbytes()},
        "source": {"path": source.get("path"), "format": source.get("format"), "files": source.get("files") or []},
        "family": {"name": (meta.get("family") or {}).get("name"), "reason": (meta.get("family") or {}).get("reason")},
        "architecture": fingerprint.architecture,
        "tensors": {"canonical": len(fingerprint.tensors), "stored": len(meta.get("stored_tensors") or {})},
        "vocabulary": {"kind": vocabulary.get("kind"), "size": vocabulary.get("size")} if vocabulary else None,
        "renamed_tensors": meta.get("renamed_tensors") or [],
        "lineage_claims": [{"where": c.get("where"), "value": c.get("value"), "verified": False}
                           for c in meta.get("lineage_claims") or [] if isinstance(c, dict)],
        "notes": list(meta.get("notes") or []),
    }
