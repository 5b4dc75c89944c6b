"""The fingerprint file: a safetensors file of arrays plus one JSON metadata string.

Layout (schema `provenance.fingerprint/1`):
- `__metadata__["provenance"]`: JSON with `schema`, `tool_version`, `created`,
  `source` (path, format, files with sizes and sha256), `architecture`,
  `family`, `tensors` (per canonical key: shape, stored dtype, sha256 of the
  float32 values, summary statistics, stored name), `renamed_tensors`,
  `vocabulary` (kind, size, hashes, special tokens, anchor token strings);
- arrays: `sketch/<key>` (float32 values at shape-seeded positions; 1-D
  tensors whole), `units/<layer>/<role>` (float16 per-unit signatures of MLP
  rows/columns), `anchors/<role>` (float16 embedding rows of anchor tokens).

safetensors keeps the file free of code (no pickle) and lets us reuse the
validated header reader. Writes are atomic: a temporary file renamed over
the target, so a killed run leaves the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, UnsupportedError

FINGERPRINT_SCHEMA = "provenance.fingerprint/1"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Fingerprint:
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def architecture(self) -> dict[str, Any]:
        return self.meta["architecture"]

    @property
    def tensors(self) -> dict[str, dict[str, Any]]:
        return self.meta["tensors"]

    def array(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        try:
            arrays = {k: np.ascontiguousarray(v) for k, v in self.arrays.items()}
            save_file(arrays, temporary, metadata={"provenance": json.dumps(self.meta, sort_keys=True)})
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path


def is_fingerprint_file(path: Path) -> bool:
    """A safetensors file whose metadata says it is a provenance fingerprint."""
    from ..formats.safetensors_format import read_safetensors_header

    if not path.is_file() or not path.name.endswith((".safetensors", ".fp", ".fingerprint")):
        return False
    try:
        _, metadata = read_safetensors_header(path)
    except Exception:
        return False
    return "provenance" in metadata


def load_fingerprint(path: str | Path) -> Fingerprint:
    from safetensors.numpy import load_file

    from ..formats.safetensors_format import read_safetensors_header

    path = Path(path)
    _, metadata = read_safetensors_header(path)
    raw = metadata.get("provenance")
    if raw is None:
        raise CorruptFileError(path, "not a provenance fingerprint (no 'provenance' metadata)")
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise CorruptFileError(path, f"fingerprint metadata is not valid JSON: {exc}") from exc
    schema = meta.get("schema") if isinstance(meta, dict) else None
    if not isinstance(schema, str) or not schema.startswith("provenance.fingerprint/"):
        raise CorruptFileError(path, f"fingerprint metadata has schema {schema!r}, expected {FINGERPRINT_SCHEMA}")
    try:
        version = int(schema.rsplit("/", 1)[1])
    except ValueError as exc:
        raise CorruptFileError(path, f"fingerprint schema {schema!r} has no version number") from exc
    if version > SCHEMA_VERSION:
        raise UnsupportedError(path, f"fingerprint schema version {version} is newer than this tool reads ({SCHEMA_VERSION}); upgrade provenance")
    for key in ("architecture", "tensors", "source"):
        if not isinstance(meta.get(key), dict):
            raise CorruptFileError(path, f"fingerprint metadata lacks its {key!r} section")
    try:
        arrays = load_file(str(path))
    except Exception as exc:
        raise CorruptFileError(path, f"fingerprint arrays cannot be read: {exc}") from exc
    return Fingerprint(meta=meta, arrays=arrays)
