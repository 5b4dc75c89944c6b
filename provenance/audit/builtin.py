"""The built-in references shipped in `provenance/references/`: weight fingerprints and JSON reference data."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from ..errors import CorruptFileError
from ..fingerprint import Fingerprint, load_fingerprint
from ..hashing import sha256_file


def reference_file(name: str):
    """A package data file of `provenance/references/` (an importlib.resources Traversable)."""
    return resources.files("provenance") / "references" / name


def reference_data(name: str, schema: str, what: str) -> dict[str, Any]:
    """A JSON data file of `provenance/references/`, checked to be a `schema` object (`what` names it in errors)."""
    entry = reference_file(name)
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptFileError(str(entry), f"cannot read the {what}: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != schema:
        raise CorruptFileError(str(entry), f"not a {schema} file")
    return data


def builtin_references() -> Iterator[tuple[str, Fingerprint]]:
    yield from _builtin_reference_set()


@lru_cache(maxsize=1)
def _builtin_reference_set() -> tuple[tuple[str, Fingerprint], ...]:
    """Read once per process: a `provenance scan` worker audits many candidates against the same set."""
    folder = resources.files("provenance") / "references"
    loaded = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".fp.safetensors"):
            with resources.as_file(entry) as path:
                loaded.append((entry.name.removesuffix(".fp.safetensors"), load_fingerprint(Path(path))))
    return tuple(loaded)


@lru_cache(maxsize=1)
def builtin_file_hashes() -> tuple[dict[str, str], ...]:
    """sha256 of every file in provenance/references/ (fingerprints, and any other reference data there)."""
    folder = resources.files("provenance") / "references"
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_file() and not entry.name.startswith((".", "__")) and not entry.name.endswith(".py"):
            with resources.as_file(entry) as path:
                found.append({"name": entry.name, "sha256": sha256_file(Path(path))})
    return tuple(found)
