"""Audit against reference databases of 100, 1,000 and 10,000 fingerprints: time beyond fingerprinting, and screening recall.

Usage (from the checkout root; the zoo built first with `python -m bench.zoo.build --out ZOO --slice full`):

    python bench/screening.py ZOO [--work DIR] [--sizes 100,1000,10000] [--only SUBSTRING] [--json OUT]

What the databases hold (built once under --work, default ZOO/screening, and
reused while their manifest matches):

1. every model that is the reference of a positive zoo case, and every zoo
   base (trained LLaMA seeds 0-2, the wider LLaMA, GPT-2 seeds 0-1);
2. *real decoys*: 160 freshly initialised (untrained) models, fingerprinted
   from checkpoints like any model: LLaMA, GPT-2 and Mixtral (a random LLaMA
   upcycled with independent noise), a third of them with exactly the zoo's
   shapes, the zoo's tokenizer or the zoo's second ("donor") tokenizer;
3. *synthetic decoys* (to reach 1,000 and 10,000): a real fingerprint (15% a
   trained zoo base, 85% a real decoy) with every array scrambled by a seeded
   transformation that keeps its values and shapes but destroys every
   alignment the screen or the engine could use: sketch values permuted
   within each tensor, unit signatures' rows shuffled and their projections
   rotated by one random orthogonal matrix per width (so the unit covariance
   changes, not only its order), Gram matrices' units permuted, anchor rows
   shuffled and their columns permuted and sign-flipped, every tensor hash
   replaced. Generating 10,000 real fingerprints would take hours on 2 cores;
   these stand in for independent models of the same shapes and statistics.

Zoo models are fingerprinted once and cached under WORK/zoo-fingerprints,
keyed by their files and by a hash of the fingerprint code only (screening or
audit edits do not invalidate them); real decoys are cached as fingerprint
files under WORK/decoys.

Then, for each database size, every positive zoo case (truth identical,
derived or assembled) is audited as the command line would (a fresh
`Registry` per audit, the caches a new process would not have cleared):
`run_audit` + `audit_to_json` given the candidate's fingerprint, once without
the built-in references (what the database adds: opening it, loading every
signature with one query, screening, comparing the shortlist) and once with
them (the whole audit as `provenance audit` runs it, minus fingerprinting).
Reported: wall times (median, max), the number of references compared fully,
whether the case's reference was in the shortlist (recall), and whether its
audit row has the verdict a direct full comparison gives. A few untrained
models that are in no database are audited too ("unrelated"), since they get
no early match. Baseline, in the same run: `run_audit(..., screen=False)`
(every reference compared) on the smallest database for a handful of cases;
for the larger sizes it is extrapolated from the per-reference cost measured
there (said so in the output).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REAL_DECOYS = 160
TRAINED_TEMPLATE_SHARE = 0.15
BASES = ("llama-s0", "llama-s1", "llama-s2", "llama-wide", "gpt2-s0", "gpt2-s1")
BASELINE_CASES = 6
UNRELATED = 4


# --- synthetic decoys ------------------------------------------------------------------------------

def scramble(fp, seed: int, label: str):
    """A stand-in for an independent model with `fp`'s shapes and value statistics (see the module docstring)."""
    from provenance.fingerprint import Fingerprint

    rng = np.random.default_rng(seed)
    rotations: dict[int, np.ndarray] = {}

    def rotation(width: int) -> np.ndarray:
        if width not in rotations:
            q, r = np.linalg.qr(rng.standard_normal((width, width)))
            rotations[width] = q * np.sign(np.diag(r))[None, :]
        return rotations[width]

    arrays = {}
    for name, array in fp.arrays.items():
        kind = name.split("/", 1)[0]
        if kind == "units" and array.ndim == 2:
            rows = array.astype(np.float32)[rng.permutation(array.shape[0])]
            arrays[name] = (rows @ rotation(array.shape[1])).astype(array.dtype)
        elif kind == "gram" and array.ndim == 1:
            units = int(round((1 + np.sqrt(1 + 8 * array.size)) / 2))
            upper = np.triu_indices(units, k=1)
            full = np.zeros((units, units), dtype=array.dtype)
            full[upper] = array
            full = full + full.T
            order = rng.permutation(units)
            arrays[name] = np.ascontiguousarray(full[order][:, order][upper])
        elif kind == "anchors" and array.ndim == 2:
            signs = rng.choice(np.array([-1, 1], dtype=array.dtype), size=array.shape[1])
            arrays[name] = np.ascontiguousarray(array[rng.permutation(array.shape[0])][:, rng.permutation(array.shape[1])] * signs)
        else:
            arrays[name] = rng.permutation(array.reshape(-1)).reshape(array.shape)
    meta = copy.deepcopy(fp.meta)
    for record in meta.get("tensors", {}).values():
        record["sha256"] = rng.bytes(32).hex()
    for record in (meta.get("stored_tensors") or {}).values():
        record["sha256"] = rng.bytes(32).hex()
    meta["source"] = {"path": f"synthetic:{label}", "format": "synthetic", "files": []}
    return Fingerprint(meta=meta, arrays=arrays)


# --- real decoys: freshly initialised models -------------------------------------------------------

def decoy_recipes(count: int) -> list[dict]:
    """Deterministic list of (family, shape, tokenizer, seed); a third with exactly the zoo's shapes."""
    shapes = [
        ("llama", dict(hidden=128, intermediate=344, layers=6, heads=4, kv_heads=2)),  # zoo LLaMA
        ("gpt2", dict(hidden=128, inner=512, layers=6, heads=4)),  # zoo GPT-2
        ("llama", dict(hidden=192, intermediate=512, layers=4, heads=6, kv_heads=2)),  # zoo wide LLaMA
        ("llama", dict(hidden=64, intermediate=172, layers=2, heads=4, kv_heads=2)),
        ("llama", dict(hidden=96, intermediate=256, layers=3, heads=4, kv_heads=4)),
        ("llama", dict(hidden=128, intermediate=344, layers=4, heads=4, kv_heads=2)),
        ("llama", dict(hidden=128, intermediate=344, layers=8, heads=4, kv_heads=2)),
        ("gpt2", dict(hidden=64, inner=256, layers=2, heads=4)),
        ("gpt2", dict(hidden=128, inner=512, layers=4, heads=4)),
        ("mixtral", dict(hidden=128, intermediate=344, layers=6, heads=4, kv_heads=2)),
        ("llama", dict(hidden=256, intermediate=688, layers=2, heads=8, kv_heads=4)),
        ("gpt2", dict(hidden=96, inner=384, layers=3, heads=4)),
    ]
    recipes = []
    for i in range(count):
        family, shape = shapes[i % len(shapes)] if i % 3 else shapes[(i // 3) % 3]
        recipes.append({"family": family, "shape": shape, "tokenizer": "donor" if i % 4 == 3 else "base", "seed": 1000 + i,
                        "name": f"init-{family}-{shape['hidden']}x{shape['layers']}-{i:03d}"})
    return recipes


def make_decoy(zoo_dir: Path, recipe: dict, out: Path):
    import torch

    from bench.zoo import models as M
    from bench.zoo import text as X
    from bench.zoo import transforms as T
    from provenance.fingerprint.load import fingerprint_for

    tokenizer = json.loads((zoo_dir / "tokenizer" / f"{recipe['tokenizer']}.json").read_text())["tokenizer"]
    vocab = X.vocab_size(tokenizer)
    eot = 0
    shape = recipe["shape"]
    torch.manual_seed(recipe["seed"])
    if recipe["family"] == "gpt2":
        family, params = "gpt2", M.gpt2_params(vocab, eot, hidden=shape["hidden"], inner=shape["inner"],
                                                 layers=shape["layers"], heads=shape["heads"])
        state = M.state_of(M.build_model(family, params), family)
    else:
        params = M.llama_params(vocab, eot, hidden=shape["hidden"], intermediate=shape["intermediate"],
                                layers=shape["layers"], heads=shape["heads"], kv_heads=shape["kv_heads"])
        state = M.state_of(M.build_model("llama", params), "llama")
        family = "llama"
        if recipe["family"] == "mixtral":
            family = "mixtral"
            params, state = T.upcycle_moe(params, state, 4, 0.5, recipe["seed"])
    directory = out / recipe["name"]
    M.save_model(directory, family, params, state, tokenizer)
    try:
        return fingerprint_for(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def real_decoys(zoo_dir: Path, work: Path, recipes: list[dict], log) -> dict:
    from provenance.fingerprint import load_fingerprint

    cache = work / "decoys"
    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    started = time.perf_counter()
    for i, recipe in enumerate(recipes):
        path = cache / f"{recipe['name']}.fp.safetensors"
        if path.exists():
            found[recipe["name"]] = load_fingerprint(path)
            continue
        fp = make_decoy(zoo_dir, recipe, work / "tmp")
        fp.save(path)
        found[recipe["name"]] = fp
        if (i + 1) % 20 == 0:
            log(f"  real decoys {i + 1}/{len(recipes)} ({time.perf_counter() - started:.0f} s)")
    return found


# --- zoo fingerprints -------------------------------------------------------------------------------

FINGERPRINT_SOURCES = ("fingerprint", "formats", "architectures", "tokenizer.py", "model.py", "lineage.py", "__init__.py")


def fingerprint_code_hash() -> str:
    """Hash of the sources a fingerprint depends on (not of screening, audit or reports, which change often)."""
    import provenance

    root = Path(provenance.__file__).parent
    digest = hashlib.sha256()
    for entry in FINGERPRINT_SOURCES:
        paths = sorted((root / entry).rglob("*")) if (root / entry).is_dir() else [root / entry]
        for path in paths:
            if path.suffix in (".py", ".json") and path.is_file():
                digest.update(str(path.relative_to(root)).encode() + b"\x00" + path.read_bytes())
    return digest.hexdigest()[:16]


def zoo_fingerprints(zoo_dir: Path, models: dict, names: list[str], work: Path, log) -> dict:
    from provenance.fingerprint import load_fingerprint
    from provenance.fingerprint.load import fingerprint_for

    cache = work / "zoo-fingerprints"
    cache.mkdir(parents=True, exist_ok=True)
    code = fingerprint_code_hash()
    found = {}
    for name in names:
        directory = zoo_dir / models[name]["path"]
        stamp = [code] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(directory.iterdir()) if p.is_file()]
        key = hashlib.sha256("|".join(stamp).encode()).hexdigest()[:16]
        target, key_file = cache / f"{name}.fp.safetensors", cache / f"{name}.key"
        if target.exists() and key_file.exists() and key_file.read_text() == key:
            found[name] = load_fingerprint(target)
            continue
        found[name] = fingerprint_for(directory)
        found[name].save(target)
        key_file.write_text(key)
    return found


# --- databases -------------------------------------------------------------------------------------

def plan(sizes: list[int], fixed: dict, decoys: dict, trained: dict, seed: int = 7) -> list[tuple[str, str, int | None]]:
    """The ordered list of (name, template, scramble seed) filling the largest database; smaller ones are prefixes."""
    entries: list[tuple[str, str, int | None]] = [(name, name, None) for name in sorted(fixed)]
    entries += [(name, name, None) for name in decoys]
    rng = np.random.default_rng(seed)
    trained_names, decoy_names = sorted(trained), sorted(decoys)
    index = 0
    while len(entries) < max(sizes):
        pool = trained_names if rng.random() < TRAINED_TEMPLATE_SHARE else decoy_names
        template = pool[int(rng.integers(len(pool)))]
        entries.append((f"synthetic-{index:05d}-{template}", template, 100_000 + index))
        index += 1
    return entries


def db_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def build_databases(work: Path, sizes: list[int], entries, fingerprints: dict, log) -> dict[int, dict]:
    """db-N.sqlite for each N, built incrementally (the next size starts as a copy of the previous)."""
    from provenance.audit.shortlist import add_reference
    from provenance.registry import Registry

    built: dict[int, dict] = {}
    previous: Path | None = None
    previous_count = 0
    for size in sorted(sizes):
        path = work / f"db-{size}.sqlite"
        manifest = work / f"db-{size}.json"
        manifest_key = hashlib.sha256(json.dumps(entries[:size]).encode()).hexdigest()[:16]
        if path.exists() and manifest.exists() and json.loads(manifest.read_text()).get("key") == manifest_key:
            built[size] = json.loads(manifest.read_text())
            previous, previous_count = path, size
            continue
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        if previous is not None:
            shutil.copyfile(previous, path)
        started = time.perf_counter()
        with Registry(path) as registry:
            for i, (name, template, seed) in enumerate(entries[previous_count:size], start=previous_count + 1):
                fp = fingerprints[template] if seed is None else scramble(fingerprints[template], seed, name)
                add_reference(registry, name, fp)
                if i % 1000 == 0:
                    log(f"  db-{size}: {i}/{size} references ({time.perf_counter() - started:.0f} s)")
        seconds = time.perf_counter() - started
        built[size] = {"key": manifest_key, "size": size, "build_seconds": round(seconds, 1),
                       "added": size - previous_count}
        manifest.write_text(json.dumps(built[size]))
        previous, previous_count = path, size
    for size in built:
        built[size]["bytes"] = db_size(work / f"db-{size}.sqlite")
    return built


# --- audits ----------------------------------------------------------------------------------------

def fresh_process_caches() -> None:
    """Clear what a new `provenance audit` process would not have yet."""
    from provenance.audit import builtin
    from provenance.audit import shortlist as screening

    for cached in (screening._buckets, screening._sketch_columns, *vars(builtin).values()):
        if hasattr(cached, "cache_clear"):  # every lru_cache of the shortlist and the built-in references
            cached.cache_clear()


def timed_audit(candidate, db: Path, screen: bool = True, builtin: bool = False) -> dict:
    from provenance.audit import run_audit
    from provenance.report.audit_json import audit_to_json
    from provenance.registry import Registry

    fresh_process_caches()
    started = time.perf_counter()
    with Registry(db) as registry:
        rows = run_audit(candidate, registry, include_builtin=builtin, screen=screen, candidate_path="candidate")
        report = audit_to_json(rows)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "report": report, "screening": getattr(rows, "screening", None)}


def ranks(candidate, db: Path, reference: str) -> dict[str, int | None]:
    """Rank of the reference in each screening component (1 = best), for the margins table."""
    from provenance.registry import Registry
    from provenance.audit.shortlist import COMPONENTS, ScreeningIndex, load_signatures, signature

    with Registry(db) as registry:
        names, signatures, _ = load_signatures(registry)
    index = ScreeningIndex(names, signatures)
    query = signature(candidate)
    scores = index.scores(query)
    position = names.index(reference)
    result = {}
    for c, component in enumerate(COMPONENTS):
        if not np.any(query.vectors[c]):
            result[component] = None
            continue
        result[component] = int(np.sum(scores[:, c] > scores[position, c])) + 1
    shared = index.shared_hashes(query)
    result["exact"] = int(shared[position])
    return result


def backfill_signatures(db: Path) -> dict:
    """Bring every stored signature up to date before timing (a database built by an older signature version
    is back-filled here, once, as the first audit after an upgrade would do)."""
    from provenance.registry import Registry
    from provenance.audit.shortlist import load_signatures

    started = time.perf_counter()
    with Registry(db) as registry:
        _, _, backfilled = load_signatures(registry)
    return {"backfilled": backfilled, "seconds": round(time.perf_counter() - started, 2)}


def median(values):
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/screening.py", description=__doc__.split("\n")[0])
    parser.add_argument("zoo", type=Path, help="zoo directory (python -m bench.zoo.build --out ZOO)")
    parser.add_argument("--work", type=Path, help="where databases and decoys are kept (default ZOO/screening)")
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--only", help="only cases whose id contains this substring")
    args = parser.parse_args(argv)

    import os
    import platform

    from provenance.compare import compare_fingerprints
    from provenance.audit.shortlist import DIM, SIGNATURE_VERSION, TOP_K

    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = args.work or args.zoo / "screening"
    work.mkdir(parents=True, exist_ok=True)
    zoo = json.loads((args.zoo / "cases.json").read_text())
    cases = [c for c in zoo["cases"] if c["positive"] and (not args.only or args.only in c["id"])]
    fixed_names = sorted({c["reference"] for c in cases} | {b for b in BASES if b in zoo["models"]})
    needed = sorted(set(fixed_names) | {c["candidate"] for c in cases})
    log(f"zoo: {len(cases)} positive cases ({zoo['slice']} slice), {len(fixed_names)} zoo references; fingerprinting {len(needed)} zoo models")
    zoo_fps = zoo_fingerprints(args.zoo, zoo["models"], needed, work, log)

    recipes = decoy_recipes(REAL_DECOYS + UNRELATED)
    log(f"real decoys: {len(recipes)} freshly initialised models (cached in {work / 'decoys'})")
    decoy_fps = real_decoys(args.zoo, work, recipes, log)
    unrelated_names = [r["name"] for r in recipes[REAL_DECOYS:]]
    decoys = {n: fp for n, fp in decoy_fps.items() if n not in unrelated_names}

    fingerprints = {**{n: zoo_fps[n] for n in fixed_names}, **decoys}
    trained = {n: zoo_fps[n] for n in BASES if n in zoo_fps}
    entries = plan(sizes, {n: None for n in fixed_names}, decoys, trained)
    databases = build_databases(work, sizes, entries, fingerprints, log)

    truth = {}
    for case in cases:  # the verdict a full comparison gives, to check the audit row against
        truth[case["id"]] = compare_fingerprints(zoo_fps[case["candidate"]], zoo_fps[case["reference"]]).verdict

    results = {"meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "nproc": os.cpu_count(), "python": platform.python_version(),
                        "loadavg_start": os.getloadavg()[0], "k": TOP_K, "dim": DIM, "signature_version": SIGNATURE_VERSION,
                        "slice": zoo["slice"], "cases": len(cases)}, "sizes": {}}
    for size in sizes:
        db = work / f"db-{size}.sqlite"
        backfill = backfill_signatures(db)
        log(f"db-{size}: {backfill['backfilled']} signatures back-filled in {backfill['seconds']:.1f} s")
        rows = []
        for case in cases:
            audit = timed_audit(zoo_fps[case["candidate"]], db)
            whole = timed_audit(zoo_fps[case["candidate"]], db, builtin=True)
            screen = audit["screening"]
            ref_row = next((r for r in audit["report"]["references"] if r["reference"] == case["reference"]), None)
            rows.append({"id": case["id"], "type": case["type"], "seconds": audit["seconds"],
                         "seconds_with_builtin": whole["seconds"],
                         "screen_seconds": screen.seconds, "compared": len(screen.shortlist),
                         "recalled": case["reference"] in screen.shortlist,
                         "verdict_as_full": ref_row is not None and ref_row["verdict"] == truth[case["id"]],
                         "verdict": ref_row["verdict"] if ref_row else None, "expected": case["verdict"],
                         "ranks": ranks(zoo_fps[case["candidate"]], db, case["reference"]) if size == max(sizes) else None})
        unrelated = []
        for name in unrelated_names:
            audit = timed_audit(decoy_fps[name], db)
            unrelated.append({"candidate": name, "seconds": audit["seconds"], "compared": len(audit["screening"].shortlist),
                              "verdict": audit["report"]["verdict"]})
        baseline = []
        if size == min(sizes):
            picks = cases[:: max(1, len(cases) // BASELINE_CASES)][:BASELINE_CASES]
            for case in picks:
                audit = timed_audit(zoo_fps[case["candidate"]], db, screen=False)
                baseline.append({"id": case["id"], "seconds": audit["seconds"], "references": size})
        results["sizes"][size] = {"database": databases[size], "backfill": backfill, "cases": rows, "unrelated": unrelated,
                                  "baseline": baseline}
        log(f"db-{size}: recall {sum(r['recalled'] for r in rows)}/{len(rows)}, median {median([r['seconds'] for r in rows]):.2f} s")

    report(results, sizes)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    recalled = all(r["recalled"] for s in results["sizes"].values() for r in s["cases"])
    return 0 if recalled else 2


def report(results: dict, sizes: list[int]) -> None:
    meta = results["meta"]
    print(f"screening.py  {meta['date']}  nproc {meta['nproc']}  loadavg at start {meta['loadavg_start']:.2f}  "
          f"zoo slice {meta['slice']}, {meta['cases']} positive cases; k {meta['k']}, {meta['dim']} dims per component")
    print("db audit s = run_audit(candidate, Registry(db), include_builtin=False) + audit_to_json, from the candidate's "
          "fingerprint, fresh Registry and caches: what the database adds to an audit")
    print("+built-ins = the same with the built-in references (2 fingerprints) and architecture rows, as `provenance audit` runs")
    print()
    header = (f"{'refs':>6} {'db MB':>8} {'build s':>8} {'recall':>8} {'db audit s median':>18} {'max':>6} "
              f"{'+built-ins median':>18} {'max':>6} "
              f"{'screen s median':>16} {'compared median':>16} {'max':>4} {'verdict = full':>15} {'unrelated s':>12} {'compared':>9}")
    print(header)
    print("-" * len(header))
    baseline_per_ref = None
    smallest = results["sizes"][min(sizes)]
    if smallest["baseline"]:
        per_ref = [b["seconds"] / b["references"] for b in smallest["baseline"]]
        baseline_per_ref = median(per_ref)
    for size in sizes:
        s = results["sizes"][size]
        rows = s["cases"]
        seconds = [r["seconds"] for r in rows]
        print(f"{size:>6} {s['database']['bytes'] / 1e6:>8.1f} {s['database']['build_seconds']:>8.1f} "
              f"{sum(r['recalled'] for r in rows):>4}/{len(rows):<3} {median(seconds):>18.2f} {max(seconds):>6.2f} "
              f"{median([r['seconds_with_builtin'] for r in rows]):>18.2f} {max(r['seconds_with_builtin'] for r in rows):>6.2f} "
              f"{median([r['screen_seconds'] for r in rows]):>16.3f} {median([r['compared'] for r in rows]):>16.0f} "
              f"{max(r['compared'] for r in rows):>4} {sum(r['verdict_as_full'] for r in rows):>11}/{len(rows):<3} "
              f"{median([u['seconds'] for u in s['unrelated']]):>12.2f} {median([u['compared'] for u in s['unrelated']]):>9.0f}")
    for size in sizes:
        b = results["sizes"][size]["backfill"]
        if b["backfilled"]:
            print(f"  db-{size}: {b['backfilled']} stale or missing signatures back-filled in {b['seconds']:.1f} s before timing")
    if smallest["baseline"]:
        b = smallest["baseline"]
        print()
        print(f"baseline (screen=False, every reference compared) on {min(sizes)} references, {len(b)} cases: "
              f"median {median([x['seconds'] for x in b]):.2f} s, {baseline_per_ref:.3f} s per reference")
        for size in sizes:
            screened = median([r["seconds"] for r in results["sizes"][size]["cases"]])
            estimate = baseline_per_ref * size
            how = "measured" if size == min(sizes) else "extrapolated"
            print(f"  {size:>6} references: compare-all {estimate:8.1f} s ({how} from per-reference cost), screened "
                  f"{screened:.2f} s, ratio {screened / estimate:.4f}")
    largest = results["sizes"][max(sizes)]["cases"]
    print()
    print(f"rank of the true reference per screening component at {max(sizes)} references (worst over the type's cases; "
          "- = component absent; exact = shared tensor hashes)")
    by_type: dict[str, list[dict]] = {}
    for r in largest:
        by_type.setdefault(r["type"], []).append(r)
    components = [c for c in (largest[0]["ranks"] or {}) if c != "exact"] if largest else []
    print(f"{'type':<24} {'cases':>5} " + " ".join(f"{c:>10}" for c in components) + f" {'exact':>6} {'recall':>7}")
    for type_, items in by_type.items():
        cells = []
        for c in components:
            values = [r["ranks"][c] for r in items if r["ranks"][c] is not None]
            cells.append(f"{max(values):>10}" if values else f"{'-':>10}")
        exact = min(r["ranks"]["exact"] for r in items)
        print(f"{type_:<24} {len(items):>5} " + " ".join(cells) + f" {exact:>6} {sum(r['recalled'] for r in items):>4}/{len(items)}")
    missed = [r for s in results["sizes"].values() for r in s["cases"] if not r["recalled"]]
    for r in missed:
        print(f"MISSED: {r['id']} ranks {r['ranks']}")


if __name__ == "__main__":
    sys.exit(main())
