"""Turn a PATH into a fingerprint: load a saved one, or build it from a checkpoint (local, or remote by URL).

A local checkpoint's fingerprint is looked up in the fingerprint cache first
(`cache.py`: keyed by the files' identity) and stored there once built.

A fingerprint is never taken for a model, nor a model for a fingerprint: a
fingerprint file is recognised strictly (`store.fingerprint_kind`), a
safetensors file holding both weights and fingerprint metadata is refused
wherever it is met (named, in a folder, at a URL), and a fingerprint found
where weights are expected (in a folder, at a URL) is named as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import CorruptFileError, ProvenanceError, UnreadablePathError
from ..formats.base import TensorSource
from ..formats.checkpoint_files import snapshot_directory
from ..model import Checkpoint
from ..remote import is_remote
from ..remote.budget import default_deadline
from .build import build_fingerprint
from .cache import FingerprintCache, cache_key, disabled_by_environment
from .store import MIXED_FILE, Fingerprint, file_fingerprint_kind, fingerprint_file_at, fingerprint_kind, load_fingerprint


NOT_WEIGHTS = ("is a provenance fingerprint, not model weights (a fingerprint is used as one when its own local "
               "file is named)")


def fingerprint_for(path: str | Path, on_tensor: Callable[[int, int], None] | None = None,
                    cache: bool = True) -> Fingerprint:
    saved = None if is_remote(path) else fingerprint_file_at(Path(path))  # a fingerprint file, or a folder of one
    if saved is not None:
        return load_fingerprint(saved)
    return fingerprint_checkpoint(path, on_tensor=on_tensor, cache=cache)


def refuse_local_fingerprints(path: Path) -> None:
    """`refuse_fingerprint_as_weights` for a local file or folder, from the safetensors headers alone."""
    try:
        files = [path] if path.is_file() else sorted(snapshot_directory(path).glob("*.safetensors")) if path.is_dir() else []
    except (OSError, ProvenanceError):
        return  # opening the checkpoint reports it
    for file in files:
        _refuse(file, file_fingerprint_kind(file))


def refuse_fingerprint_as_weights(shown: str | Path, source: TensorSource) -> None:
    """Raise when a checkpoint's safetensors files are (or carry) a fingerprint instead of only weights."""
    for part in getattr(source, "shards", None) or [source]:
        if getattr(part, "format", None) != "safetensors":
            continue
        kind = fingerprint_kind(part.metadata(), [info.name for info in part.tensor_infos()])
        _refuse(str(part.path) if str(part.path) != str(shown) else shown, kind)


def _refuse(where: str | Path, kind: str | None) -> None:
    if kind == "mixed":
        raise CorruptFileError(where, MIXED_FILE)
    if kind == "fingerprint":
        raise UnreadablePathError(where, NOT_WEIGHTS)


def fingerprint_checkpoint(path: str | Path, on_tensor: Callable[[int, int], None] | None = None,
                           cache: bool = True) -> Fingerprint:
    """The fingerprint of checkpoint PATH: from the cache if its files have not changed, else built.

    With `cache` False (or PROVENANCE_NO_CACHE set) the cache is neither read nor written.
    A URL or hf:// PATH is never cached: its "remote" variant is read by HTTP ranges.
    """
    if is_remote(path):
        with default_deadline(), Checkpoint.open(str(path)) as checkpoint:
            refuse_fingerprint_as_weights(path, checkpoint.files.source)
            return build_fingerprint(checkpoint, on_tensor=on_tensor)
    refuse_local_fingerprints(Path(path))
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
