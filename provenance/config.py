"""`[tool.provenance]` in pyproject.toml: a project's defaults for the reference database, references and --fail-on.

As ruff reads `[tool.ruff]`: the nearest pyproject.toml from the working
folder upward that has a `[tool.provenance]` table is used (read with the
standard library's tomllib; tomli on Python 3.10). Its keys:

    [tool.provenance]
    refs = "references/refs.sqlite"   # the database (relative to the pyproject.toml's folder)
    builtin = true                    # false: leave out the built-in references (as --no-builtin)
    fail-on = ["identical", "derived", "assembled"]   # or one comma-separated string

A value given on the command line wins; $PROVENANCE_REFS wins over `refs`.
An unknown key or a bad value is a one-line error naming the file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CorruptFileError
from .gate import parse_fail_on

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

KEYS = ("refs", "builtin", "fail-on")


@dataclass(frozen=True)
class ProjectConfig:
    path: Path | None = None  # the pyproject.toml read (None: none found)
    refs: str | None = None
    builtin: bool | None = None
    fail_on: frozenset[str] | None = None


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml from `start` upward holding a [tool.provenance] table."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and b"[tool.provenance]" in candidate.read_bytes():
            return candidate
    return None


def load_config(start: Path | None = None) -> ProjectConfig:
    path = find_pyproject((start or Path.cwd()).resolve())
    if path is None:
        return ProjectConfig()
    try:
        table: Any = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("provenance", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CorruptFileError(path, f"cannot read [tool.provenance]: {exc}") from exc
    if not isinstance(table, dict):
        raise CorruptFileError(path, "[tool.provenance] must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise CorruptFileError(path, f"[tool.provenance]: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(KEYS)}")
    refs, builtin, fail_on = table.get("refs"), table.get("builtin"), table.get("fail-on")
    if refs is not None and not isinstance(refs, str):
        raise CorruptFileError(path, "[tool.provenance] refs must be a path (a string)")
    if builtin is not None and not isinstance(builtin, bool):
        raise CorruptFileError(path, "[tool.provenance] builtin must be true or false")
    if isinstance(fail_on, list) and all(isinstance(v, str) for v in fail_on):
        fail_on = ",".join(fail_on)
    if fail_on is not None and not isinstance(fail_on, str):
        raise CorruptFileError(path, "[tool.provenance] fail-on must be a list of names or one comma-separated string")
    try:
        names = parse_fail_on(fail_on) if fail_on is not None else None
    except ValueError as exc:
        raise CorruptFileError(path, f"[tool.provenance] {exc}") from exc
    return ProjectConfig(path, str(path.parent / refs) if refs else None, builtin, names)


__all__ = ["KEYS", "ProjectConfig", "find_pyproject", "load_config"]
