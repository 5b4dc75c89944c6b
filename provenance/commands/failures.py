"""One table from exception type to exit code and the one line the user reads (huggingface_hub's `cli/_errors.py`).

The entry point catches whatever a command raises and looks it up here,
first match wins, so subclasses come before their bases. A traceback is
printed as well, before the line, only where the table allows it and only
on request (`-v` or PROVENANCE_DEBUG=1).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from ..errors import ProvenanceError, UsageError
from ..gate import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE


class Failure(NamedTuple):
    kind: type[BaseException]
    exit_code: int
    line: Callable[[BaseException], str | None]  # None: nothing to print
    traceback: bool  # whether -v or PROVENANCE_DEBUG=1 shows the traceback too


def _os_error(exc: BaseException) -> str:
    where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
    return f"provenance: error: {where}{getattr(exc, 'strerror', None) or exc}"


def _unexpected(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"provenance: error: unexpected {type(exc).__name__}: {first} (set PROVENANCE_DEBUG=1 for a traceback)"


FAILURES: tuple[Failure, ...] = (
    Failure(KeyboardInterrupt, EXIT_INTERRUPTED, lambda exc: f"provenance: interrupted (exit {EXIT_INTERRUPTED})", False),
    # a closed stderr: nothing can be said, and the outcome is unknown to the reader, never a pass
    Failure(BrokenPipeError, EXIT_ERROR, lambda exc: None, False),
    Failure(UsageError, EXIT_USAGE, lambda exc: f"provenance {exc.command}: error: {exc.problem}", False),
    Failure(ProvenanceError, EXIT_ERROR, lambda exc: f"provenance: error: {exc}", True),
    Failure(MemoryError, EXIT_ERROR, lambda exc: "provenance: error: out of memory", True),
    Failure(OSError, EXIT_ERROR, _os_error, True),
    Failure(Exception, EXIT_ERROR, _unexpected, True),
)


def failure_for(exc: BaseException) -> Failure:
    """The table's entry for `exc` (every Exception has one; a BaseException outside the table is not caught)."""
    return next(entry for entry in FAILURES if isinstance(exc, entry.kind))


__all__ = ["FAILURES", "Failure", "failure_for"]
