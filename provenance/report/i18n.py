"""The report's words in each language: `strings/<lang>.json`, loaded and checked here.

Every sentence a reader sees in an HTML or Markdown report comes from these
files (placeholders in `{braces}`); templates hold layout only. Adding a
language is adding one JSON file with the same keys as `en.json`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

LANGUAGES = ("en", "zh")


def _keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for key, value in tree.items():
        found.add(prefix + key)
        if isinstance(value, dict):
            found |= _keys(value, f"{prefix}{key}.")
    return found


@lru_cache(maxsize=None)
def load_strings(lang: str) -> dict[str, Any]:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown report language {lang!r}; choose one of {', '.join(LANGUAGES)}")
    text = (resources.files("provenance.report") / "strings" / f"{lang}.json").read_text(encoding="utf-8")
    strings = json.loads(text)
    if lang != "en":
        missing = _keys(load_strings("en")) - _keys(strings)
        if missing:  # a packaging mistake, caught by the tests
            raise ValueError(f"strings/{lang}.json lacks {', '.join(sorted(missing))}")
    return strings
