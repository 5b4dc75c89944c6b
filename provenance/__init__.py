"""provenance: audit where a released model checkpoint's weights come from.

The Python API (provenance/api.py):

    import provenance
    result = provenance.compare("candidate/", "reference/")   # a Comparison
    rows = provenance.audit("candidate/", refs="refs.sqlite")  # AuditResult: AuditRows, most serious first
    fp = provenance.fingerprint("candidate/")                  # a Fingerprint

`compare`, `audit` and `fingerprint` also name subpackages/modules of this
package (provenance.compare, provenance.audit, provenance.fingerprint). Each
of the three names is one object that is both: calling it calls the API
function; any attribute is read from (or set on) the submodule, imported on
first use. So `import provenance` stays light (no torch, no numpy), and
`import provenance.audit`, `from provenance.compare import Comparison` and
`provenance.fingerprint.load` keep working.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

_API_NAMES = ("compare", "audit", "fingerprint")


class _ApiEntry:
    """`provenance.NAME`: call it for `provenance.api.NAME`; use it as the submodule `provenance.NAME` otherwise."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def _module(self) -> types.ModuleType:
        return importlib.import_module(f"{__name__}.{self._name}")

    def __call__(self, *args, **kwargs):
        return getattr(importlib.import_module(f"{__name__}.api"), self._name)(*args, **kwargs)

    def __getattr__(self, attribute: str):
        if attribute == "__doc__":
            return getattr(importlib.import_module(f"{__name__}.api"), self._name).__doc__
        return getattr(self._module(), attribute)

    def __setattr__(self, attribute: str, value) -> None:
        setattr(self._module(), attribute, value)

    def __delattr__(self, attribute: str) -> None:
        delattr(self._module(), attribute)

    def __dir__(self):
        return dir(self._module())

    def __repr__(self) -> str:
        return f"<provenance.{self._name}: API function and submodule>"


class _Package(types.ModuleType):
    """This package's module type: importing a submodule named like an API function keeps the function."""

    def __setattr__(self, name: str, value) -> None:
        if name in _API_NAMES and isinstance(value, types.ModuleType):
            return  # the _ApiEntry already reaches the submodule
        super().__setattr__(name, value)


def __getattr__(name: str):
    """`provenance.api` (compare_json, audit_json) without an explicit import."""
    if name == "api":
        return importlib.import_module(f"{__name__}.api")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


for _name in _API_NAMES:
    globals()[_name] = _ApiEntry(_name)
sys.modules[__name__].__class__ = _Package
