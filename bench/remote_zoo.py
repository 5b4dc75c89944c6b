"""Remote fingerprints on the provenance zoo: verdicts and calibration of the "remote" comparison.

Usage (from the checkout root, with a zoo built by `python -m bench.zoo.build --out DIR`):

    python bench/remote_zoo.py DIR [--json OUT]

Every case's candidate is served from 127.0.0.1 (`tests/range_server.py`)
and fingerprinted remotely (its `model.safetensors` URL); the reference is
fingerprinted locally (the full variant), as when a remote model is audited
against a local reference database. Each pair is compared and scored like
`bench/run_zoo.py` does (detect, FPR, exact verdict, per type), with the
share of the weight file read. Then the calibration over the negative
(independent) cases: the share of per-layer p-values below alpha, and of
pairs with any decisive p-value below alpha.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.range_server import RangeServer  # noqa: E402

ACCUSING = ("identical", "derived", "assembled")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zoo", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from provenance.compare import compare_fingerprints
    from provenance.fingerprint.load import fingerprint_for

    cases = json.loads((args.zoo / "cases.json").read_text())["cases"]
    models = args.zoo / "models"
    local: dict[str, object] = {}
    remote: dict[str, object] = {}
    fraction: dict[str, float] = {}
    results = []
    with RangeServer(models) as server:
        for case in cases:
            cand, ref = case["candidate"], case["reference"]
            if not (models / cand / "model.safetensors").is_file():
                continue
            if ref not in local:
                local[ref] = fingerprint_for(models / ref)
            if cand not in remote:
                remote[cand] = fingerprint_for(server.url(f"{cand}/model.safetensors"))
                fraction[cand] = remote[cand].meta["remote"]["fraction_read"]
            result = compare_fingerprints(remote[cand], local[ref])
            acceptable = set(case.get("acceptable") or [case["verdict"]])
            decisive = [e.log10p for e in result.evidence if e.decisive and e.log10p is not None]
            results.append({"id": case["id"], "type": case["type"], "positive": case["positive"],
                            "expected": case["verdict"], "verdict": result.verdict, "abstained": result.abstained,
                            "exact": result.verdict in acceptable, "fraction_read": fraction[cand],
                            "layer_log10p": [r.log10_p for r in result.layers if r.roles],
                            "strongest_log10p": min(decisive, default=0.0)})
    by_type: dict[str, list[dict]] = defaultdict(list)
    for row in results:
        by_type[row["type"]].append(row)
    print(f"{'type':<24} {'cases':>5} {'detect':>7} {'FPR':>5} {'exact':>6} {'abst':>5} {'read':>7}")
    for kind in sorted(by_type, key=lambda k: (k.startswith("neg"), k)):
        rows = by_type[kind]
        pos = [r for r in rows if r["positive"]]
        neg = [r for r in rows if not r["positive"]]
        detect = f"{100 * sum(r['verdict'] in ACCUSING for r in pos) / len(pos):.0f}%" if pos else "-"
        fpr = f"{100 * sum(r['verdict'] in ACCUSING for r in neg) / len(neg):.0f}%" if neg else "-"
        exact = 100 * sum(r["exact"] for r in rows) / len(rows)
        read = 100 * sum(r["fraction_read"] for r in rows) / len(rows)
        print(f"{kind:<24} {len(rows):>5} {detect:>7} {fpr:>5} {exact:>5.0f}% {sum(r['abstained'] for r in rows):>5} {read:>6.1f}%")
    pos = [r for r in results if r["positive"]]
    neg = [r for r in results if not r["positive"]]
    print(f"ALL: {len(pos)} positives detected {sum(r['verdict'] in ACCUSING for r in pos)}, "
          f"{len(neg)} negatives accused {sum(r['verdict'] in ACCUSING for r in neg)}, "
          f"exact {sum(r['exact'] for r in results)}/{len(results)}")
    layer_p = [p for r in neg for p in r["layer_log10p"]]
    print(f"calibration over {len(neg)} negative pairs ({len(layer_p)} per-layer p-values, Bonferroni-corrected best partner)")
    for alpha in (0.05, 0.01, 0.001):
        per_layer = sum(10 ** p < alpha for p in layer_p) / max(len(layer_p), 1)
        any_pair = sum(10 ** r["strongest_log10p"] < alpha for r in neg) / max(len(neg), 1)
        print(f"  alpha {alpha:<6} per-layer {100 * per_layer:5.1f}%   pairs with any decisive p < alpha {100 * any_pair:5.1f}%")
    for r in results:
        if not r["exact"]:
            print(f"  wrong: {r['id']}: expected {r['expected']}, got {r['verdict']}{' (abstained)' if r['abstained'] else ''}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
