#!/usr/bin/env python3
"""Benchmark: fuzz every header parser with 100,000+ inputs and count what escapes as a non-ProvenanceError.

Targets and strategies are in tests/support/fuzzing.py: mutations of
valid seed files (bit flips, truncations, overwritten/inserted/deleted bytes,
integer fields set to interesting values) and structured random files
(safetensors headers, GGUF headers, fingerprint metadata and arrays). Each
input is parsed as the command line would parse it (headers, every tensor,
`Checkpoint.open`; fingerprints are loaded, compared both ways with a valid
one, and the comparison rendered as `provenance compare` prints it). A `ProvenanceError` is the correct outcome for a broken input;
anything else is counted as uncaught, and its input is kept under
SCRATCH/run/crashes/ for reproduction. The total of uncaught must be zero.

Usage:
    python bench/fuzz.py                       # 100,000 inputs (~20-40 min on 2 busy cores)
    python bench/fuzz.py --inputs 5000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="total inputs over all targets (default 100,000)")
    parser.add_argument("--random", action="store_true", help="a fresh random run (default: derandomized, repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (always kept if something escaped)")
    parser.add_argument("--json", dest="json_out", default=None, help="write the tallies to this file")
    args = parser.parse_args(argv)

    from provenance.fingerprint.store import load_fingerprint
    from tests.support.fuzzing import Fuzzer, make_seeds, plan, scratch_directory

    warnings.simplefilter("ignore")  # numpy's RuntimeWarnings on garbage values are not what we count
    scratch = scratch_directory()
    seeds = make_seeds(scratch / "seeds")
    reference = load_fingerprint(scratch / "seeds" / "seed.fp.safetensors")
    fuzzer = Fuzzer(scratch / "run")
    print(f"scratch {scratch}; {args.inputs} inputs", flush=True)
    rows = []
    started = time.perf_counter()
    for name, strategy, suffix, target, share in plan(seeds, reference):
        count = max(1, round(args.inputs * share))
        t0 = time.perf_counter()
        tally = fuzzer.run(name, strategy, suffix, target, count, seed=None if args.random else 0)
        seconds = time.perf_counter() - t0
        rows.append({"target": name, "inputs": tally.inputs, "refused": tally.refused, "accepted": tally.accepted,
                     "uncaught": len(tally.uncaught), "seconds": seconds, "examples": tally.uncaught[:20]})
        print(f"  {name:<31} {tally.inputs:>7} inputs  {tally.refused:>7} refused  {tally.accepted:>6} accepted  "
              f"{len(tally.uncaught):>4} uncaught  {seconds:7.1f} s", flush=True)
        for example in tally.uncaught[:3]:
            print(f"      {example['error']}  ({example['input']})", flush=True)
    total = sum(r["inputs"] for r in rows)
    uncaught = sum(r["uncaught"] for r in rows)
    elapsed = time.perf_counter() - started
    print(f"fuzz: {total} inputs, {uncaught} uncaught (non-ProvenanceError) exceptions, "
          f"{elapsed:.0f} s ({total / elapsed:.0f} inputs/s)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"inputs": total, "uncaught": uncaught, "seconds": elapsed,
                                                   "targets": rows}, indent=2))
        print(f"wrote {args.json_out}")
    if uncaught or args.keep:
        print(f"kept {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if uncaught else 0


if __name__ == "__main__":
    sys.exit(main())
