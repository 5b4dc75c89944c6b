"""A remote file as a `formats.byte_reader.ByteReader`: the formats' own parsers and reads, over HTTP Range.

Every format reads a remote file exactly as a local one (the same header
parse, the same checks, the same tensor and row reads); this module is only
the transport under them:
- `read` is one range request (`http.RemoteFile.read`: retries and resumes,
  the deadlines and minimum rate of `budget.py`, the file's first version
  pinned with If-Match / If-Range, `FileChangedError` when it changes);
- `read_many` groups every range of a batch of reads into few large range
  requests, fetched several at a time (`coalesce.fetch_coalesced` over
  `RemoteFile.read_ranges`), with memory bounded as that module says;
- the counters of `http.TRANSFERS` (process-wide: two builds running at once
  in one process see each other's bytes) say what was fetched.
The size is the total the server gives in its first answer (Content-Range);
a server that gives none is refused, as a file of unknown size cannot have
its header's offsets checked.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..errors import CorruptFileError
from ..formats.base import Reads, TransferCounts
from ..formats.byte_reader import ByteReader, Ranges
from .coalesce import Read, fetch_coalesced
from .http import CONCURRENCY, TRANSFERS, RemoteFile


class HttpFile(ByteReader):
    """One remote file's bytes by HTTP Range requests."""

    reads = Reads.ROW_BLOCKS  # a whole matrix costs its bytes: fingerprints sample rows
    concurrency = CONCURRENCY

    def __init__(self, file: RemoteFile):
        self.file = file

    @property
    def path(self) -> RemoteFile:
        return self.file

    @property
    def size(self) -> int:
        if self.file.size is None and self.file.pinned is None:
            self.file.read(0, 1)  # the first answer gives the total (formats read a prefix first: not reached)
        if self.file.size is None:
            raise CorruptFileError(self.file, "the server did not say how large the file is (no Content-Range total)")
        return self.file.size

    def read(self, offset: int, length: int) -> bytes:
        return self.file.read(offset, offset + length)

    def read_many(self, reads: list[Ranges]) -> Iterator[tuple[int, bytes]]:
        wanted = [Read(tuple((offset, offset + length) for offset, length in ranges)) for ranges in reads]
        return fetch_coalesced(wanted, self.file.read_ranges)

    def transfers(self) -> TransferCounts:
        return TRANSFERS.snapshot()

    def entry(self) -> dict[str, Any]:
        return {"name": self.file.name, "url": self.file.url, "bytes": self.file.size}
