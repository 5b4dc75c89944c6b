"""`provenance` command line whose database writes pause inside their transaction (for concurrency tests).

    python -m tests.support.paused_writer SECONDS [RESUME_FILE] -- ARGS...

Runs `provenance ARGS...` with `Registry` wrapped so that each write
transaction of `refs add` / `refs import`, after its rows are inserted and
the revision bumped and before its COMMIT, prints PAUSE_MARKER on stderr and
sleeps SECONDS (less once RESUME_FILE exists). Tests hold a writer there to
kill it mid-write or to read while it writes. The production code has no
hook for this: the wrapper replaces the revision bump, the last statement of
every write transaction of an add.
"""

from __future__ import annotations

import os
import sys
import time

from provenance.cli import main
from provenance.registry.database import Registry

PAUSE_MARKER = "test pause inside the write transaction"


def pause(seconds: float, resume: str | None) -> None:
    print(f"provenance: {PAUSE_MARKER}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (resume and os.path.exists(resume)):
        time.sleep(0.02)


def run(argv: list[str]) -> int:
    split = argv.index("--")
    seconds, resume = float(argv[0]), (argv[1] if split > 1 else None)
    bump = Registry._bump

    def bump_then_pause(self) -> None:
        bump(self)
        pause(seconds, resume)

    Registry._bump = bump_then_pause
    return main(argv[split + 1:])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
