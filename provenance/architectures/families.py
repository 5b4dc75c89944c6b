"""The family tables: one JSON data file per model family, read by one small engine.

Each file in `families/` maps a family's tensor spellings onto canonical roles
(see `roles.py`). Templates leave out the `.weight`/`.bias` suffix and use
`${layer}` and `${expert}` for indices. A file may `extend` another, adding or
overriding spellings. Entries:

- `tensors`: template -> role, or {"role", "transposed", "stacked_experts", "param", "note"}
  (`param` "bias" for a bias stored without a `.bias` suffix, gpt-oss's `gate_up_proj_bias`);
- `fused`: template -> {"parts": [roles], "layout", "layout_by_config", "transposed"},
  one stored tensor holding several canonical ones (see `layouts.py`);
- `aliases`: template -> {"standard": template, "used_by"}: another spelling of
  a standard tensor, reported as a renamed tensor when seen;
- `ignore`: buffers that are not weights (rotary tables, attention masks);
- `prefixes`: optional prefixes before every template (`bert.`, `roberta.`).

Adding a family means adding a file; no Python changes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from .roles import ALL_ROLES, CanonicalKey

# Wrappers some training stacks put in front of every name.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "base_model.model.")
# Parameter suffixes and what they mean; TF-converted BERTs use gamma/beta.
PARAM_SUFFIXES = {".weight": "weight", ".bias": "bias", ".gamma": "weight", ".beta": "bias"}


def _split_name(name: str) -> tuple[str, str, str, str]:
    """`module.model.norm.weight` -> (`module.`, `model.norm`, `.weight`, `weight`)."""
    stem = name
    for prefix in WRAPPER_PREFIXES:
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
    wrapper = name[: len(name) - len(stem)]
    for suffix, param in PARAM_SUFFIXES.items():
        if stem.endswith(suffix):
            return wrapper, stem[: -len(suffix)], suffix, param
    return wrapper, stem, "", "weight"


def split_param(name: str) -> tuple[str, str]:
    """`model.norm.weight` -> (`model.norm`, `weight`); no suffix counts as a weight."""
    _, stem, _, param = _split_name(name)
    return stem, param


def _template_regex(template: str, prefixes: list[str]) -> re.Pattern[str]:
    body = re.escape(template).replace(re.escape("${layer}"), r"(?P<layer>\d+)")
    body = body.replace(re.escape("${expert}"), r"(?P<expert>\d+)")
    prefix = "|".join(re.escape(p) for p in prefixes if p)
    return re.compile(f"^(?P<prefix>{prefix})?{body}$" if prefix else f"^{body}$")


def _fill(template: str, layer: int | None, expert: int | None) -> str:
    if layer is not None:
        template = template.replace("${layer}", str(layer))
    if expert is not None:
        template = template.replace("${expert}", str(expert))
    return template


@dataclass(frozen=True)
class TensorRule:
    """One spelling: a template and what the stored tensor holds."""

    family: str
    template: str
    roles: tuple[str, ...]  # one role, or the parts of a fused tensor in order
    regex: re.Pattern[str] = field(compare=False, repr=False)
    layout: str | None = None  # fused layout name (layouts.py)
    layout_by_config: tuple[tuple[str, str], ...] = ()
    transposed: bool = False
    stacked_experts: bool = False
    param: str | None = None  # "weight" or "bias" when the stored name's suffix does not say it
    standard: str | None = None  # set for aliases: the family's usual spelling
    used_by: str | None = None
    note: str | None = None

    @property
    def is_fused(self) -> bool:
        return len(self.roles) > 1

    def layout_for(self, config: dict[str, Any] | None) -> str | None:
        for key, layout in self.layout_by_config:
            if config and config.get(key):
                return layout
        return self.layout


@dataclass(frozen=True)
class RuleMatch:
    rule: TensorRule
    layer: int | None
    expert: int | None
    param: str
    standard_name: str | None = None  # for an alias: the stored name in the family's standard spelling

    def keys(self) -> list[CanonicalKey]:
        return [CanonicalKey(role, self.layer, self.expert, self.param) for role in self.rule.roles]


@dataclass
class Family:
    name: str
    title: str
    model_types: list[str]
    architectures: list[str]
    defaults: dict[str, Any]
    rules: list[TensorRule]
    ignore: list[re.Pattern[str]]
    base: str  # root of the `extends` chain: whose spelling counts as standard
    raw: dict[str, Any]

    @property
    def is_gguf(self) -> bool:
        return bool(self.raw.get("gguf"))

    def match(self, name: str) -> RuleMatch | None:
        wrapper, stem, suffix, param = _split_name(name)
        for rule in self.rules:
            found = rule.regex.match(stem)
            if found:
                groups = found.groupdict()
                layer = int(groups["layer"]) if groups.get("layer") is not None else None
                expert = int(groups["expert"]) if groups.get("expert") is not None else None
                standard_name = None
                if rule.standard:
                    standard_name = wrapper + (groups.get("prefix") or "") + _fill(rule.standard, layer, expert) + suffix
                return RuleMatch(rule, layer, expert, rule.param or param, standard_name)
        return None

    def is_ignored(self, name: str) -> bool:
        stem, _ = split_param(name)
        return any(pattern.match(stem) or pattern.match(name) for pattern in self.ignore)


def _load_raw() -> dict[str, dict[str, Any]]:
    folder = resources.files("provenance.architectures") / "families"
    raw = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            raw[data["family"]] = data
    return raw


def _merged(name: str, raw: dict[str, dict[str, Any]], seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """A family's data with its `extends` chain applied, and the chain's root."""
    if name in seen:
        raise ValueError(f"family {name!r} extends itself through {seen}")
    data = raw[name]
    parent_name = data.get("extends")
    if not parent_name:
        return data, name
    parent, root = _merged(parent_name, raw, seen + (name,))
    merged = dict(parent)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(parent.get(key), dict):
            merged[key] = {**parent[key], **value}
        elif isinstance(value, list) and isinstance(parent.get(key), list) and key in ("ignore", "prefixes"):
            merged[key] = list(dict.fromkeys(parent[key] + value))
        else:
            merged[key] = value
    return merged, root


def _build(name: str, data: dict[str, Any], base: str) -> Family:
    prefixes = data.get("prefixes", [""])
    rules: list[TensorRule] = []

    def add(template: str, roles: tuple[str, ...], spec: dict[str, Any], standard: str | None = None) -> None:
        for role in roles:
            if role not in ALL_ROLES:
                raise ValueError(f"family {name}: template {template!r} names unknown role {role!r}")
        rules.append(TensorRule(
            family=name, template=template, roles=roles, regex=_template_regex(template, prefixes),
            layout=spec.get("layout"), layout_by_config=tuple(spec.get("layout_by_config", {}).items()),
            transposed=bool(spec.get("transposed")), stacked_experts=bool(spec.get("stacked_experts")),
            param=spec.get("param"), standard=standard, used_by=spec.get("used_by"), note=spec.get("note"),
        ))

    tensors = data.get("tensors", {})
    for template, spec in tensors.items():
        spec = {"role": spec} if isinstance(spec, str) else spec
        add(template, (spec["role"],), spec)
    for template, spec in data.get("fused", {}).items():
        add(template, tuple(spec["parts"]), spec)
    for template, spec in data.get("aliases", {}).items():
        standard = spec["standard"]
        target = tensors.get(standard)
        if target is None:
            raise ValueError(f"family {name}: alias {template!r} points at unknown template {standard!r}")
        target = {"role": target} if isinstance(target, str) else target
        add(template, (target["role"],), {**target, **spec}, standard=standard)
    ignore = [_template_regex(t, prefixes) for t in data.get("ignore", [])]
    return Family(name=name, title=data.get("title", name), model_types=data.get("model_types", []),
                  architectures=data.get("architectures", []), defaults=data.get("defaults", {}),
                  rules=rules, ignore=ignore, base=base, raw=data)


@lru_cache(maxsize=1)
def all_families() -> dict[str, Family]:
    raw = _load_raw()
    families = {}
    for name in raw:
        data, base = _merged(name, raw)
        families[name] = _build(name, data, base)
    return families


def families_for_config(config: dict[str, Any] | None) -> list[Family]:
    """Every family a config.json may declare: those listing its model_type, else its architectures.

    Several families can share one declaration (ChatGLM-6B and ChatGLM2 both say
    model_type "chatglm"); the tensor names decide between them (see mapping.py).
    """
    if not config:
        return []
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    families = all_families()
    if isinstance(model_type, str):
        found = [f for f in families.values() if model_type in f.model_types]
        if found:
            return found
    if isinstance(architectures, list):
        return [f for f in families.values()
                if any(arch in f.architectures for arch in architectures if isinstance(arch, str))]
    return []

