"""The attack corpus: hostile and broken inputs, generated on demand (no binary blobs in the repository).

Every case is a small file or directory built from a seeded tiny LLaMA, then
broken in one precise way, plus the command lines to run on it and what they
must do: exit 1 with one stderr line naming the file and the problem, or,
for inputs that are odd but valid (zero-sized or NaN tensors, a header out of
data order, a legacy pickle), succeed. Pickle payloads would create a file in
`sentinels/`; that file must never appear.

    python -m tests.support.attack_corpus --out DIR   # write the corpus, list the cases
    generate(out) -> list[Case]                       # what the tests call

Groups, one module each: safetensors headers (safetensors_cases.py),
PyTorch pickles and zips (pytorch_cases.py), GGUF headers (gguf_cases.py),
checkpoint directories: symlinks, indexes, side-file caps
(directory_cases.py), fingerprint files and reference databases
(stored_cases.py). corpus.py holds the cases and the base model, runner.py
runs and checks them. Writing the corpus takes a few seconds and
about 250 MB of disk, most of it the cases just over a size cap (a 100 MB
safetensors header, a 128 MiB tokenizer.json), which are real files so that
the cap, not some other check, is what refuses them.
"""


from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from . import directory_cases, gguf_cases, pytorch_cases, quantized_cases, safetensors_cases, stored_cases
from .corpus import Case, Corpus, Run, tiny_state, write_model_dir
from .gguf_cases import gguf_bytes, gstr, kv
from .runner import check_cases, check_run, limit_address_space, run_batch

__all__ = ["Case", "Corpus", "Run", "check_cases", "check_run", "generate", "gguf_bytes", "gstr", "kv",
           "limit_address_space", "main", "run_batch", "tiny_state", "write_model_dir"]


GROUPS: dict[str, Callable[[Corpus], None]] = {
    "safetensors": safetensors_cases.add_cases, "pytorch": pytorch_cases.add_cases, "gguf": gguf_cases.add_cases,
    "dir": directory_cases.add_cases, "fingerprint": stored_cases.add_fingerprint_cases,
    "database": stored_cases.add_database_cases, "quantized": quantized_cases.add_cases,
}


def generate(out: str | Path, groups: list[str] | None = None) -> list[Case]:
    """Write the corpus (the named groups, default all) under `out` and return its cases."""
    corpus = Corpus(Path(out).resolve())
    corpus.out.mkdir(parents=True, exist_ok=True)
    (corpus.out / "sentinels").mkdir(exist_ok=True)
    write_model_dir(corpus.out / "base" / "model")
    for name in groups or list(GROUPS):
        GROUPS[name](corpus)
    return corpus.cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the corpus into")
    parser.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument("--run", action="store_true", help="also run every command line (4 GiB address-space "
                        "limit, 60 s per run) and print exit code, seconds and peak RSS growth")
    args = parser.parse_args(argv)
    cases = generate(args.out, [g for g in args.groups.split(",") if g])
    results = iter(run_batch([list(r.argv) for c in cases for r in c.runs])) if args.run else None
    problems = 0
    for case in cases:
        print(f"{case.name:<48} {case.description}")
        for run in case.runs:
            line = f"    provenance {' '.join(run.argv)}  -> {run.expect}"
            if results is not None:
                result = next(results)
                problem = check_run(run, result)
                problems += problem is not None
                line += (f"  [exit {result['code']}, {result['seconds']:.2f} s, +{result['peak_rss_growth'] >> 20} MiB"
                         f"{', PROBLEM: ' + problem if problem else ''}]")
            print(line)
    print(f"{len(cases)} cases, {sum(len(c.runs) for c in cases)} command lines, in {args.out}"
          + (f"; {problems} runs misbehaved" if results is not None else ""), file=sys.stderr)
    return 1 if problems else 0

