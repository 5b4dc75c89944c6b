"""Typed views of a fingerprint's metadata: what the comparison reads, as frozen records.

`TensorRecord` is one tensor's record (shape, stored dtype, value hash,
summary statistics, stored name) and `architecture_of` the architecture as
`architectures.descriptor.Architecture`. They are made from the metadata
`store.py` read and checked (`load_fingerprint`), or that the builder
returned, and never written: the file's layout is `store.py`'s alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

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


def tensor_records(tensors: Mapping[str, Mapping[str, Any]]) -> dict[str, TensorRecord]:
    """Every tensor's typed record, in the metadata's order."""
    return {key: tensor_record(record) for key, record in tensors.items()}


def architecture_of(architecture: Mapping[str, Any]) -> Architecture:
    """The metadata's `architecture` section as an `Architecture` (fields it leaves out take their defaults)."""
    values = {k: v for k, v in architecture.items() if k in ARCHITECTURE_FIELDS}
    if "disagreements" in values:
        values["disagreements"] = tuple(values["disagreements"] or ())
    return Architecture(**values)
