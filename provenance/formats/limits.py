"""Bounds on what we accept from untrusted files, and the helpers that apply them.

Every size a file declares (header lengths, counts, string lengths) is checked
against these caps and against the file's real size before anything is
allocated for it, so that a hostile file costs bounded memory and time and
fails with one clear error. The caps are far above what real checkpoints use
(noted beside each) and far below what would exhaust a workstation.
"""

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

# Tensors per checkpoint (all shards together). The largest real checkpoints hold
# a few tens of thousands (Qwen3-235B-A22B with unstacked experts: about 37,000);
# each listed tensor costs about 1-2 KB of Python objects before any data is read.
MAX_TENSORS = 1 << 18
MAX_SHARDS = 10_000  # Llama-3.1-405B has 191 shards
# The pickle (data.pkl) of a zip-format PyTorch file: a 7B model's is about 30 KB.
# Each tensor in it costs ~30 bytes of pickle but ~1 KB once unpickled.
MAX_PICKLE_BYTES = 16 * 1024 * 1024
# GGUF metadata. Our reader (gguf_header) reads a numeric array as one block but
# still makes a Python string per string element, so string elements are
# bounded: Gemma-3's tokenizer holds 262,144 token strings, LLaMA-3's 128,256
# tokens plus 280,147 merges.
MAX_GGUF_KV = 65_536
MAX_GGUF_ARRAY = 1 << 22  # elements in one metadata array
MAX_GGUF_ARRAY_TOTAL = 1 << 23  # elements in all metadata arrays together
MAX_GGUF_STRINGS = 1 << 21  # string elements in all metadata arrays together
MAX_GGUF_STRING = 64 * 1024 * 1024  # one string (an embedded tokenizer.json can be ~10 MB)
# The whole GGUF header (metadata and tensor infos), held in memory while it is parsed:
# Gemma-3's 262,144-token vocabulary takes a few MB; this leaves ample room.
MAX_GGUF_HEADER_BYTES = 256 * 1024 * 1024


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (json.loads would silently keep the last)."""


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for json.loads that refuses an object naming a key twice."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(key)
        seen[key] = value
    return seen


def _read_capped(path: Path, kind: str) -> bytes:
    """A side file's bytes after checking its size against the cap for `kind`; refused beyond it."""
    limit = MAX_JSON_BYTES[kind]
    try:
        size = path.stat().st_size
        if size > limit:
            raise CorruptFileError(path, f"{kind} file is {size} bytes, over the {limit}-byte limit")
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc
    if len(raw) > limit:  # the file grew after stat()
        raise CorruptFileError(path, f"{kind} file is over the {limit}-byte limit")
    return raw


def read_json_limited(path: Path, kind: str = "other", unique_keys: bool = False) -> Any:
    """Parse a JSON side file after checking its size; errors name the file.

    With `unique_keys`, an object naming a key twice is refused (an index listing
    one tensor in two shards must not silently keep whichever came last).
    """
    raw = _read_capped(path, kind)
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=reject_duplicate_keys if unique_keys else None)
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"not UTF-8 text (byte {exc.start})") from exc
    except DuplicateKeyError as exc:
        raise CorruptFileError(path, f"names {exc.args[0]!r} twice in one JSON object") from exc
    except (ValueError, RecursionError) as exc:
        raise CorruptFileError(path, f"not valid JSON: {exc}") from exc


def read_text_capped(path: Path, kind: str = "tokenizer") -> str:
    """A text side file (vocab.txt) after checking its size against the cap for `kind`; refused beyond it."""
    return _read_capped(path, kind).decode("utf-8", errors="replace")


def read_text_limited(path: Path) -> str:
    """The first MAX_TEXT_BYTES of a text file (a model card: only its front matter matters)."""
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
