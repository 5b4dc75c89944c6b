"""Typed views of a fingerprint's metadata: what every reader outside fingerprint/ reads, as frozen records.

`TensorRecord` is one tensor's record (shape, stored dtype, value hash,
summary statistics, stored name), `StoredRecord` one stored tensor's hash and
size, `VocabularyRecord` what a fingerprint keeps of the tokenizer,
`architecture_of` the architecture as `architectures.descriptor.Architecture`,
`SourceRecord` what it was made from (path, format, files, hub pin),
`FamilyRecord` the family and why, `RenamedTensor` and `LineageClaim` the
renamed tensors and the files' claims, `MadeRecord` how it was made (schema,
tool version, date, variant, a remote reading's transfers) and
`GenericSection` the generic view's records (checked as read). `Fingerprint`
(`store.py`) gives each as a property. They are made from the metadata
`store.py` read and checked (`load_fingerprint`), or that the builder
returned, and never written: the file's layout is `store.py`'s alone, and
outside fingerprint/ nothing reads the metadata as a dictionary
(`tests/test_structure_fingerprint.py`).

Records are keyed by the canonical name as a string, not by
`architectures.roles.CanonicalKey`: a generic fingerprint's keys
(`layers.N.ROLE.weight@NAME`) and unplaced tensors' keys (`ROLE.weight@tNNN`)
are no `CanonicalKey`, the saved file and the JSON outputs spell keys as
strings, and the signals look records up by `key_name(...)`. A reader that
needs the parts parses the key (`CanonicalKey.parse`, None for those others).
Some fields stay as recorded, plain values inside the frozen record
(`TensorRecord.stats`, `SourceRecord.files`, `MadeRecord.remote`): outputs
print them as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterator, Mapping

from ..architectures.descriptor import Architecture

ARCHITECTURE_FIELDS = frozenset(spec.name for spec in fields(Architecture))


@dataclass(frozen=True)
class TensorRecord:
    """One tensor of a fingerprint, under its canonical name (or a generic fingerprint's own key)."""

    shape: tuple[int, ...]
    dtype: str | None = None  # the stored dtype ("BF16", "F32", "Q4_K", ...)
    sha256: str | None = None  # the value hash (XXH3-128 of the values since schema 2; the name is historical)
    stats: Mapping[str, float] = field(default_factory=dict)  # summary statistics: numel, mean, std, skew, kurtosis, ... (read only)
    source: str | None = None  # the stored tensor's name in the checkpoint

    @property
    def numel(self) -> int:
        return int(self.stats.get("numel", 0))


def tensor_record(record: Mapping[str, Any]) -> TensorRecord:
    """The typed record of one entry of the metadata's `tensors` section."""
    return TensorRecord(tuple(record.get("shape") or ()), record.get("dtype"), record.get("sha256"),
                        dict(record.get("stats") or {}), record.get("source"))


@dataclass(frozen=True)
class StoredRecord:
    """One tensor as the checkpoint stores it (before fused tensors are split): its value hash and size."""

    sha256: str | None
    numel: int = 0


def stored_records(stored: Mapping[str, Mapping[str, Any]] | None) -> dict[str, StoredRecord]:
    """The metadata's `stored_tensors` section, typed (empty when the fingerprint has none)."""
    return {name: StoredRecord(record.get("sha256"), int(record.get("numel", 0))) for name, record in (stored or {}).items()}


def tensor_records(tensors: Mapping[str, Mapping[str, Any]]) -> dict[str, TensorRecord]:
    """Every tensor's typed record, in the metadata's order."""
    return {key: tensor_record(record) for key, record in tensors.items()}


@dataclass(frozen=True)
class VocabularyRecord:
    """What a fingerprint keeps of its tokenizer: no tokens, but hashes, a MinHash and the anchor tokens' strings."""

    kind: str | None = None
    size: int | None = None
    vocab_sha256: str | None = None
    merges_sha256: str | None = None
    special_tokens: tuple[str, ...] = ()
    source: str | None = None
    minhash: tuple[int, ...] = ()  # MinHash of the set of token strings (`fingerprint.parts.minhash`)
    anchor_tokens: tuple[str, ...] = ()  # the strings of the anchor tokens whose rows `anchors/` holds, in order
    anchor_ids: tuple[int, ...] | None = None  # their token ids, in the same order (None in files made before them)

    def to_dict(self) -> dict[str, Any]:
        """The record as plain values (lists for tuples), for the tokenizer matching and the reports."""
        out = {"kind": self.kind, "size": self.size, "vocab_sha256": self.vocab_sha256,
               "merges_sha256": self.merges_sha256, "special_tokens": list(self.special_tokens), "source": self.source,
               "minhash": list(self.minhash), "anchor_tokens": list(self.anchor_tokens)}
        if self.anchor_ids is not None:
            out["anchor_ids"] = list(self.anchor_ids)
        return out


def vocabulary_of(vocabulary: Mapping[str, Any] | None) -> VocabularyRecord | None:
    """The metadata's `vocabulary` section, typed; None when the fingerprint has none."""
    if not vocabulary:
        return None
    return VocabularyRecord(vocabulary.get("kind"), vocabulary.get("size"), vocabulary.get("vocab_sha256"),
                            vocabulary.get("merges_sha256"), tuple(vocabulary.get("special_tokens") or ()),
                            vocabulary.get("source"), tuple(vocabulary.get("minhash") or ()),
                            tuple(vocabulary.get("anchor_tokens") or ()),
                            tuple(int(i) for i in ids) if isinstance(ids := vocabulary.get("anchor_ids"), list) else None)


def architecture_of(architecture: Mapping[str, Any]) -> Architecture:
    """The metadata's `architecture` section as an `Architecture` (fields it leaves out take their defaults)."""
    values = {k: v for k, v in architecture.items() if k in ARCHITECTURE_FIELDS}
    if "disagreements" in values:
        values["disagreements"] = tuple(values["disagreements"] or ())
    return Architecture(**values)


@dataclass(frozen=True)
class SourceRecord:
    """What a fingerprint was made from: the checkpoint's path and format, its files (name, bytes, sha256 when
    known, as recorded), and the hub repository and commit `refs sync` pinned it at (None elsewhere)."""

    path: str | None = None
    format: str | None = None
    files: tuple[dict[str, Any], ...] = ()
    hub: dict[str, Any] | None = None


def source_of(source: Mapping[str, Any] | None) -> SourceRecord:
    """The metadata's `source` section, typed (an empty record when it is missing or not an object)."""
    if not isinstance(source, Mapping):
        return SourceRecord()
    hub = source.get("hub")
    return SourceRecord(source.get("path"), source.get("format"), tuple(source.get("files") or ()),
                        hub if isinstance(hub, dict) else None)


@dataclass(frozen=True)
class FamilyRecord:
    """The model family the roles were read as, and why (None when no family table applied)."""

    name: str | None = None
    reason: str | None = None


def family_of(family: Mapping[str, Any] | None) -> FamilyRecord:
    """The metadata's `family` section, typed."""
    if not isinstance(family, Mapping):
        return FamilyRecord()
    return FamilyRecord(family.get("name"), family.get("reason"))


@dataclass(frozen=True)
class RenamedTensor:
    """A stored tensor read under a standard name it does not carry (`architectures/` renames)."""

    tensor: str | None
    standard: str | None
    role: str | None

    def to_dict(self) -> dict[str, Any]:
        """As the metadata records it (keys sorted, as saved)."""
        return {"role": self.role, "standard": self.standard, "tensor": self.tensor}


def renamed_of(renamed: Any) -> tuple[RenamedTensor, ...]:
    """The metadata's `renamed_tensors` section, typed (entries that are not objects are left out)."""
    return tuple(RenamedTensor(r.get("tensor"), r.get("standard"), r.get("role"))
                 for r in renamed or () if isinstance(r, Mapping))


@dataclass(frozen=True)
class LineageClaim:
    """What a checkpoint's files claim about its origin (unverified): where the claim is, and its value."""

    where: Any
    value: Any


def lineage_claims_of(claims: Any) -> tuple[LineageClaim, ...] | None:
    """The metadata's `lineage_claims` section, typed; None for a fingerprint made before it existed."""
    if not isinstance(claims, list):
        return None
    return tuple(LineageClaim(c.get("where"), c.get("value")) for c in claims or () if isinstance(c, Mapping))


@dataclass(frozen=True)
class MadeRecord:
    """How a fingerprint was made: its schema, the tool's version, when, the variant ("full", or "remote": row
    blocks read by range), and a remote reading's transfer report (bytes read, fraction of the checkpoint)."""

    schema: str | None = None
    tool_version: str | None = None
    created: str | None = None
    variant: str = "full"
    remote: dict[str, Any] = field(default_factory=dict)


def made_of(meta: Mapping[str, Any]) -> MadeRecord:
    """How the fingerprint whose metadata is `meta` was made, typed."""
    remote = meta.get("remote")
    return MadeRecord(meta.get("schema"), meta.get("tool_version"), meta.get("created"),
                      meta.get("variant", "full"), remote if isinstance(remote, dict) else {})


class RecordError(ValueError):
    """A section of the metadata does not hold what its typed record needs (the message says what)."""


GENERIC_MAX_DIMS = 8  # dimensions of a generic tensor record's shape


@dataclass(frozen=True)
class GenericTensorRecord:
    """One stored tensor of the generic view (`fingerprint/generic.py`): its shape, stored dtype and its order
    among the stored tensors."""

    shape: tuple[int, ...]
    dtype: str
    order: int


@dataclass(frozen=True)
class GenericSection:
    """The metadata's `generic` section: the share of parameters no role fits, and the generic tensor records.

    As recorded: `records()` checks each record as it is reached (a fingerprint is untrusted), so a comparison
    that never reads the generic view never fails on it.
    """

    unmapped_share: Any = 0.0
    entries: Any = None  # the recorded `tensors` object (None when the section is not an object)

    def records(self) -> Iterator[tuple[str, GenericTensorRecord]]:
        """Each generic tensor's record, by its stored name, in the recorded order; RecordError at a bad one."""
        if not isinstance(self.entries, dict) or not isinstance(self.unmapped_share, (int, float)):
            raise RecordError("fingerprint entry 'generic' is not an object with a 'tensors' object")
        for name, record in self.entries.items():
            shape = record.get("shape") if isinstance(record, dict) else None
            if (not isinstance(shape, list) or len(shape) > GENERIC_MAX_DIMS
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
                    or math.prod(shape) > 1 << 62 or not isinstance(record.get("dtype"), str)
                    or not isinstance(record.get("order"), int)):
                raise RecordError(f"generic tensor record {name[:80]!r} is not an object with a shape, "
                                  "a dtype string and an integer order")
            yield name, GenericTensorRecord(tuple(shape), record["dtype"], record["order"])


def generic_of(entry: Any) -> GenericSection | None:
    """The metadata's `generic` section (None when the fingerprint has none)."""
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        return GenericSection(None, None)
    return GenericSection(entry.get("unmapped_share", 0.0), entry.get("tensors"))
