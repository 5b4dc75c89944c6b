"""The per-candidate task of `provenance scan`: audit one candidate, return a record, never raise.

`audit_candidate` does what `provenance audit --json` does (`fingerprint_for`,
`run_audit`, `audit_to_json`) under a per-candidate time limit; a failure
becomes an error record. The reference set is read once per worker process:
the built-in references by `audit.builtin_references` (cached per process),
the database's fingerprints by `CachedRegistry` (kept up to
REFERENCE_CACHE_BYTES per process and re-read when the database's revision
changes).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..errors import ProvenanceError
from ..registry import Registry
from ..remote.locate import locate

# Fingerprints of database references kept in memory per worker process; past this they are read per candidate.
REFERENCE_CACHE_BYTES = 1 << 30
# ... and at most this many: each keeps its file open (its arrays are read from it when looked up), and a
# process has about 1024 file descriptors by default.
REFERENCE_CACHE_COUNT = 256
DEFAULT_MAX_TASKS_PER_WORKER = 32
WORKER_DIED = "worker process died while auditing this candidate (killed, or out of memory)"
TIMEOUT_GRACE = 30.0  # seconds past --timeout before a pool worker stuck in native code is ended
_IN_POOL_WORKER = False  # set by the pool initializer: only there may the watchdog end the process


def enter_pool_worker() -> None:
    """Called once by a pool worker's initializer: from then on `time_limit` may end this process."""
    global _IN_POOL_WORKER
    _IN_POOL_WORKER = True


@dataclass(frozen=True)
class AuditSettings:
    """What every worker needs to audit a candidate (picklable: sent with each task)."""

    refs: str | None = None  # reference database path; None: built-in references only
    include_builtin: bool = True
    cwd: str | None = None  # relative candidate paths are relative to this (the caller's working directory)
    timeout: float | None = None  # seconds per candidate (None: no limit)
    timeout_grace: float = TIMEOUT_GRACE  # then seconds until a pool worker stuck in native code is ended


class CandidateTimeout(BaseException):
    """Raised inside a task by its timer when the candidate ran past --timeout (a BaseException, so that
    no `except Exception` on the way swallows it)."""


def timeout_message(candidate: str, seconds: float) -> str:
    return f"{candidate}: audit stopped after the --timeout of {seconds:g} s (a hung read, or a checkpoint too large)"


@contextmanager
def time_limit(seconds: float | None, grace: float = TIMEOUT_GRACE) -> Iterator[None]:
    """Raise CandidateTimeout in this thread after `seconds` (main thread only; elsewhere no limit), and in a
    pool worker end the process `grace` seconds later if the signal could not interrupt the work."""
    if not seconds:
        yield
        return
    watchdog = None
    if _IN_POOL_WORKER:
        watchdog = threading.Timer(seconds + grace, os._exit, args=(1,))
        watchdog.daemon = True
        watchdog.start()
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    previous = None
    if usable:
        def expire(signum, frame):
            raise CandidateTimeout()

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if usable:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if watchdog is not None:
            watchdog.cancel()

def error_message(candidate: str, exc: BaseException) -> str:
    """One line naming the file and the problem, as the CLI prints it (without the `provenance: error:` prefix)."""
    if isinstance(exc, ProvenanceError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"{candidate}: out of memory"
    if isinstance(exc, OSError):
        return f"{exc.filename or candidate}: {exc.strerror or exc}"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{candidate}: unexpected {type(exc).__name__}: {first}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def error_record(candidate: str, message: str, seconds: float = 0.0) -> dict:
    return {"candidate": candidate, "status": "error", "error": message, "seconds": round(seconds, 3), "finished": _now()}


def audit_candidate(candidate: str, settings: AuditSettings) -> dict:
    """Audit one candidate against the (cached) reference set; a record, never an exception."""
    started = time.monotonic()
    try:
        # lazy: numpy and torch load in the workers only (a forkserver has them preloaded), not in the coordinator
        from ..audit import run_audit
        from ..report.audit_json import audit_to_json
        from ..fingerprint.load import fingerprint_for

        if settings.cwd and os.path.isdir(settings.cwd):
            os.chdir(settings.cwd)  # a forkserver's workers start in the directory the server started in
        with time_limit(settings.timeout, settings.timeout_grace):
            # the command line's rules for a PATH: local path, URL, hf:// or a repo id (cache first)
            fingerprint = fingerprint_for(locate(candidate).location)
            registry = reference_database(settings.refs)
            report = audit_to_json(run_audit(fingerprint, registry, include_builtin=settings.include_builtin,
                                             candidate_path=candidate))
    except CandidateTimeout:
        return error_record(candidate, timeout_message(candidate, settings.timeout), time.monotonic() - started)
    except Exception as exc:  # every failure is one candidate's error line, never the batch's
        return error_record(candidate, error_message(candidate, exc), time.monotonic() - started)
    return {"candidate": candidate, "status": "ok", "audit": report,
            "seconds": round(time.monotonic() - started, 3), "finished": _now()}


class CachedRegistry:
    """What `run_audit` and `audit_to_json` read from a `Registry` (path, revision, entries, fingerprint),
    with fingerprints kept for the life of the process up to a byte budget, and dropped when the
    database's revision changes. Anything else is passed through to the registry."""

    def __init__(self, registry, budget: int = REFERENCE_CACHE_BYTES):
        self._registry = registry
        self.path = registry.path
        self._budget = budget
        self.revision: int | None = None
        self._entries: list = []
        self._fingerprints: dict[str, Any] = {}
        self._cached_bytes = 0
        self.loads = 0  # fingerprints read from the database by this process

    def refresh(self) -> None:
        revision = self._registry.revision
        if revision == self.revision:
            return
        entries = self._registry.entries()
        while self._registry.revision != revision:  # a writer committed in between: read again
            revision = self._registry.revision
            entries = self._registry.entries()
        self._entries, self.revision = entries, revision
        self._fingerprints.clear()
        self._cached_bytes = 0

    def entries(self) -> list:
        return list(self._entries)

    def fingerprint(self, name: str):
        cached = self._fingerprints.get(name)
        if cached is not None:
            return cached
        fingerprint = self._registry.fingerprint(name)
        self.loads += 1
        size = fingerprint.nbytes()
        if self._cached_bytes + size <= self._budget and len(self._fingerprints) < REFERENCE_CACHE_COUNT:
            self._fingerprints[name] = fingerprint
            self._cached_bytes += size
        return fingerprint

    def __getattr__(self, name: str):
        return getattr(self._registry, name)


_DATABASES: dict[str, CachedRegistry] = {}  # per process: database path -> its cached references


def reference_database(path: str | None) -> CachedRegistry | None:
    if path is None:
        return None
    cached = _DATABASES.get(path)
    if cached is None:
        cached = _DATABASES[path] = CachedRegistry(Registry(path, create=False))
    cached.refresh()
    return cached



Task = Callable[[str, AuditSettings], dict]
