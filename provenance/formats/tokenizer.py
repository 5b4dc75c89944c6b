"""Tokenizer vocabularies, read as data, with token strings normalised across conventions.

Byte-level BPE (GPT-2, LLaMA-3, Qwen) writes a leading space as `Ġ` and maps
every byte to a printable character; SentencePiece (LLaMA-2, Yi) writes `▁`;
WordPiece (BERT) marks continuations with `##`. To align embedding rows of two
models by token *string* (not id), strings are decoded to a common form:
a real leading space, real bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .checkpoint_files import TOKENIZER_FILES
from .limits import read_json_limited, read_text_capped


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's reversible byte <-> printable character table (a fixed, public convention)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def normalise_token(token: str, byte_level: bool) -> str:
    if byte_level:
        decoder = _byte_decoder()
        if all(ch in decoder for ch in token):
            return bytes(decoder[ch] for ch in token).decode("utf-8", errors="replace")
        return token
    return token.replace("▁", " ")


@dataclass
class Vocabulary:
    """Token strings by id, in normalised form, plus what identifies the tokenizer."""

    tokens: list[str]
    kind: str  # "bpe", "byte-level-bpe", "sentencepiece", "wordpiece", "unigram", "unknown"
    source: str
    merges_hash: str | None = None
    special_tokens: list[str] = field(default_factory=list)

    def ids_by_string(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for index, token in enumerate(self.tokens):
            found.setdefault(token, index)
        return found

    def vocab_hash(self) -> str:
        digest = hashlib.sha256()
        for token in self.tokens:
            digest.update(token.encode("utf-8", errors="replace") + b"\x00")
        return digest.hexdigest()


def _hash_merges(merges: Any) -> str | None:
    if not isinstance(merges, list) or not merges:
        return None
    digest = hashlib.sha256()
    for merge in merges:
        text = merge if isinstance(merge, str) else " ".join(str(m) for m in merge) if isinstance(merge, list) else str(merge)
        digest.update(text.encode("utf-8", errors="replace") + b"\n")
    return digest.hexdigest()


def _is_byte_level(data: dict[str, Any]) -> bool:
    def has_byte_level(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel":
                return True
            return any(has_byte_level(v) for v in node.values())
        if isinstance(node, list):
            return any(has_byte_level(v) for v in node)
        return False

    return has_byte_level(data.get("pre_tokenizer")) or has_byte_level(data.get("decoder"))


def from_tokenizer_json(path: Path) -> Vocabulary | None:
    data = read_json_limited(path, "tokenizer")
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        return None
    byte_level = _is_byte_level(data)
    vocab = model.get("vocab")
    tokens: dict[int, str] = {}
    if isinstance(vocab, dict):
        tokens = {int(i): str(t) for t, i in vocab.items() if isinstance(i, int) and 0 <= i < 10_000_000}
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        tokens = {i: str(entry[0]) for i, entry in enumerate(vocab) if isinstance(entry, list) and entry}
    for added in data.get("added_tokens") or []:
        if isinstance(added, dict) and isinstance(added.get("id"), int) and isinstance(added.get("content"), str):
            if 0 <= added["id"] < 10_000_000:
                tokens[added["id"]] = added["content"]
    if not tokens:
        return None
    size = max(tokens) + 1
    ordered = [normalise_token(tokens.get(i, ""), byte_level) for i in range(size)]
    kind = {"BPE": "byte-level-bpe" if byte_level else "bpe", "WordPiece": "wordpiece", "Unigram": "unigram"}.get(
        str(model.get("type")), "unknown")
    if kind == "bpe" and any("▁" in t for t in tokens.values()):
        kind = "sentencepiece"
    specials = [a["content"] for a in data.get("added_tokens") or [] if isinstance(a, dict) and a.get("special")
                and isinstance(a.get("content"), str)]
    return Vocabulary(ordered, kind, str(path), _hash_merges(model.get("merges")), specials)


def from_gguf_metadata(metadata: dict[str, Any], source: str) -> Vocabulary | None:
    tokens = metadata.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        return None
    model = metadata.get("tokenizer.ggml.model")
    byte_level = model == "gpt2"
    kind = {"gpt2": "byte-level-bpe", "llama": "sentencepiece", "bert": "wordpiece"}.get(str(model), "unknown")
    types = metadata.get("tokenizer.ggml.token_type")
    specials = [str(t) for t, ty in zip(tokens, types)] if isinstance(types, list) else []
    specials = [s for s, ty in zip(specials, types or []) if ty == 3]  # 3 = control tokens
    return Vocabulary([normalise_token(str(t), byte_level) for t in tokens], kind, source,
                      _hash_merges(metadata.get("tokenizer.ggml.merges")), specials)


def from_vocab_txt(path: Path) -> Vocabulary:
    text = read_text_capped(path, "tokenizer")
    return Vocabulary(text.splitlines(), "wordpiece", str(path))


def load_vocabulary(tokenizer_paths: dict[str, Path], gguf_metadata: dict[str, Any] | None, source: str) -> Vocabulary | None:
    """The checkpoint's vocabulary from whatever tokenizer files it carries, or None."""
    if gguf_metadata is not None:
        return from_gguf_metadata(gguf_metadata, source)
    if "tokenizer.json" in tokenizer_paths:
        vocabulary = from_tokenizer_json(tokenizer_paths["tokenizer.json"])
        if vocabulary is not None:
            return vocabulary
    if "vocab.json" in tokenizer_paths:
        data = read_json_limited(tokenizer_paths["vocab.json"], "tokenizer")
        if isinstance(data, dict):
            size = max((i for i in data.values() if isinstance(i, int)), default=-1) + 1
            by_id = {i: t for t, i in data.items() if isinstance(i, int)}
            return Vocabulary([normalise_token(by_id.get(i, ""), True) for i in range(min(size, 10_000_000))],
                              "byte-level-bpe", str(tokenizer_paths["vocab.json"]))
    if "vocab.txt" in tokenizer_paths:
        return from_vocab_txt(tokenizer_paths["vocab.txt"])
    return None


# --- folders that hold tokenizer files only (`provenance compare TOK_A TOK_B`, compared in compare/tokenizers.py) ---

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "vocab.txt")


def tokenizer_only_folder(path: str | Path) -> dict[str, Path] | None:
    """The vocabulary files of a local folder that holds tokenizer files and no weights, else None."""

    folder = Path(path)
    if not folder.is_dir():
        return None
    try:
        names = {p.name for p in folder.iterdir() if p.is_file()}
    except OSError:
        return None
    if any(name.endswith(_WEIGHT_SUFFIXES) for name in names):
        return None
    found = {name: folder / name for name in TOKENIZER_FILES if name in names}
    return found if any(name in found for name in _VOCABULARY_FILES) else None
