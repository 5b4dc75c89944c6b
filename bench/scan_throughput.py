#!/usr/bin/env python3
"""Benchmark: candidates audited per minute by `provenance scan`, per executor.

1. Generate a few reference models (LLaMA-style, random weights, bf16
   safetensors written by transformers' `save_pretrained`; default hidden 512,
   8 layers, intermediate 1376, vocabulary 8192: about 34M parameters, 67 MB)
   and store their fingerprints in a fresh reference database.
2. Generate N candidates cycling through three kinds: a byte copy of a
   reference (expected `identical`), a noisy derivative of one (weights +
   0.3 x per-tensor std Gaussian noise; expected `derived`), and an
   independent model of the same shape (new seed; expected
   `same-architecture`). Then read every file once, so that all modes see a
   warm page cache.
3. Start the multiprocessing forkserver once (torch and the package
   preloaded; a `provenance scan` command pays this once) and time it.
4. In each of --rounds rounds (interleaved, so load from elsewhere drifts
   over all modes alike), scan all N candidates with each executor into a
   fresh output file, timing the whole `scan()` call (worker start-up included):
     sequential   `run_inline` in this process (imports already done; torch's default
                  thread count, as `provenance audit` runs): the baseline
     sequential, 1 thread   the same with torch.set_num_threads(1), which is what
                  each pool worker and Ray task uses: separates the gain of
                  parallel processes from the cost of threads competing for cores
     pool 1, 2    local process pool (forkserver) with 1 and 2 workers
     ray 2        Ray tasks on a local instance with num_cpus=2; `ray.init` is
                  timed separately and reported both excluded and included
   and optionally (--cli-loop K) the shell loop a user might write instead,
   `provenance audit C --json` once per candidate, on the first K candidates.
5. Check that every mode gave the same verdicts (timings aside) and print
   candidates per minute (median over rounds) and the ratio to the
   sequential baseline, with the 1-minute load average seen by each run.

Usage:
    python bench/scan_throughput.py                      # N=24, 2 rounds
    python bench/scan_throughput.py --n 48 --cli-loop 6 --json /tmp/scan.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("copy", "noisy", "independent")


def make_reference(path: Path, seed: int, args) -> Path:
    import torch
    import transformers as T

    torch.manual_seed(seed)
    config = T.LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
                           num_hidden_layers=args.layers, num_attention_heads=args.heads,
                           num_key_value_heads=args.heads, tie_word_embeddings=False)
    model = T.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(path))
    return path


def make_variant(base: Path, path: Path, seed: int, noise: float | None) -> Path:
    """noise=None: an independent model (every tensor redrawn with the same std); else base + noise x std."""
    import torch
    from safetensors.torch import load_file, save_file

    path.mkdir(parents=True)
    shutil.copy(base / "config.json", path / "config.json")
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in sorted(load_file(str(base / "model.safetensors")).items()):
        values = tensor.float()
        std = values.std() if values.numel() > 1 else torch.tensor(0.0)
        draw = torch.randn(values.shape, generator=generator)
        if noise is None:
            if std > 0:  # constant tensors (norms initialised at 1) stay as they are
                values = values.mean() + std * draw
        else:
            values = values + noise * std * draw
        state[name] = values.to(tensor.dtype).contiguous()
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def generate(workdir: Path, args) -> tuple[str, list[str]]:
    from provenance.fingerprint.load import fingerprint_for
    from provenance.audit.shortlist import add_reference
    from provenance.registry import Registry

    refs = [make_reference(workdir / "refs" / f"ref-{i}", 1000 + i, args) for i in range(args.refs)]
    db = workdir / "refs.sqlite"
    with Registry(db) as registry:
        for i, ref in enumerate(refs):
            add_reference(registry, f"ref-{i}", fingerprint_for(ref))
    candidates = []
    for i in range(args.n):
        kind, base = KINDS[i % len(KINDS)], refs[i % len(refs)]
        path = workdir / "candidates" / f"{i:03d}-{kind}"
        if kind == "copy":
            shutil.copytree(base, path)
        else:
            make_variant(base, path, 5000 + i, 0.3 if kind == "noisy" else None)
        candidates.append(str(path))
    return str(db), candidates


def warm(paths: list[str]) -> int:
    total = 0
    for p in paths:
        for f in Path(p).rglob("*"):
            if f.is_file():
                with open(f, "rb") as handle:
                    while chunk := handle.read(1 << 24):
                        total += len(chunk)
    return total


def run_mode(name: str, candidates: list[str], workdir: Path, make_executor) -> dict:
    from provenance.batch import scan

    out = workdir / f"out-{name.replace(' ', '-')}.jsonl"
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    summary = scan(candidates, out, make_executor())
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in out.read_text().splitlines()]
    verdicts = {r["candidate"]: (r["audit"]["verdict"], r["audit"]["best_reference"]) if r["status"] == "ok"
                else ("error", r["error"]) for r in records}
    per_candidate = [r["seconds"] for r in records]
    return {"mode": name, "seconds": seconds, "audited": summary.audited, "errors": summary.errors,
            "verdicts": verdicts, "median_task_s": statistics.median(per_candidate)}


def cli_loop(candidates: list[str], db: str, workdir: Path) -> dict:
    """What a user might write instead: one `provenance audit` process per candidate."""
    started = time.perf_counter()
    verdicts = {}
    for c in candidates:
        result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "audit", c, "--refs", db, "--json"],
                                capture_output=True, text=True, cwd=workdir)
        report = json.loads(result.stdout) if result.returncode == 0 else None
        verdicts[c] = (report["verdict"], report["best_reference"]) if report else ("error", result.stderr.strip())
    return {"mode": f"cli loop (first {len(candidates)})", "seconds": time.perf_counter() - started,
            "audited": len(candidates), "errors": sum(v[0] == "error" for v in verdicts.values()),
            "verdicts": verdicts, "median_task_s": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/scan_throughput.py", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=24, help="candidates (default 24)")
    parser.add_argument("--refs", type=int, default=3, help="reference models in the database (default 3)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--intermediate", type=int, default=1376)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray mode")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all modes, interleaved (default 2); medians reported")
    parser.add_argument("--cli-loop", type=int, default=0, metavar="K",
                        help="also time `provenance audit` run once per candidate on the first K candidates")
    parser.add_argument("--workdir", type=Path, help="keep the generated files here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    args = parser.parse_args(argv)

    import torch
    from provenance import batch as scan

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="scan-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    t = time.perf_counter()
    db, candidates = generate(workdir, args)
    size = warm(candidates)
    print(f"scan_throughput.py  {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}  nproc {os.cpu_count()}"
          f"  loadavg start {load_start[0]:.2f}  torch {torch.__version__}", flush=True)
    print(f"generated {args.refs} references and {len(candidates)} candidates ({', '.join(KINDS)} in turn) in "
          f"{time.perf_counter() - t:.0f} s: hidden {args.hidden}, {args.layers} layers, intermediate "
          f"{args.intermediate}, vocab {args.vocab}, bf16; {size / len(candidates) / 1e6:.0f} MB per candidate; "
          f"workdir {workdir}", flush=True)

    settings = scan.AuditSettings(db)
    # The forkserver (with torch and the package preloaded) starts once per process, i.e. once per
    # `provenance scan` command: timed here, like ray.init, rather than charged to whichever pool runs first.
    t = time.perf_counter()
    warm_pool = scan._process_pool(1, None)
    warm_pool.submit(os.getpid).result()
    warm_pool.shutdown()
    forkserver_start = time.perf_counter() - t
    print(f"forkserver start (once per scan command): {forkserver_start:.1f} s", flush=True)

    try:
        import logging

        import ray
    except ImportError:
        ray = None
        if not args.no_ray:
            print("ray not installed: Ray mode skipped", flush=True)
    use_ray = ray is not None and not args.no_ray
    def one_thread(todo):
        """The sequential baseline with one torch thread, as each pool worker and Ray task has."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield from scan.run_inline(todo, settings)
        finally:
            torch.set_num_threads(threads)

    modes = [("sequential", lambda: scan.executor(0, settings=settings)),
             ("sequential, 1 thread", lambda: one_thread),
             ("pool, 1 worker", lambda: scan.executor(1, settings=settings)),
             ("pool, 2 workers", lambda: scan.executor(2, settings=settings))]
    if use_ray:
        modes.append(("ray, 2 workers", lambda: scan.executor(2, use_ray=True, settings=settings)))
    runs: dict[str, list[dict]] = {name: [] for name, _ in modes}
    ray_inits = []
    for round_number in range(1, args.rounds + 1):
        for name, make_executor in modes:  # interleaved, so that load from elsewhere drifts over all modes alike
            if name.startswith("ray"):
                t = time.perf_counter()
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
                ray_inits.append(time.perf_counter() - t)
            try:
                result = run_mode(name, candidates, workdir, make_executor)
            finally:
                if name.startswith("ray"):
                    ray.shutdown()
            result["load"] = os.getloadavg()[0]
            runs[name].append(result)
            print(f"  round {round_number}  {name:<18} {result['seconds']:7.1f} s  loadavg {result['load']:.2f}", flush=True)
    results = []
    if args.cli_loop:
        loop = cli_loop(candidates[:args.cli_loop], db, workdir)
        loop["load"] = os.getloadavg()[0]
        runs[loop["mode"]] = [loop]
    load_end = os.getloadavg()

    def rate(r):
        return r["audited"] / r["seconds"]

    baseline_rate = statistics.median(rate(r) for r in runs["sequential"])
    single_rate = statistics.median(rate(r) for r in runs["sequential, 1 thread"])
    reference = runs["sequential"][0]["verdicts"]
    print()
    print(f"{'mode (median of rounds)':<26} {'candidates':>10} {'seconds':>8} {'per minute':>10} {'ratio':>6} "
          f"{'ratio 1t':>8} {'median task s':>13} {'loadavg':>7}  verdicts as sequential")
    for name, items in runs.items():
        median_rate = statistics.median(rate(r) for r in items)
        same = all(reference.get(c) == v for r in items for c, v in r["verdicts"].items())
        errors = sum(r["errors"] for r in items)
        tasks = [r["median_task_s"] for r in items if r["median_task_s"] is not None]
        row = {"mode": name, "rounds": len(items), "candidates": items[0]["audited"],
               "seconds": [round(r["seconds"], 2) for r in items], "per_minute": 60 * median_rate,
               "ratio": median_rate / baseline_rate, "ratio_1_thread": median_rate / single_rate,
               "median_task_s": statistics.median(tasks) if tasks else None,
               "load": [round(r["load"], 2) for r in items], "same_verdicts": same, "errors": errors}
        results.append(row)
        print(f"{name:<26} {row['candidates']:>10} {row['candidates'] / median_rate:>8.1f} {row['per_minute']:>10.1f} "
              f"{row['ratio']:>6.2f} {row['ratio_1_thread']:>8.2f} "
              f"{row['median_task_s'] if tasks else float('nan'):>13.2f} "
              f"{statistics.median(row['load']):>7.2f}  {'yes' if same else 'NO'}")
        if name.startswith("ray") and ray_inits:
            init = statistics.median(ray_inits)
            with_init = row["candidates"] / (row["candidates"] / median_rate + init)
            row["ray_init_seconds"] = [round(x, 2) for x in ray_inits]
            print(f"{'  incl. ray.init ' + format(init, '.1f') + ' s':<26} {row['candidates']:>10} "
                  f"{row['candidates'] / with_init:>8.1f} {60 * with_init:>10.1f} {with_init / baseline_rate:>6.2f} "
                  f"{with_init / single_rate:>8.2f}")
    counts = Counter(v[0] for v in reference.values())
    print(f"verdicts: {dict(sorted(counts.items()))}; loadavg end {load_end[0]:.2f}; forkserver start {forkserver_start:.1f} s")
    print("ratio = candidates per minute / the sequential baseline's (in this process, torch's default threads); "
          "ratio 1t = / the sequential run with one torch thread, as each pool worker and Ray task has; "
          "seconds include worker start-up but not the one-time forkserver start or ray.init unless said")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "load": [load_start, load_end],
                                         "forkserver_start_seconds": forkserver_start, "results": results}, indent=2))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(r["same_verdicts"] and not r["errors"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
