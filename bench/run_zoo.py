"""Measure the comparison engine on the provenance zoo (built by `python -m bench.zoo.build --out DIR`).

Usage (from the checkout root):

    python bench/run_zoo.py DIR [--only TYPE[,TYPE..]] [--json OUT] [--refresh]

Every model named in DIR/cases.json is fingerprinted once
(`provenance.fingerprint.load.fingerprint_for`); fingerprints are cached in
DIR/fingerprints/, keyed by the model files and a hash of the installed
`provenance` sources, so a library change rebuilds them. Then every case is
compared (`provenance.compare.compare_fingerprints`) and scored against its
ground truth.

Printed: one row per derivation type with
- cases;
- detect: share of positive cases (truth identical/derived/assembled) whose
  verdict is one of identical/derived/assembled;
- FPR: share of negative cases (truth same-architecture/unrelated) accused
  (verdict identical/derived/assembled);
- exact: share of cases whose verdict is the ground truth (or a verdict the
  case lists as also acceptable);
- layer map: mean share of candidate layers mapped to the expected reference
  layer (null where the layer comes from another source), over cases with a
  ground-truth map (every positive case of equal depth has the identity map);
- abst: abstentions; s/cmp: mean seconds per compare (fingerprints cached).
Then a calibration check over the negative cases: the share of per-layer
p-values (the `log10_p` of each compared layer in `.layers`) below alpha, and
the share of negative pairs with any decisive evidence below alpha, for alpha
0.05, 0.01, 0.001; then one line per wrong verdict (case, expected, got,
summary) and per imperfect layer map.

--only filters cases by type (exact, or a prefix such as `noise` or `neg`),
by family (`llama`, `gpt2`), or by a substring of the case id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's package, not whichever one is installed
    sys.path.insert(0, str(ROOT))

POSITIVE = ("identical", "derived", "assembled")
ALPHAS = (0.05, 0.01, 0.001)


def library_hash() -> str:
    import provenance

    root = Path(provenance.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\x00" + path.read_bytes())
    return digest.hexdigest()[:16]


def model_key(directory: Path, lib: str) -> str:
    parts = [lib]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "spec.json"):
        path = directory / name
        if path.exists():
            stat = path.stat()
            parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def fingerprints(root: Path, models: dict, names: list[str], refresh: bool, log) -> tuple[dict, dict, dict]:
    from provenance.fingerprint.load import fingerprint_for
    from provenance.fingerprint.store import load_fingerprint

    cache = root / "fingerprints"
    cache.mkdir(exist_ok=True)
    lib = library_hash()
    found, seconds, errors = {}, {}, {}
    for name in names:
        directory = root / models[name]["path"]
        target, key_file = cache / f"{name}.safetensors", cache / f"{name}.key"
        key = model_key(directory, lib)
        try:
            if not refresh and target.exists() and key_file.exists() and key_file.read_text() == key:
                found[name] = load_fingerprint(target)
                continue
            started = time.perf_counter()
            fp = fingerprint_for(directory)
            seconds[name] = time.perf_counter() - started
            fp.save(target)
            key_file.write_text(key)
            found[name] = fp
        except Exception as exc:  # a failure is a result: the cases that need this model report it
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"fingerprint of {name} failed: {errors[name]}")
    return found, seconds, errors


def layer_map_accuracy(expected: list | None, layers: list) -> float | None:
    """The share of candidate layers mapped where the case says (`layers`: the comparison's `LayerMatch` rows)."""
    if expected is None:
        return None
    got = {row.candidate_layer: row.reference_layer for row in layers}
    hits = sum(1 for i, want in enumerate(expected) if i in got and got[i] == want)
    extra = max(0, len(got) - len(expected))  # layers the engine saw that the truth does not have
    return hits / (len(expected) + extra) if expected or extra else 1.0


def run_case(case: dict, fps: dict, errors: dict) -> dict:
    from provenance.compare import compare_fingerprints

    result = {"id": case["id"], "type": case["type"], "family": case["family"], "candidate": case["candidate"],
              "reference": case["reference"], "expected": case["verdict"], "acceptable": case["acceptable"],
              "positive": case["positive"]}
    missing = [n for n in (case["candidate"], case["reference"]) if n not in fps]
    if missing:
        result.update(verdict="error", summary="; ".join(f"{n}: {errors.get(n, 'no fingerprint')}" for n in missing),
                      seconds=None, layers=[], evidence=[], confidence=None, abstained=False, layer_map_accuracy=None)
    else:
        started = time.perf_counter()
        try:
            comparison = compare_fingerprints(fps[case["candidate"]], fps[case["reference"]])
        except Exception as exc:
            result.update(verdict="error", summary=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - started,
                          layers=[], evidence=[], confidence=None, abstained=False, layer_map_accuracy=None)
        else:
            result.update(verdict=comparison.verdict, confidence=comparison.confidence, abstained=comparison.abstained,
                          summary=comparison.summary, seconds=time.perf_counter() - started,
                          layers=[{k: getattr(row, k) for k in ("candidate_layer", "reference_layer", "best_reference_layer",
                                                                "similarity", "log10_p", "roles", "via", "rel_errors")}
                                  for row in comparison.layers],
                          evidence=[e.to_dict() for e in comparison.evidence], notes=list(comparison.notes),
                          layer_map_accuracy=layer_map_accuracy(case.get("layer_map"), comparison.layers))
    result["expected_layer_map"] = case.get("layer_map")
    result["expected_edits"] = list(case.get("edits") or [])
    result["edits_named"] = (all(edit in (result.get("summary") or "") for edit in result["expected_edits"])
                             if result["expected_edits"] else None)
    result["correct"] = result["verdict"] in case["acceptable"]
    result["accused"] = result["verdict"] in POSITIVE
    return result


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def summarise(results: list[dict]) -> list[dict]:
    rows = []
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["type"], []).append(r)

    def row(label: str, items: list[dict]) -> dict:
        pos = [r for r in items if r["positive"]]
        neg = [r for r in items if not r["positive"]]
        maps = [r["layer_map_accuracy"] for r in items if r.get("layer_map_accuracy") is not None]
        secs = [r["seconds"] for r in items if r.get("seconds") is not None]
        return {"type": label, "cases": len(items),
                "detect": _mean([1.0 if r["accused"] else 0.0 for r in pos]),
                "fpr": _mean([1.0 if r["accused"] else 0.0 for r in neg]),
                "exact": _mean([1.0 if r["correct"] else 0.0 for r in items]),
                "layer_map": _mean(maps), "abstained": sum(1 for r in items if r.get("abstained")),
                "seconds": _mean(secs)}

    for label, items in groups.items():
        rows.append(row(label, items))
    rows.append(row("ALL positives", [r for r in results if r["positive"]]))
    rows.append(row("ALL negatives", [r for r in results if not r["positive"]]))
    rows.append(row("ALL", results))
    return rows


def print_table(rows: list[dict]) -> None:
    header = f"{'type':<24} {'cases':>5} {'detect':>7} {'FPR':>5} {'exact':>6} {'layer map':>9} {'abst':>4} {'s/cmp':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if r["type"].startswith("ALL") and r["type"] == "ALL positives":
            print("-" * len(header))
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.3f}"
        print(f"{r['type']:<24} {r['cases']:>5} {_pct(r['detect']):>7} {_pct(r['fpr']):>5} {_pct(r['exact']):>6} "
              f"{_pct(r['layer_map']):>9} {r['abstained']:>4} {seconds:>6}")


def calibration(results: list[dict]) -> dict:
    negatives = [r for r in results if not r["positive"] and r["verdict"] != "error"]
    per_layer = [row["log10_p"] for r in negatives for row in r["layers"]
                 if row.get("log10_p") is not None and (row.get("roles") or row.get("via") not in (None, "none"))]
    decisive = []
    for r in negatives:
        values = [e["log10_p"] for e in r["evidence"] if e.get("decisive") and e.get("log10_p") is not None]
        decisive.append(min(values) if values else 0.0)
    out = {"negative_pairs": len(negatives), "per_layer_p_values": len(per_layer), "alphas": {}}
    for alpha in ALPHAS:
        cut = math.log10(alpha)
        out["alphas"][str(alpha)] = {
            "per_layer_below": _mean([1.0 if v < cut else 0.0 for v in per_layer]),
            "pairs_any_decisive_below": _mean([1.0 if v < cut else 0.0 for v in decisive])}
    # Per decisive signal (names with numbers stripped): share of negative pairs where it reaches p < alpha.
    by_signal: dict[str, list[float]] = {}
    for r in negatives:
        best: dict[str, float] = {}
        for e in r["evidence"]:
            if e.get("decisive") and e.get("log10_p") is not None:
                name = signal_name(e["signal"])
                best[name] = min(best.get(name, 0.0), e["log10_p"])
        for name, value in best.items():
            by_signal.setdefault(name, []).append(value)
    out["signals"] = {name: {"pairs": len(values), **{str(a): _mean([1.0 if v < math.log10(a) else 0.0 for v in values])
                                                      for a in ALPHAS}, "min_log10_p": min(values)}
                      for name, values in sorted(by_signal.items())}
    out["min_per_layer_log10_p"] = min(per_layer) if per_layer else None
    out["min_decisive_log10_p_per_pair"] = {r["id"]: v for r, v in zip(negatives, decisive)}
    return out


def signal_name(signal: str) -> str:
    import re

    return re.sub(r"\d+", "N", signal)


def print_calibration(cal: dict) -> None:
    print(f"\ncalibration over {cal['negative_pairs']} negative pairs ({cal['per_layer_p_values']} per-layer p-values; "
          "each is the Bonferroni-corrected p of the candidate layer's best reference layer)")
    print(f"{'alpha':>7} {'per-layer p < alpha':>20} {'pairs with any decisive p < alpha':>34}")
    for alpha, values in cal["alphas"].items():
        print(f"{alpha:>7} {_pct(values['per_layer_below']):>20} {_pct(values['pairs_any_decisive_below']):>34}")
    if cal.get("signals"):
        print(f"\n{'decisive signal':<52} {'pairs':>5} " + " ".join(f"{'p<' + str(a):>7}" for a in ALPHAS) + f" {'min p':>9}")
        for name, values in cal["signals"].items():
            print(f"{name[:52]:<52} {values['pairs']:>5} " + " ".join(f"{_pct(values[str(a)]):>7}" for a in ALPHAS)
                  + f" {'1e' + format(values['min_log10_p'], '.1f'):>9}")
    if cal["min_per_layer_log10_p"] is not None:
        print(f"smallest per-layer p among negatives: 1e{cal['min_per_layer_log10_p']:.1f}")
    worst = sorted(cal["min_decisive_log10_p_per_pair"].items(), key=lambda kv: kv[1])[:3]
    if worst:
        print("smallest decisive p per negative pair: " + ", ".join(f"{k} 1e{v:.1f}" for k, v in worst))


def _map_text(values) -> str:
    return "[" + ",".join("-" if v is None else str(v) for v in values) + "]"


def print_failures(results: list[dict]) -> None:
    wrong = [r for r in results if not r["correct"]]
    print(f"\nwrong verdicts: {len(wrong)} of {len(results)}")
    for r in wrong:
        conf = "" if r.get("confidence") is None else f" (confidence {r['confidence']:.2f}{', abstained' if r.get('abstained') else ''})"
        print(f"  {r['id']}: expected {r['expected']}, got {r['verdict']}{conf}: {r['summary']}")
    maps = [r for r in results if r.get("layer_map_accuracy") is not None and r["layer_map_accuracy"] < 1.0]
    if maps:
        print(f"\nimperfect layer maps: {len(maps)}")
        for r in maps:
            got = [row.get("reference_layer") for row in r["layers"]]
            print(f"  {r['id']}: expected {_map_text(r['expected_layer_map'])}, got {_map_text(got)} "
                  f"({_pct(r['layer_map_accuracy'])})")


def print_edits(results: list[dict]) -> None:
    """One line per case that expects its summary to name an edit: case, expected, got, named or not."""
    named = [r for r in results if r.get("expected_edits")]
    if not named:
        return
    print(f"\nnamed edits: {sum(1 for r in named if r['edits_named'])} of {len(named)} cases name their edit")
    for r in named:
        mark = "named" if r["edits_named"] else "NOT NAMED"
        print(f"  {r['type']:<22} expected {r['expected']:<9} got {r['verdict']:<17} {mark}: "
              f"{' / '.join(r['expected_edits'])}")


def select(cases: list[dict], only: str | None) -> list[dict]:
    if not only:
        return cases
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    return [c for c in cases if any(c["type"] == w or c["type"].startswith(w) or c["family"] == w or w in c["id"]
                                    for w in wanted)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/run_zoo.py", description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path, help="zoo directory (with cases.json)")
    parser.add_argument("--only", help="comma-separated types (or type prefixes, families, id substrings)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every result, the table and the calibration")
    parser.add_argument("--refresh", action="store_true", help="rebuild cached fingerprints")
    args = parser.parse_args(argv)

    data = json.loads((args.dir / "cases.json").read_text())
    cases = select(data["cases"], args.only)
    if not cases:
        print(f"no case matches --only {args.only!r}", file=sys.stderr)
        return 2
    names = sorted({c["candidate"] for c in cases} | {c["reference"] for c in cases})
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731
    started = time.perf_counter()
    fps, fp_seconds, fp_errors = fingerprints(args.dir, data["models"], names, args.refresh, log)
    built = f"{len(fp_seconds)} built in {sum(fp_seconds.values()):.1f} s" if fp_seconds else "all cached"
    print(f"zoo {args.dir} (slice {data.get('slice')}): {len(cases)} cases, {len(names)} models; fingerprints {built}, "
          f"{len(fp_errors)} failed; {time.perf_counter() - started:.1f} s")
    results = [run_case(case, fps, fp_errors) for case in cases]
    rows = summarise(results)
    print()
    print_table(rows)
    cal = calibration(results)
    if cal["negative_pairs"]:
        print_calibration(cal)
    print_failures(results)
    print_edits(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"zoo": str(args.dir), "slice": data.get("slice"), "table": rows,
                                         "calibration": cal, "fingerprint_seconds": fp_seconds,
                                         "fingerprint_errors": fp_errors, "results": results}, indent=1, default=str))
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
