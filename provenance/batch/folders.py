"""`scan DIR` on a folder of model folders: the model folders inside it become the candidates.

A folder that holds no weights-like file of its own (no .safetensors, .bin,
.pt, .pth or .gguf; a fingerprint file counts as one) but whose sub-folders
do is the way people keep several models (`models/a`, `models/b`): scanning
it as one candidate would end in "no weights found". Each sub-folder that
holds a weights-like file (or is a Hugging Face cache folder
`models--ORG--NAME`) becomes a candidate, in name order; a sub-folder
without one is left out and counted, so the summary can say so. A folder
that holds weights of its own (a lone .gguf, say) and model sub-folders is
scanned as itself and as each of them; `audit` reads only its own weights
and says which sub-folders it left unread (`model_subfolders`).
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


def model_subfolders(path: Path) -> tuple[list[str], int]:
    """The sub-folders of `path` that hold a model, and how many others there are ([] and 0 for a file)."""
    try:
        subfolders = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    except OSError:
        return [], 0
    models = [str(p) for p in subfolders if _holds_weights(p)]
    return models, len(subfolders) - len(models)


def expand_model_folders(candidates: list[str]) -> tuple[list[str], list[Expansion]]:
    """Candidates with every folder of model folders replaced by (itself if it holds weights, and) its model
    folders, and what was expanded."""
    out, expanded = [], []
    for candidate in candidates:
        models, others = model_subfolders(Path(candidate))
        own = not models or _holds_weights(Path(candidate))  # no model folders: its audit says what it holds
        out.extend(([candidate] if own else []) + models)
        if models:
            expanded.append(Expansion(candidate, tuple(models), others))
    return out, expanded


__all__ = ["Expansion", "expand_model_folders", "model_subfolders"]
