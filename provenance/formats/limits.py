"""Bounds on what we accept from untrusted files, and the helpers that apply them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, UnreadablePathError

# Side files (config.json, indexes, tokenizer files) larger than this are refused.
MAX_JSON_BYTES = {
    "config": 8 * 1024 * 1024,
    "index": 64 * 1024 * 1024,
    "tokenizer": 128 * 1024 * 1024,
    "other": 16 * 1024 * 1024,
}
MAX_TEXT_BYTES = 4 * 1024 * 1024  # model cards


def read_json_limited(path: Path, kind: str = "other") -> Any:
    """Parse a JSON side file after checking its size; errors name the file."""
    limit = MAX_JSON_BYTES[kind]
    try:
        size = path.stat().st_size
        if size > limit:
            raise CorruptFileError(path, f"{kind} file is {size} bytes, over the {limit}-byte limit")
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"not UTF-8 text (byte {exc.start})") from exc
    except (ValueError, RecursionError) as exc:
        raise CorruptFileError(path, f"not valid JSON: {exc}") from exc


def read_text_limited(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_TEXT_BYTES).decode("utf-8", errors="replace")
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc


def resolve_inside(path: Path, root: Path) -> Path:
    """The real path of `path`, refusing one (e.g. via a symlink) that leaves `root`."""
    resolved = path.resolve()
    real_root = root.resolve()
    if resolved != real_root and real_root not in resolved.parents:
        raise UnreadablePathError(path, f"points outside the checkpoint directory (to {resolved}); refusing to read it")
    return resolved
