"""What an audit covered and what it cannot see, stated beside every verdict.

"No reference explains these weights" is a statement about the references
that were compared, never a finding that the model is original: the outputs
say how many references there were (built-in weights, built-in
architectures, the database, and the open base models of the catalog that
are not in the database yet), and what an audit of weights cannot see at
all. Computed once here; the renderers only format `Scope`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).resolve().parents[1] / "references" / "catalog.json"  # what `refs sync` fetches

# What comparing weights with references can never show, whatever the references.
CANNOT_SEE = ("distillation (a model trained on another model's outputs shares no weights with it)",
              "API wrappers (a service that forwards requests to another model has no weights to audit)",
              "closed or unpublished models, and any model that is not among the references")


@dataclass(frozen=True)
class Scope:
    builtin_weights: int  # built-in references whose weights were compared
    builtin_architectures: int  # built-in configuration-only references (shapes, no weights)
    database_compared: int  # database references compared in full
    database_total: int  # references in the database (screened, or all compared)
    catalog_missing: int | None  # catalog base models not in the database (None: no catalog readable)
    not_comparable: int = 0  # references compared whose weights had no tensor of matching shape (nothing ran)

    @property
    def weights_compared(self) -> int:
        return self.builtin_weights + self.database_compared

    def to_dict(self) -> dict[str, Any]:
        return {"references_compared": self.weights_compared, "builtin_weights": self.builtin_weights,
                "builtin_architectures": self.builtin_architectures, "database_compared": self.database_compared,
                "database_total": self.database_total, "catalog_not_in_database": self.catalog_missing,
                "not_comparable": self.not_comparable,
                "cannot_see": list(CANNOT_SEE)}


def catalog_names(path: Path = CATALOG_PATH) -> list[str] | None:
    """The names of the catalog's models, or None when it cannot be read (it is only counted here)."""
    try:
        models = json.loads(path.read_text(encoding="utf-8")).get("models")
        return [m["name"] for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)]
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def audit_scope(rows, database_names: list[str] | None) -> Scope:
    """The scope of one audit from its rows (`AuditRow`) and the names in its database (None: no database)."""
    names = catalog_names()
    present = {n.lower() for n in database_names or ()}
    missing = None if names is None else sum(1 for n in names if n.lower() not in present)
    return Scope(builtin_weights=sum(1 for r in rows if r.kind == "weights" and r.origin == "built-in"),
                 builtin_architectures=sum(1 for r in rows if r.kind != "weights" and r.origin.startswith("built-in")),
                 database_compared=sum(1 for r in rows if not r.origin.startswith("built-in")),
                 database_total=len(database_names or ()), catalog_missing=missing,
                 not_comparable=sum(1 for r in rows if r.kind == "weights" and not r.result.weights_compared))


__all__ = ["CANNOT_SEE", "Scope", "audit_scope", "catalog_names"]
