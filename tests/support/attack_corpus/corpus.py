"""The corpus being written: its cases (command lines and what they must do) and the tiny model they break.

The base material is one seeded tiny LLaMA (`tiny_llama_state` of
tests/builders.py, made by hand without transformers so that the corpus is
quick to write), its config.json and a tokenizer.json.
"""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...builders import HEAD_DIM, HEADS, HIDDEN, INTER, LAYERS, VOCAB
from ...builders import KV as KV_HEADS
from ...builders import tiny_llama_config as tiny_config
from ...builders import tiny_llama_state as tiny_state

# The shapes and the base model are the shared builders' (the case modules import them from here).
__all__ = ["HEAD_DIM", "HEADS", "HIDDEN", "INTER", "KV_HEADS", "LAYERS", "VOCAB", "Case", "Corpus", "Run",
           "copy_model_dir", "f32", "safetensors_raw", "tiny_config", "tiny_state", "tiny_tokenizer",
           "write_model_dir"]


@dataclass(frozen=True)
class Run:
    """One command line and its expected outcome."""

    argv: tuple[str, ...]
    expect: str  # "error" (exit 1, one line) or "ok" (exit 0)
    names: str = ""  # an error line must contain this (the file it is about)
    fragment: str = ""  # ... and this (the problem)


@dataclass(frozen=True)
class Case:
    name: str  # "group/what"
    description: str
    runs: tuple[Run, ...]
    forbidden: tuple[str, ...] = ()  # paths that must not exist after the runs (sentinels, outputs of failed runs)

    @property
    def group(self) -> str:
        return self.name.split("/", 1)[0]


@dataclass
class Corpus:
    out: Path
    cases: list[Case] = field(default_factory=list)
    _good_fp: Path | None = None
    _good_db: Path | None = None

    def path(self, name: str) -> Path:
        target = self.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def directory(self, name: str) -> Path:
        target = self.out / name
        target.mkdir(parents=True, exist_ok=True)
        return target

    def sentinel(self, name: str) -> Path:
        return self.path(f"sentinels/{name.replace('/', '_')}")

    def output(self, name: str) -> Path:
        return self.path(f"outputs/{name.replace('/', '_')}.fp.safetensors")

    def add(self, name: str, description: str, runs: list[Run], forbidden: list[Path | str] = ()) -> None:
        self.cases.append(Case(name, description, tuple(runs), tuple(str(p) for p in forbidden)))

    def checkpoint(self, name: str, description: str, target: Path, names: Path | str, fragment: str,
                   inspect_ok: bool = False, forbidden: list[Path | str] = ()) -> None:
        """A checkpoint that `inspect` and `fingerprint` must both refuse (or only `fingerprint`, which reads data)."""
        output = self.output(name)
        runs = [Run(("inspect", str(target), "--no-hash"), "ok") if inspect_ok else
                Run(("inspect", str(target), "--no-hash"), "error", str(names), fragment),
                Run(("fingerprint", str(target), "-o", str(output)), "error", str(names), fragment)]
        self.add(name, description, runs, [output, *forbidden])

    def valid(self, name: str, description: str, target: Path) -> None:
        """Odd but valid input: inspect, fingerprint, and compare the fingerprint with the checkpoint."""
        output = self.output(name)
        self.add(name, description, [Run(("inspect", str(target), "--no-hash"), "ok"),
                                     Run(("fingerprint", str(target), "-o", str(output)), "ok"),
                                     Run(("compare", str(output), str(target)), "ok")])

    @property
    def good_fingerprint(self) -> Path:
        if self._good_fp is None:
            from provenance.fingerprint import build_fingerprint
            from provenance.model import Checkpoint

            with Checkpoint.open(self.out / "base" / "model") as checkpoint:
                fingerprint = build_fingerprint(checkpoint)
            self._good_fp = fingerprint.save(self.path("base/good.fp.safetensors"))
        return self._good_fp

    @property
    def good_db(self) -> Path:
        if self._good_db is None:
            from provenance.audit.shortlist import add_reference
            from provenance.fingerprint.store import load_fingerprint
            from provenance.registry import Registry

            with Registry(self.path("base/good_refs.sqlite")) as registry:
                add_reference(registry, "tiny-llama", load_fingerprint(self.good_fingerprint))
            self._good_db = self.out / "base" / "good_refs.sqlite"
        return self._good_db


def tiny_tokenizer() -> dict:
    tokens = [f"tok{i}" for i in range(VOCAB)]
    return {"version": "1.0", "added_tokens": [], "pre_tokenizer": None,
            "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens)}, "merges": []}}


def write_model_dir(directory: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in (state or tiny_state()).items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    (directory / "tokenizer.json").write_text(json.dumps(tiny_tokenizer()))
    return directory


def copy_model_dir(corpus: Corpus, name: str) -> Path:
    directory = corpus.out / name
    directory.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(corpus.out / "base" / "model", directory)
    return directory


def safetensors_raw(path: Path, header: dict | bytes, data: bytes = b"", header_len: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data)
    return path


def f32(begin: int, count: int) -> dict:
    return {"dtype": "F32", "shape": [count], "data_offsets": [begin, begin + 4 * count]}
