"""A cache of fingerprints built from local checkpoints, keyed by the files' identity.

Auditing the same reference files again (or comparing against them) loads
their fingerprint from the cache instead of reading the weights again.

Location: `$PROVENANCE_CACHE` if set, else the platform's user cache folder:
`$XDG_CACHE_HOME/provenance/fingerprints` (default `~/.cache/...`) on Linux
and other POSIX systems, `~/Library/Caches/provenance/fingerprints` on macOS,
`%LOCALAPPDATA%\\provenance\\Cache\\fingerprints` on Windows.
`PROVENANCE_NO_CACHE=1` (or `--no-cache` on the command line) turns it off.

Key: XXH3-128 over this tool's version and fingerprint schema, a digest of
the code that computes a fingerprint (the sources of `provenance/fingerprint/`,
`formats/` and `architectures/`, so a changed builder never serves entries of
the old one, released or not), and, for every
file of the checkpoint (a weights file alone, or every regular file of a
model directory: weights, index, config, tokenizer, model card), its real
path, size, modification and change times (ns), inode, and a hash of its
first HEADER_BYTES and last TAIL_BYTES (the safetensors or GGUF header, the
zip directory of a PyTorch file). Rewriting, replacing or touching a file
changes the key; so does restoring an old modification time, which changes
the change time. The weights themselves are not hashed: that is the point.

An entry is an ordinary fingerprint file, read back with `load_fingerprint`'s
validation; one that fails to load is rebuilt and replaced. Entries are
written atomically (`Fingerprint.save`). Nothing is evicted: an entry is about
0.4% of its checkpoint; delete the folder to reclaim the space.
"""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from pathlib import Path

import xxhash

from .. import __version__
from ..errors import ProvenanceError
from ..formats.checkpoint_files import snapshot_directory
from .store import FINGERPRINT_SCHEMA, Fingerprint, load_fingerprint

HEADER_BYTES = 1 << 20
TAIL_BYTES = 1 << 16
MAX_FILES = 20_000  # a directory with more files than this is not cached (its key would cost too much)
ENV_DIR = "PROVENANCE_CACHE"
ENV_OFF = "PROVENANCE_NO_CACHE"


def default_directory() -> Path:
    """The folder cached fingerprints go to (see the module docstring)."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "provenance" / "Cache" / "fingerprints"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "provenance" / "fingerprints"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "provenance" / "fingerprints"


def disabled_by_environment() -> bool:
    return os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no")


def checkpoint_files(path: Path) -> list[Path] | None:
    """The files a checkpoint PATH consists of, or None when it cannot be cached (not local, too many files)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        return None
    directory = snapshot_directory(path)
    files = []
    for entry in sorted(directory.iterdir()):
        if entry.is_file():  # follows symlinks (a Hugging Face snapshot's files point into blobs/)
            files.append(entry)
            if len(files) > MAX_FILES:
                return None
    return files or None


def _file_identity(path: Path) -> dict:
    real = path.resolve()
    stat = real.stat()
    digest = xxhash.xxh3_128()
    with open(real, "rb") as handle:
        digest.update(handle.read(HEADER_BYTES))
        if stat.st_size > HEADER_BYTES:
            handle.seek(max(HEADER_BYTES, stat.st_size - TAIL_BYTES))
            digest.update(handle.read(TAIL_BYTES))
    return {"path": str(real), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
            "inode": stat.st_ino, "head_tail": digest.hexdigest()}


@lru_cache(maxsize=1)
def builder_digest() -> str:
    """XXH3-128 of the sources (and family tables) that decide what a fingerprint holds."""
    root = Path(__file__).resolve().parents[1]
    digest = xxhash.xxh3_128()
    for folder in ("fingerprint", "formats", "architectures"):
        for source in sorted((root / folder).rglob("*")):
            if source.suffix in (".py", ".json") and "__pycache__" not in source.parts:
                digest.update(str(source.relative_to(root)).encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def cache_key(path: Path) -> str | None:
    """The cache key of checkpoint PATH as its files are now, or None if it cannot be cached."""
    try:
        files = checkpoint_files(Path(path))
        if files is None:
            return None
        identity = {"tool": __version__, "schema": FINGERPRINT_SCHEMA, "builder": builder_digest(),
                    "files": [_file_identity(f) for f in files]}
    except (OSError, ProvenanceError):
        return None  # unreadable now: the build reports it properly
    return xxhash.xxh3_128(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class FingerprintCache:
    """Fingerprints stored by cache key in one folder."""

    def __init__(self, directory: Path | None = None):
        self.directory = Path(directory) if directory else default_directory()

    def entry(self, key: str) -> Path:
        return self.directory / f"{key}.fp.safetensors"

    def get(self, key: str) -> Fingerprint | None:
        entry = self.entry(key)
        if not entry.is_file():
            return None
        try:
            return load_fingerprint(entry)
        except (ProvenanceError, OSError):
            return None  # damaged or from an incompatible version: rebuilt and replaced

    def put(self, key: str, fingerprint: Fingerprint) -> Path | None:
        """Store `fingerprint` under `key`; None when the folder cannot be written (the cache is best effort)."""
        try:
            return fingerprint.save(self.entry(key))
        except OSError:
            return None
