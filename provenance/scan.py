"""`provenance scan`: audit many candidates, one JSON line each, on a local process pool or a Ray cluster.

Every candidate goes through the same function, `audit_candidate`, which does
what `provenance audit --json` does (`fingerprint_for`, `run_audit`,
`audit_to_json`) and never raises: a failure becomes an error record. Three
small executors run it:

- `run_inline`: in this process, one after another (`--workers 0`; the
  benchmark's baseline);
- `run_pool`: a `ProcessPoolExecutor` (forkserver context where the platform
  has it, else spawn; never fork, which would copy the parent's threads and
  locks). One candidate per task; at most `workers` tasks in flight, so when a
  worker dies (killed, out of memory) the candidates that were running are
  known. Each of them is retried alone in a fresh one-process pool: the one
  that kills its worker again gets an error record, the others their audit.
  Workers are replaced after `max_tasks_per_worker` candidates (Python 3.11+),
  which bounds anything a long-lived process might accumulate; within a task
  memory is that of a single audit (one tensor at a time). Each worker runs
  one torch thread, and exits if the scan process dies;
- `run_ray`: the same function as Ray tasks (`ray` is an optional extra),
  on a local Ray instance or a cluster at ADDRESS. Paths in the list must be
  readable on the nodes that run the tasks (a shared filesystem).

Output (JSON Lines; one line per candidate, appended in completion order):

    {"candidate": C, "status": "ok", "audit": <provenance.audit/1 object>, "seconds": s, "finished": iso}
    {"candidate": C, "status": "error", "error": "<one-line message>", "seconds": s, "finished": iso}

Each line is written whole by one `os.write` on an O_APPEND descriptor
followed by `fsync`, and only by the parent process, so a killed run leaves
at most a partial last line (no newline); the next run cuts it off before
appending.

Resume: a rerun reads OUT and skips every candidate that already has a
line, error lines included (most errors, a missing or corrupt file, would
fail the same way again); `--retry-errors` audits those again and appends a
new line. When a candidate has several lines the last one counts.

Timeout (`--timeout SECONDS`, per candidate): inside the task a SIGALRM
timer (on the thread that runs it, where the platform allows) stops the
audit with an error record, so a candidate stuck in Python code or a
blocking read costs one line and the worker lives on. A candidate stuck in
native code that ignores the signal is caught by a watchdog thread in pool
workers, which ends the worker process TIMEOUT_GRACE seconds later; the pool
then records that candidate (it ran past its time) as timed out and
retries the others that were running alone, as for any dead worker.

The reference set is read once per worker process: the built-in references
by `audit.builtin_references` (cached per process), the database's
fingerprints by `CachedRegistry` (kept up to REFERENCE_CACHE_BYTES per
process and re-read when the database's revision changes).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import ProvenanceError

# Fingerprints of database references kept in memory per worker process; past this they are read per candidate.
REFERENCE_CACHE_BYTES = 1 << 30
DEFAULT_MAX_TASKS_PER_WORKER = 32
WORKER_DIED = "worker process died while auditing this candidate (killed, or out of memory)"
TIMEOUT_GRACE = 30.0  # seconds past --timeout before a pool worker stuck in native code is ended
_IN_POOL_WORKER = False  # set by the pool initializer: only there may the watchdog end the process

Task = Callable[[str, "AuditSettings"], dict]


class ScanError(ProvenanceError):
    """A problem with the scan itself: the candidate list, the output file, the executor."""


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
    import signal
    import threading

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


# --- the per-candidate function (runs in the workers) ------------------------------------------------


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
        from .audit import audit_to_json, run_audit
        from .fingerprint.load import fingerprint_for

        if settings.cwd and os.path.isdir(settings.cwd):
            os.chdir(settings.cwd)  # a forkserver's workers start in the directory the server started in
        with time_limit(settings.timeout, settings.timeout_grace):
            fingerprint = fingerprint_for(candidate)
            registry = reference_database(settings.refs)
            rows = run_audit(fingerprint, registry, include_builtin=settings.include_builtin)
            report = audit_to_json(candidate, fingerprint, rows, registry)
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
        if self._cached_bytes + size <= self._budget:
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
        from .registry import Registry

        cached = _DATABASES[path] = CachedRegistry(Registry(path, create=False))
    cached.refresh()
    return cached


def _init_worker() -> None:
    """Pool initializer: one torch thread per worker; the workers are the parallelism. (Every worker using
    every core oversubscribes them: measured 5-10x slower per candidate on a loaded 2-core machine.)
    Ray does the same for its tasks (OMP_NUM_THREADS=1)."""
    import threading

    import torch

    global _IN_POOL_WORKER
    _IN_POOL_WORKER = True
    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()


def _exit_with_parent() -> None:
    """A worker whose scan was killed (SIGKILL leaves no time to stop the pool) exits instead of lingering."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns when the parent's end of the pipe closes, i.e. when it has died
        os._exit(1)


# --- executors: each yields one record per candidate, in completion order --------------------------


def run_inline(candidates: Iterable[str], settings: AuditSettings, task: Task = audit_candidate) -> Iterator[dict]:
    for candidate in candidates:
        yield task(candidate, settings)


def _pool_context():
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        # Workers forked from a server that has imported torch and the package start in milliseconds,
        # so replacing them every few tasks is cheap.
        context.set_forkserver_preload(["provenance.scan", "provenance.fingerprint.load", "provenance.audit"])
        return context
    return multiprocessing.get_context("spawn")


def _process_pool(workers: int, max_tasks_per_worker: int | None) -> ProcessPoolExecutor:
    kwargs: dict[str, Any] = {}
    if max_tasks_per_worker and sys.version_info >= (3, 11):  # the option is new in 3.11
        kwargs["max_tasks_per_child"] = max_tasks_per_worker
    return ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=_init_worker, **kwargs)


def _run_alone(candidate: str, settings: AuditSettings, task: Task) -> dict:
    """Audit one candidate in a fresh single-process pool: tells which of the suspects kills its worker."""
    pool = _process_pool(1, 1)
    started = time.monotonic()
    try:
        return pool.submit(task, candidate, settings).result()
    except BrokenProcessPool:
        return _dead_worker_record(candidate, settings, time.monotonic() - started)
    except Exception as exc:  # a result or argument that cannot be pickled
        return error_record(candidate, error_message(candidate, exc), time.monotonic() - started)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _dead_worker_record(candidate: str, settings: AuditSettings, seconds: float) -> dict:
    """The error record of a candidate whose worker died: timed out (the watchdog) if it ran past --timeout."""
    if settings.timeout and seconds >= settings.timeout:
        return error_record(candidate, timeout_message(candidate, settings.timeout), seconds)
    return error_record(candidate, f"{candidate}: {WORKER_DIED}", seconds)


def run_pool(candidates: Iterable[str], settings: AuditSettings, workers: int, task: Task = audit_candidate,
             max_tasks_per_worker: int | None = DEFAULT_MAX_TASKS_PER_WORKER) -> Iterator[dict]:
    pending = deque(candidates)
    while pending:
        pool = _process_pool(workers, max_tasks_per_worker)
        running: dict = {}
        started: dict = {}  # future -> when it was submitted (at most `workers` run, so: when it started)
        suspects: list[str] = []
        try:
            while (pending or running) and not suspects:
                while pending and len(running) < workers:
                    try:
                        future = pool.submit(task, candidate := pending.popleft(), settings)
                    except BrokenProcessPool:  # a worker died since the last wait: start a new pool
                        pending.appendleft(candidate)
                        break
                    running[future] = candidate
                    started[future] = time.monotonic()
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    candidate = running.pop(future)
                    seconds = time.monotonic() - started.pop(future)
                    try:
                        record = future.result()
                    except BrokenProcessPool:
                        if settings.timeout and seconds >= settings.timeout:  # its watchdog ended the worker
                            yield _dead_worker_record(candidate, settings, seconds)
                        else:
                            suspects.append(candidate)
                        continue
                    except Exception as exc:  # a result or argument that cannot be pickled
                        record = error_record(candidate, error_message(candidate, exc))
                    yield record
            # A dead worker breaks the whole pool: every candidate still in flight is a suspect.
            suspects.extend(running.values())
        finally:
            pool.shutdown(wait=not suspects, cancel_futures=True)
        for candidate in suspects:
            yield _run_alone(candidate, settings, task)


def run_ray(candidates: Iterable[str], settings: AuditSettings, workers: int | None, address: str | None,
            task: Task = audit_candidate, max_tasks_per_worker: int | None = DEFAULT_MAX_TASKS_PER_WORKER
            ) -> Iterator[dict]:
    try:
        import ray
    except ImportError as exc:
        raise ScanError(None, "--ray needs Ray, which is not installed: pip install 'provenance[ray]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=workers or None, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
        except Exception as exc:  # connection refused, bad address, ...
            raise ScanError(address, f"cannot start or reach Ray: {error_message(address or 'ray', exc)}") from exc
    try:
        # max_retries: a task whose worker died is run once more in a new worker, then reported.
        remote = ray.remote(num_cpus=1, max_retries=1, max_calls=max_tasks_per_worker or 0)(task)
        concurrency = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending = deque(candidates)
        in_flight: dict = {}
        while pending or in_flight:
            while pending and len(in_flight) < concurrency:
                candidate = pending.popleft()
                in_flight[remote.remote(candidate, settings)] = candidate
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                candidate = in_flight.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:
                    first = (str(exc).strip().splitlines() or [""])[0]
                    yield error_record(candidate, f"{candidate}: Ray task failed: {type(exc).__name__}: {first}")
    finally:
        if started_here:
            ray.shutdown()


# --- the candidate list and the output file ---------------------------------------------------------


def read_candidate_list(path: str) -> list[str]:
    """One candidate (path or URL) per line; blank lines and lines starting with `#` are skipped; `-` is stdin."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScanError(path, "candidate list not found") from None
    except IsADirectoryError:
        raise ScanError(path, "candidate list is a directory, expected a text file with one path per line") from None
    except UnicodeDecodeError:
        raise ScanError(path, "candidate list is not UTF-8 text") from None
    except OSError as exc:
        raise ScanError(path, f"cannot read candidate list: {exc.strerror or exc}") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def unique(candidates: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(candidates))


@dataclass(frozen=True)
class Outcome:
    """What the summary and --fail-on need from one record (records themselves are not kept in memory)."""

    status: str
    verdict: str | None = None  # best explanation
    reached: frozenset = frozenset()  # verdicts of non-abstained reference rows, as `audit --fail-on` checks
    rows: tuple = ()  # (verdict, reference) of those rows, to say which one tripped --fail-on

    @classmethod
    def of(cls, record: dict) -> "Outcome":
        if record.get("status") != "ok":
            return cls("error")
        report = record.get("audit") or {}
        rows = tuple((r["verdict"], r.get("reference")) for r in report.get("references", []) if not r.get("abstained"))
        return cls("ok", report.get("verdict"), frozenset(v for v, _ in rows), rows)

    def tripped(self, fail_on: set[str]) -> list[str]:
        """'VERDICT vs REFERENCE' (or 'error') for what this outcome reached of `fail_on`."""
        if self.status == "error":
            return ["error"] if "error" in fail_on else []
        return [f"{verdict} vs {reference}" for verdict, reference in self.rows if verdict in fail_on]


def read_output(path: Path) -> tuple[dict[str, Outcome], int]:
    """The outcome of every candidate already in OUT (the last line wins), and the number of bytes of a
    partial last line that was cut off (left by a killed run)."""
    outcomes: dict[str, Outcome] = {}
    if not path.exists():
        return outcomes, 0
    try:
        handle = open(path, "r+b")
    except OSError as exc:
        raise ScanError(path, f"cannot open the output file: {exc.strerror or exc}") from None
    with handle:
        offset = 0
        for number, line in enumerate(handle, 1):
            if not line.endswith(b"\n"):  # only a killed write leaves a line without its newline
                handle.truncate(offset)
                os.fsync(handle.fileno())
                return outcomes, len(line)
            offset += len(line)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise ScanError(path, f"line {number} is not JSON; is this a scan output file?") from None
            if not isinstance(record, dict) or not isinstance(record.get("candidate"), str) \
                    or record.get("status") not in ("ok", "error"):
                raise ScanError(path, f"line {number} is not a scan record (needs candidate and status ok/error)")
            outcomes[record["candidate"]] = Outcome.of(record)
    return outcomes, 0


class LineWriter:
    """Appends records to OUT, one whole line per `os.write` (O_APPEND), each followed by fsync."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ScanError(path, f"cannot write the output file: {exc.strerror or exc}") from None

    def write(self, record: dict) -> None:
        data = memoryview((json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8"))
        while data:  # one write for a regular file; the loop only guards against a short write
            data = data[os.write(self._fd, data):]
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


# --- the scan -------------------------------------------------------------------------------------


@dataclass
class ScanSummary:
    out: Path
    requested: int = 0
    skipped: int = 0  # already in OUT
    audited: int = 0  # this run
    errors_now: int = 0  # this run
    repaired_bytes: int = 0  # partial last line cut off before appending
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # every requested candidate's latest outcome

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == "error")

    def verdicts(self) -> Counter:
        return Counter(o.verdict for o in self.outcomes.values() if o.status == "ok")

    def hits(self, fail_on: set[str]) -> list[str]:
        """Requested candidates that reached a verdict in fail_on (`error` counts error records)."""
        return [c for c, o in self.outcomes.items()
                if (o.status == "error" and "error" in fail_on) or (o.reached & fail_on)]

    def render(self) -> str:
        verdicts = ", ".join(f"{v} {n}" for v, n in sorted(self.verdicts().items(), key=lambda i: (-i[1], str(i[0]))))
        lines = [f"scan: {self.requested} candidates -> {self.out}: {self.audited} audited now "
                 f"({self.errors_now} errors), {self.skipped} skipped (already in the output)",
                 f"scan: all {len(self.outcomes)}: {len(self.outcomes) - self.errors} ok, {self.errors} errors; "
                 f"verdicts: {verdicts or 'none'}"]
        if self.repaired_bytes:
            lines.insert(0, f"scan: cut off a partial last line ({self.repaired_bytes} bytes) left by an interrupted run")
        return "\n".join(lines)


def scan(candidates: Iterable[str], out: str | Path, execute: Callable[[list[str]], Iterator[dict]],
         retry_errors: bool = False, progress: bool = False) -> ScanSummary:
    """Audit the candidates not yet in OUT with `execute` (one of the executors, its other arguments bound),
    appending each record as it completes."""
    out = Path(out)
    candidates = unique(candidates)
    previous, repaired = read_output(out)
    summary = ScanSummary(out=out, requested=len(candidates), repaired_bytes=repaired)
    todo = []
    for candidate in candidates:
        known = previous.get(candidate)
        if known is not None and not (retry_errors and known.status == "error"):
            summary.skipped += 1
            summary.outcomes[candidate] = known
        else:
            todo.append(candidate)
    writer = LineWriter(out)
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="model", disable=not (progress and todo and sys.stderr.isatty()), file=sys.stderr)
    try:
        if todo:
            for record in execute(todo):
                writer.write(record)
                outcome = Outcome.of(record)
                summary.outcomes[record["candidate"]] = outcome
                summary.audited += 1
                summary.errors_now += outcome.status == "error"
                bar.update()
    finally:
        bar.close()
        writer.close()
    # Keep the summary in the order the candidates were given.
    summary.outcomes = {c: summary.outcomes[c] for c in candidates if c in summary.outcomes}
    return summary


def executor(workers: int | None, ray_address: str | None = None, use_ray: bool = False,
             settings: AuditSettings = AuditSettings(), task: Task = audit_candidate,
             max_tasks_per_worker: int | None = DEFAULT_MAX_TASKS_PER_WORKER) -> Callable[[list[str]], Iterator[dict]]:
    """The executor the command line asked for: Ray, a local process pool (default), or inline (--workers 0)."""
    if use_ray:
        return lambda todo: run_ray(todo, settings, workers, ray_address, task, max_tasks_per_worker)
    if workers == 0:
        return lambda todo: run_inline(todo, settings, task)
    count = workers or os.cpu_count() or 1
    return lambda todo: run_pool(todo, settings, count, task, max_tasks_per_worker)
