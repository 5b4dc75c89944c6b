"""Find what a PATH holds: tensor files plus config, tokenizer and model card.

A PATH is a weights file (.safetensors, .bin/.pt/.pth, .gguf), a Hugging Face
model directory (config.json, model.safetensors or shards with an index,
pytorch_model*.bin, tokenizer files), or a Hugging Face cache directory
(`models--ORG--NAME`, or one of its `snapshots/REVISION` folders, whose files
are symlinks into `blobs/`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import CorruptFileError, UnreadablePathError
from .base import TensorSource
from .gguf_format import GgufFile
from .limits import read_json_limited, read_text_limited, resolve_inside
from .lineage import LINEAGE_FILES
from .multi import MultiFileSource, open_sharded, open_shards
from .pytorch_format import PytorchFile
from .quantized.dequantizing import with_dequantization
from .safetensors_format import SafetensorsFile

SAFETENSORS_SUFFIXES = (".safetensors",)
PYTORCH_SUFFIXES = (".bin", ".pt", ".pth")
GGUF_SUFFIXES = (".gguf",)
# Files in model directories that hold training state, not model weights.
NOT_WEIGHTS = ("training_args.bin", "optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model")


@dataclass
class CheckpointFiles:
    """A checkpoint's tensor source and the side files found next to it."""

    path: Path
    source: TensorSource
    config: dict[str, Any] | None = None
    config_path: Path | None = None
    tokenizer_paths: dict[str, Path] = field(default_factory=dict)
    model_card: str | None = None
    lineage_paths: dict[str, Path] = field(default_factory=dict)  # adapter config, merge recipes (lineage.py)
    notes: list[str] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list, repr=False)  # run by close (temporary files)

    def on_close(self, cleanup: Callable[[], None]) -> None:
        """Run `cleanup` when the checkpoint is closed (after its source), e.g. to remove fetched side files."""
        self.cleanups.append(cleanup)

    @property
    def format(self) -> str:
        return self.source.format

    def all_files(self) -> list[Path]:
        files = list(self.source.files())
        if self.config_path:
            files.append(self.config_path)
        files.extend(self.tokenizer_paths.values())
        return list(dict.fromkeys(files))

    def close(self) -> None:
        try:
            self.source.close()
        finally:
            while self.cleanups:
                self.cleanups.pop()()


def open_weights_file(path: Path) -> TensorSource:
    name = path.name.lower()
    if name.endswith(SAFETENSORS_SUFFIXES):
        return SafetensorsFile(path)
    if name.endswith(GGUF_SUFFIXES):
        return GgufFile(path)
    if name.endswith(PYTORCH_SUFFIXES):
        return PytorchFile(path)
    raise UnreadablePathError(path, "not a known weights file (expected .safetensors, .bin, .pt, .pth or .gguf)")


def snapshot_directory(path: Path) -> Path:
    """For a `models--ORG--NAME` cache folder, the snapshot that refs/main names."""
    snapshots = path / "snapshots"
    if not (path.name.startswith("models--") and snapshots.is_dir()):
        return path
    ref = path / "refs" / "main"
    if ref.is_file():
        try:
            with open(ref, "rb") as handle:  # a commit hash; never read a hostile file whole
                revision = handle.read(256).decode("utf-8", errors="replace").strip()
        except OSError as exc:
            raise UnreadablePathError(ref, f"cannot read: {exc.strerror or exc}") from exc
        candidate = snapshots / revision
        if revision and "/" not in revision and "\\" not in revision and revision not in (".", "..") and candidate.is_dir():
            return candidate
    revisions = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(revisions) == 1:
        return revisions[0]
    raise UnreadablePathError(path, f"cache folder has {len(revisions)} snapshots and no refs/main; pass one snapshots/REVISION folder")


def _allowed_root(directory: Path) -> Path:
    """Files of a cache snapshot are symlinks into the repository's blobs/ folder."""
    if directory.parent.name == "snapshots" and directory.parent.parent.name.startswith("models--"):
        return directory.parent.parent
    return directory


def _pick_weights(directory: Path, root: Path) -> TensorSource:
    def inside(files: list[Path]) -> list[Path]:
        for file in files:
            resolve_inside(file, root)
        return files

    children = sorted(p for p in directory.iterdir() if p.is_file() or p.is_symlink())
    names = {p.name: p for p in children}

    st_indexes = [p for p in children if p.name.endswith(".safetensors.index.json")]
    if st_indexes:
        index = names.get("model.safetensors.index.json") or st_indexes[0]
        resolve_inside(index, root)
        return open_sharded(index, root, SafetensorsFile, "safetensors")
    st_files = inside([p for p in children if p.name.endswith(SAFETENSORS_SUFFIXES)])
    if st_files:
        preferred = [p for p in st_files if p.name.startswith("model")] or st_files
        if len(preferred) == 1:
            return SafetensorsFile(preferred[0])
        return MultiFileSource(directory, open_shards(preferred, SafetensorsFile, directory), "safetensors")

    pt_indexes = [p for p in children if p.name.endswith(".bin.index.json")]
    if pt_indexes:
        resolve_inside(pt_indexes[0], root)
        return open_sharded(pt_indexes[0], root, PytorchFile, "pytorch")
    pt_files = inside([p for p in children if p.name.endswith(PYTORCH_SUFFIXES) and p.name not in NOT_WEIGHTS
                       and not p.name.startswith("rng_state")])
    if pt_files:
        preferred = [p for p in pt_files if p.name.startswith("pytorch_model")] or pt_files
        if len(preferred) == 1:
            return PytorchFile(preferred[0])
        return MultiFileSource(directory, open_shards(preferred, PytorchFile, directory), "pytorch")

    gguf_files = inside([p for p in children if p.name.endswith(GGUF_SUFFIXES)])
    if len(gguf_files) == 1:
        return GgufFile(gguf_files[0])
    if len(gguf_files) > 1:
        raise UnreadablePathError(directory, f"holds {len(gguf_files)} GGUF files; pass one of them")
    raise UnreadablePathError(directory, "no weights found (no .safetensors, .bin, .pt or .gguf file)")


def open_checkpoint_files(path: str | Path) -> CheckpointFiles:
    """Open PATH's tensors (headers only) and read its small side files."""
    path = Path(path)
    if not path.exists():
        raise UnreadablePathError(path, "no such file or directory")
    if path.is_file():
        files = CheckpointFiles(path=path, source=open_weights_file(path))
        directory, root = path.parent, path.parent
        if path.name.lower().endswith(GGUF_SUFFIXES):
            return files  # a GGUF carries its own config and tokenizer
    elif path.is_dir():
        directory = snapshot_directory(path)
        root = _allowed_root(directory)
        try:
            files = CheckpointFiles(path=path, source=_pick_weights(directory, root))
        except PermissionError as exc:
            raise UnreadablePathError(path, "permission denied") from exc
    else:
        raise UnreadablePathError(path, "not a regular file or directory")

    config_path = directory / "config.json"
    if config_path.is_file():
        resolve_inside(config_path, root)
        config = read_json_limited(config_path, "config")
        if not isinstance(config, dict):
            raise CorruptFileError(config_path, f"config is a JSON {type(config).__name__}, expected an object")
        files.config, files.config_path = config, config_path
    files.source = with_dequantization(files.source, files.config)
    for name in TOKENIZER_FILES:
        candidate = directory / name
        if candidate.is_file():
            resolve_inside(candidate, root)
            files.tokenizer_paths[name] = candidate
    for name in LINEAGE_FILES:
        candidate = directory / name
        if candidate.is_file():
            resolve_inside(candidate, root)
            files.lineage_paths[name] = candidate
    card = directory / "README.md"
    if card.is_file():
        resolve_inside(card, root)
        files.model_card = read_text_limited(card)
    note = getattr(files.source, "memory_note", None)
    if note:
        files.notes.append(note)
    return files
