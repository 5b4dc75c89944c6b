"""Byte ranges of one file: the small interface every format's reader parses and reads through.

A format parses its header and reads its tensors from a `ByteReader`
(`size`, `read`, `read_many`), never from a path, so the same parser and the
same tensor reads serve a local file (`LocalFile`, here) and a remote one
(`remote.byte_ranges.HttpFile`: HTTP Range requests); remote reading is then
only transport. This is how safetensors itself is built (one parser run
over several I/O backends).

A reader also says what it reads cheaply (`reads`, `concurrency`) and what
it fetched (`transfers`, `entry`), which the tensor sources built on it pass
on through `TensorSource`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ..errors import CorruptFileError, UnreadablePathError
from .base import Reads, TransferCounts, read_bytes_into, reusable

# One read of `read_many`: byte ranges (offset, length) whose bytes are joined in this order.
Ranges = Sequence[tuple[int, int]]


class ByteReader(ABC):
    """One file's bytes by offset: its size, single reads, and many reads at once."""

    reads: Reads = Reads.WHOLE_TENSORS  # what a tensor source over this reader reads cheaply
    concurrency: int = 1  # reads worth keeping in flight at once

    @property
    @abstractmethod
    def path(self) -> Any:
        """What the file is called: a local Path, or a remote file (whose str() is how errors name it)."""

    @property
    @abstractmethod
    def size(self) -> int:
        """The file's size in bytes."""

    @abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length): fewer only where the file ends first."""

    def read_many(self, reads: list[Ranges]) -> Iterator[tuple[int, bytes]]:
        """(index in `reads`, the joined bytes of its ranges) for every read, in any order.

        This default reads them one after another; a remote reader groups
        them into few requests.
        """
        for index, ranges in enumerate(reads):
            yield index, b"".join(self.read(offset, length) for offset, length in ranges)

    def read_into(self, offset: int, length: int, buffer: torch.Tensor | None,
                  name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """`length` bytes from `offset` into `buffer` (a flat uint8 tensor, grown if too small): (bytes, buffer).

        `name` is the tensor, for errors. This default copies what `read` returns.
        """
        data = self.read(offset, length)
        if len(data) != length:
            raise CorruptFileError(self.path, f"tensor {name!r}: file ends {length - len(data)} bytes before the "
                                              "tensor's data does (truncated since it was opened?)")
        buffer = reusable(buffer, length)
        if length:
            buffer[:length] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return buffer[:length], buffer

    def transfers(self) -> TransferCounts | None:
        """The transport's counters (bytes, requests, retries) now; None for a local file."""
        return None

    def entry(self) -> dict[str, Any] | None:
        """How a fingerprint lists this file when it is not a local path (name, url, bytes); None for a local file."""
        return None

    def close(self) -> None:
        """Release what the reader holds."""


class LocalFile(ByteReader):
    """A local file read with plain reads at an offset (`seek`, `readinto`): no memory map.

    A memory map would leave every page a pass touched mapped (the process
    would end up holding the whole model) and fault each page in; plain reads
    copy into memory the caller owns, as `cat` reads. The file is opened for
    each read, so no handle outlives a read (a sharded checkpoint may have
    thousands of files).
    """

    def __init__(self, path: Path):
        self._path = Path(path)
        try:
            if not self._path.is_file():
                raise UnreadablePathError(self._path, "cannot read: not a regular file (missing, a directory, or a "
                                                      "dangling symlink)")
            self._size = self._path.stat().st_size
        except OSError as exc:
            raise UnreadablePathError(self._path, f"cannot read: {exc.strerror or exc}") from exc

    @property
    def path(self) -> Path:
        return self._path

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            with open(self._path, "rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        except OSError as exc:
            raise UnreadablePathError(self._path, f"cannot read: {exc.strerror or exc}") from exc

    def read_into(self, offset: int, length: int, buffer: torch.Tensor | None,
                  name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return read_bytes_into(self._path, offset, length, buffer, name)


def transfer_report(since: TransferCounts, now: TransferCounts, header_bytes: int,
                    checkpoint_bytes: int) -> dict[str, Any]:
    """What reading fetched between two readings of a transport's counters (`TensorSource.transfer_report`).

    Bytes of the weight files: headers plus tensor data (side files such as
    the tokenizer not counted), the requests and retries it took, and the
    share of the checkpoint it was.
    """
    read = now[0] - since[0] + header_bytes
    return {"bytes_read": read, "header_bytes": header_bytes, "tensor_requests": now[1] - since[1],
            "retries": now[2] - since[2], "checkpoint_bytes": checkpoint_bytes,
            "fraction_read": round(read / checkpoint_bytes, 6) if checkpoint_bytes else None}
