"""Output files checked before the work starts: one rule for every command that writes one.

`fingerprint -o`, `audit --report`, `scan -o` and `refs export` used to
find out that their output could not be written only at the end (after
minutes of fingerprinting), each with its own rule for a missing folder.
Now each checks first, the same way: missing folders are created (as
`mkdir -p` would), a file is created and removed in the folder to prove
it is writable (`os.access` says yes to root on a read-only mount), and a
path that is a folder is refused. The error names the file and the cause.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputPathError


def check_output(path: str | Path, what: str) -> Path:
    """`path` ready to be written later (its folder exists and takes a file), or OutputPathError saying why."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(path, f"cannot write the {what} here: this is a folder")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(path, f"cannot write the {what} in folder {folder}: {exc.strerror or exc}") from exc
    return path


__all__ = ["check_output"]
