"""What an audit report says, gathered as plain data for the HTML and Markdown templates.

`build_report` takes an `AuditResult` and returns one dictionary: the
verdict in words, the evidence against the best-ranked reference with each
p-value explained, the layer-by-layer similarity matrix and per-role
similarity (as chart geometry), the two tokenizers, renamed tensors, the
lineage the files claim beside the measured one, a table of every
reference, and what is needed to reproduce the run (file sha256s, tool and
database versions, the command line). Everything measured or read from a
file was computed when the audit ran (provenance/audit/details.py): this
module only arranges it.

Sentences are kept as `Phrase(template, args)`: the template comes from
`strings/<lang>.json` and is trusted; the args may come from a checkpoint
(tensor names, paths, tokens, claims) and are escaped by the renderer, which
fills them in. Nothing read from a file is ever pasted into markup here.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from .. import __version__
from ..compare.thresholds import ACCUSATION_LOG10P
from ..audit.lineage_check import claim_names
from ..verdicts import ACCUSING, Verdict
from . import charts
from .i18n import load_strings

if TYPE_CHECKING:  # the type only: a renderer needs no audit code at run time
    from ..audit import AuditResult

MAX_LISTED = 200  # rows of long tables (renamed tensors) shown before "... and N more"
SHOWN_OPEN = 20  # rows of those tables shown before the rest is folded away (HTML <details>)
# One notation for every p-value the report prints, the engine's: below this, "p < 1e-300".
P_FLOOR_LOG10 = -300
ARCH_SHOWN = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size", "num_experts")


@dataclass(frozen=True)
class Power:
    """base^exp, drawn as a superscript in HTML and as `base^exp` in Markdown."""

    base: int
    exp: int


@dataclass(frozen=True)
class Phrase:
    """A sentence from the strings file (trusted) and the values to fill in (escaped when rendered)."""

    template: str
    args: dict[str, Any] = field(default_factory=dict)


def _is_weights(row) -> bool:
    """A row whose weights were compared (audit rows of kind "architecture" compare configurations only)."""
    return getattr(row, "kind", "weights") == "weights"


def _text(value: Any) -> str:
    """Any value from a fingerprint's metadata as text (it may not be the type it should be)."""
    return value if isinstance(value, str) else "" if value is None else str(value)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# --- p-values in words ------------------------------------------------------------------------------

# Checks without a p-value that are not screening signals: deterministic identity checks (compare/engine.py).
IDENTITY_CHECKS = ("residual-space Gram matrices (rotation-invariant identity check)",)


def p_phrase(log10p: float | None, decisive: bool, t: dict[str, Any], signal: str = "", compared: bool = True) -> Phrase:
    """The sentence that tells a non-specialist what a p-value (or its absence) means for `signal`."""
    ex = t["p_explain"]
    if not compared:
        return Phrase(ex["not_compared"])
    if log10p is None and signal in IDENTITY_CHECKS:
        return Phrase(ex["identity_check"])
    if log10p is None:
        return Phrase(ex["exact"] if decisive else ex["screening"])
    if not math.isfinite(log10p) or log10p < P_FLOOR_LOG10:
        return Phrase(ex["floor"], {"odds": Power(10, -P_FLOOR_LOG10)})
    p = 10.0 ** log10p
    if p < 1e-3:
        # p < 10^-exponent: "less than once in 10^exponent tries"
        return Phrase(ex["tiny"], {"p": p_text(log10p), "odds": Power(10, int(math.floor(-log10p)))})
    if p < 0.05:
        out_of = 10 ** math.ceil(-log10p)
        return Phrase(ex["small"], {"p": f"{p:.2g}", "times": max(1, round(p * out_of)), "outof": f"{out_of:,}"})
    return Phrase(ex["large"], {"p": f"{p:.2g}", "times": round(p * 100), "outof": "100"})


def p_text(log10p: float | None) -> str:
    """A p-value for a table cell, from its log10: `0.0063`, `5e-41`, or `< 1e-300` (as the engine writes it)."""
    if log10p is None:
        return "-"
    if not math.isfinite(log10p) or log10p < P_FLOOR_LOG10:
        return "< 1e-300"
    p = 10.0 ** log10p
    if p >= 1e-3:
        return f"{p:.2g}"
    exponent = math.floor(log10p)  # one significant digit in scientific notation (p underflows a float)
    mantissa = round(10.0 ** (log10p - exponent))
    return f"1e{exponent + 1}" if mantissa == 10 else f"{mantissa}e{exponent}"


def p_inline(log10p: float | None) -> str:
    """A p-value inside a sentence or cell without a p-value header: `p = 0.4`, `p = 5e-41`, `p < 1e-300`."""
    text = p_text(log10p)
    return "p " + text if text.startswith("<") else f"p = {text}"


def signal_phrases(signal: str, t: dict[str, Any]) -> tuple[Phrase, Phrase | None]:
    """A signal's name and what it measures, in the reader's language (the engine's name if unknown)."""
    known = t["signals"]
    if signal in known:
        name, what = known[signal]
        return Phrase(name), Phrase(what)
    by_id = re.fullmatch(r"(?P<name>(?P<role>[\w]+)\.[\w.]+) \(by id(?P<rest>[^)]*)\)", signal)
    if by_id:  # what the tensor is: its role (embedding rows by token id, the final norm's weights ...)
        name, what = known["by_id"]
        detail = t["by_id_roles"].get(by_id["role"], "")
        return Phrase(name, {"name": by_id["name"] + by_id["rest"]}), Phrase(what, {"detail": detail})
    return Phrase("{name}", {"name": signal}), None


def decides(evidence, result) -> str:
    """Whether a signal decided this verdict: "yes", "below_bar" (it may decide, but did not reach the bar of
    p < 1e-12 every accusing verdict needs, compare/thresholds.py), or "no" (context only). A check without a p-value (exact hashes, the
    rotation-proof identity check) decides only an `identical` verdict."""
    if not evidence.decisive:
        return "no"
    if evidence.log10p is None:
        return "yes" if result.verdict == Verdict.IDENTICAL and not result.abstained else "below_bar"
    return "yes" if evidence.log10p <= ACCUSATION_LOG10P and result.verdict in ACCUSING and not result.abstained \
        else "below_bar"


def _evidence(result, t: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    ranked = sorted(result.evidence, key=lambda e: (not e.decisive, e.log10p if e.log10p is not None else 0.0))
    for e in ranked:
        name, what = signal_phrases(e.signal, t)
        rows.append({"name": name, "what": what, "value": f"{float(e.value):.4g}" if e.compared else t["na"],
                     "p": p_text(e.log10p), "meaning": p_phrase(e.log10p, e.decisive, t, e.signal, e.compared),
                     "decisive": e.decisive,
                     "decides": decides(e, result), "detail": e.detail})
    return rows


# --- the verdict in words ---------------------------------------------------------------------------

def _headline(rows, t: dict[str, Any]) -> dict[str, Any]:
    if not rows:
        return {"sentence": Phrase(t["verdict"]["no_references"]), "closest": None, "verdict": None,
                "confidence": None, "abstained": False, "summary": None, "accusing": False}
    best = rows[0]
    verdict, result = best.result.verdict, best.result
    closest = None
    if result.abstained:
        sentence = Phrase(t["verdict"]["abstained"], {"reference": best.reference})
    elif verdict in ACCUSING:
        sentence = Phrase(t["verdict"][verdict], {"reference": best.reference})
    else:
        sentence = Phrase(t["verdict"]["none"])
        key = (verdict if result.weights_compared else "not_compared") if _is_weights(best) else "architecture"
        closest = Phrase(t["closest"].get(key, t["closest"]["other"]),
                         {"reference": best.reference, "verdict": t["verdicts"].get(verdict, verdict)})
    return {"sentence": sentence, "closest": closest, "verdict": verdict, "confidence": f"{result.confidence:.2f}",
            "abstained": result.abstained, "summary": result.summary,
            "accusing": verdict in ACCUSING and not result.abstained}


# --- layers and roles -------------------------------------------------------------------------------

def _layer_map(result) -> list[dict[str, Any]]:
    return [{"i": r.candidate_layer, "j": r.reference_layer, "r": f"{r.similarity:.3f}",
             "p": p_text(r.log10_p), "via": r.via} for r in result.layers]


def _role_section(profiles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for profile in profiles:
        values = [p["r"] for p in profile["points"] if p["r"] is not None]
        significant = sum(1 for p in profile["points"] if p["log10p"] is not None and p["log10p"] < charts.SIGNIFICANT)
        out.append({"role": profile["role"], "chart": charts.role_bars(profile["points"]),
                    "min": f"{min(values):.3f}", "median": f"{statistics.median(values):.3f}", "max": f"{max(values):.3f}",
                    "significant": f"{significant}/{len(values)}"})
    return out


# --- tokenizer --------------------------------------------------------------------------------------

def _tokenizer(audit: AuditResult, t: dict[str, Any]) -> dict[str, Any]:
    cand, best = audit.candidate, audit.best_match
    cv = cand.vocabulary.to_dict() if cand.vocabulary is not None else None
    rv = best.vocabulary if best is not None else None
    tt = t["tokenizer"]

    def side(v: dict[str, Any] | None, source: str) -> dict[str, str]:
        if v is None:
            return {}
        specials = v.get("special_tokens") if isinstance(v.get("special_tokens"), list) else []
        return {"kind": _text(v.get("kind")), "size": _text(v.get("size")),
                "vocab_sha256": _text(v.get("vocab_sha256")), "merges_sha256": _text(v.get("merges_sha256")) or "-",
                "source": source,
                "special_tokens": ", ".join(_text(s) for s in specials[:12]) + (" …" if len(specials) > 12 else "")}

    props = [(key, tt[key]) for key in ("kind", "size", "vocab_sha256", "merges_sha256", "source", "special_tokens")]
    c_side = side(cv, audit.vocabulary_source)
    r_side = side(rv, best.vocabulary_source if best is not None else "")
    table = [{"label": label, "candidate": c_side.get(key, "-"), "reference": r_side.get(key, "-")} for key, label in props]
    sentences: list[Phrase] = []
    if cv is None:
        sentences.append(Phrase(tt["missing_candidate"]))
    if best is not None and rv is None:
        sentences.append(Phrase(tt["missing_reference"]))
    overlap = None
    if cv is not None and rv is not None:
        if cv.get("vocab_sha256") and cv.get("vocab_sha256") == rv.get("vocab_sha256"):
            sentences.append(Phrase(tt["same_vocab"]))
        overlap = best.vocabulary_overlap
        if overlap is not None:
            sentences.append(Phrase(tt["jaccard"], {"percent": f"{overlap:.0%}"}))
        c_anchor = [_text(a) for a in cv.get("anchor_tokens") or []] if isinstance(cv.get("anchor_tokens"), list) else []
        r_anchor = set(_text(a) for a in rv.get("anchor_tokens") or []) if isinstance(rv.get("anchor_tokens"), list) else set()
        if c_anchor:
            shared = [a for a in c_anchor if a in r_anchor]
            examples = ", ".join(repr(a) for a in shared[:10]) or "-"
            sentences.append(Phrase(tt["anchors"], {"shared": len(shared), "total": len(c_anchor), "examples": examples}))
    if cv is not None:  # the closest published tokenizer (audit/tokenizer_references.py)
        for match in audit.tokenizers[:1]:
            if isinstance(match, dict) and match.get("summary"):
                sentences.append(Phrase(tt["known"], {"summary": _text(match.get("summary"))}))
    if cv is not None:
        sentences.append(Phrase(tt["context"]))
    return {"table": table, "sentences": sentences, "overlap": overlap, "has_reference": best is not None,
            "reference_name": best.row.reference if best is not None else None}


# --- renamed tensors --------------------------------------------------------------------------------

def natural_key(text: str) -> tuple:
    """Sort key that orders numbers by value: blocks.2 before blocks.10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text))


def _renamed(result, cand) -> dict[str, Any]:
    vs_ref = [{"candidate": _text(r.get("candidate")), "reference": _text(r.get("reference")), "role": _text(r.get("role"))}
              for r in _dicts(result.renamed)] if result is not None else []
    own = [{"tensor": _text(r.tensor), "standard": _text(r.standard), "role": _text(r.role)}
           for r in cand.renamed_tensors]
    vs_ref.sort(key=lambda r: natural_key(r["candidate"]))
    own.sort(key=lambda r: natural_key(r["tensor"]))
    return {"vs_reference": vs_ref[:SHOWN_OPEN], "vs_reference_folded": vs_ref[SHOWN_OPEN:MAX_LISTED],
            "more_vs_reference": max(0, len(vs_ref) - MAX_LISTED),
            "nonstandard": own[:SHOWN_OPEN], "nonstandard_folded": own[SHOWN_OPEN:MAX_LISTED],
            "more_nonstandard": max(0, len(own) - MAX_LISTED)}


# --- claimed versus measured lineage ----------------------------------------------------------------

def _lineage(cand, rows, t: dict[str, Any]) -> dict[str, Any]:
    tl = t["lineage"]
    raw = cand.lineage_claims
    recorded = raw is not None
    accusing = [r for r in rows if r.result.verdict in ACCUSING and not r.result.abstained]
    source = accusing[0] if accusing else None
    claims = []
    for c in raw or ():
        value = _text(c.value)
        claims.append({"where": _text(c.where), "value": value,
                       "names": claim_names(value, source.reference) if source else None})
    measured = (Phrase(tl["measured_source"], {"verdict": t["verdicts"].get(source.result.verdict, source.result.verdict),
                                               "reference": source.reference})
                if source else Phrase(tl["measured_none"]))
    status: list[Phrase] = []
    if source is not None:
        if any(c["names"] for c in claims):
            status.append(Phrase(tl["consistent"]))
        elif recorded:
            status.append(Phrase(tl["undisclosed"], {"reference": source.reference}))
    for row in rows:
        if _is_weights(row) and row.result.verdict not in ACCUSING and not row.result.abstained \
                and any(claim_names(c["value"], row.reference) for c in claims):
            status.append(Phrase(tl["contradicted"], {"reference": row.reference}))
    if source is None and not status and recorded:
        status.append(Phrase(tl["unverifiable"] if claims else tl["silent"]))
    return {"recorded": recorded, "claims": claims, "measured": measured, "status": status,
            "has_source": source is not None}


def _lineage_box(audit: AuditResult, t: dict[str, Any]) -> dict[str, Any] | None:
    """The "claimed / found" box at the top: declared against detected lineage (audit/lineage_check.py)."""
    check = audit.lineage
    if check is None:
        return None
    tb = t["lineage_box"]
    declared = check.declared
    if declared.parents:
        claimed_parents = ", ".join(_text(p) for p in declared.parents)
    else:
        claimed_parents = tb["original"] if declared.original else tb["none"]
    relations = tb["relations"]
    claimed_relation = declared.relation and relations.get("finetune_claimed" if declared.relation == "finetune"
                                                           else declared.relation, declared.relation)
    quantization = check.quantization or {}
    return {"result": check.result, "sentence": tb["results"][check.result], "reason": _text(check.reason),
            "claimed": {"parents": claimed_parents, "relation": claimed_relation or tb["not_stated"]},
            "found": {"parents": ", ".join(_text(p) for p in check.found_parents) or tb["none"],
                      "relation": relations.get(check.found_relation, check.found_relation) if check.found_relation
                      else tb["none"]},
            "quantization": _text(quantization.get("summary")) or None,
            "settle": Phrase(tb["settle"], {"command": check.settle}) if check.settle else None,
            "accusing": check.result in ("undeclared-parent", "wrong-parent", "wrong-relation")}


# --- everything -------------------------------------------------------------------------------------

def build_report(audit: AuditResult, lang: str = "en", argv: Iterable[str] | None = None,
                 now: dt.datetime | None = None) -> dict[str, Any]:
    """The report's content, from the audit's result only."""
    t = load_strings(lang)
    rows, cand = audit.rows, audit.candidate
    # The evidence, pictures and tokenizer are those of the best-ranked reference whose weights were compared.
    best = audit.best_match.row if audit.best_match is not None else None
    result = best.result if best else None
    mapped = {(r.candidate_layer, r.reference_layer) for r in (result.layers if result else [])
              if r.reference_layer is not None}
    matrix = getattr(result, "layer_matrix", None) if result else None
    profiles = list(audit.best_match.role_profiles) if audit.best_match is not None else []
    arch = cand.arch
    when = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
    repro = audit.reproducibility
    return {
        "t": t,
        "lang": lang,
        "generated": Phrase(t["generated"], {"when": when, "version": __version__}),
        "candidate": {"path": audit.candidate_path, "format": _text(cand.source.format),
                      "family": _text(cand.family.name) or "?",
                      "architecture": [(k, _text(getattr(arch, k))) for k in ARCH_SHOWN if getattr(arch, k) is not None]},
        "headline": _headline(rows, t),
        "best": {"reference": best.reference, "origin": best.origin} if best else None,
        "evidence": _evidence(result, t) if result else [],
        "heatmap": charts.heatmap(matrix, mapped),
        "ascii_heatmap": charts.ascii_heatmap(matrix, mapped),
        "layer_map": _layer_map(result) if result else [],
        "roles": _role_section(profiles),
        "tokenizer": _tokenizer(audit, t),
        "renamed": _renamed(result, cand),
        "lineage": _lineage(cand, rows, t),
        "lineage_box": _lineage_box(audit, t),
        "references": [{"rank": k, "reference": r.reference, "origin": _origin_label(r.origin, t), "verdict": r.result.verdict,
                        "confidence": f"{r.result.confidence:.2f}", "abstained": r.result.abstained,
                        "summary": r.result.summary, "strongest": _strongest(r, t)} for k, r in enumerate(rows, start=1)],
        "screening": _screening(audit, t),
        "scope": _scope(audit, t),
        "notes": audit.notes,
        "repro": {"candidate": repro.candidate, "tool": dict(repro.tool),
                  "database": dict(audit.database) if audit.database is not None else None,
                  "builtin": list(repro.builtin) if repro.builtin is not None else None,
                  # argv[0] is where the program lies on this machine; the command is what the user typed after it
                  "command": shlex.join(["provenance", *(list(argv) if argv is not None else sys.argv)[1:]])},
    }


def _scope(audit: AuditResult, t: dict[str, Any]) -> list[Phrase]:
    """What the audit compared and what it cannot see (provenance/audit/scope.py), one sentence each."""
    if audit.scope is None:
        return []
    s, words = audit.scope, t["scope"]
    said = [Phrase(words["compared" if audit.database is not None else "compared_builtin"],
                   {"weights": s.weights_compared, "builtin": s.builtin_weights,
                                       "database": s.database_compared, "database_total": s.database_total,
                                       "architectures": s.builtin_architectures})]
    if s.not_comparable:
        said.append(Phrase(words["not_comparable"], {"count": s.not_comparable}))
    if s.catalog_missing:
        said.append(Phrase(words["catalog"], {"missing": s.catalog_missing}))
    return said + [Phrase(words["not_original"]), Phrase(words["cannot_see"])]


def _screening(audit: AuditResult, t: dict[str, Any]) -> Phrase | None:
    """How many database references the screening (provenance/audit/shortlist.py) left out of the full comparison."""
    if audit.screening is None:
        return None
    data = audit.screening.to_dict()
    return Phrase(t["references"]["screening"], {"screened": data["references"], "compared": data["compared"],
                                                 "skipped": data["not_compared"]})


def _origin_label(origin: str, t: dict[str, Any]) -> str:
    if origin == "built-in":
        return t["references"]["builtin"]
    if origin.startswith("built-in ("):
        return t["references"]["builtin_config"]
    return origin  # the database path


def _strongest(row, t: dict[str, Any]) -> dict[str, Any] | None:
    decisive = [e for e in row.result.evidence if e.decisive and e.log10p is not None]
    if not decisive:  # a signal that could not run says so ("not compared"), never a p-value
        skipped = [e for e in row.result.evidence if not e.compared]
        return {"name": signal_phrases(skipped[0].signal, t)[0], "p": t["not_compared"]} if skipped else None
    e = min(decisive, key=lambda e: e.log10p)
    name, _ = signal_phrases(e.signal, t)
    return {"name": name, "p": p_inline(e.log10p)}
