"""The Ray executor of `provenance scan` (`--ray [ADDRESS]`; `ray` is an optional extra).

The same task as the local pool (task.audit_candidate) as Ray tasks, on a
local Ray instance or a cluster at ADDRESS. Paths in the list must be readable
on the nodes that run the tasks (a shared filesystem). A task whose worker died
is run once more in a new worker, then reported as an error record.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Iterable, Iterator

from ..errors import ScanError
from .task import DEFAULT_MAX_TASKS_PER_WORKER, AuditSettings, Task, audit_candidate, error_message, error_record


def run_ray(candidates: Iterable[str], settings: AuditSettings, workers: int | None, address: str | None,
            task: Task = audit_candidate, max_tasks_per_worker: int | None = DEFAULT_MAX_TASKS_PER_WORKER
            ) -> Iterator[dict]:
    try:
        import ray  # optional extra, heavy: imported only for --ray
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
