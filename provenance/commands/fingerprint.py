"""`provenance fingerprint PATH -o OUT`: compute a checkpoint's fingerprint once, to compare many times."""

from __future__ import annotations

import argparse
import sys

from ..cli_help import command
from ..errors import UnreadablePathError
from ..gate import EXIT_OK
from ..outputs import check_output
from ..progress import tensor_progress, wanted
from .inputs import require_path, saved_fingerprint
from .options import add_deadline, add_location, add_no_progress


def register(commands) -> None:
    parser = command(commands, "fingerprint", help="compute a checkpoint's fingerprint once, to compare many times")
    add_location(parser, "path", "PATH")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="fingerprint file to write (.safetensors)")
    add_no_progress(parser)
    add_deadline(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_output(args.output, "fingerprint")  # before the work (provenance/outputs.py)
    args.path = require_path(args.path, revision=args.revision, hub=args.hub)
    saved = saved_fingerprint(args.path)
    if saved is not None:

        raise UnreadablePathError(args.path, "is already a provenance fingerprint (of "
                                  f"{saved.source.path or 'an unnamed checkpoint'}); compare and audit "
                                  "read it as it is, and a fingerprint of a fingerprint would describe nothing")
    # lazy: numpy and torch (fingerprint/)
    from ..fingerprint.load import fingerprint_checkpoint

    with tensor_progress("fingerprinting", wanted(disabled=args.no_progress)) as on_tensor:
        fingerprint = fingerprint_checkpoint(args.path, on_tensor=on_tensor, cache=not args.no_cache)
    out = fingerprint.save(args.output)
    print(f"wrote {out} ({fingerprint.nbytes() / 1e6:.1f} MB of arrays, {len(fingerprint.records)} canonical tensors)",
          file=sys.stderr)
    for note in fingerprint.notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK
