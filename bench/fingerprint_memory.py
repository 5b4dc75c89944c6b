"""Peak memory and time of `provenance fingerprint`, `refs add` and `audit` on a frontier-shaped MoE or a dense
model: this checkout against a baseline tree, in one run.

    python bench/fingerprint_memory.py --model deepseek-v3 --layers 20 --baseline /tmp/frontier-base [--rounds 2]
    python bench/fingerprint_memory.py --model dense --baseline /tmp/frontier-base   # a bf16 dense model (DENSE)

Writes the checkpoint of `moe_models.FRONTIER[--model]` (as released: FP8 or
MXFP4 where the model ships so), then runs `python -m provenance.cli
fingerprint` on it in child processes, alternating the baseline's code
(`--baseline`: a directory holding another checkout's `provenance/`, e.g.
`git archive main | tar -x -C DIR`) and this checkout's, `--rounds` times each,
on the same files in the same run, each followed by `refs add` of one
fingerprint file (this checkout's, so both trees store the same fingerprint)
into a fresh database, and `audit` of that file against the database (itself
as the reference, read back from the database; `--no-builtin`). Per run:
wall seconds and peak RSS (GNU time's %M); printed per tree as the median,
and the ratios this / baseline. The size of the fingerprint's arrays and the
largest stored tensor are printed too: what an in-memory build must hold at
its end, and what a streaming one holds at least.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.moe_models import FRONTIER, MoeSpec, spec_named, write_dense, write_moe  # noqa: E402

# The dense model: 16 layers at hidden 1024, MLP width 2816, bf16 (Qwen2 names; 0.4 GB, largest tensor 5.8 MB).
DENSE = MoeSpec(layers=16, experts=1, hidden=1024, heads=16, kv_heads=4, vocab=32000, shards=4)
DENSE_WIDTH = 2816


def cli_run(tree: Path, args: list[str], work: Path) -> dict:
    """One command line in a child process with `tree` first on the path: seconds and peak MB."""
    env = {**os.environ, "PYTHONPATH": str(tree), "XDG_CACHE_HOME": str(work / "cache"),
           "XDG_DATA_HOME": str(work / "data")}
    with tempfile.NamedTemporaryFile("r", suffix=".time") as peak_file:
        started = time.perf_counter()
        child = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", peak_file.name, sys.executable, "-m",
                                "provenance.cli", *args], env=env, capture_output=True, text=True, cwd=tree)
        seconds = time.perf_counter() - started
        peak = int((peak_file.read().strip().splitlines() or ["0"])[-1] or 0) / 1024
    if child.returncode != 0:
        raise SystemExit(f"{args[0]} with {tree} failed: {child.stderr.strip()[-400:]}")
    return {"seconds": round(seconds, 1), "peak_mb": round(peak)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(FRONTIER) + ["dense"], required=True)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--baseline", type=Path, required=True, help="a directory with another checkout's provenance/")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "fingerprint_memory")
    args = parser.parse_args()
    changes = {"layers": args.layers} if args.layers else {}
    spec = replace(DENSE, **changes) if args.model == "dense" else spec_named(args.model, **changes)
    checkpoint = args.out / f"{args.model}-{spec.layers}"
    if not (checkpoint / "config.json").exists():
        if args.model == "dense":
            write_dense(checkpoint, spec, DENSE_WIDTH)
        else:
            write_moe(checkpoint, spec)
    trees = {"this": ROOT, "baseline": args.baseline.resolve()}  # this first: its file is the one both add
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    adds: dict[str, list[dict]] = {name: [] for name in trees}
    audits: dict[str, list[dict]] = {name: [] for name in trees}
    for round_ in range(args.rounds):
        for name, tree in trees.items():
            fp = args.out / f"{name}.fp"
            runs[name].append(cli_run(tree, ["fingerprint", str(checkpoint), "-o", str(fp), "--no-progress",
                                             "--no-cache"], args.out))
            # `refs add` of the same fingerprint file (this checkout's) into a fresh database
            db = args.out / f"{name}-{round_}.sqlite"
            adds[name].append(cli_run(tree, ["refs", "--refs", str(db), "add", str(args.out / "this.fp"), "--name",
                                             "m", "--no-progress", "--create"], args.out))
            audits[name].append(cli_run(tree, ["audit", str(args.out / "this.fp"), "--refs", str(db), "--no-builtin",
                                               "--json", "--no-progress"], args.out))
            db.unlink()
    from safetensors import safe_open  # the arrays of the fingerprint (as this checkout wrote it), from its header
    from safetensors.numpy import load_file
    arrays_mb = sum(a.nbytes for a in load_file(str(args.out / "this.fp")).values()) / 1e6
    largest_mb = 0.0
    for shard in checkpoint.glob("*.safetensors"):
        with safe_open(str(shard), "np") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                size = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "U8": 1, "I32": 4, "I64": 8}.get(piece.get_dtype(), 4)
                largest_mb = max(largest_mb, size * float(__import__("math").prod(piece.get_shape())) / 1e6)

    def medians(measured):
        return {name: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "peak_mb")}
                for name, rs in measured.items()}

    median, add_median, audit_median = medians(runs), medians(adds), medians(audits)
    result = {"model": args.model, "layers": spec.layers, "experts": spec.experts, "tensors": spec.tensor_count(),
              "stored": spec.quant or "bf16", "checkpoint_mb": round(sum(
                  f.stat().st_size for f in checkpoint.glob("*.safetensors")) / 1e6, 1),
              "fingerprint_arrays_mb": round(arrays_mb, 1), "largest_tensor_mb": round(largest_mb, 3),
              "runs": runs, "median": median,
              "peak_ratio": round(median["this"]["peak_mb"] / median["baseline"]["peak_mb"], 3),
              "time_ratio": round(median["this"]["seconds"] / median["baseline"]["seconds"], 3),
              "refs_add": adds, "refs_add_median": add_median,
              "refs_add_peak_ratio": round(add_median["this"]["peak_mb"] / add_median["baseline"]["peak_mb"], 3),
              "refs_add_time_ratio": round(add_median["this"]["seconds"] / add_median["baseline"]["seconds"], 3),
              "audit": audits, "audit_median": audit_median,
              "audit_peak_ratio": round(audit_median["this"]["peak_mb"] / audit_median["baseline"]["peak_mb"], 3),
              "audit_time_ratio": round(audit_median["this"]["seconds"] / audit_median["baseline"]["seconds"], 3)}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
