"""Turn a PATH into a fingerprint: load a saved one, or build it from a checkpoint (local, or remote by URL).

A local checkpoint's fingerprint is looked up in the fingerprint cache first
(`cache.py`: keyed by the files' identity) and stored there once built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..model import Checkpoint
from ..remote import is_remote
from .build import build_fingerprint
from .cache import FingerprintCache, cache_key, disabled_by_environment
from .store import Fingerprint, fingerprint_file_at, load_fingerprint


def fingerprint_for(path: str | Path, on_tensor: Callable[[int, int], None] | None = None,
                    cache: bool = True) -> Fingerprint:
    saved = None if is_remote(path) else fingerprint_file_at(Path(path))  # a fingerprint file, or a folder of one
    if saved is not None:
        return load_fingerprint(saved)
    return fingerprint_checkpoint(path, on_tensor=on_tensor, cache=cache)


def fingerprint_checkpoint(path: str | Path, on_tensor: Callable[[int, int], None] | None = None,
                           cache: bool = True) -> Fingerprint:
    """The fingerprint of checkpoint PATH: from the cache if its files have not changed, else built.

    With `cache` False (or PROVENANCE_NO_CACHE set) the cache is neither read nor written.
    A URL or hf:// PATH is never cached: its "remote" variant is read by HTTP ranges.
    """
    if is_remote(path):
        with Checkpoint.open(str(path)) as checkpoint:
            return build_fingerprint(checkpoint, on_tensor=on_tensor)
    store = FingerprintCache() if cache and not disabled_by_environment() else None
    key = cache_key(Path(path)) if store else None
    if key:
        hit = store.get(key)
        if hit is not None:
            return hit
    with Checkpoint.open(path) as checkpoint:
        fingerprint = build_fingerprint(checkpoint, on_tensor=on_tensor)
    if key:
        store.put(key, fingerprint)
    return fingerprint
