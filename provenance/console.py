"""The terminal side of the command line: stdout that a closed pipe cannot turn into a pass, colour, verbosity.

`| head` or `| true` closes the reading end of a pipe before (or while) the
command writes its report. The report is then lost, but the exit code must
still say what the audit found: `closed_pipe_safe_stdout` swallows the
broken pipe, points the file descriptor at /dev/null (so the interpreter's
own flush at exit cannot fail either, as the Python documentation on SIGPIPE
advises) and lets the command go on to its `--fail-on` check.

Colour follows the conventions of pip, ruff and most tools: only on a
terminal, never when NO_COLOR is set (https://no-color.org), always with
FORCE_COLOR. Verbosity (-q/-v) decides which stderr lines are shown.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from typing import TextIO


class ClosedPipeSafe:
    """A text stream that drops what is written after its reader went away, instead of raising."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.closed_pipe = False

    def write(self, text: str) -> int:
        if not self.closed_pipe:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.closed_pipe = True
        with contextlib.suppress(AttributeError, OSError, ValueError):  # not a real file (a test's StringIO)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def isatty(self) -> bool:
        return not self.closed_pipe and self._stream.isatty()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def closed_pipe_safe_stdout() -> Iterator[ClosedPipeSafe]:
    """sys.stdout wrapped in `ClosedPipeSafe` for the duration of one command."""
    saved = sys.stdout
    sys.stdout = guarded = ClosedPipeSafe(saved)
    try:
        yield guarded
    finally:
        sys.stdout = saved


# What -q keeps on stderr: what a gate or a person must not miss (errors, the --fail-on outcome, an interruption,
# candidates that could not be audited); progress, notes and "wrote ..." lines go.
QUIET_KEEPS = re.compile(r"error|--fail-on|interrupted|could not be audited|stopped", re.IGNORECASE)


class QuietLines:
    """A text stream that passes only the whole lines `QUIET_KEEPS` matches (-q)."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if QUIET_KEEPS.search(line):
                self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False  # no progress bar under -q

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def quiet_stderr(quiet: bool) -> Iterator[None]:
    """With `quiet`, sys.stderr keeps only the lines QUIET_KEEPS matches for the duration of one command."""
    if not quiet:
        yield
        return
    saved = sys.stderr
    sys.stderr = QuietLines(saved)
    try:
        yield
    finally:
        pending = sys.stderr._pending
        sys.stderr = saved
        if pending and QUIET_KEEPS.search(pending):
            saved.write(pending)


COLOURS = {"red": "31", "green": "32", "yellow": "33", "bold": "1"}


def colour_enabled(stream: TextIO) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (any value but empty) or TERM=dumb; FORCE_COLOR forces it."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def paint(text: str, colour: str, stream: TextIO | None = None) -> str:
    """`text` in `colour` when `stream` (default stdout) takes colour, else unchanged."""
    if not colour_enabled(stream if stream is not None else sys.stdout):
        return text
    return f"\033[{COLOURS[colour]}m{text}\033[0m"


__all__ = ["COLOURS", "ClosedPipeSafe", "QUIET_KEEPS", "QuietLines", "closed_pipe_safe_stdout", "colour_enabled",
           "paint", "quiet_stderr"]
