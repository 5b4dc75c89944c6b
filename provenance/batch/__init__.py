"""`provenance scan`: many candidates audited in parallel, one JSON line each (resumable).

task.py (the per-candidate audit, run in the workers) -> pool.py /
ray_executor.py (executors) -> jsonl.py (candidate list, output file) ->
summary.py (outcomes, summary); scan.py ties them together.
"""

from ..errors import ScanError
from .jsonl import LineWriter, read_candidate_list, read_output, unique
from .pool import run_inline, run_pool
from .ray_executor import run_ray
from .scan import executor, scan
from .summary import Outcome, ScanSummary
from .task import (DEFAULT_MAX_TASKS_PER_WORKER, REFERENCE_CACHE_BYTES, TIMEOUT_GRACE, WORKER_DIED, AuditSettings,
                   CachedRegistry, CandidateTimeout, Task, audit_candidate, error_message, error_record,
                   reference_database, time_limit, timeout_message)

__all__ = ["DEFAULT_MAX_TASKS_PER_WORKER", "REFERENCE_CACHE_BYTES", "TIMEOUT_GRACE", "WORKER_DIED", "AuditSettings",
           "CachedRegistry", "CandidateTimeout", "LineWriter", "Outcome", "ScanError", "ScanSummary", "Task",
           "audit_candidate", "error_message", "error_record", "executor", "read_candidate_list", "read_output",
           "reference_database", "run_inline", "run_pool", "run_ray", "scan", "time_limit", "timeout_message", "unique"]
