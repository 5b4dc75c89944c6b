"""The files of `provenance scan`: the candidate list it reads, and the JSON Lines output it appends to.

Output (one line per candidate, appended in completion order):

    {"candidate": C, "status": "ok", "audit": <provenance.audit/1 object>, "seconds": s, "finished": iso}
    {"candidate": C, "status": "error", "error": "<one-line message>", "seconds": s, "finished": iso}

Each line is written whole by one `os.write` on an O_APPEND descriptor
followed by `fsync`, and only by the parent process, so a killed run leaves
at most a partial last line (no newline); `read_output` cuts it off before
the next run appends. Resume: `read_output` gives every candidate's latest
outcome, which the scan skips.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterable

from ..errors import ScanError
from .summary import Outcome


def read_candidate_list(path: str) -> list[str]:
    """One candidate (path or URL) per line; blank lines and lines starting with `#` are skipped; `-` is stdin."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScanError(path, "candidate list not found") from None
    except IsADirectoryError:
        raise ScanError(path, "candidate list is a directory, expected a text file with one path per line") from None
    except UnicodeDecodeError:
        raise ScanError(path, "candidate list is not UTF-8 text") from None
    except OSError as exc:
        raise ScanError(path, f"cannot read candidate list: {exc.strerror or exc}") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def unique(candidates: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(candidates))


def read_output(path: Path) -> tuple[dict[str, Outcome], int]:
    """The outcome of every candidate already in OUT (the last line wins), and the number of bytes of a
    partial last line that was cut off (left by a killed run)."""
    outcomes: dict[str, Outcome] = {}
    if not path.exists():
        return outcomes, 0
    try:
        handle = open(path, "r+b")
    except OSError as exc:
        raise ScanError(path, f"cannot open the output file: {exc.strerror or exc}") from None
    with handle:
        offset = 0
        for number, line in enumerate(handle, 1):
            if not line.endswith(b"\n"):  # only a killed write leaves a line without its newline
                handle.truncate(offset)
                os.fsync(handle.fileno())
                return outcomes, len(line)
            offset += len(line)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise ScanError(path, f"line {number} is not JSON; is this a scan output file?") from None
            if not isinstance(record, dict) or not isinstance(record.get("candidate"), str) \
                    or record.get("status") not in ("ok", "error"):
                raise ScanError(path, f"line {number} is not a scan record (needs candidate and status ok/error)")
            outcomes[record["candidate"]] = Outcome.of(record)
    return outcomes, 0


class LineWriter:
    """Appends records to OUT, one whole line per `os.write` (O_APPEND), each followed by fsync."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ScanError(path, f"cannot write the output file: {exc.strerror or exc}") from None

    def write(self, record: dict) -> None:
        data = memoryview((json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8"))
        while data:  # one write for a regular file; the loop only guards against a short write
            data = data[os.write(self._fd, data):]
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
