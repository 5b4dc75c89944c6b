"""Executors of `provenance scan` in this machine: inline (one after another) and a local process pool.

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
  one torch thread, and exits if the scan process dies. A candidate stuck in
  native code past its --timeout is ended by the worker's watchdog (task.py)
  and recorded as timed out.

Each executor yields one record per candidate, in completion order.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Iterable, Iterator

from .task import (DEFAULT_MAX_TASKS_PER_WORKER, WORKER_DIED, AuditSettings, Task, audit_candidate, enter_pool_worker,
                   error_message, error_record, timeout_message)


def _init_worker() -> None:
    """Pool initializer: one torch thread per worker; the workers are the parallelism. (Every worker using
    every core oversubscribes them: measured 5-10x slower per candidate on a loaded 2-core machine.)
    Ray does the same for its tasks (OMP_NUM_THREADS=1)."""
    import torch  # lazy: only the worker processes need torch, never the scan's coordinating process

    enter_pool_worker()
    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()


def _exit_with_parent() -> None:
    """A worker whose scan was killed (SIGKILL leaves no time to stop the pool) exits instead of lingering."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns when the parent's end of the pipe closes, i.e. when it has died
        os._exit(1)


def run_inline(candidates: Iterable[str], settings: AuditSettings, task: Task = audit_candidate) -> Iterator[dict]:
    for candidate in candidates:
        yield task(candidate, settings)


def _pool_context():
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        # Workers forked from a server that has imported torch and the package start in milliseconds,
        # so replacing them every few tasks is cheap.
        context.set_forkserver_preload(["provenance.batch.task", "provenance.fingerprint.load", "provenance.audit"])
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
