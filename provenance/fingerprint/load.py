"""Turn a PATH into a fingerprint: load a saved one, or build it from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .build import build_fingerprint
from .store import Fingerprint, is_fingerprint_file, load_fingerprint


def fingerprint_for(path: str | Path, on_tensor: Callable[[int, int], None] | None = None) -> Fingerprint:
    path = Path(path)
    if is_fingerprint_file(path):
        return load_fingerprint(path)
    from ..model import Checkpoint

    with Checkpoint.open(path) as checkpoint:
        return build_fingerprint(checkpoint, on_tensor=on_tensor)
