"""Temporary folders for a remote checkpoint's side files: named by process, removed on exit, swept if orphaned.

Each folder is `provenance-remote-<pid>-<random>` in the system's temporary
folder. A normal exit or an error removes it (the checkpoint's close); a
SIGTERM becomes a normal exit (`exit_on_sigterm`, installed by the command
line) so that removal runs; a SIGKILL leaves it behind, so each new folder
first sweeps the ones whose process no longer runs (and that have not been
touched for `ORPHAN_AGE` seconds: a process of another PID namespace
sharing /tmp is not taken for a dead one at once).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

PREFIX = "provenance-remote-"
ORPHAN_AGE = 60.0  # seconds
_OWNED = re.compile(re.escape(PREFIX) + r"(\d+)-")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _age(entry: Path) -> float:
    try:
        return time.time() - entry.stat().st_mtime
    except OSError:
        return 0.0


def sweep_orphans(folder: str | Path | None = None) -> list[Path]:
    """Remove the side-file folders left by processes that no longer run; returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder or tempfile.gettempdir()).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _OWNED.match(entry.name)
        if (match and int(match[1]) != os.getpid() and not _running(int(match[1]))
                and entry.is_dir() and not entry.is_symlink() and _age(entry) > ORPHAN_AGE):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def side_folder() -> Path:
    """A new temporary folder for side files (after sweeping orphaned ones)."""
    sweep_orphans()
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))


def exit_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit(143) in the main thread, so `finally` blocks remove temporary folders."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone (a test runner, a worker pool) handles it already

    def stop(signum, frame) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


__all__ = ["PREFIX", "exit_on_sigterm", "side_folder", "sweep_orphans"]
