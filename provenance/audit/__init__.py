"""`provenance audit`: one candidate against every reference, the explanations ranked.

The flow: the candidate's fingerprint is compared with the built-in
references (builtin.py) and with the database's shortlist (shortlist.py
screens every stored signature first); config-only references
(config_references.py) add shape rows, tokenizer references
(tokenizer_references.py) add tokenizer evidence; run.py ranks the rows
(rows.py) and writes the `provenance.audit/1` JSON and the terminal text.

Calling `provenance.audit(...)` is the API function (provenance/api.py); this
package is what `import provenance.audit` gives.
"""

from .builtin import builtin_references
from .rows import SEVERITY, SHAPE_RANK, AuditRow, AuditRows
from .run import SCHEMA, audit_to_json, render_audit, run_audit

__all__ = ["SCHEMA", "SEVERITY", "SHAPE_RANK", "AuditRow", "AuditRows", "audit_to_json", "builtin_references",
           "render_audit", "run_audit"]
