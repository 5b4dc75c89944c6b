"""Self-reported lineage: what a checkpoint *claims* about its origin.

Config `_name_or_path`, the model card's `base_model`, GGUF `general.*` naming
and `general.base_model.*` keys are written by whoever published the file.
The card's prose is a claim too: sentences such as "trained from scratch" or
"based on Llama-2" are quoted (cut to MAX_QUOTE characters, at most
MAX_TEXT_CLAIMS of them) as `model card text` claims.
We show them next to the measured evidence and never use them as evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


MAX_QUOTE = 200
MAX_TEXT_CLAIMS = 8
# Phrases by which a card states its origin, in English and Chinese (case-insensitive).
_TEXT_CLAIM = re.compile(
    r"trained from scratch|from scratch|pre-?trained (?:it )?ourselves|based on|built (?:up)?on|"
    r"fine-?tuned (?:from|on|version of)|a fine-?tune of|derived from|distilled from|continued pre-?training (?:of|from|on)|"
    r"merge of|merged from|initiali[sz]ed from|从零|从头训练|自主研发|自研|基于|微调自|继续预训练",
    re.IGNORECASE)


@dataclass(frozen=True)
class LineageClaim:
    where: str
    value: str
    verified: bool = False  # always False: a claim is not a measurement


def _front_matter_base_models(card: str) -> list[str]:
    """`base_model` from a model card's YAML front matter (a string or a list).

    Only this one key is needed, so a few lines of parsing replace a YAML
    dependency; anything unusual is simply not reported.
    """
    if not card.startswith("---"):
        return []
    end = card.find("\n---", 3)
    if end < 0:
        return []
    lines = card[3:end].splitlines()
    found: list[str] = []
    for index, line in enumerate(lines):
        match = re.match(r"^base_model\s*:\s*(.*)$", line)
        if not match:
            continue
        inline = match.group(1).strip()
        if inline and not inline.startswith("["):
            found.append(inline.strip("'\""))
        elif inline.startswith("["):
            found.extend(v.strip().strip("'\"") for v in inline.strip("[]").split(",") if v.strip())
        else:
            for item in lines[index + 1:]:
                item_match = re.match(r"^\s*-\s*(.+)$", item)
                if not item_match:
                    break
                found.append(item_match.group(1).strip().strip("'\""))
    return found


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


def lineage_claims(config: dict[str, Any] | None, model_card: str | None,
                   gguf_metadata: dict[str, Any] | None) -> list[LineageClaim]:
    claims: list[LineageClaim] = []
    if config:
        for key in ("_name_or_path", "base_model", "base_model_name_or_path"):
            value = config.get(key)
            if isinstance(value, str) and value:
                claims.append(LineageClaim(f"config.json {key}", value))
    if model_card:
        for value in _front_matter_base_models(model_card):
            claims.append(LineageClaim("model card base_model", value))
        for value in text_claims(model_card):
            claims.append(LineageClaim("model card text", value))
    if gguf_metadata:
        for key in ("general.name", "general.basename", "general.organization", "general.finetune",
                    "general.source.url", "general.source.repo_url"):
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
