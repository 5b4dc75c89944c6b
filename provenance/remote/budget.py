"""Time limits on remote reads: a wall-clock deadline per command and per remote file, and a minimum rate.

A server can hold a reader forever without ever tripping a per-read
timeout: it drips one byte every few seconds, or answers every range with
one byte and closes. So every remote read also answers to:
- a deadline for the whole command (`deadline_scope`; `refs sync` opens one
  per model, so one bad model never stalls the rest), default
  `DEFAULT_DEADLINE` seconds, `--deadline` or PROVENANCE_REMOTE_DEADLINE;
- a deadline per remote file (PROVENANCE_REMOTE_FILE_DEADLINE), counted from
  the file's first request;
- a minimum rate: once a file has been waited on for `grace` seconds
  (PROVENANCE_REMOTE_GRACE), the bytes it sent divided by the time spent
  waiting on it must reach `min_rate` bytes per second
  (PROVENANCE_REMOTE_MIN_RATE).

The defaults fit a 7B model over a slow link: its remote fingerprint reads
about 80 MB (0.6% of it) in a few thousand small ranges, under ten minutes
at 1 Mbit/s with 100 ms of latency; a server slower than 1 KiB/s after 30
seconds is not a link but a stall. The deadline in effect is captured when
a `RemoteFile` is made (a context variable), so worker threads reading its
ranges answer to the same one.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

DEFAULT_DEADLINE = 3600.0  # seconds per command (per model in `refs sync`)
DEFAULT_FILE_DEADLINE = 3600.0  # seconds per remote file, from its first request
DEFAULT_GRACE = 30.0  # seconds of waiting on a file before its rate is judged
DEFAULT_MIN_RATE = 1024.0  # bytes per second, over the time spent waiting on the file

DEADLINE_HELP = (f"seconds a remote read may take in all (default {DEFAULT_DEADLINE:g}, or PROVENANCE_REMOTE_DEADLINE); "
                 f"a server sending under {DEFAULT_MIN_RATE:g} bytes/s after {DEFAULT_GRACE:g} s is given up on")


class BudgetExceeded(Exception):
    """A deadline passed or a server is too slow: the message says which, and by how much."""


def _setting(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def file_deadline() -> float:
    return _setting("PROVENANCE_REMOTE_FILE_DEADLINE", DEFAULT_FILE_DEADLINE)


def grace_seconds() -> float:
    return _setting("PROVENANCE_REMOTE_GRACE", DEFAULT_GRACE)


def min_rate() -> float:
    return _setting("PROVENANCE_REMOTE_MIN_RATE", DEFAULT_MIN_RATE)


def command_seconds(given: float | None = None) -> float:
    """The command's deadline: `given` (--deadline), else PROVENANCE_REMOTE_DEADLINE, else the default."""
    return given if given is not None and given > 0 else _setting("PROVENANCE_REMOTE_DEADLINE", DEFAULT_DEADLINE)


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() when it passes
    seconds: float
    what: str  # "the command", "this model (refs sync)"

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def check(self, host: str) -> None:
        if self.remaining() <= 0:
            raise BudgetExceeded(f"{host} did not finish within the {self.seconds:g}-second deadline of {self.what} "
                                 "(--deadline or PROVENANCE_REMOTE_DEADLINE to change it)")


_CURRENT: ContextVar[Deadline | None] = ContextVar("provenance_remote_deadline", default=None)


def current_deadline() -> Deadline | None:
    return _CURRENT.get()


@contextmanager
def deadline_scope(seconds: float | None = None, what: str = "the command") -> Iterator[Deadline]:
    """Remote reads inside answer to a deadline `seconds` from now (or the enclosing one, if it is sooner)."""
    seconds = command_seconds(seconds)
    mine = Deadline(time.monotonic() + seconds, seconds, what)
    outer = _CURRENT.get()
    token = _CURRENT.set(outer if outer is not None and outer.at <= mine.at else mine)
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


@contextmanager
def default_deadline() -> Iterator[Deadline]:
    """The enclosing deadline if there is one (the command's --deadline), else a default-length one from now."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    with deadline_scope() as mine:
        yield mine


@dataclass
class FileClock:
    """One remote file's time: when it was first asked for, time spent waiting on it, bytes it sent."""

    deadline: Deadline | None = field(default_factory=current_deadline)
    started: float | None = None
    waited: float = 0.0
    received: int = 0
    _busy: int = 0
    _busy_since: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self.started is None:
                self.started = now
            if self._busy == 0:
                self._busy_since = now
            self._busy += 1

    def end(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy == 0:
                self.waited += time.monotonic() - self._busy_since

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.received += nbytes

    def remaining(self) -> float:
        """Seconds left before the first deadline (the command's, or this file's) passes."""
        now = time.monotonic()
        left = (self.started or now) + file_deadline() - now
        if self.deadline is not None:
            left = min(left, self.deadline.remaining())
        return left

    def rate(self) -> tuple[int, float]:
        """(bytes received, seconds spent waiting) so far."""
        with self._lock:
            waited = self.waited + (time.monotonic() - self._busy_since if self._busy else 0.0)
            return self.received, waited

    def describe(self, host: str) -> str:
        received, waited = self.rate()
        return f"{host} sent {received} bytes in {waited:.1f} s ({received / max(waited, 1e-9):.1f} bytes/s)"

    def check(self, host: str) -> None:
        """Raise BudgetExceeded when a deadline passed or the rate is under the minimum after the grace period."""
        if self.deadline is not None:
            self.deadline.check(host)
        received, waited = self.rate()
        now = time.monotonic()
        if now - (self.started or now) > file_deadline():
            raise BudgetExceeded(f"{host} did not send this file within {file_deadline():g} s "
                                 "(PROVENANCE_REMOTE_FILE_DEADLINE to change it)")
        if waited > grace_seconds() and received / waited < min_rate():
            raise BudgetExceeded(f"{self.describe(host)}, under the minimum of {min_rate():g} bytes/s after "
                                 f"{grace_seconds():g} s (PROVENANCE_REMOTE_MIN_RATE to change it)")


__all__ = ["BudgetExceeded", "DEADLINE_HELP", "DEFAULT_DEADLINE", "Deadline", "FileClock", "command_seconds",
           "current_deadline", "deadline_scope", "default_deadline"]
