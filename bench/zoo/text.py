"""Local training text, the zoo's BPE tokenizer, and edits of its vocabulary.

Two corpora, both read from this machine in a fixed (sorted) order:
- "same text": the Python sources of the standard library packages json,
  email and asyncio (the bases and their fine-tunes are trained on it);
- "different text": plain-text Debian documentation under /usr/share/doc
  (copyright files, READMEs, *.md, *.txt), or, if there is too little of it,
  the sources of the stdlib packages unittest and xml.

The tokenizer is a byte-level BPE (vocabulary 1000, one special token) trained
once on the same text with the `tokenizers` library. Vocabulary edits work on
the tokenizer.json data and return the map new id -> old id (or None for a
token that is new), which the model transforms use to move embedding rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from pathlib import Path

import numpy as np

SAME_PACKAGES = ("json", "email", "asyncio")
FALLBACK_PACKAGES = ("unittest", "xml")
DOC_ROOT = Path("/usr/share/doc")
DOC_CAP = 1_200_000  # characters of Debian docs kept
DOC_MINIMUM = 300_000
EOT = "<|endoftext|>"


def _package_files(packages: tuple[str, ...]) -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for package in packages:
        for root, dirs, names in os.walk(stdlib / package):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "test", "tests"))
            files.extend(Path(root) / n for n in sorted(names) if n.endswith(".py"))
    return sorted(files, key=lambda p: str(p.relative_to(stdlib)))


def _read(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def same_text() -> tuple[list[str], dict]:
    files = _package_files(SAME_PACKAGES)
    texts = [t for t in (_read(p) for p in files) if t]
    return texts, {"source": f"stdlib packages {', '.join(SAME_PACKAGES)} (*.py)", "files": len(texts),
                   "chars": sum(map(len, texts)), "sha256": _digest(texts)}


def _doc_files() -> list[Path]:
    if not DOC_ROOT.is_dir():
        return []
    found = []
    for root, dirs, names in os.walk(DOC_ROOT):
        dirs.sort()
        for name in sorted(names):
            lower = name.lower()
            if lower.endswith(".gz") or lower.endswith(".html"):
                continue
            if lower == "copyright" or lower.startswith("readme") or lower.endswith((".md", ".txt")):
                path = Path(root) / name
                if path.is_file() and not path.is_symlink() and path.stat().st_size < 200_000:
                    found.append(path)
    return sorted(found)


def different_text() -> tuple[list[str], dict]:
    texts, total = [], 0
    for path in _doc_files():
        text = _read(path)
        if not text:
            continue
        texts.append(text)
        total += len(text)
        if total >= DOC_CAP:
            break
    source = f"plain-text files under {DOC_ROOT}"
    if total < DOC_MINIMUM:
        texts = [t for t in (_read(p) for p in _package_files(FALLBACK_PACKAGES)) if t]
        source = f"stdlib packages {', '.join(FALLBACK_PACKAGES)} (*.py; {DOC_ROOT} had too little text)"
    return texts, {"source": source, "files": len(texts), "chars": sum(map(len, texts)), "sha256": _digest(texts)}


def _digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()


def train_tokenizer(texts: list[str], vocab_size: int = 1000) -> dict:
    """A byte-level BPE trained on texts; returned as tokenizer.json data."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return json.loads(tokenizer.to_str())


def encode(tokenizer_json: dict, texts: list[str]) -> np.ndarray:
    """All texts as one stream of token ids, documents separated by the end-of-text token."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json))
    eot = tokenizer_json["model"]["vocab"][EOT]
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(texts):
        ids.extend(encoding.ids)
        ids.append(eot)
    return np.asarray(ids, dtype=np.int64)


def vocab_size(tokenizer_json: dict) -> int:
    return max(tokenizer_json["model"]["vocab"].values()) + 1


def _merge_pair(merge) -> tuple[str, str]:
    return tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1))


def _special_ids(tokenizer_json: dict) -> set[int]:
    return {a["id"] for a in tokenizer_json.get("added_tokens", []) if a.get("special")}


def extend_vocabulary(tokenizer_json: dict, donor_json: dict, count: int) -> tuple[dict, list[int | None], list[str]]:
    """Append up to `count` tokens the donor tokenizer builds by merges that the base lacks.

    New tokens get the ids after the old ones, with their merges appended, so
    the tokenizer stays a valid BPE (like vocabulary extensions of LLaMA for
    other languages).
    """
    result = json.loads(json.dumps(tokenizer_json))
    vocab = result["model"]["vocab"]
    merges = result["model"]["merges"]
    added: list[str] = []
    for merge in donor_json["model"]["merges"]:
        a, b = _merge_pair(merge)
        if a in vocab and b in vocab and a + b not in vocab:
            vocab[a + b] = len(vocab)
            merges.append([a, b] if isinstance(merges[0], list) else f"{a} {b}")
            added.append(a + b)
            if len(added) == count:
                break
    old = vocab_size(tokenizer_json)
    new_to_old = list(range(old)) + [None] * len(added)
    return result, new_to_old, added


def prune_vocabulary(tokenizer_json: dict, count: int, seed: int) -> tuple[dict, list[int | None], list[str]]:
    """Remove `count` merged tokens that no other merge uses (leaves), with their merges; ids compacted."""
    vocab = tokenizer_json["model"]["vocab"]
    merges = [_merge_pair(m) for m in tokenizer_json["model"]["merges"]]
    used = {part for pair in merges for part in pair}
    leaves = sorted({a + b for a, b in merges} - used)
    rng = np.random.default_rng(seed)
    removed = set(rng.choice(leaves, size=min(count, len(leaves)), replace=False).tolist())
    kept_old = sorted(i for t, i in vocab.items() if t not in removed)
    old_to_new = {old: new for new, old in enumerate(kept_old)}
    result = json.loads(json.dumps(tokenizer_json))
    result["model"]["vocab"] = {t: old_to_new[i] for t, i in vocab.items() if t not in removed}
    result["model"]["merges"] = [m for m, pair in zip(tokenizer_json["model"]["merges"], merges)
                                 if pair[0] + pair[1] not in removed]
    for added in result.get("added_tokens", []):
        added["id"] = old_to_new[added["id"]]
    return result, list(kept_old), sorted(removed)


def reindex_vocabulary(tokenizer_json: dict, seed: int) -> tuple[dict, list[int | None]]:
    """Shuffle the ids of every non-special token; special tokens keep their ids."""
    vocab = tokenizer_json["model"]["vocab"]
    size = vocab_size(tokenizer_json)
    specials = _special_ids(tokenizer_json)
    movable = [i for i in range(size) if i not in specials]
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(movable).tolist()
    old_to_new = {i: i for i in specials}
    old_to_new.update(dict(zip(movable, shuffled)))
    new_to_old = [0] * size
    for old, new in old_to_new.items():
        new_to_old[new] = old
    result = json.loads(json.dumps(tokenizer_json))
    result["model"]["vocab"] = {t: old_to_new[i] for t, i in vocab.items()}
    return result, new_to_old
