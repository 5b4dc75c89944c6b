"""`provenance compare CANDIDATE REFERENCE`: a verdict on whether CANDIDATE's weights come from REFERENCE.

Two folders of tokenizer files only (no weights) are compared as
vocabularies instead. The outputs are `provenance.compare/1`
(report/compare_json.py, which the Python API shares) and
`provenance.tokenizer-compare/1` (report/tokenizer_compare.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..cli_help import command
from ..errors import UnreadablePathError
from ..gate import EXIT_FAIL_ON, EXIT_OK
from .inputs import fingerprint_with_progress, require_path
from .options import add_deadline, add_fail_on, add_hub, add_no_progress


def register(commands) -> None:
    parser = command(commands, "compare", help="verdict on whether CANDIDATE's weights come from REFERENCE")
    parser.add_argument("candidate", metavar="CANDIDATE", help="checkpoint, fingerprint file, URL, hf:// or ORG/NAME[@REV] "
                        "(as for fingerprint PATH)")
    parser.add_argument("reference", metavar="REFERENCE", help="as CANDIDATE")
    add_hub(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object (schema provenance.compare/1)")
    add_fail_on(parser)
    add_no_progress(parser)
    add_deadline(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    args.candidate = require_path(args.candidate, hub=args.hub)
    args.reference = require_path(args.reference, hub=args.hub)
    # lazy: the readers (formats/) load torch
    from ..formats.tokenizer import tokenizer_only_folder

    if tokenizer_only_folder(args.candidate) or tokenizer_only_folder(args.reference):
        return compare_tokenizers(args)
    # lazy: numpy (compare/), only for compare
    from ..report.compare_json import comparison_to_json, render_comparison

    candidate = fingerprint_with_progress(args.candidate, args)
    reference = fingerprint_with_progress(args.reference, args)
    # lazy: numpy and scipy
    from ..compare import compare_fingerprints

    result = compare_fingerprints(candidate, reference)
    report = comparison_to_json(args.candidate, candidate, args.reference, reference, result)
    print(json.dumps(report, indent=2) if args.json else render_comparison(report))
    if args.fail_on and not report["abstained"] and report["verdict"] in args.fail_on:
        print(f"provenance: --fail-on: {report['verdict']} vs {args.reference} (exit 3)", file=sys.stderr)
        return EXIT_FAIL_ON
    if "abstained" in args.fail_on and report["abstained"]:
        print(f"provenance: --fail-on: abstained vs {args.reference} (exit 3)", file=sys.stderr)
        return EXIT_FAIL_ON
    return EXIT_OK


def compare_tokenizers(args: argparse.Namespace) -> int:
    """Two folders of tokenizer files only (no weights): compare the vocabularies."""
    # lazy: the readers (formats/) load torch; compare/ loads numpy
    from ..compare.tokenizers import compare_vocabularies
    from ..formats.tokenizer import load_vocabulary, tokenizer_only_folder
    from ..report.tokenizer_compare import render_tokenizer_comparison, tokenizer_comparison_to_json, tokenizer_side

    folders = [tokenizer_only_folder(path) for path in (args.candidate, args.reference)]
    for path, files in zip((args.candidate, args.reference), folders):
        if not files:
            other = args.reference if path == args.candidate else args.candidate
            raise UnreadablePathError(path, f"is not a folder of tokenizer files only, but {other} is; "
                                            "compare two tokenizer folders, or two checkpoints")
    sides, vocabularies = [], []
    for path, files in zip((args.candidate, args.reference), folders):
        vocabulary = load_vocabulary(files, None, str(path))
        if vocabulary is None:
            raise UnreadablePathError(path, "holds tokenizer files but no vocabulary this tool reads "
                                            "(tokenizer.json, vocab.json or vocab.txt)")
        sides.append(tokenizer_side(path, vocabulary, list(files)))
        vocabularies.append(vocabulary)
    report = tokenizer_comparison_to_json(sides[0], sides[1], compare_vocabularies(*vocabularies))
    print(json.dumps(report, indent=2) if args.json else render_tokenizer_comparison(report))
    if args.fail_on:
        print("provenance: note: --fail-on names weight verdicts; a tokenizer comparison reaches none", file=sys.stderr)
    return EXIT_OK
