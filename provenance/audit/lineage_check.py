"""Declared against detected lineage: is what the files claim about the model's origin true?

The files' claims (formats/lineage.py: `DeclaredLineage`) are set against
the audit's ranked rows, and the answer is one of five words:

- `consistent`: the claims name the parent the weights show (or claim none,
  and the weights show none), in a relation the evidence allows;
- `undeclared-parent`: the files name no parent (or claim an original), yet
  the weights descend from a reference;
- `wrong-parent`: the files name a parent that is among the references, but
  the weights come from another one (or from none of them);
- `wrong-relation`: the parent is right, the relation is not (a "finetune"
  that is an identical or quantized copy; a "merge" with one parent; a
  "quantized" file whose weights were changed before quantizing);
- `unverifiable`: a declared parent is not among the references, so the claim
  cannot be checked; `settle` names the command that would add it.

Only weight rows that accuse (identical, derived, assembled) and did not
abstain count as evidence of a parent; a claim counts as naming a reference
when `claim_names` says so (loose on purpose: a claim read as naming the
measured parent never accuses). Abstaining is preferred: a comparison that
abstained makes a declared parent unverifiable, never wrong.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from ..formats.lineage import DeclaredLineage, declared_lineage
from ..registry.catalog import load_catalog
from ..verdicts import ACCUSING, Verdict
from .rows import AuditRow

RESULTS = ("consistent", "undeclared-parent", "wrong-parent", "wrong-relation", "unverifiable")
FAILING = ("undeclared-parent", "wrong-parent", "wrong-relation")  # what `audit --fail-on` may gate on
BUILTIN_HUB_IDS = {
    "SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "Gemma-3-270M": "google/gemma-3-270m",
}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Stored dtypes that are quantizations: GGUF's Q*/IQ*/TQ* types, and the storage names of
# `formats/quantized/` (GPTQ, AWQ, bitsandbytes, compressed-tensors' INT*, scaled FP8, MXFP4).
_QUANTIZED = re.compile(r"^(I?Q\d|TQ\d|GPTQ_|AWQ_|BNB_|INT\d|FP8_|MXFP4)", re.IGNORECASE)
PLAIN_FLOATS = {"F64", "F32", "F16", "BF16"}  # dtype names as the readers give them (formats/)
# The relations the evidence shows (`found_relation`), and which of them each declared relation allows.
# "quantized-derived": a quantized file whose weights differ from the parent beyond a plain copy, with no
# bit-exact check to tell a fine-tune quantized afterwards from a coarse quantization: it contradicts neither.
ALLOWED = {
    "finetune": {"finetune", "changed-then-quantized", "quantized-derived"},
    "adapter": {"finetune", "changed-then-quantized", "quantized-derived"},
    "quantized": {"quantized", "copy", "quantized-derived"},
    "merge": {"merge"},
}


@dataclass(frozen=True)
class LineageCheck:
    """The declared lineage, what the weights show, and the one-word result with its reason."""

    result: str  # one of RESULTS
    declared: DeclaredLineage
    found_parents: tuple[str, ...]  # reference names the weights descend from (empty: none)
    found_hub_ids: tuple[str, ...]  # their hub repository ids where known (else the names)
    found_relation: str | None  # copy, quantized, changed-then-quantized, quantized-derived, finetune, merge
    reason: str  # one sentence saying why
    settle: str | None = None  # the command that would settle an unverifiable claim
    quantization: dict[str, Any] | None = None  # the bit-exact source check (audit/quant_source.py), if run

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result, "declared": self.declared.to_dict(),
                "found": {"parents": list(self.found_parents), "hub_ids": list(self.found_hub_ids),
                          "relation": self.found_relation},
                "reason": self.reason, "settle": self.settle, "quantization": self.quantization}


def _squash(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def claim_names(claim: str, reference: str) -> bool:
    """Loosely, whether a claim names a reference: letters and digits only, case ignored.

    `HuggingFaceTB/SmolLM2-135M-Instruct` and GGUF `SmolLM2 135M Instruct`
    both name `SmolLM2-135M-Instruct`; so does the basename `SmolLM2`
    (a claim of at least 6 letters and digits contained in the reference's name).
    Loose on purpose: a claim read as naming the measured parent never accuses.
    """
    ref = _squash(reference)
    whole = _squash(claim)
    last = _squash(claim.rstrip("/").rsplit("/", 1)[-1])
    if len(ref) >= 4 and ref in whole:
        return True
    return any(len(part) >= 6 and part in ref for part in (whole, last))


def declared_of(candidate) -> DeclaredLineage:
    """What the candidate's files claim (the claims its fingerprint recorded), as one record."""
    return declared_lineage([{"where": c.where, "value": c.value} for c in candidate.lineage_claims or ()])


def declared_references(candidate, names: list[str]) -> list[str]:
    """The reference `names` a declared parent of `candidate` names: compared fully even when screening would
    leave them out, so a declared parent is checked rather than called missing."""
    parents = declared_of(candidate).parents
    return [n for n in names if any(claim_names(p, n) for p in parents)]


def hub_id(row: AuditRow) -> tuple[str, bool]:
    """(id, known): the reference's hub repository id, or its name when none is known."""
    reference = row.reference
    if row.origin.startswith("built-in") and reference in BUILTIN_HUB_IDS:
        return BUILTIN_HUB_IDS[reference], True
    if _REPO_ID.match(reference):
        return reference, True
    # a database reference added from hf://ORG/NAME: its recorded source, read when the audit loaded it
    source = "" if row.origin.startswith("built-in") else row.source
    if source.startswith("hf://"):
        repo = source[len("hf://"):].split("@", 1)[0].strip("/")
        if _REPO_ID.match(repo):
            return repo, True
    return reference, False


def quantized_tensors(candidate) -> bool:
    """Whether the candidate stores quantized matrices: GGUF Q/IQ/TQ types, or any matrix stored in a type other
    than a plain float (8-bit floats, packed integers of GPTQ/AWQ/bitsandbytes, MXFP4 blocks)."""
    for record in candidate.records.values():
        dtype = record.dtype
        if not isinstance(dtype, str):
            continue
        if _QUANTIZED.match(dtype) or (len(record.shape) == 2 and dtype not in PLAIN_FLOATS):
            return True
    return False


def accusing_rows(rows) -> list[AuditRow]:
    """The weight rows that name a parent: accusing verdicts that did not abstain, best first."""
    return [r for r in rows if r.kind == "weights" and r.result.verdict in ACCUSING and not r.result.abstained]


def found_parents(rows) -> list[AuditRow]:
    """The rows the measured lineage names: every assembled source, or the best accusing row."""
    accusing = accusing_rows(rows)
    if not accusing:
        return []
    if accusing[0].result.verdict == Verdict.ASSEMBLED:
        return [r for r in accusing if r.result.verdict == Verdict.ASSEMBLED]
    return accusing[:1]


def adapter_only(candidate) -> bool:
    """Whether the candidate's weights are a PEFT adapter's low-rank deltas (lora_A/lora_B), not a model."""
    names = list(candidate.stored_records)
    return bool(names) and all(".lora_" in name or "lora_embedding" in name for name in names)


def found_relation(verdict: str, quantized: bool, exact_source: bool | None) -> str:
    """How the candidate relates to its found parent; `exact_source` is the bit-exact check's answer (None: not run)."""
    if verdict == Verdict.ASSEMBLED:
        return "merge"
    if quantized:
        if exact_source is True:
            return "quantized"
        if exact_source is False:
            return "changed-then-quantized"
        return "quantized" if verdict == Verdict.IDENTICAL else "quantized-derived"
    return "copy" if verdict == Verdict.IDENTICAL else "finetune"


def _names(text: str, row: AuditRow) -> bool:
    return claim_names(text, row.reference) or claim_names(text, hub_id(row)[0])


def settle_command(parent: str) -> str:
    """The command that would put a declared parent among the references."""
    for model in load_catalog():
        if claim_names(parent, model.repo) or claim_names(parent, model.name):
            return f"provenance refs sync --only {shlex.quote(model.name)}"
    if _REPO_ID.match(parent):
        return f"provenance refs add hf://{parent} --name {shlex.quote(parent)}"
    return f"provenance refs add PATH-OF-{shlex.quote(parent[:80])} --name {shlex.quote(parent[:80])}"


def check_lineage(candidate, rows, quantization: dict[str, Any] | None = None) -> LineageCheck:
    """The declared lineage of `candidate` (a Fingerprint) against the audit's ranked `rows`."""
    declared = declared_of(candidate)
    parents = found_parents(rows)
    weights = [r for r in rows if r.kind == "weights"]
    exact = quantization.get("exact_source") if quantization else None
    relation = found_relation(parents[0].result.verdict, quantized_tensors(candidate), exact) if parents else None
    ids = tuple(hub_id(r)[0] for r in parents)
    names = tuple(r.reference for r in parents)

    def made(result: str, reason: str, settle: str | None = None) -> LineageCheck:
        return LineageCheck(result, declared, names, ids, relation, reason, settle, quantization)

    if adapter_only(candidate):  # low-rank deltas hold no base weights: nothing here can show or refute a parent
        return made("unverifiable", "the files are a PEFT adapter (lora_A/lora_B deltas), which hold no base "
                                    "weights; merge it into its declared base and audit the merged model")

    # each declared parent and the weight row that names it (None: not among the references)
    placed = {p: next((r for r in weights if _names(p, r)), None) for p in declared.parents}
    missing = [p for p, row in placed.items() if row is None]
    merged = [r for r in accusing_rows(rows) if any(_names(p, r) for p in declared.parents)]
    if declared.relation == "merge" and relation != "merge" and len(merged) >= 2:
        # a declared merge whose named parents the weights all descend from (a linear merge reads as
        # derived from each): the merge is what the evidence shows
        parents, relation = merged, "merge"
        ids, names = tuple(hub_id(r)[0] for r in parents), tuple(r.reference for r in parents)
    # accusing rows the claims name; a named one that is not the best (the claim names X, fine-tuned from Y, and
    # both are references that the weights descend from) still supports the claim: the claim is then checked
    # against that row
    supported = [r for r in accusing_rows(rows) if any(_names(t, r) for t in (*declared.parents, *declared.names))]
    if parents and supported and not any(r in parents for r in supported):
        parents = supported[:1]
        relation = found_relation(parents[0].result.verdict, quantized_tensors(candidate), None)
        ids, names = (hub_id(parents[0])[0],), (parents[0].reference,)
    if parents:
        found = ", ".join(names)
        if supported:
            allowed = ALLOWED.get(declared.relation or "")
            if allowed is not None and relation not in allowed:
                return made("wrong-relation", f"the files declare a {declared.relation} of {found}; "
                                              f"the weights show {relation.replace('-', ' ')}")
            return made("consistent", f"the files name {found}, which the weights come from ({relation})")
        if not declared.parents:
            said = "an independent origin" if declared.original else "no parent"
            return made("undeclared-parent", f"the files claim {said}; the weights come from {found} ({relation})")
        if any(row is not None for row in placed.values()):
            named = ", ".join(p for p, row in placed.items() if row is not None)
            return made("wrong-parent", f"the files declare {named}; the weights come from {found} instead")
        return made("unverifiable", f"the declared parent {missing[0]} is not among the references "
                                    f"(the weights come from {found}; it may itself descend from it)",
                    settle_command(missing[0]))
    if not declared.parents:
        return made("consistent", "the files name no parent and no reference explains the weights")
    if missing:
        return made("unverifiable", f"the declared parent {missing[0]} is not among the references",
                    settle_command(missing[0]))
    abstained = [p for p, row in placed.items() if row.result.abstained]
    if abstained:
        return made("unverifiable", f"the comparison with the declared parent {abstained[0]} abstained")
    named = ", ".join(placed)
    return made("wrong-parent", f"the files declare {named}, but the weights do not come from it "
                                "(nor from any other reference)")
