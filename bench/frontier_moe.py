"""Frontier-shaped mixtures of experts at tiny width, end to end: fingerprint (local and over HTTP), add, audit.

    python bench/frontier_moe.py --model qwen3-235b-a22b [--layers N] [--out DIR]

For each model of `moe_models.FRONTIER` (layer and expert counts of
DeepSeek-V3, Kimi K2, Qwen3-235B-A22B, gpt-oss-120b, and the issue's
48 x 200 checkpoint; hidden 64, expert width 32; DeepSeek-V3 and Kimi K2
stored FP8 with block scales and gpt-oss's stacked experts MXFP4, as
released, the others bf16), it writes the checkpoint and two derived copies
in bf16 from the released values, as fine-tunes are (experts permuted plus
5% noise; half the experts dropped), then runs the command line in child processes and records
wall time and peak memory (ru_maxrss of the child) of:
- `fingerprint` of the checkpoint (local files), and of the same files over
  HTTP from `tests/range_server.py` with 50 ms added per request and one
  100 MB/s link (bytes served and requests counted by the server);
- `refs add` into a fresh database (the fingerprint now comes from the cache);
- `audit` of the checkpoint itself (expected `identical`, from the cache),
  of the permuted copy and of the half copy (expected `derived`).
The fingerprint file's metadata size (JSON characters, arrays listed in its
header) is reported too. Results are printed as a Markdown table row and
appended as JSON to OUT/results.jsonl. `--layers` cuts the depth (expert
counts stay) when a full-depth run would take too long on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.moe_models import FRONTIER, MoeEdit, spec_named, write_moe  # noqa: E402
from tests.range_server import RangeServer  # noqa: E402

LATENCY = 0.05
BANDWIDTH = 100e6


def run(args: list[str], env: dict[str, str]) -> dict:
    """One command-line run in a child process: seconds, peak memory (MB, GNU time's %M), exit code, stdout."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as peak_file:
        started = time.perf_counter()
        child = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", peak_file.name, sys.executable, "-m",
                                "provenance.cli", *args], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak = int((peak_file.read().strip().splitlines() or ["0"])[-1] or 0) / 1024
    return {"seconds": round(seconds, 1), "peak_mb": round(peak), "code": child.returncode, "stdout": child.stdout,
            "stderr": child.stderr[-400:]}


def metadata_size(path: Path) -> tuple[int, int]:
    """(metadata JSON characters, arrays listed in the header) of a fingerprint file."""
    with open(path, "rb") as handle:
        size = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(size))
    return len(header.pop("__metadata__")["provenance"]), len(header)


def verdict(result: dict) -> str:
    try:
        data = json.loads(result["stdout"])
    except ValueError:
        return f"error: {result['stderr'].strip().splitlines()[-1:]}"
    return f"{data.get('verdict')} ({data.get('summary', '')[:120]})"


def bench(name: str, layers: int | None, out: Path) -> dict:
    spec = spec_named(name, **({"layers": layers} if layers else {}))
    work = out / f"{name}-{spec.layers}"
    home = work / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(home / "cache"),
           "XDG_DATA_HOME": str(home / "data"), "PROVENANCE_DEBUG": "1"}
    started = time.perf_counter()
    base = write_moe(work / "base", spec)
    keep_all = tuple(int(i) for i in np.random.default_rng(1).permutation(spec.experts))
    permuted = write_moe(work / "permuted", spec, MoeEdit(keep=keep_all, noise=0.05, stored="float"))
    half = write_moe(work / "half", spec, MoeEdit(keep=tuple(range(0, spec.experts, 2)), stored="float"))
    row: dict = {"model": name, "layers": spec.layers, "experts": spec.experts, "tensors": spec.tensor_count(),
                 "stored": spec.quant or "bf16",
                 "checkpoint_mb": round(sum(f.stat().st_size for f in base.glob("*.safetensors")) / 1e6, 1),
                 "write_seconds": round(time.perf_counter() - started, 1)}
    fp = work / "base.fp"
    local = run(["fingerprint", str(base), "-o", str(fp), "--no-progress"], env)
    row["fingerprint"] = {k: local[k] for k in ("seconds", "peak_mb", "code")}
    row["fingerprint_mb"] = round(fp.stat().st_size / 1e6, 1) if fp.exists() else None
    row["metadata_chars"], row["header_arrays"] = metadata_size(fp) if fp.exists() else (None, None)
    with RangeServer(work, latency=LATENCY, bandwidth=BANDWIDTH) as server:
        remote = run(["fingerprint", server.url("base/model.safetensors.index.json"), "-o", str(work / "remote.fp"),
                      "--no-progress"], env)
        row["remote"] = {**{k: remote[k] for k in ("seconds", "peak_mb", "code")},
                         "bytes_served_mb": round(server.served("base/") / 1e6, 2), "requests": server.requests("base/")}
    db = str(work / "refs.sqlite")
    add = run(["refs", "--refs", db, "add", str(base), "--name", name, "--no-progress", "--create"], env)
    row["refs_add"] = {k: add[k] for k in ("seconds", "peak_mb", "code")}
    for case, path in (("audit_self", base), ("audit_permuted_noise", permuted), ("audit_half_experts", half)):
        result = run(["audit", str(path), "--refs", db, "--no-builtin", "--json", "--no-progress"], env)
        row[case] = {**{k: result[k] for k in ("seconds", "peak_mb")}, "verdict": verdict(result)}
    again = run(["audit", str(base), "--refs", db, "--no-builtin", "--json", "--no-progress"], env)
    row["audit_self_cached"] = {"seconds": again["seconds"], "verdict": verdict(again)}
    with open(out / "results.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def table_row(row: dict) -> str:
    r = row["remote"]
    return (f"| {row['model']} | {row.get('stored', 'bf16')} | {row['layers']} x {row['experts']} | {row['tensors']:,} | {row['checkpoint_mb']} | "
            f"{row['fingerprint']['seconds']} s / {row['fingerprint']['peak_mb']} MB | {row['metadata_chars']:,} / "
            f"{row['header_arrays']} | {r['seconds']} s, {r['requests']} req, {r['bytes_served_mb']} MB | "
            f"{row['refs_add']['seconds']} s | {row['audit_self']['seconds']} s {row['audit_self']['verdict'].split()[0]} | "
            f"{row['audit_permuted_noise']['seconds']} s {row['audit_permuted_noise']['verdict'].split()[0]} | "
            f"{row['audit_half_experts']['seconds']} s {row['audit_half_experts']['verdict'].split()[0]} | "
            f"{row['audit_self_cached']['seconds']} s |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(FRONTIER), action="append", required=True)
    parser.add_argument("--layers", type=int, help="fewer layers than the real model (expert counts kept)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "frontier_moe")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.model:
        row = bench(name, args.layers, args.out)
        print(json.dumps(row, indent=1))
        print(table_row(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
