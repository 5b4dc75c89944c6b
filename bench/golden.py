"""Golden run: record the JSON of `compare` and `audit` on zoo cases, and check a later run against it.

Usage (from the checkout root, after `python -m bench.zoo.build --out ZOO --slice small`):

    python bench/golden.py --zoo ZOO --write DIR [--cases N]   # record DIR/*.json
    python bench/golden.py --zoo ZOO --check DIR               # rerun, compare, exit 1 on any difference

For each chosen case of ZOO/cases.json it runs, with this checkout's package,
`cli.py compare CANDIDATE REFERENCE --json` and `cli.py audit CANDIDATE --json
--no-builtin --refs DB`, where DB holds every reference model of the chosen
cases (built with `refs add` into a temporary folder). Before writing or
comparing, only what legitimately changes between runs is normalised: fields
that hold timestamps or durations, and absolute paths under the zoo, the
temporary folder and the home folder. Everything else (verdicts,
confidences, evidence, layer maps, p-values) must be byte-identical.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Keys whose values are clock readings or durations: replaced by a placeholder.
VOLATILE_KEYS = {"created", "created_at", "timestamp", "time", "seconds", "elapsed", "elapsed_seconds",
                 "finished", "started", "duration", "added", "added_at", "fingerprinted_at", "built_at", "date"}


def run_cli(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # measure this checkout's package, not an installed one
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode not in (0, 3):
        raise SystemExit(f"golden: `cli.py {' '.join(args)}` failed (exit {done.returncode}):\n{done.stderr}")
    return done.stdout


def normalise(value: Any, paths: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: ("<volatile>" if k in VOLATILE_KEYS else normalise(v, paths)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, paths) for v in value]
    if isinstance(value, str):
        for path, placeholder in paths.items():
            value = value.replace(path, placeholder)
    return value


def choose_cases(zoo: Path, count: int) -> list[dict]:
    """The first case of each type, then more in file order, up to count (deterministic)."""
    cases = json.loads((zoo / "cases.json").read_text())["cases"]
    chosen, types = [], set()
    for case in cases:
        if case["type"] not in types:
            types.add(case["type"])
            chosen.append(case)
    chosen += [c for c in cases if c not in chosen]
    return chosen[:count]


def file_name(kind: str, case_id: str) -> str:
    """A flat file name for a case id such as `llama/rename-yi:llama-s0-yi~llama-s0`."""
    return f"{kind}-" + "".join(c if c.isalnum() or c in "-_.~" else "_" for c in case_id) + ".json"


def golden_outputs(zoo: Path, count: int) -> dict[str, str]:
    catalog = json.loads((zoo / "cases.json").read_text())
    models = catalog["models"]
    cases = choose_cases(zoo, count)
    outputs: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="golden-") as scratch:
        db = Path(scratch) / "refs.sqlite"
        paths = {str(zoo.resolve()): "<zoo>", str(zoo): "<zoo>", scratch: "<tmp>", str(Path.home()): "<home>"}
        for reference in sorted({c["reference"] for c in cases}):
            run_cli("refs", "--refs", str(db), "add", str(zoo / models[reference]["path"]), "--name", reference,
                    "--no-progress")
        for case in cases:
            candidate = str(zoo / models[case["candidate"]]["path"])
            reference = str(zoo / models[case["reference"]]["path"])
            compared = json.loads(run_cli("compare", candidate, reference, "--json", "--no-progress"))
            outputs[file_name("compare", case["id"])] = json.dumps(normalise(compared, paths), indent=2, sort_keys=True)
            audited = json.loads(run_cli("audit", candidate, "--json", "--no-builtin", "--refs", str(db),
                                         "--no-progress"))
            outputs[file_name("audit", case["id"])] = json.dumps(normalise(audited, paths), indent=2, sort_keys=True)
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, type=Path, help="folder written by bench.zoo.build")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", type=Path, metavar="DIR", help="record the golden outputs in DIR")
    action.add_argument("--check", type=Path, metavar="DIR", help="compare a new run with the outputs in DIR")
    parser.add_argument("--cases", type=int, default=17, help="how many zoo cases (default 17: the whole small slice)")
    args = parser.parse_args(argv)
    if args.write:
        outputs = golden_outputs(args.zoo, args.cases)
        args.write.mkdir(parents=True, exist_ok=True)
        for name, text in outputs.items():
            (args.write / name).write_text(text + "\n")
        print(f"golden: wrote {len(outputs)} outputs to {args.write}")
        return 0
    recorded = {p.name: p.read_text() for p in sorted(args.check.glob("*.json"))}
    if not recorded:
        raise SystemExit(f"golden: {args.check}: no recorded outputs (*.json)")
    outputs = {name: text + "\n" for name, text in golden_outputs(args.zoo, args.cases).items()}
    differing = sorted(name for name in recorded.keys() | outputs.keys() if recorded.get(name) != outputs.get(name))
    for name in differing:
        diff = difflib.unified_diff(recorded.get(name, "").splitlines(), outputs.get(name, "").splitlines(),
                                    f"recorded/{name}", f"now/{name}", lineterm="", n=1)
        print("\n".join(list(diff)[:40]))
    print(f"golden: {len(recorded) - len(differing)} of {len(recorded)} outputs identical"
          + (f"; differing: {', '.join(differing)}" if differing else ""))
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
