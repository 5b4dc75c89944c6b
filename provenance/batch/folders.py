"""`scan DIR` on a folder of model folders: the model folders inside it become the candidates.

A folder that holds no weights-like file of its own (no .safetensors, .bin,
.pt, .pth or .gguf; a fingerprint file counts as one) but whose sub-folders
do is the way people keep several models (`models/a`, `models/b`): scanning
it as one candidate would end in "no weights found". Each sub-folder that
holds a weights-like file (or is a Hugging Face cache folder
`models--ORG--NAME`) becomes a candidate, in name order; a sub-folder
without one is left out and counted, so the summary can say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..fingerprint.store import WEIGHT_LIKE_SUFFIXES


@dataclass(frozen=True)
class Expansion:
    folder: str  # the candidate as given
    models: tuple[str, ...]  # the model folders inside it
    skipped: int  # sub-folders holding no weights-like file


def _holds_weights(folder: Path) -> bool:
    if folder.name.startswith("models--") and (folder / "snapshots").is_dir():
        return True
    try:
        return any(p.name.lower().endswith(WEIGHT_LIKE_SUFFIXES) for p in folder.iterdir())
    except OSError:
        return False  # unreadable: left to the audit of the folder itself, which says why


def expand_model_folders(candidates: list[str]) -> tuple[list[str], list[Expansion]]:
    """Candidates with every folder of model folders replaced by its model folders, and what was expanded."""
    out, expanded = [], []
    for candidate in candidates:
        path = Path(candidate)
        if not path.is_dir() or _holds_weights(path):
            out.append(candidate)
            continue
        try:
            subfolders = sorted(p for p in path.iterdir() if p.is_dir())
        except OSError:
            out.append(candidate)
            continue
        models = [str(p) for p in subfolders if _holds_weights(p)]
        if not models:
            out.append(candidate)  # no model folders either: its audit says "no weights found"
            continue
        out.extend(models)
        expanded.append(Expansion(candidate, tuple(models), len(subfolders) - len(models)))
    return out, expanded


__all__ = ["Expansion", "expand_model_folders"]
