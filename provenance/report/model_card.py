"""`provenance audit --model-card`: the Hugging Face model-card front matter the measured lineage calls for.

The Hub reads `base_model` (one repository id or a list) and
`base_model_relation` (`finetune`, `quantized`, `merge`, `adapter`) from the
YAML front matter of README.md. This module turns the audit's rows into
those two keys and prints them beside what the candidate's files claim
(config, card front matter, card prose, GGUF metadata: `lineage_claims`):

- no accusing row (identical, derived, assembled, not abstained) among the
  weight references: no `base_model` (nothing measured explains the weights);
- `assembled`: `merge`, with every accusing weight reference as a base;
- `identical` or `derived` with quantized candidate tensors (GGUF Q/IQ
  types, GPTQ, AWQ, bitsandbytes, compressed-tensors, scaled FP8, MXFP4): `quantized`;
- `derived`: `finetune`;
- `identical`: `base_model` without a relation (the Hub has none for a
  copy), and a comment saying it is one.
`adapter` is never chosen: an adapter file holds no base weights to measure.

A reference name becomes a repository id when it is one (`ORG/NAME`), when it
was added from `hf://ORG/NAME`, or for the built-in references; otherwise it is
written as the name, with a comment to replace it by the hub id.
Claims are checked loosely against the measured base (`claim_names`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..audit.lineage_check import claim_names, declared_of, found_parents, hub_id, quantized_tensors
from ..verdicts import Verdict
from .text import clean

MAX_CLAIM_CHARS = 160


@dataclass(frozen=True)
class ModelCardLineage:
    base_model: list[str]  # hub ids (or reference names where no id is known)
    relation: str | None  # finetune, quantized, merge; None: no base, or an identical copy
    verdict: str | None  # the measured verdict behind it
    references: list[str]  # the audit's reference names behind base_model
    claims: list[dict[str, str]]  # what the files claim (where, value)
    agreement: str  # "agrees", "does-not-name", "contradicts", "no-claim", "nothing-measured"
    comments: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"base_model": self.base_model, "base_model_relation": self.relation, "verdict": self.verdict,
                "references": self.references, "claims": self.claims, "agreement": self.agreement}


def measured_lineage(candidate, rows, check=None) -> ModelCardLineage:
    """The front matter's keys from an audit's candidate and ranked rows (`AuditResult.candidate`, `.rows`);
    `check` (`AuditResult.lineage`, optional) adds the declared-versus-detected result as a comment."""
    claims = [{"where": clean(c.where, 60), "value": clean(c.value, MAX_CLAIM_CHARS)}
              for c in candidate.lineage_claims or ()]
    chosen = found_parents(rows)
    if not chosen:
        return ModelCardLineage([], None, None, [], claims, "nothing-measured" if claims else "no-claim",
                                ["measured: no reference explains these weights, so no base_model is written"])
    verdict = chosen[0].result.verdict
    comments: list[str] = [f"declared against detected: {check.result}: {clean(check.reason, 300)}"] if check else []
    ids = []
    for row in chosen:
        hub, known = hub_id(row)
        ids.append(hub)
        if not known:
            comments.append(f"replace {clean(hub, 80)!r} (the reference's name in your database) by its hub repository id")
    if verdict == Verdict.ASSEMBLED:
        relation = "merge"
    elif check is not None and check.found_relation == "changed-then-quantized":
        relation = "finetune"
        comments.append("the weights were changed before they were quantized: a quantized fine-tune of the base")
    elif quantized_tensors(candidate):
        relation = "quantized"
    elif verdict == Verdict.DERIVED:
        relation = "finetune"
    else:
        relation = None
        comments.append("identical weights: a copy of the base model; the Hub has no base_model_relation for a copy")
    named = [c for c in claims if any(claim_names(c["value"], row.reference) or claim_names(c["value"], hub)
                                      for row, hub in zip(chosen, ids))]
    if named:
        agreement = "agrees"
    elif (check.declared if check is not None else declared_of(candidate)).original:
        agreement = "contradicts"
    elif claims:
        agreement = "does-not-name"
    else:
        agreement = "no-claim"
    return ModelCardLineage(ids, relation, verdict, [r.reference for r in chosen], claims, agreement, comments)


def _yaml_scalar(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9][\w./-]*", value) else json.dumps(value, ensure_ascii=False)


AGREEMENT_TEXT = {
    "agrees": "the files name the measured base",
    "does-not-name": "the files' claims do not name the measured base",
    "contradicts": "the files claim an independent origin (from scratch), which the measurement contradicts",
    "no-claim": "the files claim no origin",
    "nothing-measured": "the files' claims could not be checked: no reference explains the weights",
}


def render_front_matter(lineage: ModelCardLineage, candidate_path: str) -> str:
    """The YAML front matter, with comments: what was measured, what the files claim, whether they agree.

    The comments are inside the `---` block (YAML comments), so the text starts with `---` as a model card
    must for huggingface_hub's `ModelCard` (and the Hub) to read its metadata."""
    lines = ["---", f"# provenance audit --model-card {clean(candidate_path, 200)}"]
    if lineage.verdict:
        lines.append(f"# measured: {lineage.verdict} of {', '.join(clean(r, 80) for r in lineage.references)}")
    lines.extend(f"# {c}" for c in lineage.comments)
    if lineage.claims:
        lines.append("# the files claim (unverified):")
        lines.extend(f"#   {clean(c['where'], 80)}: {clean(c['value'], 300)}" for c in lineage.claims)
    lines.append(f"# {AGREEMENT_TEXT[lineage.agreement]}")
    if len(lineage.base_model) == 1:
        lines.append(f"base_model: {_yaml_scalar(lineage.base_model[0])}")
    elif lineage.base_model:
        lines.append("base_model:")
        lines.extend(f"- {_yaml_scalar(b)}" for b in lineage.base_model)
    if lineage.relation:
        lines.append(f"base_model_relation: {lineage.relation}")
    lines.append("---")
    return "\n".join(lines)
