"""`provenance inspect PATH`: what a checkpoint (or a saved fingerprint) is, without fingerprinting it.

Its output is the `provenance.inspect/1` object (schemas/inspect.schema.json),
built here: `inspect_checkpoint` for a checkpoint, `describe_fingerprint`
for a fingerprint file, which is never read as a checkpoint.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..cli_help import command
from ..gate import EXIT_OK
from ..hashing import sha256_file
from .inputs import require_path, saved_fingerprint
from .options import add_location

if TYPE_CHECKING:
    from ..model import Checkpoint

SCHEMA = "provenance.inspect/1"


def register(commands) -> None:
    parser = command(commands, "inspect", help="describe a checkpoint: format, architecture, tensor roles, claims")
    add_location(parser, "path", "PATH", local_only=True)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--no-hash", action="store_true", help="skip the sha256 of each file (faster on large files)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    args.path = require_path(args.path, remote_ok=False, revision=args.revision)
    saved = saved_fingerprint(args.path)
    if saved is not None:  # a fingerprint file: describe it, never read it as a checkpoint
        # lazy: the terminal renderer, only for inspect
        from ..report.terminal import render_fingerprint

        report = describe_fingerprint(args.path, saved)
        print(json.dumps(report, indent=2) if args.json else render_fingerprint(report))
        return EXIT_OK
    # lazy: the readers load torch
    from ..model import Checkpoint
    from ..report.terminal import render_inspect

    with Checkpoint.open(args.path) as checkpoint:
        report = inspect_checkpoint(checkpoint, hash_files=not args.no_hash)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_inspect(report))
    return EXIT_OK


def inspect_checkpoint(checkpoint: Checkpoint, hash_files: bool = True) -> dict[str, Any]:
    """The `provenance.inspect/1` object of an open checkpoint (JSON-ready)."""
    # lazy: the claim readers load the format readers (torch)
    from ..formats.lineage import lineage_claims

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
    made, source, family, vocabulary = fingerprint.made, fingerprint.source, fingerprint.family, fingerprint.vocabulary
    return {
        "schema": SCHEMA,
        "kind": "fingerprint",
        "path": str(path),
        "format": "provenance-fingerprint",
        "fingerprint": {"schema": made.schema, "tool_version": made.tool_version,
                        "created": made.created, "variant": made.variant,
                        "arrays": len(fingerprint.arrays), "array_bytes": fingerprint.nbytes()},
        "source": {"path": source.path, "format": source.format, "files": list(source.files)},
        "family": {"name": family.name, "reason": family.reason},
        "architecture": fingerprint.architecture,
        "tensors": {"canonical": len(fingerprint.records), "stored": len(fingerprint.stored_records)},
        "vocabulary": {"kind": vocabulary.kind, "size": vocabulary.size} if vocabulary else None,
        "renamed_tensors": [r.to_dict() for r in fingerprint.renamed_tensors],
        "lineage_claims": [{"where": c.where, "value": c.value, "verified": False}
                           for c in fingerprint.lineage_claims or ()],
        "notes": list(fingerprint.notes),
    }
