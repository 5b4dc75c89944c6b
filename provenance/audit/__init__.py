"""`provenance audit`: one candidate against every reference, the explanations ranked.

The flow: the candidate's fingerprint is compared with the built-in
references (builtin.py) and with the database's shortlist (shortlist.py
screens every stored signature first); config-only references
(config_references.py) add shape rows, tokenizer references
(tokenizer_references.py) add tokenizer evidence; run.py ranks the rows
(rows.py) into an `AuditResult` (result.py, with what the report shows
beyond the rows: details.py); its `provenance.audit/1` JSON (audit_json.py),
the terminal text and the reports are rendered from it in `provenance/report/`.

The API function is `provenance.audit_model(...)` (provenance/api.py).
"""

from ..verdicts import SEVERITY
from .builtin import builtin_references
from .result import SCHEMA, AuditResult, BestMatch, Reproducibility
from .rows import SHAPE_RANK, AuditRow
from .run import run_audit

__all__ = ["SCHEMA", "SEVERITY", "SHAPE_RANK", "AuditResult", "AuditRow", "BestMatch", "Reproducibility",
           "builtin_references", "run_audit"]
