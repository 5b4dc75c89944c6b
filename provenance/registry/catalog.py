"""The catalog of open base models `refs sync` fingerprints (`provenance/references/catalog.json`, or a file given).

Each entry names a model's repo id, the revision asked for, its approximate
size (parameters and checkpoint bytes), family and the quantization its
weights need undone. `load_catalog` validates the file with one-line errors
naming the file and the entry; `select` applies `--only`, `--max-size`
(`parse_size`) and `--all`. The audit reads it too (lineage_check.py: a
declared parent that the catalog names).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorruptFileError, ProvenanceError
from ..visible_text import clean

CATALOG_PATH = Path(__file__).resolve().parent.parent / "references" / "catalog.json"
CATALOG_SCHEMA = "provenance.catalog/1"
DEFAULT_MAX_PARAMS = 15e9  # the 14B class and below (Qwen2.5-14B has 14.7B parameters)
_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBGT]?)(I?B)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class CatalogModel:
    name: str
    repo: str
    revision: str
    revision_kind: str  # "branch", "tag" or "commit"
    params: int
    bytes: int
    family: str
    note: str = ""
    dequantize: str = ""  # the quantization scheme to undo (catalog "weights"), named as formats/quantized names it: fp8, mxfp4


@dataclass(frozen=True)
class SizeLimit:
    """A --max-size: a parameter count ("15B") or checkpoint bytes ("30GB")."""

    value: float
    unit: str  # "params" or "bytes"

    def allows(self, model: CatalogModel) -> bool:
        return (model.params if self.unit == "params" else model.bytes) <= self.value

    def __str__(self) -> str:
        return f"{self.value / 1e9:g}B parameters" if self.unit == "params" else f"{self.value / 1e9:g} GB"


def parse_size(text: str) -> SizeLimit:
    """'15B', '500M' (parameters) or '30GB', '800MB', '1.5TiB' (checkpoint bytes); ValueError otherwise."""
    match = _SIZE.match(text or "")
    if not match or not (match[2] or match[3]):
        raise ValueError(f"size {text!r}: write parameters as 15B or 500M, or checkpoint bytes as 30GB or 800MB")
    number, prefix, suffix = float(match[1]), match[2].upper(), (match[3] or "").upper()
    if suffix:  # bytes: 30GB, 800MB, 1.5TiB (a lone B after the number means billions of parameters)
        power = "KMGT".index(prefix) + 1 if prefix in ("K", "M", "G", "T") else 0
        return SizeLimit(number * (1024 if suffix == "IB" else 1000) ** power, "bytes")
    return SizeLimit(number * _UNITS[prefix], "params")


def load_catalog(path: str | Path | None = None) -> list[CatalogModel]:
    """The catalog's models, validated (one-line errors naming the file and the entry)."""
    path = Path(path) if path else CATALOG_PATH
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CorruptFileError(path, f"cannot read the catalog: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(path, f"catalog is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != CATALOG_SCHEMA or not isinstance(data.get("models"), list):
        raise CorruptFileError(path, f"not a catalog: expected an object with schema {CATALOG_SCHEMA!r} and a 'models' list")
    models: list[CatalogModel] = []
    seen: set[str] = set()
    for index, entry in enumerate(data["models"]):
        try:
            model = CatalogModel(name=entry["name"], repo=entry["repo"], revision=entry.get("revision") or "main",
                                 revision_kind=entry.get("revision_kind", "branch"), params=int(entry["params"]),
                                 bytes=int(entry["bytes"]), family=entry.get("family", ""), note=entry.get("note", ""),
                                 dequantize=(entry.get("weights") or {}).get("dequantize", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(path, f"catalog entry {index} needs name, repo, params and bytes ({exc})") from exc
        if not all(isinstance(value, str) for value in (model.name, model.repo, model.revision, model.family)):
            raise CorruptFileError(path, f"catalog entry {index}: name, repo, revision and family must be strings")
        if not model.name.isprintable() or not 0 < len(model.name) <= 200:
            raise CorruptFileError(path, f"catalog entry {index}: name {clean(model.name, 60)!r} is not a short "
                                         "printable name")
        if not re.fullmatch(r"[\w.\-/]{1,200}", model.revision):
            raise CorruptFileError(path, f"catalog entry {model.name!r}: revision {clean(model.revision, 60)!r} is not "
                                         "a branch, tag or commit name")
        if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", model.repo):
            raise CorruptFileError(path, f"catalog entry {model.name!r}: repo {model.repo!r} is not ORG/NAME")
        if model.revision_kind == "commit" and not re.fullmatch(r"[0-9a-f]{40}", model.revision):
            raise CorruptFileError(path, f"catalog entry {model.name!r}: a pinned commit must be 40 hex digits")
        if model.name.lower() in seen:
            raise CorruptFileError(path, f"catalog names {model.name!r} twice")
        seen.add(model.name.lower())
        models.append(model)
    return models


def select(models: list[CatalogModel], only: list[str] | None, limit: SizeLimit | None,
           everything: bool) -> tuple[list[CatalogModel], list[tuple[CatalogModel, str]]]:
    """(models to sync, [(model, why it is left out)]). --only names (or repo ids) apply the size limit only if given."""
    if only:
        wanted = {w.lower() for w in only}
        known = {m.name.lower() for m in models} | {m.repo.lower() for m in models}
        unknown = sorted(w for w in only if w.lower() not in known)
        if unknown:
            raise ProvenanceError(None, f"not in the catalog: {', '.join(unknown)} (see `provenance refs sync --list`)")
        models = [m for m in models if m.name.lower() in wanted or m.repo.lower() in wanted]
    if everything:
        return models, []
    if limit is None and not only:
        limit = SizeLimit(DEFAULT_MAX_PARAMS, "params")
    if limit is None:
        return models, []
    chosen = [m for m in models if limit.allows(m)]
    left = [(m, f"larger than {limit}") for m in models if not limit.allows(m)]
    return chosen, left


def list_selection(chosen: list[CatalogModel], left: list[tuple[CatalogModel, str]]) -> str:
    lines = [f"{m.name:<24} {m.repo:<38} {m.revision:<10} {m.params / 1e9:>6.2f}B {m.bytes / 1e9:>7.1f} GB  {m.family}"
             + (f"  (weights to dequantize: {m.dequantize})" if m.dequantize else "") for m in chosen]
    lines += [f"{m.name:<24} {m.repo:<38} (left out: {why})" for m, why in left]
    total = sum(m.bytes for m in chosen)
    lines.append(f"{len(chosen)} models to sync ({total / 1e9:.0f} GB of checkpoints), {len(left)} left out")
    return "\n".join(lines)
