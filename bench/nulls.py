"""Null calibration: verdicts and per-signal p-values over independent pairs with the structure of trained LLMs.

Usage (from the checkout root):

    python bench/nulls.py --pairs 200 --out DIR [--seed S] [--models N] [--workers W] [--quick]
                          [--no-ablation] [--keep-models] [--kind trained] [--heavy-tails]

Builds a pool of N independent models (`bench/nulls/models.py`: power-law
spectra in model-specific bases, massive residual dimensions, non-uniform
norms, GQA, LLaMA/GPT-2/BERT families, tied and untied embeddings, depths
6/8/10, stand-ins from the real SmolLM2 and MiniLM statistics, read once and
cached in DIR/real_stats.json), written to DIR/seedS/models/ and fingerprinted
once each with `provenance.fingerprint.load.fingerprint_for` (what `provenance
compare` does); the checkpoints are deleted once fingerprinted unless
--keep-models (about 6 GB; kept, a later run of the same seed reuses them).
Then, for PAIRS distinct pairs of the pool (mostly within a group of equal
shapes, some across families of equal width):
- the verdict of `compare_fingerprints(cand, ref)`, and of the same comparison
  with the candidate in its remote (row-sample) form;
- the raw p-values of every signal that can decide (`bench/nulls/draws.py`):
  layer-pair sketch cells, MLP unit matching for every layer pair of equal
  unit count, row-sample cells, remote unit matching, remote non-layer tensors;
  the cheap one-per-pair signals (non-layer tensors by id, anchor rows) are
  taken over every pair of the pool with equal widths.
Printed and written to DIR/nulls.json and DIR/nulls.md: per signal the number
of draws and the share of p-values below 0.05, 0.01, 1e-3 and 1e-4 (a flag
where a share exceeds twice its alpha), the unit-matching tails by group
(p < 1e-6, 1e-12), a structure ablation (LLaMA pairs with and without the
power-law spectrum and the massive dimensions: unit-matching tails,
participation ratio of the unit signatures, verdicts), and the verdict counts
with the exact (Clopper-Pearson) one-sided 95% upper bound on the accusation
rate. --quick: 12 models, at most 20 pairs, no ablation (a smoke run, under a minute).
--kind trained: the same pool with the generator's trained draw kind (q/k, v/o and
up/down aligned through the space each pair shares, as the trained nulls of
`bench/trained_nulls.py` show); --heavy-tails: heavy-tailed entries on the
massive dimensions' axes. The default draws are unchanged by both options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# One BLAS thread per process: the pool runs one process per core, and OpenBLAS threads
# contending for the same cores made generation 10-20 times slower.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.nulls import draws as D  # noqa: E402
from bench.nulls import models as M  # noqa: E402
from bench.nulls.real_stats import load_real_stats  # noqa: E402

ALPHAS = (0.05, 0.01, 1e-3, 1e-4)
GENERATOR_VERSION = 3  # bump when models.py changes what a spec generates

_POOL: list = []  # fingerprints, shared with forked workers


def build_pool(specs: list[M.ModelSpec], out: Path, real: dict, workers: int, log) -> list[Path]:
    directories = [out / "models" / spec.name for spec in specs]
    todo = []
    for spec, directory in zip(specs, directories):
        marker = directory / "spec.json"
        wanted = {**spec.to_dict(), "generator": GENERATOR_VERSION}
        if not (marker.exists() and json.loads(marker.read_text()) == wanted and (directory / "model.safetensors").exists()):
            todo.append((spec, directory))
    started = time.time()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, _ in enumerate(pool.map(_write, [(s, d, real.get(s.real) if s.real else None) for s, d in todo]), 1):
            if done % 10 == 0 or done == len(todo):
                log(f"  generated {done}/{len(todo)} models ({time.time() - started:.0f}s)")
    return directories


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _write(job) -> None:
    spec, directory, real = job
    M.write_model(directory, spec, real)
    (directory / "spec.json").write_text(json.dumps({**spec.to_dict(), "generator": GENERATOR_VERSION}, indent=2))


def _remove(directories: list[Path]) -> None:
    """Delete generated checkpoints once fingerprinted (the fingerprints are all the comparisons need)."""
    import shutil

    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


def _fingerprint(directory: Path):
    from provenance.fingerprint.load import fingerprint_for

    return fingerprint_for(directory)


def _pair_job(pair: tuple[int, int]) -> dict:
    i, j = pair
    cand, ref = _POOL[i], _POOL[j]
    draws = [d for adapter in D.PAIR_SIGNALS if adapter not in D.POOL_SIGNALS for d in adapter(cand, ref)]
    return {"pair": pair, "verdicts": D.verdicts(cand, ref), "draws": [(d.signal, d.log10p, d.where) for d in draws]}


def _pool_job(pair: tuple[int, int]) -> list[tuple[str, float, str]]:
    i, j = pair
    return [(d.signal, d.log10p, d.where) for adapter in D.POOL_SIGNALS for d in adapter(_POOL[i], _POOL[j])]


# Structure ablation (finding 1 of issue 13): LLaMA pairs of equal shapes and depth, one structure changed at a time.
ABLATIONS = (
    ("power law 0.75, 3 massive dims (20x norms)", {"alpha": 0.75, "massive": 3}),
    ("power law 0.75, no massive dims", {"alpha": 0.75, "massive": 0}),
    ("flat spectrum, 3 massive dims (20x norms)", {"alpha": 0.0, "massive": 3}),
    ("flat spectrum, no massive dims", {"alpha": 0.0, "massive": 0}),
)
ABLATION_MODELS = 6


def ablation_specs(seed: int) -> list[tuple[str, M.ModelSpec]]:
    rng = np.random.default_rng([seed, 3])
    base = M.ModelSpec("", "ablation", "llama", 256, 688, 8, 2, 6, 4096, False, 0)
    found = []
    for index, (label, change) in enumerate(ABLATIONS):
        for k in range(ABLATION_MODELS):
            spec = replace(base, name=f"ablation{index}-{k}", group=f"ablation{index}",
                             seed=int(rng.integers(2**31)), **change)
            found.append((label, spec))
    return found


def signature_participation(fp) -> float:
    """Mean over layers of the participation ratio of the MLP unit signatures' covariance (32 projections)."""
    ratios = []
    for name, values in fp.arrays.items():
        if name.startswith("units/") and name.endswith("/mlp.up"):
            eigen = np.clip(np.linalg.eigvalsh(np.cov(values.astype(np.float64), rowvar=False)), 0, None)
            ratios.append(float(eigen.sum() ** 2 / max((eigen ** 2).sum(), 1e-300)))
    return float(np.mean(ratios)) if ratios else float("nan")


def _ablation_job(job) -> dict:
    label, i, j = job
    cand, ref = _POOL[i], _POOL[j]
    same_layer = [d.log10p for d in D.unit_matching(cand, ref) if d.where.split(",")[0] == d.where.split(",")[1]]
    return {"label": label, "same_layer": same_layer, "verdict": D.verdicts(cand, ref)["local"]["verdict"]}


def run_ablation(out: Path, seed: int, workers: int, log, keep_models: bool = False) -> list[dict]:
    global _POOL
    labelled = ablation_specs(seed)
    specs = [spec for _, spec in labelled]
    directories = build_pool(specs, out, {}, workers, log)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        _POOL = list(pool.map(_fingerprint, directories))
    if not keep_models:
        _remove(directories)
    jobs = [(labelled[i][0], i, j) for i in range(len(specs)) for j in range(i + 1, len(specs))
            if specs[i].group == specs[j].group]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        found = list(pool.map(_ablation_job, jobs))
    rows = []
    for index, (label, _) in enumerate(ABLATIONS):
        mine = [f for f in found if f["label"] == label]
        logs = np.asarray([v for f in mine for v in f["same_layer"]])
        members = [k for k, (l, _) in enumerate(labelled) if l == label]
        rows.append({"structure": label, "pairs": len(mine), "draws": int(logs.size),
                     "signature_participation_ratio": round(float(np.mean([signature_participation(_POOL[k]) for k in members])), 2),
                     "share_below_0.05": float(np.mean(logs < np.log10(0.05))), "share_below_1e-6": float(np.mean(logs < -6)),
                     "share_below_1e-12": float(np.mean(logs < -12)),
                     "verdicts": dict(Counter(f["verdict"] for f in mine))})
    return rows


def clopper_pearson_upper(successes: int, trials: int, confidence: float = 0.95) -> float:
    """Exact one-sided upper confidence bound of a binomial rate."""
    from scipy import stats

    if trials == 0:
        return 1.0
    if successes >= trials:
        return 1.0
    return float(stats.beta.ppf(confidence, successes + 1, trials - successes))


def tail_table(values: dict[str, list[float]]) -> list[dict]:
    """Per signal: draws, share below each alpha, the binomial p of that count, and a flag above 2 alpha."""
    from scipy import stats

    rows = []
    for signal, logs in values.items():
        logs_array = np.asarray(logs, dtype=np.float64)
        n = len(logs_array)
        row = {"signal": signal, "draws": n, "min_log10p": round(float(logs_array.min()), 2) if n else None, "tails": []}
        for alpha in ALPHAS:
            count = int(np.sum(logs_array < np.log10(alpha))) if n else 0
            share = count / n if n else None
            excess = float(stats.binom.sf(count - 1, n, alpha)) if n else None  # P(count or more | uniform)
            row["tails"].append({"alpha": alpha, "count": count, "share": share, "binomial_p": excess,
                                 "flag": bool(n and share > 2 * alpha)})
        rows.append(row)
    return rows


def unit_tails(records: list[dict], specs: list[M.ModelSpec]) -> list[dict]:
    """Finding 1 of issue 13: unit-matching shares below 1e-6 and 1e-12, by group, same layer vs every layer pair."""
    table: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in records:
        i, j = record["pair"]
        group = " x ".join(sorted({specs[i].group, specs[j].group}))
        for signal, log10p, where in record["draws"]:
            if signal != "unit matching":
                continue
            a, b = where.split(",")
            for scope in ("all", "same layer" if a == b else None):
                if scope:
                    table[(group, scope)].append(log10p)
                    table[("every group", scope)].append(log10p)
    rows = []
    for (group, scope), logs in sorted(table.items()):
        logs_array = np.asarray(logs)
        rows.append({"group": group, "scope": scope, "draws": len(logs),
                     "share_below_1e-6": float(np.mean(logs_array < -6)), "share_below_1e-12": float(np.mean(logs_array < -12)),
                     "min_log10p": round(float(logs_array.min()), 2)})
    return rows


def verdict_summary(records: list[dict], specs: list[M.ModelSpec]) -> dict:
    found = {}
    for view in ("local", "remote"):
        counts = Counter(r["verdicts"][view]["verdict"] for r in records)
        accusing = [r for r in records if r["verdicts"][view]["verdict"] in D.ACCUSING]
        by_depth: dict[str, Counter] = defaultdict(Counter)
        for r in records:
            i, j = r["pair"]
            depths = sorted((specs[i].layers, specs[j].layers))
            key = f"{depths[0]} vs {depths[1]} layers" if depths[0] != depths[1] else "equal depth"
            by_depth[key][r["verdicts"][view]["verdict"]] += 1
        by_group: dict[str, Counter] = defaultdict(Counter)
        for r in records:
            i, j = r["pair"]
            group = " x ".join(sorted({specs[i].group, specs[j].group}))
            by_group[group][r["verdicts"][view]["verdict"]] += 1
        found[view] = {
            "by_group": {k: dict(v) for k, v in sorted(by_group.items())},
            "accusations_through_unit_matching": sum(1 for r in accusing
                                                     if r["verdicts"][view]["matched_layers_by_unit_matching"]),
            # finding 2 of issue 13: accusations weaker than the engine's 1e-12 bar, or resting on one layer
            "accusing_weaker_than_1e-12": sum(1 for r in accusing if r["verdicts"][view]["strongest_log10p"] > -12),
            "accusing_with_one_matched_layer": sum(1 for r in accusing if r["verdicts"][view]["matched_layers"] <= 1),
            "pairs": len(records), "verdicts": dict(counts), "accusing": len(accusing),
            "accusing_rate_upper95": clopper_pearson_upper(len(accusing), len(records)),
            "by_depth": {k: dict(v) for k, v in sorted(by_depth.items())},
            "abstained": sum(1 for r in records if r["verdicts"][view]["abstained"]),
            "accusations": [{"candidate": specs[r["pair"][0]].name, "reference": specs[r["pair"][1]].name,
                             "layers": [specs[r["pair"][0]].layers, specs[r["pair"][1]].layers],
                             **r["verdicts"][view]} for r in accusing],
        }
    return found


def markdown(result: dict) -> str:
    lines = [f"Null calibration: {result['models']} independent models, {result['pairs']} pairs "
             f"(seed {result['seed']}, {result['seconds']:.0f} s). Command: `{result['command']}`", "",
             "| signal | draws | < 0.05 | < 0.01 | < 1e-3 | < 1e-4 | min p |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["signals"]:
        cells = []
        for tail in row["tails"]:
            share = "n/a" if tail["share"] is None else f"{tail['share']:.4f} ({tail['count']})"
            cells.append(f"{share}{' **!**' if tail['flag'] else ''}")
        min_p = "n/a" if row["min_log10p"] is None else f"1e{row['min_log10p']:.1f}"
        lines.append(f"| {row['signal']} | {row['draws']} | {' | '.join(cells)} | {min_p} |")
    flagged = [f"{row['signal']} < {tail['alpha']:g}: {tail['count']} of {row['draws']}, binomial p {tail['binomial_p']:.2g}"
               for row in result["signals"] for tail in row["tails"] if tail["flag"]]
    lines += ["", "Share (count) of p-values below each alpha; expected share: the alpha of its column. **!** marks a "
              "share above twice its alpha; the binomial p of each flagged count (uniform p-values, draws taken as "
              "independent, which draws of one pair are not) says whether it is more than noise: "
              + ("; ".join(flagged) if flagged else "none flagged") + ".", "",
              "| unit matching: group | layer pairs | draws | p < 1e-6 | p < 1e-12 | min p |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in result["unit_matching_tails"]:
        lines.append(f"| {row['group']} | {row['scope']} | {row['draws']} | {row['share_below_1e-6']:.4f} | "
                     f"{row['share_below_1e-12']:.4f} | 1e{row['min_log10p']:.1f} |")
    if result.get("ablation"):
        lines += ["", "Structure ablation (LLaMA hidden 256, 6 layers, same depth; unit matching of layer i with layer i, "
                  "the engine's same-depth test):", "",
                  "| structure | pairs | draws | signature PR | p < 0.05 | p < 1e-6 | p < 1e-12 | verdicts |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for row in result["ablation"]:
            lines.append(f"| {row['structure']} | {row['pairs']} | {row['draws']} | {row['signature_participation_ratio']} | "
                         f"{row['share_below_0.05']:.3f} | {row['share_below_1e-6']:.3f} | {row['share_below_1e-12']:.3f} | "
                         f"{', '.join(f'{k} {v}' for k, v in sorted(row['verdicts'].items()))} |")
    for view, summary in result["verdicts"].items():
        groups = "; ".join(f"{g}: " + ", ".join(f"{a} {b}" for a, b in sorted(v.items())) for g, v in summary["by_group"].items())
        lines += ["", f"Verdicts ({view}{', candidate read as a remote fingerprint' if view == 'remote' else ''}): "
                  f"{summary['accusing']} accusing of {summary['pairs']} independent pairs "
                  f"(exact one-sided 95% upper bound on the accusation rate: {summary['accusing_rate_upper95']:.4f}); "
                  f"{', '.join(f'{k} {v}' for k, v in sorted(summary['verdicts'].items()))}; "
                  f"by depth: {'; '.join(f'{k}: ' + ', '.join(f'{a} {b}' for a, b in sorted(v.items())) for k, v in summary['by_depth'].items())}; "
                  f"by group: {groups}; accusations with layers matched through MLP unit matching: "
                  f"{summary['accusations_through_unit_matching']} of {summary['accusing']}; accusations with a strongest "
                  f"p above 1e-12: {summary['accusing_weaker_than_1e-12']}; with at most one matched layer: "
                  f"{summary['accusing_with_one_matched_layer']}"]
        for item in summary["accusations"][:20]:
            lines.append(f"- {item['candidate']} ({item['layers'][0]} layers) vs {item['reference']} ({item['layers'][1]} layers): "
                         f"{item['verdict']}, strongest 1e{item['strongest_log10p']:.1f}: {item['summary']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    global _POOL
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", type=int, default=None, help="pool size (default 150; 12 with --quick)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-ablation", action="store_true", help="skip the structure ablation (24 more models)")
    parser.add_argument("--kind", choices=("default", "trained"), default="default",
                        help="trained: every model also aligned as trained models are (models.TRAINED_KIND)")
    parser.add_argument("--heavy-tails", action="store_true",
                        help="heavy-tailed entries on the massive dimensions' reading columns and writing rows")
    parser.add_argument("--keep-models", action="store_true",
                        help="keep the generated checkpoints (about 6 GB for 150 models) to skip generating them next time")
    args = parser.parse_args(argv)
    _single_thread()
    models = args.models or (12 if args.quick else 150)
    pair_count = min(args.pairs, 20) if args.quick else args.pairs
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    def log(text: str) -> None:
        print(text, flush=True)

    real = load_real_stats(out)
    specs = M.pool_specs(models, args.seed, set(real))
    if args.kind == "trained" or args.heavy_tails:
        specs = [replace(s, **(M.TRAINED_KIND if args.kind == "trained" else {}), heavy_tails=args.heavy_tails)
                 for s in specs]
    log(f"pool: {len(specs)} models in {len(set(s.group for s in specs))} groups; real statistics: {', '.join(real) or 'none'}")
    directories = build_pool(specs, out / f"seed{args.seed}", real, args.workers, log)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        _POOL = list(pool.map(_fingerprint, directories))
    log(f"  fingerprinted {len(_POOL)} models ({time.time() - started:.0f}s)")
    if not args.keep_models:
        _remove(directories)

    pairs = M.choose_pairs(specs, pair_count, args.seed)
    if len(pairs) < pair_count:
        log(f"note: only {len(pairs)} compatible pairs in a pool of {len(specs)} models")
    records = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:  # forked workers see _POOL
        for done, record in enumerate(pool.map(_pair_job, pairs, chunksize=4), 1):
            records.append(record)
            if done % 25 == 0 or done == len(pairs):
                log(f"  compared {done}/{len(pairs)} pairs ({time.time() - started:.0f}s)")
    pool_pairs = [(i, j) for i in range(len(specs)) for j in range(i + 1, len(specs)) if specs[i].hidden == specs[j].hidden]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        pool_draws = [d for found in pool.map(_pool_job, pool_pairs, chunksize=32) for d in found]
    log(f"  one-per-pair signals over {len(pool_pairs)} pool pairs of equal width ({time.time() - started:.0f}s)")

    ablation = []
    if not (args.quick or args.no_ablation):
        ablation = run_ablation(out / f"seed{args.seed}" / "ablation", args.seed, args.workers, log, args.keep_models)
        log(f"  structure ablation ({time.time() - started:.0f}s)")

    values: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for signal, log10p, _ in record["draws"]:
            values[signal].append(log10p)
    for signal, log10p, _ in pool_draws:
        values[signal].append(log10p)
    result = {
        "schema": "provenance.nulls/1", "seed": args.seed, "models": len(specs), "pairs": len(records),
        "pool_pairs": len(pool_pairs), "command": "python bench/nulls.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "signals": tail_table(dict(sorted(values.items()))),
        "unit_matching_tails": unit_tails(records, specs),
        "verdicts": verdict_summary(records, specs),
        "ablation": ablation,
        "specs": [s.to_dict() for s in specs],
        "pair_list": [{"candidate": specs[r["pair"][0]].name, "reference": specs[r["pair"][1]].name,
                       "verdicts": r["verdicts"]} for r in records],
    }
    result["seconds"] = round(time.time() - started, 1)
    (out / "nulls.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (out / "nulls.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
