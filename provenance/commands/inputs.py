"""What several commands' handlers read first: a PATH resolved, a fingerprint built or loaded, the database.

Everything heavy (numpy, torch, sqlite3) is imported inside the function
that needs it, so importing the command modules keeps `--help` instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import UnreadablePathError
from ..progress import tensor_progress, wanted
from ..remote import is_remote
from ..remote.locate import locate


def require_path(path: str, remote_ok: bool = True, revision: str | None = None, hub: bool = False) -> str:
    """Resolve a PATH before the heavy imports: local path, URL, hf:// or repo id ORG/NAME (see remote/locate.py).

    Returns the location to read; how a repo id was resolved is said on stderr.
    """

    found = locate(path, revision, local_only=not remote_ok, hub=hub)
    if is_remote(found.location) and not remote_ok:
        raise UnreadablePathError(path, "this command reads local files only; fingerprint, compare and audit accept URLs")
    if found.note:
        print(f"provenance: {found.note}", file=sys.stderr)
    return found.location


def fingerprint_with_progress(path: str, args: argparse.Namespace):
    """`fingerprint_for(path)` with a per-tensor progress bar for a person at a terminal (see progress.py)."""
    # lazy: numpy and torch (fingerprint/), for the commands that read weights
    from ..fingerprint.load import fingerprint_for

    show = wanted(json_output=getattr(args, "json", False), disabled=getattr(args, "no_progress", False))
    with tensor_progress(f"fingerprinting {os.path.basename(os.path.normpath(path))}", show) as on_tensor:
        return fingerprint_for(path, on_tensor=on_tensor, cache=not getattr(args, "no_cache", False))


def saved_fingerprint(path: str):
    """The fingerprint saved at PATH (or in the folder PATH), or None when PATH is a checkpoint (or a URL)."""

    # lazy: the fingerprint package loads numpy and torch
    from ..fingerprint.store import fingerprint_file_at, load_fingerprint

    saved = None if is_remote(path) else fingerprint_file_at(Path(path))  # a fingerprint file, or a folder of one
    return None if saved is None else load_fingerprint(saved)


def reference_database(given: str | None):
    """The database an audit or scan reads: --refs, else $PROVENANCE_REFS (each must exist), else the
    default location if a database is there (None otherwise: built-in references only)."""
    # lazy: sqlite3 and the database code (12 ms), only for audit and scan
    from ..registry import Registry, default_path

    if given or os.environ.get("PROVENANCE_REFS"):
        return Registry(given or default_path(), create=False)
    path = default_path()
    return Registry(path, create=False) if path.exists() else None
