"""Argument pieces several commands share: locations, --hub, --deadline, progress, --fail-on, --refs.

Each command module adds its own options with these; nothing here reads
a file or imports a heavy library, so building the parser stays instant.
"""

from __future__ import annotations

import argparse

from ..gate import FAIL_ON_NAMES, parse_fail_on
from ..remote.budget import DEADLINE_HELP
from ..remote.locate import LOCATION_HELP

CI_FORMATS = ("github", "junit", "sarif")  # provenance/report/ci_formats.py
FAIL_ON_HELP = (f"comma-separated names that make the exit code 3, any case: {', '.join(FAIL_ON_NAMES)} "
                "(abstained: no decision was reached; error: scan, a candidate could not be audited), "
                "e.g. identical,derived,assembled")
REFS_HELP = "reference database path (default: $PROVENANCE_REFS or ~/.local/share/provenance/refs.sqlite)"


def add_location(parser: argparse.ArgumentParser, dest: str, metavar: str, local_only: bool = False) -> None:
    """A PATH argument (LOCATION_HELP lists what it may be) and --revision for a repo id or hf:// location."""

    parser.add_argument(dest, metavar=metavar, help=LOCATION_HELP + ("; read from local files only" if local_only else ""))
    parser.add_argument("--revision", metavar="REV", help="branch, tag or commit of a repo id ORG/NAME or hf:// location")
    if not local_only:
        add_hub(parser)


def add_hub(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", action="store_true", help="read a repo id ORG/NAME that is neither a local path nor in "
                        "the local Hugging Face cache from the hub (without it, such a name is a missing local path "
                        "and nothing goes to the network; hf://ORG/NAME always reads the hub)")


def add_deadline(parser: argparse.ArgumentParser, dest: str = "deadline", help: str = DEADLINE_HELP) -> None:
    parser.add_argument("--deadline", dest=dest, type=positive_seconds, metavar="SECONDS", help=help)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (one is drawn on stderr only when it is a terminal)")
    parser.add_argument("--no-cache", action="store_true",  # provenance/fingerprint/cache.py
                        help="fingerprint checkpoints anew, without reading or writing the fingerprint cache "
                             "($PROVENANCE_CACHE, default the user cache folder)")


def add_fail_on(parser: argparse.ArgumentParser, help: str = FAIL_ON_HELP) -> None:
    parser.add_argument("--fail-on", type=fail_on_names, default=set(), metavar="VERDICTS", help=help)


def fail_on_names(text: str | None) -> frozenset[str]:
    """--fail-on NAMES (provenance/gate.py: the verdicts, abstained, error; any case)."""
    try:
        return parse_fail_on(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
