"""provenance: audit where a released model checkpoint's weights come from.

The Python API (provenance/api.py):

    import provenance
    result = provenance.compare_models("candidate/", "reference/")   # a Comparison
    rows = provenance.audit_model("candidate/", refs="refs.sqlite")  # AuditResult: AuditRows, most serious first
    fp = provenance.fingerprint_model("candidate/")                  # a Fingerprint

The subpackages keep their own names (`provenance.compare`,
`provenance.audit`, `provenance.fingerprint`): the API functions are named
apart from them. `import provenance` stays light (no torch, no numpy): the
API functions and those subpackages are imported on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

API = ("compare_models", "audit_model", "fingerprint_model", "compare_json", "audit_json")  # provenance/api.py
SUBPACKAGES = ("api", "compare", "audit", "fingerprint")  # reachable as attributes before an explicit import


def __getattr__(name: str):
    """`provenance.compare_models` and the rest of `API` from provenance/api.py; the `SUBPACKAGES`, imported."""
    if name in API:
        return getattr(importlib.import_module(f"{__name__}.api"), name)
    if name in SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API) | set(SUBPACKAGES))


__all__ = ["__version__", *API]
