"""Write a file so that a killed run leaves the old file or the new one, never part of one.

The content goes to a temporary file beside the target (`.NAME.<random>.tmp`,
which no reader takes for the target), is flushed to disk, and is renamed over
the target; the rename is then made durable by syncing the folder. Used for
fingerprints, reference bundles and reports.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """The temporary file to write `path`'s new content to; renamed over `path` when the block ends without error.

    The file is created empty with mode 0o666 filtered by the umask, like any
    file the user creates. On an error it is removed and the target is untouched.
    """
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX: the directory entry lives in the directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
