"""The reference database: fingerprints of known models in one SQLite file.

Default location: `$PROVENANCE_REFS`, else `$XDG_DATA_HOME/provenance/refs.sqlite`
(`~/.local/share/provenance/refs.sqlite`). SQLite in WAL mode gives what a
shared database needs: readers never block the writer, each `add` or `remove`
is one transaction (a killed process leaves no half-written entry), and a busy
timeout lets two audits and an `add` run at once. Every change bumps the
database's `revision`, which reports cite for reproducibility.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .errors import CorruptFileError, ProvenanceError, UnsupportedError

DB_SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000


class RegistryError(ProvenanceError):
    """A reference database problem (missing name, duplicate name, corrupt file)."""


def default_path() -> Path:
    if os.environ.get("PROVENANCE_REFS"):
        return Path(os.environ["PROVENANCE_REFS"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "provenance" / "refs.sqlite"


@dataclass(frozen=True)
class ReferenceEntry:
    name: str
    kind: str  # "weights" or "architecture"
    family: str | None
    architecture: dict[str, Any]
    source: dict[str, Any]
    tool_version: str
    schema: str
    added: str
    size: int


def fingerprint_to_bytes(fingerprint) -> bytes:
    from safetensors.numpy import save

    arrays = {k: v for k, v in fingerprint.arrays.items()}
    return save(arrays, metadata={"provenance": json.dumps(fingerprint.meta, sort_keys=True)})


def fingerprint_from_bytes(data: bytes, where: str):
    """Parse a stored fingerprint, validating its header like any untrusted file."""
    import tempfile

    from .fingerprint.store import load_fingerprint

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as handle:
        handle.write(data)
        handle.flush()
        try:
            return load_fingerprint(handle.name)
        except ProvenanceError as exc:
            raise CorruptFileError(where, exc.problem) from exc


class Registry:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise CorruptFileError(self.path, f"not a usable reference database: {exc}") from exc

    def _init_schema(self) -> None:
        with self._transaction():
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("""CREATE TABLE IF NOT EXISTS refs (
                name TEXT PRIMARY KEY, kind TEXT NOT NULL, family TEXT, architecture TEXT NOT NULL,
                source TEXT NOT NULL, tool_version TEXT NOT NULL, schema TEXT NOT NULL, added TEXT NOT NULL,
                fingerprint BLOB)""")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(DB_SCHEMA_VERSION),))
                self._db.execute("INSERT INTO meta VALUES ('revision', '0')")
            elif int(row[0]) > DB_SCHEMA_VERSION:
                raise UnsupportedError(self.path, f"reference database schema {row[0]} is newer than this tool reads ({DB_SCHEMA_VERSION})")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _bump(self) -> None:
        self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")

    @property
    def revision(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])

    def add(self, name: str, fingerprint, replace: bool = False) -> ReferenceEntry:
        if not name or len(name) > 200:
            raise RegistryError(self.path, f"reference name {name!r} must be 1-200 characters")
        blob = fingerprint_to_bytes(fingerprint)
        meta = fingerprint.meta
        entry = (name, "weights", (meta.get("family") or {}).get("name"), json.dumps(meta["architecture"]),
                 json.dumps(meta["source"]), meta.get("tool_version", __version__), meta["schema"],
                 dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), blob)
        with self._transaction():
            exists = self._db.execute("SELECT 1 FROM refs WHERE name = ?", (name,)).fetchone()
            if exists and not replace:
                raise RegistryError(self.path, f"a reference named {name!r} already exists (remove it first)")
            self._db.execute("INSERT OR REPLACE INTO refs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", entry)
            self._bump()
        return self.entry(name)

    def remove(self, name: str) -> None:
        with self._transaction():
            if self._db.execute("DELETE FROM refs WHERE name = ?", (name,)).rowcount == 0:
                raise RegistryError(self.path, f"no reference named {name!r}")
            self._bump()

    def _row_to_entry(self, row) -> ReferenceEntry:
        name, kind, family, arch, source, tool, schema, added, size = row
        return ReferenceEntry(name, kind, family, json.loads(arch), json.loads(source), tool, schema, added, size or 0)

    def entries(self) -> list[ReferenceEntry]:
        rows = self._db.execute("SELECT name, kind, family, architecture, source, tool_version, schema, added, "
                                "length(fingerprint) FROM refs ORDER BY name").fetchall()
        return [self._row_to_entry(r) for r in rows]

    def entry(self, name: str) -> ReferenceEntry:
        row = self._db.execute("SELECT name, kind, family, architecture, source, tool_version, schema, added, "
                               "length(fingerprint) FROM refs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise RegistryError(self.path, f"no reference named {name!r}")
        return self._row_to_entry(row)

    def fingerprint(self, name: str):
        row = self._db.execute("SELECT fingerprint FROM refs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise RegistryError(self.path, f"no reference named {name!r}")
        return fingerprint_from_bytes(bytes(row[0]), f"{self.path}#{name}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
