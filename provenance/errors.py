"""One exception hierarchy for everything the tool reports to a user.

Every message names the file (or path) and what was wrong with it, quoting the
bad value, so that the command line can print it as one line and exit 1. The
message is made visible and cut (`visible_text.clean`): a path, a server's
answer or a library's message may hold terminal escape sequences.
"""

from __future__ import annotations

from pathlib import Path

from .visible_text import clean

MAX_PATH_CHARS = 500  # a path or URL in a message (a hostile one can be megabytes long)


class ProvenanceError(Exception):
    """Base class: a problem the user can act on, reported without a traceback."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = clean(_one_line(str(problem)))
        where = clean(_one_line(self.path), MAX_PATH_CHARS) if self.path else None
        super().__init__(f"{where}: {self.problem}" if where else self.problem)


def _one_line(text: str) -> str:
    """The command line prints one line per error: fold a multi-line problem (a library's message) into one."""
    if "\n" not in text and "\r" not in text:
        return text
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


class UnreadablePathError(ProvenanceError):
    """The path does not exist, is not readable, or is not a kind we know."""


class CorruptFileError(ProvenanceError):
    """The file's structure is invalid: truncated, bad header, bad offsets."""


class UnsafeFileError(ProvenanceError):
    """The file asks us to run code (a pickle global outside the allow-list)."""


class UnsupportedError(ProvenanceError):
    """A well-formed file using something this version cannot read."""


class MissingShardError(ProvenanceError):
    """An index names a shard file that is not there."""


class ArchitectureError(ProvenanceError):
    """The checkpoint's tensors cannot be mapped onto a known structure."""


class ScanError(ProvenanceError):
    """A problem with a scan itself (provenance/batch/): the candidate list, the output file, the executor."""


class OutputPathError(ProvenanceError):
    """An output file (fingerprint, report, scan lines, bundle) cannot be written where it was asked for."""


class UsageError(ProvenanceError):
    """The command line asks for something that cannot be done as given (exit 2); `command` names the command."""

    def __init__(self, command: str, problem: str):
        self.command = command
        super().__init__(None, problem)
