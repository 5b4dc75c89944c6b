"""Self-reported lineage: what a checkpoint *claims* about its origin.

Config `_name_or_path`, the model card's front matter (`base_model`,
`base_model_relation`, `license`), a PEFT `adapter_config.json`
(`base_model_name_or_path`), a mergekit recipe (`mergekit_config.yml`,
`mergekit_moe_config.yml`: its models and merge method), GGUF `general.*`
naming, `general.source.*` and `general.base_model.*` keys are written by
whoever published the file. The card's prose is a claim too: sentences such
as "trained from scratch" or "based on Llama-2" are quoted (cut to MAX_QUOTE
characters, at most MAX_TEXT_CLAIMS of them) as `model card text` claims.

`lineage_claims` lists every claim as (where, value), which fingerprints
record; `declared_lineage` reads such a list back into one typed record
(`DeclaredLineage`: the parents declared, the relation, an original origin
claimed) that the audit sets against the evidence (audit/lineage_check.py).
Claims are never evidence: the weights decide, the claim is what is checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ProvenanceError
from .limits import read_json_limited, read_text_limited


MAX_QUOTE = 200
MAX_TEXT_CLAIMS = 8
MAX_RECIPE_MODELS = 32  # a merge recipe names a handful of models; more are not listed
# Side files that state a lineage, looked for next to the weights (formats/checkpoint_files.py).
ADAPTER_CONFIG = "adapter_config.json"
MERGE_RECIPES = ("mergekit_config.yml", "mergekit_moe_config.yml")
LINEAGE_FILES = (ADAPTER_CONFIG, *MERGE_RECIPES)
# The Hub's base_model_relation values (https://huggingface.co/docs/hub/model-cards#specifying-a-base-model).
RELATIONS = ("adapter", "merge", "quantized", "finetune")
# Phrases by which a card states its origin, in English and Chinese (case-insensitive).
_TEXT_CLAIM = re.compile(
    r"trained from scratch|from scratch|pre-?trained (?:it )?ourselves|based on|built (?:up)?on|"
    r"fine-?tuned (?:from|on|version of)|a fine-?tune of|derived from|distilled from|continued pre-?training (?:of|from|on)|"
    r"merge of|merged from|initiali[sz]ed from|independently (?:developed|trained|built)|"
    r"从零|从头训练|自主研发|自研|基于|微调自|继续预训练|独立研发",
    re.IGNORECASE)
# Phrases that claim an independent origin: no parent at all.
ORIGINAL_CLAIM = re.compile(
    r"from scratch|pre-?trained (?:it )?ourselves|independently (?:developed|trained|built)|"
    r"从零|从头|自主研发|自研|独立研发", re.IGNORECASE)

# Where each claim was read (the `where` of a LineageClaim): `declared_lineage` reads them back by these.
CARD_BASE_MODEL = "model card base_model"
CARD_RELATION = "model card base_model_relation"
CARD_LICENSE = "model card license"
CARD_TEXT = "model card text"
ADAPTER_BASE = f"{ADAPTER_CONFIG} base_model_name_or_path"
# Claims that name a parent (exact places, and prefixes); a found parent named by any other claim
# (the model's own names, prose) counts as declared too.
_PARENT_PLACES = (CARD_BASE_MODEL, ADAPTER_BASE, "config.json base_model", "config.json base_model_name_or_path")
_PARENT_PREFIXES = ("GGUF general.base_model.", "GGUF general.source.", *(f"{r} model" for r in MERGE_RECIPES))


@dataclass(frozen=True)
class LineageClaim:
    where: str
    value: str
    verified: bool = False  # always False: a claim is not a measurement


@dataclass(frozen=True)
class DeclaredLineage:
    """Everything the files claim about the model's origin, in one record (read from the claims)."""

    parents: tuple[str, ...]  # models named as the parent: card base_model, adapter base, merge recipe, GGUF source/base
    relation: str | None  # adapter, merge, quantized or finetune: the card's, else implied by an adapter or a recipe
    original: bool  # the prose claims an independent origin ("trained from scratch", "从零训练")
    license: str | None
    names: tuple[str, ...]  # every other naming claim (the model's own names, prose): a parent they name is declared
    claims: tuple[LineageClaim, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"parents": list(self.parents), "relation": self.relation, "original": self.original,
                "license": self.license,
                "claims": [{"where": c.where, "value": c.value} for c in self.claims]}


def _front_matter(card: str) -> dict[str, Any]:
    """The model card's YAML front matter (safe loader: data only), or {} when it has none or it does not parse."""
    if not card.startswith("---"):
        return {}
    end = card.find("\n---", 3)
    if end < 0:
        return {}
    try:
        data = yaml.safe_load(card[3:end])
    except yaml.YAMLError:
        return {}  # a card whose front matter does not parse claims nothing the Hub would read either
    return data if isinstance(data, dict) else {}


def _strings(value: Any) -> list[str]:
    """A front-matter value that may be one string or a list of them, as strings."""
    items = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in items if isinstance(v, (str, int, float)) and str(v).strip()]


def _card_body(card: str) -> str:
    """The card without its YAML front matter."""
    if card.startswith("---"):
        end = card.find("\n---", 3)
        if end >= 0:
            return card[end + 4:]
    return card


def text_claims(card: str) -> list[str]:
    """Sentences of the card's prose that state where the model comes from, quoted as written."""
    found: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+|[。！？\n]+", _card_body(card)):
        text = " ".join(sentence.replace("`", "").split()).strip(" #>*-|")
        if not text or not _TEXT_CLAIM.search(text):
            continue
        if len(text) > MAX_QUOTE:
            text = text[:MAX_QUOTE - 3] + "..."
        if text not in found:
            found.append(text)
        if len(found) >= MAX_TEXT_CLAIMS:
            break
    return found


def _card_claims(card: str) -> list[LineageClaim]:
    matter = _front_matter(card)
    claims = [LineageClaim(CARD_BASE_MODEL, v) for v in _strings(matter.get("base_model"))]
    claims += [LineageClaim(CARD_RELATION, v) for v in _strings(matter.get("base_model_relation"))[:1]]
    claims += [LineageClaim(CARD_LICENSE, v) for v in _strings(matter.get("license"))[:1]]
    return claims + [LineageClaim(CARD_TEXT, v) for v in text_claims(card)]


def _adapter_claims(path: Path) -> list[LineageClaim]:
    config = read_json_limited(path, "config")
    value = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    return [LineageClaim(ADAPTER_BASE, value)] if isinstance(value, str) and value else []


def _recipe_models(recipe: Any) -> list[str]:
    """The models a mergekit recipe names: `base_model`, `models[].model`, `slices[].sources[].model`,
    and a MoE recipe's `base_model` and `experts[].source_model` (mergekit's documented layouts)."""
    found: list[str] = []
    if not isinstance(recipe, dict):
        return found

    def add(value: Any) -> None:
        if isinstance(value, dict):  # mergekit also accepts {model: NAME, lora: ...}
            value = value.get("model")
        if isinstance(value, str) and value.strip() and value.strip() not in found:
            found.append(value.strip())

    add(recipe.get("base_model"))
    for item in recipe.get("models") or []:
        add(item.get("model") if isinstance(item, dict) else item)
    for piece in recipe.get("slices") or []:
        for source in (piece.get("sources") or []) if isinstance(piece, dict) else []:
            add(source.get("model") if isinstance(source, dict) else None)
    for expert in recipe.get("experts") or []:
        add(expert.get("source_model") if isinstance(expert, dict) else None)
    return found[:MAX_RECIPE_MODELS]


def _recipe_claims(path: Path) -> list[LineageClaim]:
    try:
        recipe = yaml.safe_load(read_text_limited(path))
    except yaml.YAMLError as exc:
        raise ProvenanceError(path, f"merge recipe is not valid YAML: {str(exc).splitlines()[0]}") from exc
    claims = [LineageClaim(f"{path.name} model", m) for m in _recipe_models(recipe)]
    method = recipe.get("merge_method") if isinstance(recipe, dict) else None
    if isinstance(method, str) and method:
        claims.append(LineageClaim(f"{path.name} merge_method", method))
    return claims


def lineage_claims(config: dict[str, Any] | None, model_card: str | None,
                   gguf_metadata: dict[str, Any] | None,
                   side_files: dict[str, Path] | None = None) -> list[LineageClaim]:
    """Every claim the files make about their origin; `side_files` maps LINEAGE_FILES names to their paths."""
    claims: list[LineageClaim] = []
    if config:
        for key in ("_name_or_path", "base_model", "base_model_name_or_path"):
            value = config.get(key)
            if isinstance(value, str) and value:
                claims.append(LineageClaim(f"config.json {key}", value))
    if model_card:
        claims.extend(_card_claims(model_card))
    for name, path in (side_files or {}).items():
        claims.extend(_adapter_claims(path) if name == ADAPTER_CONFIG else _recipe_claims(path))
    if gguf_metadata:
        for key in ("general.name", "general.basename", "general.organization", "general.finetune",
                    "general.source.url", "general.source.repo_url", "general.license"):
            value = gguf_metadata.get(key)
            if isinstance(value, str) and value:
                claims.append(LineageClaim(f"GGUF {key}", value))
        count = gguf_metadata.get("general.base_model.count")
        if isinstance(count, int):
            for i in range(min(count, 16)):
                parts = [gguf_metadata.get(f"general.base_model.{i}.{field}") for field in ("organization", "name", "repo_url")]
                text = " / ".join(str(p) for p in parts if isinstance(p, (str, int)) and p != "")
                if text:
                    claims.append(LineageClaim(f"GGUF general.base_model.{i}", text))
    return claims


def declared_lineage(claims: Iterable[LineageClaim | dict[str, Any]]) -> DeclaredLineage:
    """The typed record of a list of claims (LineageClaim, or the {where, value} dicts a fingerprint records)."""
    read = []
    for claim in claims:
        if isinstance(claim, dict):
            where, value = claim.get("where"), claim.get("value")
            if not (isinstance(where, str) and isinstance(value, str)):
                continue
            claim = LineageClaim(where, value)
        read.append(claim)
    parents = [c.value for c in read if c.where in _PARENT_PLACES or c.where.startswith(_PARENT_PREFIXES)]
    relations = [c.value.strip().lower() for c in read if c.where == CARD_RELATION]
    relation = relations[0] if relations and relations[0] in RELATIONS else None
    if relation is None and any(c.where == ADAPTER_BASE for c in read):
        relation = "adapter"
    if relation is None and any(c.where.startswith(MERGE_RECIPES) for c in read):
        relation = "merge"
    licenses = [c.value for c in read if c.where in (CARD_LICENSE, "GGUF general.license")]
    not_names = (CARD_RELATION, CARD_LICENSE, "GGUF general.license", *(f"{r} merge_method" for r in MERGE_RECIPES))
    # a sentence claiming an original names no parent, even when it mentions one ("unlike Llama, trained from scratch")
    names = [c.value for c in read if c.value not in parents and c.where not in not_names
             and not (c.where == CARD_TEXT and ORIGINAL_CLAIM.search(c.value))]
    original = any(ORIGINAL_CLAIM.search(c.value) for c in read if c.where == CARD_TEXT)
    return DeclaredLineage(tuple(dict.fromkeys(parents)), relation, original, licenses[0] if licenses else None,
                           tuple(dict.fromkeys(names)), tuple(read))

