"""Self-reported lineage: what a checkpoint *claims* about its origin.

Config `_name_or_path`, the model card's `base_model`, GGUF `general.*` naming
and `general.base_model.*` keys are written by whoever published the file.
We show them next to the measured evidence and never use them as evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


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
