"""The reference database: fingerprints of known models in one SQLite file.

Default location: `$PROVENANCE_REFS`, else `$XDG_DATA_HOME/provenance/refs.sqlite`
(`~/.local/share/provenance/refs.sqlite`). SQLite in WAL mode gives what a
shared database needs: readers never block the writer, each `add` or `remove`
is one transaction (a killed process leaves no half-written entry), and a busy
timeout lets two audits and an `add` run at once. Opening a database that is
already set up takes no write lock, so an audit never waits for a writer.
Reading never creates a database: `Registry(path, create=False)` refuses a
path where none exists, so a mistyped `--refs` cannot make an audit pass with
an empty reference set. Only writers (`refs add`, `refs import`) create one,
and by default only inside a folder that exists (`parents=True` creates the
folders too). A database whose tables lack the expected columns is refused
with one line instead of failing at the first query.
Every change bumps the database's `revision`, which reports cite for
reproducibility. `add_many` adds several references in one transaction (all
or none); bundles.py uses it to import shared bundles.

Each reference may carry its screening signature (a `SignatureBlob`: version
and byte blobs). The database stores and returns the blobs but never
computes one: the caller passes it in (`add(..., signature=)`, `add_many(...,
signer=)`, computed by provenance/audit/shortlist.py). A reference added
without one, or with an older version, gets it back-filled by its first
screening.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .. import __version__
from ..errors import CorruptFileError, ProvenanceError, UnsupportedError

DB_SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000
# Every table _init_schema creates: a database holding all of them (and a schema
# version) is opened without a write transaction. Add new tables here too.
TABLES = ("meta", "refs", "screening")
MAX_NAME_CHARS = 200
# The columns every query relies on (INSERT ... VALUES lists them in this order).
COLUMNS = {
    "meta": ("key", "value"),
    "refs": ("name", "kind", "family", "architecture", "source", "tool_version", "schema", "added", "fingerprint"),
    "screening": ("name", "version", "added", "size", "vectors", "hashes", "keys"),
}


class RegistryError(ProvenanceError):
    """A reference database problem (missing name, duplicate name, corrupt file)."""


def default_path() -> Path:
    if os.environ.get("PROVENANCE_REFS"):
        return Path(os.environ["PROVENANCE_REFS"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "provenance" / "refs.sqlite"


@dataclass(frozen=True)
class SignatureBlob:
    """A reference's screening signature as stored: its version and the byte blobs of its parts."""

    version: int
    vectors: bytes
    hashes: bytes
    keys: str  # JSON


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


BLOB_PIECE = 1 << 24  # bytes of a fingerprint written into the database at a time


def fingerprint_to_bytes(fingerprint) -> bytes:
    return fingerprint.file_bytes()


class _Blob:
    """A fingerprint's file bytes in an unnamed temporary file, copied into the database in pieces."""

    def __init__(self, fingerprint):
        self.handle = tempfile.TemporaryFile(prefix="provenance-blob-")
        self.size = fingerprint.write_file(self.handle)

    def __len__(self) -> int:
        return self.size

    def pieces(self) -> Iterator[bytes]:
        self.handle.seek(0)
        while piece := self.handle.read(BLOB_PIECE):
            yield piece

    def whole(self) -> bytes:
        return b"".join(self.pieces())


def fingerprint_from_bytes(data: bytes, where: str):
    """Parse a stored fingerprint, validating its header like any untrusted file."""
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as handle:
        handle.write(data)
        handle.flush()
        return fingerprint_from_file(handle.name, where)


def fingerprint_from_file(path: str, where: str):
    """Parse a stored fingerprint copied to `path`, its errors named after `where` (the database entry)."""
    # lazy: the fingerprint package loads numpy and torch, which refs list and refs remove do not need
    from ..fingerprint.store import load_fingerprint

    try:
        return load_fingerprint(path)
    except ProvenanceError as exc:
        raise CorruptFileError(where, exc.problem) from exc


class Registry:
    def __init__(self, path: str | Path | None = None, create: bool = True, parents: bool = True):
        """Open the database at `path` (default: `default_path()`).

        create=False: the database must exist (every read). create=True: a missing
        database is created, inside an existing folder, or with its folders when
        parents=True.
        """
        self.path = Path(path) if path else default_path()
        if not self.path.exists():
            if not create:
                raise RegistryError(self.path, "no reference database at this path (check the spelling; "
                                               "`provenance refs add` or `refs import` creates one)")
            if not self.path.parent.is_dir():
                if not parents:
                    raise RegistryError(self.path, f"folder {str(self.path.parent)!r} does not exist "
                                                   "(create it, or give --create)")
                self.path.parent.mkdir(parents=True, exist_ok=True)
        elif self.path.is_dir():
            raise RegistryError(self.path, "is a folder, not a reference database file")
        try:
            self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise CorruptFileError(self.path, f"not a usable reference database: {exc}") from exc

    def _check_schema_version(self, value: str) -> None:
        try:
            version = int(value)
        except ValueError:
            raise CorruptFileError(self.path, f"reference database schema version {value!r} is not a number") from None
        if version > DB_SCHEMA_VERSION:
            raise UnsupportedError(self.path, f"reference database schema {version} is newer than this tool reads ({DB_SCHEMA_VERSION})")

    def _schema_ready(self) -> bool:
        """True when every table and the schema version are there (checked with reads only)."""
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self._check_columns(tables)
        if not set(TABLES) <= tables:
            return False
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            return False
        self._check_schema_version(row[0])
        return True

    def _check_columns(self, tables: set[str]) -> None:
        """A table of ours with other columns than the queries use: one clear line, before any query fails."""
        for table, expected in COLUMNS.items():
            if table not in tables:
                continue
            found = tuple(row[1] for row in self._db.execute(f"PRAGMA table_info({table})"))
            if found != expected:
                raise CorruptFileError(self.path, f"not a provenance reference database: table {table!r} has columns "
                                                  f"({', '.join(found)}), expected ({', '.join(expected)})")

    def _init_schema(self) -> None:
        if self._schema_ready():
            return
        with self._transaction():
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("""CREATE TABLE IF NOT EXISTS refs (
                name TEXT PRIMARY KEY, kind TEXT NOT NULL, family TEXT, architecture TEXT NOT NULL,
                source TEXT NOT NULL, tool_version TEXT NOT NULL, schema TEXT NOT NULL, added TEXT NOT NULL,
                fingerprint BLOB)""")
            # Screening signatures (provenance/audit/shortlist.py), one row per weights reference; a row whose
            # version, `added` or fingerprint size disagree with refs is stale and recomputed on load.
            self._db.execute("""CREATE TABLE IF NOT EXISTS screening (
                name TEXT PRIMARY KEY, version INTEGER NOT NULL, added TEXT NOT NULL, size INTEGER NOT NULL,
                vectors BLOB NOT NULL, hashes BLOB NOT NULL, keys TEXT NOT NULL)""")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(DB_SCHEMA_VERSION),))
                self._db.execute("INSERT INTO meta VALUES ('revision', '0')")
            else:
                self._check_schema_version(row[0])

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

    def check_name(self, name: str) -> None:
        # Printable only: names are printed in listings, where control characters could rewrite the terminal.
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise RegistryError(self.path, f"reference name {name!r} must be 1-{MAX_NAME_CHARS} printable characters")

    def _prepare(self, name: str, fingerprint, signature: SignatureBlob | None) -> tuple[tuple, SignatureBlob | None]:
        """The refs row and screening signature of one reference (ready before taking the write lock)."""
        self.check_name(name)
        blob = _Blob(fingerprint)  # never the whole blob in memory where blobopen writes it in pieces
        # SQLite's own cap on one value (1,000,000,000 bytes unless compiled otherwise): a fingerprint of a
        # ~90,000-tensor MoE can pass it; say so in one line instead of failing inside the insert.
        limit = self._db.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        if len(blob) > limit:
            raise RegistryError(self.path, f"the fingerprint of {name!r} is {len(blob)} bytes, over SQLite's "
                                           f"{limit}-byte limit on one value: it cannot be stored in the database "
                                           "(compare against its fingerprint file instead)")
        made = fingerprint.made
        entry = (name, "weights", fingerprint.family.name, fingerprint.section_json("architecture"),
                 fingerprint.section_json("source"), made.tool_version or __version__, made.schema,
                 dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), blob)
        return entry, signature

    def _write(self, prepared: tuple[tuple, SignatureBlob | None], replace: bool) -> None:
        """Insert one prepared reference; call inside a write transaction."""
        entry, screening_signature = prepared
        name = entry[0]
        exists = self._db.execute("SELECT 1 FROM refs WHERE name = ?", (name,)).fetchone()
        if exists and not replace:
            raise RegistryError(self.path, f"a reference named {name!r} already exists "
                                           "(give --replace to overwrite it, or remove it first)")
        blob = entry[-1]
        if hasattr(self._db, "blobopen"):  # Python 3.11+: written in place, in pieces; binding it made SQLite copy it
            self._db.execute("INSERT OR REPLACE INTO refs VALUES (?, ?, ?, ?, ?, ?, ?, ?, zeroblob(?))",
                             (*entry[:-1], len(blob)))
            rowid = self._db.execute("SELECT rowid FROM refs WHERE name = ?", (name,)).fetchone()[0]
            with self._db.blobopen("refs", "fingerprint", rowid) as stored:
                for piece in blob.pieces():
                    stored.write(piece)
        else:
            self._db.execute("INSERT OR REPLACE INTO refs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (*entry[:-1], blob.whole()))
        if screening_signature is not None:
            self._put_signature(name, screening_signature)
        else:  # a replaced reference's old signature is stale; its first screening computes the new one
            self._db.execute("DELETE FROM screening WHERE name = ?", (name,))

    def add(self, name: str, fingerprint, replace: bool = False, signature: SignatureBlob | None = None) -> ReferenceEntry:
        """Store `fingerprint` under `name`, with its screening signature if given."""
        prepared = self._prepare(name, fingerprint, signature)
        with self._transaction():
            self._write(prepared, replace)
            self._bump()
        return self.entry(name)

    def add_many(self, items: Iterable[tuple[str, Any]], replace: bool = False,
                 signer: Callable[[Any], SignatureBlob] | None = None) -> list[str]:
        """Add every (name, fingerprint) in one transaction: all of them, or none if any fails.

        `items` may be a generator that reads and validates each fingerprint as it
        goes: an exception it raises rolls back everything added before it.
        `signer` computes each reference's screening signature (none stored without it).
        """
        names: list[str] = []
        with self._transaction():
            for name, fingerprint in items:
                if name in names:
                    raise RegistryError(self.path, f"reference name {name!r} given twice")
                self._write(self._prepare(name, fingerprint, signer(fingerprint) if signer else None), replace)
                names.append(name)
            if names:
                self._bump()
        return names

    def check_new_name(self, name: str, replace: bool = False) -> None:
        """Before the costly fingerprinting of `refs add`: the name is valid and free (or replace is set)."""
        self.check_name(name)
        if not replace and self._db.execute("SELECT 1 FROM refs WHERE name = ?", (name,)).fetchone():
            raise RegistryError(self.path, f"a reference named {name!r} already exists "
                                           "(give --replace to overwrite it, or remove it first)")

    def names(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT name FROM refs ORDER BY name")]

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every query inside sees the same revision, whatever writers commit meanwhile."""
        self._db.execute("BEGIN")
        try:
            self._db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()  # starts the read snapshot
            yield
        finally:
            self._db.execute("COMMIT")

    def fingerprint_blob(self, name: str) -> bytes:
        """The stored fingerprint file's bytes, as stored (for export)."""
        row = self._db.execute("SELECT fingerprint FROM refs WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] is None:
            raise RegistryError(self.path, f"no reference named {name!r}")
        return bytes(row[0])

    def remove(self, name: str) -> None:
        with self._transaction():
            if self._db.execute("DELETE FROM refs WHERE name = ?", (name,)).rowcount == 0:
                raise RegistryError(self.path, f"no reference named {name!r}")
            self._db.execute("DELETE FROM screening WHERE name = ?", (name,))
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
        row = self._db.execute("SELECT rowid, fingerprint IS NULL FROM refs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise RegistryError(self.path, f"no reference named {name!r}")
        where = f"{self.path}#{name}"
        if row[1] or not hasattr(self._db, "blobopen"):
            data = self._db.execute("SELECT fingerprint FROM refs WHERE rowid = ?", (row[0],)).fetchone()[0]
            return fingerprint_from_bytes(bytes(data), where)
        # Python 3.11+: copied to the temporary file in pieces, never held whole beside the arrays read from it
        with tempfile.NamedTemporaryFile(suffix=".safetensors") as handle:
            with self._db.blobopen("refs", "fingerprint", row[0], readonly=True) as stored:
                while piece := stored.read(BLOB_PIECE):
                    handle.write(piece)
            handle.flush()
            return fingerprint_from_file(handle.name, where)

    # --- screening signatures (blobs computed by provenance/audit/shortlist.py) ---
    def screening_rows(self, version: int) -> list[tuple[str, bool, bytes | None, bytes | None]]:
        """(name, fresh, vectors, hashes) of every reference with a fingerprint, in one query; fresh means
        stored with this signature `version` for the fingerprint now stored."""
        return self._db.execute(
            "SELECT r.name, s.version IS ? AND s.added IS r.added AND s.size IS length(r.fingerprint), s.vectors, "
            "s.hashes FROM refs r LEFT JOIN screening s ON s.name = r.name WHERE r.fingerprint IS NOT NULL "
            "ORDER BY r.name", (version,)).fetchall()

    def _put_signature(self, name: str, signature: SignatureBlob) -> None:
        self._db.execute("INSERT OR REPLACE INTO screening SELECT name, ?, added, length(fingerprint), ?, ?, ? "
                         "FROM refs WHERE name = ?", (signature.version, signature.vectors, signature.hashes,
                                                      signature.keys, name))

    def put_signatures(self, signatures: Iterable[tuple[str, SignatureBlob]]) -> None:
        """Store computed signatures (back-fill); derived data, so the revision does not change."""
        with self._transaction():
            for name, signature in signatures:
                self._put_signature(name, signature)
    # --- end screening signatures ---

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
