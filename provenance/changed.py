"""Audit the models a change touches: the entry point of the pre-commit hook and of the GitHub Action.

    python -m provenance.changed [FILE ...] [--base REF] [--report-dir DIR] [--fail-on NAMES] [--refs DB]
                                 [--no-builtin] [--format FORMAT]

The changed files (given, as pre-commit passes them, or `git diff --name-only
REF...HEAD` with `--base`) are mapped to what can be audited: the folder
holding a changed weights, config or tokenizer file when that folder holds
weights (or a fingerprint), else a changed weights file on its own. Each
target is audited once (`provenance audit TARGET` with the audit options
given: --fail-on, --refs, --no-builtin, --format); with `--report-dir` each also
writes a Markdown report there, for a pull request's summary. The exit code
is the most serious of the audits': 3 if any reached a `--fail-on` name,
else 1 if any failed, else 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from . import cli
from .fingerprint.store import WEIGHT_LIKE_SUFFIXES
from .formats.checkpoint_files import TOKENIZER_FILES
from .gate import EXIT_ERROR, EXIT_FAIL_ON, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

SIDE_FILES = ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json", *TOKENIZER_FILES)


def _holds_weights(folder: Path) -> bool:
    return folder.is_dir() and any(p.name.lower().endswith(WEIGHT_LIKE_SUFFIXES) for p in folder.iterdir())


def model_targets(paths: list[str]) -> list[str]:
    """The folders (or lone weights files) to audit for these changed files, in order, each once."""
    targets: list[str] = []
    for text in paths:
        path = Path(text)
        name = path.name.lower()
        if not path.exists() or not (name.endswith(WEIGHT_LIKE_SUFFIXES) or path.name in SIDE_FILES):
            continue  # deleted, or not part of a model
        target = path.parent if _holds_weights(path.parent) else path if name.endswith(WEIGHT_LIKE_SUFFIXES) else None
        if target is not None and str(target) not in targets:
            targets.append(str(target))
    return targets


def changed_since(base: str) -> list[str]:
    """Files added or modified since `base` (a commit, branch or tag), as git names them."""
    done = subprocess.run(["git", "diff", "--name-only", "--diff-filter=d", f"{base}...HEAD"], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"provenance.changed: error: git diff against {base}: {done.stderr.strip()}")
    return [line for line in done.stdout.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provenance.changed", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", metavar="FILE", help="changed files (pre-commit passes them)")
    parser.add_argument("--base", metavar="REF", help="audit what changed since REF (git diff REF...HEAD)")
    parser.add_argument("--report-dir", metavar="DIR", help="also write one Markdown report per target there")
    parser.add_argument("--list", action="store_true", help="print the targets, one a line, and stop")
    parser.add_argument("--fail-on", metavar="NAMES", help="as for provenance audit")
    parser.add_argument("--refs", metavar="DB", help="as for provenance audit")
    parser.add_argument("--no-builtin", action="store_true", help="as for provenance audit")
    parser.add_argument("--format", metavar="FORMAT", help="as for provenance audit (github for annotations)")
    args = parser.parse_args(argv)
    audit_options = [*(["--fail-on", args.fail_on] if args.fail_on else []), *(["--refs", args.refs] if args.refs else []),
                     *(["--no-builtin"] if args.no_builtin else []), *(["--format", args.format] if args.format else [])]
    if args.files and args.base:
        print("provenance.changed: error: give changed FILEs or --base REF, not both", file=sys.stderr)
        return EXIT_USAGE
    targets = model_targets(changed_since(args.base) if args.base else args.files)
    if args.list:
        print("\n".join(targets))
        return EXIT_OK
    if not targets:
        print("provenance: no model folder or weights file changed; nothing to audit", file=sys.stderr)
        return EXIT_OK
    codes = []
    for number, target in enumerate(targets, start=1):
        report = ["--report", str(Path(args.report_dir) / f"provenance-{number}.md")] if args.report_dir else []
        codes.append(cli.main(["audit", target, "--no-progress", *report, *audit_options]))
        if codes[-1] == EXIT_INTERRUPTED:  # Ctrl-C stops the run: the models left are not audited, and it says so
            print(f"provenance.changed: interrupted; {len(targets) - number} of {len(targets)} not audited",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
    if EXIT_FAIL_ON in codes:
        return EXIT_FAIL_ON
    return EXIT_ERROR if any(code != EXIT_OK for code in codes) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
