"""`provenance scan`: audit many candidates, one JSON line each, on a local process pool or a Ray cluster.

Every candidate goes through the same function, `task.audit_candidate`, which
does what `provenance audit --json` does and never raises: a failure becomes
an error record. `executor` picks how the tasks run: inline (`--workers 0`),
a local process pool (pool.py, the default), or Ray (ray_executor.py).
`scan` skips the candidates already in OUT (jsonl.py reads it; the last line
of a candidate counts; `--retry-errors` audits error lines again), appends
each record as it completes, and returns the run's summary (summary.py).

Timeout (`--timeout SECONDS`, per candidate): inside the task a SIGALRM
timer (on the thread that runs it, where the platform allows) stops the
audit with an error record, so a candidate stuck in Python code or a
blocking read costs one line and the worker lives on. A candidate stuck in
native code that ignores the signal is caught by a watchdog thread in pool
workers, which ends the worker process TIMEOUT_GRACE seconds later; the pool
then records that candidate (it ran past its time) as timed out and
retries the others that were running alone, as for any dead worker.
"""


from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .jsonl import LineWriter, read_output, unique
from .pool import run_inline, run_pool
from .ray_executor import run_ray
from .summary import Outcome, ScanSummary
from .task import DEFAULT_MAX_TASKS_PER_WORKER, AuditSettings, Task, audit_candidate


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
    from tqdm import tqdm  # drawn only on a terminal; imported when a scan starts

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
