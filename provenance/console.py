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


__all__ = ["ClosedPipeSafe", "closed_pipe_safe_stdout"]
