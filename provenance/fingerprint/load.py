"""Turn a PATH into a fingerprint: load a saved one, or build it from a checkpoint (local, or remote by URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .build import build_fingerprint
from .store import Fingerprint, is_fingerprint_file, load_fingerprint


def fingerprint_for(path: str | Path, on_tensor: Callable[[int, int], None] | None = None) -> Fingerprint:
    from ..model import Checkpoint
    from ..remote import is_remote

    if is_remote(path):  # a URL or hf://: the "remote" fingerprint variant, read by HTTP ranges
        with Checkpoint.open(str(path)) as checkpoint:
            return build_fingerprint(checkpoint, on_tensor=on_tensor)
    path = Path(path)
    if is_fingerprint_file(path):
        return load_fingerprint(path)

    with Checkpoint.open(path) as checkpoint:
        return build_fingerprint(checkpoint, on_tensor=on_tensor)
