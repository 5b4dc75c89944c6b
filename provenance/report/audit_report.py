"""What an audit report says, gathered as plain data for the HTML and Markdown templates.

`build_report` takes the audit's ranked rows and returns one dictionary: the
verdict in words, the evidence against the best-ranked reference with each
p-value explained, the layer-by-layer similarity matrix and per-role
similarity (as chart geometry), the two tokenizers, renamed tensors, the
lineage the files claim beside the measured one, a table of every
reference, and what is needed to reproduce the run (file sha256s, tool and
database versions, the command line).

Sentences are kept as `Phrase(template, args)`: the template comes from
`strings/<lang>.json` and is trusted; the args may come from a checkpoint
(tensor names, paths, tokens, claims) and are escaped by the renderer, which
fills them in. Nothing read from a file is ever pasted into markup here.
"""

from __future__ import annotations

import datetime as dt
import math
import platform
import re
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from ..compare.results import LayerMatch
from ..compare.thresholds import ACCUSATION_LOG10P
from . import charts
from .i18n import load_strings

ACCUSING = ("identical", "derived", "assembled")
ROLE_ORDER = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")
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

def p_phrase(log10p: float | None, decisive: bool, t: dict[str, Any]) -> Phrase:
    """The sentence that tells a non-specialist what a p-value (or its absence) means."""
    ex = t["p_explain"]
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
    if signal.endswith(" (by id)"):
        name, what = known["by_id"]
        return Phrase(name, {"name": signal.removesuffix(" (by id)")}), Phrase(what)
    return Phrase("{name}", {"name": signal}), None


def decides(evidence, result) -> str:
    """Whether a signal decided this verdict: "yes", "below_bar" (it may decide, but did not reach the bar of
    p < 1e-12 every accusing verdict needs, compare/thresholds.py), or "no" (context only). A check without a p-value (exact hashes, the
    rotation-proof identity check) decides only an `identical` verdict."""
    if not evidence.decisive:
        return "no"
    if evidence.log10p is None:
        return "yes" if result.verdict == "identical" and not result.abstained else "below_bar"
    return "yes" if evidence.log10p <= ACCUSATION_LOG10P and result.verdict in ACCUSING and not result.abstained \
        else "below_bar"


def _evidence(result, t: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    ranked = sorted(result.evidence, key=lambda e: (not e.decisive, e.log10p if e.log10p is not None else 0.0))
    for e in ranked:
        name, what = signal_phrases(e.signal, t)
        rows.append({"name": name, "what": what, "value": f"{float(e.value):.4g}", "p": p_text(e.log10p),
                     "meaning": p_phrase(e.log10p, e.decisive, t), "decisive": e.decisive,
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
        key = verdict if _is_weights(best) else "architecture"
        closest = Phrase(t["closest"].get(key, t["closest"]["other"]),
                         {"reference": best.reference, "verdict": t["verdicts"].get(verdict, verdict)})
    return {"sentence": sentence, "closest": closest, "verdict": verdict, "confidence": f"{result.confidence:.2f}",
            "abstained": result.abstained, "summary": result.summary,
            "accusing": verdict in ACCUSING and not result.abstained}


# --- layers and roles -------------------------------------------------------------------------------

def _layer_map(result) -> list[dict[str, Any]]:
    return [{"i": r.candidate_layer, "j": r.reference_layer, "r": f"{r.similarity:.3f}",
             "p": p_text(r.log10_p), "via": r.via} for r in result.layers]


def role_profiles(cand, ref, layer_rows: list[LayerMatch]) -> list[dict[str, Any]]:
    """Per canonical role, the correlation (and its own log10 p) of each candidate layer with its partner.

    The partner is the mapped reference layer, or the most similar one when the
    layer matched nothing. Same sketches, norm folding and null as the engine's
    layer signal (compare/signals.py), one role at a time instead of combined.
    """
    from ..compare.signals import clustered_log10p_matrix, layer_view, sketch_clusters
    from ..compare.stats import correlation_matrix

    cv, rv = layer_view(cand), layer_view(ref)
    names = {name for (_, name), shape in cv.shapes.items() if len(shape) == 2}
    names &= {name for (_, name), shape in rv.shapes.items() if len(shape) == 2}
    ordered = [r for r in ROLE_ORDER if r in names] + sorted(names - set(ROLE_ORDER))
    profiles = []
    for role in ordered:
        points, compared = [], 0
        for row in layer_rows:
            i = row.candidate_layer
            j = row.reference_layer if row.reference_layer is not None else row.best_reference_layer
            point = {"layer": i, "partner": j, "r": None, "log10p": None}
            a, b = cv.sketches.get((i, role)), rv.sketches.get((j, role)) if j is not None else None
            if a is not None and b is not None and cv.shapes[(i, role)] == rv.shapes[(j, role)]:
                point["r"] = float(correlation_matrix(a[None, :], b[None, :])[0, 0])
                point["log10p"] = float(clustered_log10p_matrix(a[None, :], b[None, :],
                                                                sketch_clusters(cv.shapes[(i, role)]))[0, 0])
                compared += 1
            points.append(point)
        if compared:
            profiles.append({"role": role, "points": points})
    return profiles


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

def shown_source(source: str, given: str) -> str:
    """A file path recorded in a fingerprint, as the report may show it: whole when it lies under the path the
    user gave for this run, else its file name only (a built-in reference records where the package was built)."""
    if not source:
        return source
    try:
        if given and Path(source).resolve().is_relative_to(Path(given).resolve()):
            return source
    except (OSError, ValueError):
        pass
    return Path(source).name or source


def _tokenizer(cand, ref, t: dict[str, Any], ref_name: str | None, given: str = "") -> dict[str, Any]:
    from ..compare.signals import vocabulary_overlap

    cv = cand.meta.get("vocabulary") if isinstance(cand.meta.get("vocabulary"), dict) else None
    rv = ref.meta.get("vocabulary") if ref is not None and isinstance(ref.meta.get("vocabulary"), dict) else None
    tt = t["tokenizer"]

    def side(v: dict[str, Any] | None) -> dict[str, str]:
        if v is None:
            return {}
        specials = v.get("special_tokens") if isinstance(v.get("special_tokens"), list) else []
        return {"kind": _text(v.get("kind")), "size": _text(v.get("size")),
                "vocab_sha256": _text(v.get("vocab_sha256")), "merges_sha256": _text(v.get("merges_sha256")) or "-",
                "source": shown_source(_text(v.get("source")), given),
                "special_tokens": ", ".join(_text(s) for s in specials[:12]) + (" …" if len(specials) > 12 else "")}

    props = [(key, tt[key]) for key in ("kind", "size", "vocab_sha256", "merges_sha256", "source", "special_tokens")]
    c_side, r_side = side(cv), side(rv)
    table = [{"label": label, "candidate": c_side.get(key, "-"), "reference": r_side.get(key, "-")} for key, label in props]
    sentences: list[Phrase] = []
    if cv is None:
        sentences.append(Phrase(tt["missing_candidate"]))
    if ref is not None and rv is None:
        sentences.append(Phrase(tt["missing_reference"]))
    overlap = None
    if cv is not None and rv is not None:
        if cv.get("vocab_sha256") and cv.get("vocab_sha256") == rv.get("vocab_sha256"):
            sentences.append(Phrase(tt["same_vocab"]))
        try:
            overlap = vocabulary_overlap(cand, ref)
        except (TypeError, ValueError):  # a hand-edited fingerprint with a malformed minhash
            overlap = None
        if overlap is not None:
            sentences.append(Phrase(tt["jaccard"], {"percent": f"{overlap:.0%}"}))
        c_anchor = [_text(a) for a in cv.get("anchor_tokens") or []] if isinstance(cv.get("anchor_tokens"), list) else []
        r_anchor = set(_text(a) for a in rv.get("anchor_tokens") or []) if isinstance(rv.get("anchor_tokens"), list) else set()
        if c_anchor:
            shared = [a for a in c_anchor if a in r_anchor]
            examples = ", ".join(repr(a) for a in shared[:10]) or "-"
            sentences.append(Phrase(tt["anchors"], {"shared": len(shared), "total": len(c_anchor), "examples": examples}))
    for match in _known_tokenizers(cv):
        sentences.append(Phrase(tt["known"], {"summary": match}))
    if cv is not None:
        sentences.append(Phrase(tt["context"]))
    return {"table": table, "sentences": sentences, "overlap": overlap, "has_reference": ref is not None,
            "reference_name": ref_name}


def _known_tokenizers(vocabulary: dict[str, Any] | None) -> list[str]:
    """The closest published tokenizer (audit/tokenizer_references.py), when that module is present."""
    if vocabulary is None:
        return []
    try:
        from ..audit import tokenizer_references
    except ImportError:
        return []
    match = getattr(tokenizer_references, "match_tokenizers", None)
    if match is None:
        return []
    return [_text(m.get("summary")) for m in match(vocabulary)[:1] if isinstance(m, dict) and m.get("summary")]


# --- renamed tensors --------------------------------------------------------------------------------

def natural_key(text: str) -> tuple:
    """Sort key that orders numbers by value: blocks.2 before blocks.10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text))


def _renamed(result, cand) -> dict[str, Any]:
    vs_ref = [{"candidate": _text(r.get("candidate")), "reference": _text(r.get("reference")), "role": _text(r.get("role"))}
              for r in _dicts(result.renamed)] if result is not None else []
    own = [{"tensor": _text(r.get("tensor")), "standard": _text(r.get("standard")), "role": _text(r.get("role"))}
           for r in _dicts(cand.meta.get("renamed_tensors"))]
    vs_ref.sort(key=lambda r: natural_key(r["candidate"]))
    own.sort(key=lambda r: natural_key(r["tensor"]))
    return {"vs_reference": vs_ref[:SHOWN_OPEN], "vs_reference_folded": vs_ref[SHOWN_OPEN:MAX_LISTED],
            "more_vs_reference": max(0, len(vs_ref) - MAX_LISTED),
            "nonstandard": own[:SHOWN_OPEN], "nonstandard_folded": own[SHOWN_OPEN:MAX_LISTED],
            "more_nonstandard": max(0, len(own) - MAX_LISTED)}


# --- claimed versus measured lineage ----------------------------------------------------------------

def _squash(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def claim_names(claim: str, reference: str) -> bool:
    """Loosely, whether a claim names a reference: letters and digits only, case ignored.

    `HuggingFaceTB/SmolLM2-135M-Instruct` and GGUF `SmolLM2 135M Instruct`
    both name `SmolLM2-135M-Instruct`; so does the basename `SmolLM2`
    (a claim of at least 6 letters and digits contained in the reference's name).
    """
    ref = _squash(reference)
    whole = _squash(claim)
    last = _squash(claim.rstrip("/").rsplit("/", 1)[-1])
    if len(ref) >= 4 and ref in whole:
        return True
    return any(len(part) >= 6 and part in ref for part in (whole, last))


def _lineage(cand, rows, t: dict[str, Any]) -> dict[str, Any]:
    tl = t["lineage"]
    raw = cand.meta.get("lineage_claims")
    recorded = isinstance(raw, list)
    accusing = [r for r in rows if r.result.verdict in ACCUSING and not r.result.abstained]
    source = accusing[0] if accusing else None
    claims = []
    for c in _dicts(raw):
        value = _text(c.get("value"))
        claims.append({"where": _text(c.get("where")), "value": value,
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


# --- reproducibility --------------------------------------------------------------------------------

def _candidate_files(candidate_path: str, cand, hash_files: bool) -> dict[str, Any]:
    """The candidate's files with sha256 (streamed), or the fingerprint file and the files it recorded."""
    from ..errors import ProvenanceError
    from ..fingerprint.store import is_fingerprint_file
    from ..inspection import sha256_file

    path = Path(candidate_path)
    source = cand.meta.get("source") if isinstance(cand.meta.get("source"), dict) else {}
    recorded = [{"name": _text(f.get("name")), "bytes": _text(f.get("bytes")), "sha256": _text(f.get("sha256")) or None}
                for f in _dicts(source.get("files"))]
    out: dict[str, Any] = {"files": [], "fingerprint": None, "recorded": recorded}
    if path.is_file() and is_fingerprint_file(path):
        out["fingerprint"] = {"name": str(path), "bytes": str(path.stat().st_size),
                              "sha256": sha256_file(path) if hash_files else None,
                              "created": _text(cand.meta.get("created")), "version": _text(cand.meta.get("tool_version"))}
        return out
    if path.exists() and hash_files:
        from ..formats.checkpoint_files import open_checkpoint_files

        try:
            files = open_checkpoint_files(path)
        except ProvenanceError:
            return out
        try:
            out["files"] = [{"name": str(f), "bytes": str(f.stat().st_size), "sha256": sha256_file(f)}
                            for f in files.all_files()]
        finally:
            files.close()
    return out


def _builtin_hashes(rows) -> list[dict[str, str]] | None:
    """sha256 of every file in provenance/references/ (fingerprints, and any other reference data there)."""
    from ..inspection import sha256_file

    if not any(r.origin.startswith("built-in") for r in rows):
        return None
    folder = resources.files("provenance") / "references"
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_file() and not entry.name.startswith((".", "__")) and not entry.name.endswith(".py"):
            with resources.as_file(entry) as path:
                found.append({"name": entry.name, "sha256": sha256_file(Path(path))})
    return found


def _versions() -> dict[str, str]:
    import numpy
    import scipy

    return {"version": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__}


# --- everything -------------------------------------------------------------------------------------

def reference_fingerprint(row, registry=None):
    """The best row's reference fingerprint, loaded again (the audit keeps only comparisons)."""
    from ..errors import ProvenanceError

    try:
        if row.origin == "built-in":
            from ..audit import builtin_references

            return next((fp for name, fp in builtin_references() if name == row.reference), None)
        if registry is not None and row.origin == str(registry.path):
            return registry.fingerprint(row.reference)
    except ProvenanceError:
        return None
    return None


def build_report(candidate_path: str, cand, rows: list, registry=None, lang: str = "en",
                 argv: Iterable[str] | None = None, reference=None, hash_files: bool = True,
                 now: dt.datetime | None = None) -> dict[str, Any]:
    """The report's content. `reference` is the best row's reference fingerprint (looked up when None)."""
    t = load_strings(lang)
    # The evidence, pictures and tokenizer are those of the best-ranked reference whose weights were compared.
    best = next((r for r in rows if _is_weights(r)), None)
    if best is not None and reference is None:
        reference = reference_fingerprint(best, registry)
    result = best.result if best else None
    mapped = {(r.candidate_layer, r.reference_layer) for r in (result.layers if result else [])
              if r.reference_layer is not None}
    matrix = getattr(result, "layer_matrix", None) if result else None
    profiles = role_profiles(cand, reference, result.layers) if result is not None and reference is not None else []
    arch = cand.architecture
    source = cand.meta.get("source") if isinstance(cand.meta.get("source"), dict) else {}
    family = cand.meta.get("family") if isinstance(cand.meta.get("family"), dict) else {}
    when = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
    return {
        "t": t,
        "lang": lang,
        "generated": Phrase(t["generated"], {"when": when, "version": __version__}),
        "candidate": {"path": candidate_path, "format": _text(source.get("format")), "family": _text(family.get("name")) or "?",
                      "architecture": [(k, _text(arch.get(k))) for k in ARCH_SHOWN if arch.get(k) is not None]},
        "headline": _headline(rows, t),
        "best": {"reference": best.reference, "origin": best.origin} if best else None,
        "evidence": _evidence(result, t) if result else [],
        "heatmap": charts.heatmap(matrix, mapped),
        "ascii_heatmap": charts.ascii_heatmap(matrix, mapped),
        "layer_map": _layer_map(result) if result else [],
        "roles": _role_section(profiles),
        "tokenizer": _tokenizer(cand, reference, t, best.reference if best else None, candidate_path),
        "renamed": _renamed(result, cand),
        "lineage": _lineage(cand, rows, t),
        "references": [{"rank": k, "reference": r.reference, "origin": _origin_label(r.origin, t), "verdict": r.result.verdict,
                        "confidence": f"{r.result.confidence:.2f}", "abstained": r.result.abstained,
                        "summary": r.result.summary, "strongest": _strongest(r, t)} for k, r in enumerate(rows, start=1)],
        "screening": _screening(rows, t),
        "notes": list(result.notes) if result else [],
        "repro": {"candidate": _candidate_files(candidate_path, cand, hash_files), "tool": _versions(),
                  "database": {"path": str(registry.path), "revision": registry.revision} if registry is not None else None,
                  "builtin": _builtin_hashes(rows),
                  # argv[0] is where the program lies on this machine; the command is what the user typed after it
                  "command": shlex.join(["provenance", *(list(argv) if argv is not None else sys.argv)[1:]])},
    }


def _screening(rows, t: dict[str, Any]) -> Phrase | None:
    """How many database references the screening (provenance/audit/shortlist.py) left out of the full comparison."""
    summary = getattr(rows, "screening", None)
    try:
        data = summary.to_dict() if summary is not None else None
    except AttributeError:
        return None
    if not isinstance(data, dict) or not {"references", "compared", "not_compared"} <= set(data):
        return None
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
    if not decisive:
        return None
    e = min(decisive, key=lambda e: e.log10p)
    name, _ = signal_phrases(e.signal, t)
    return {"name": name, "p": p_inline(e.log10p)}
