"""The one small interface every checkpoint format implements.

A `TensorSource` first lists its tensors (name, shape, dtype, byte size)
without reading any tensor data, then reads one tensor at a time on request.
Nothing here ever holds more than the tensor being read.

A source also says what it reads cheaply (`reads`): whole tensors (a local
file) or blocks of rows by range (a file read over HTTP, where fetching a
whole matrix costs what its bytes cost). The fingerprint builder computes
every part of a fingerprint that this allows; it learns from the source, not
from where the file lives, how many reads to keep in flight (`concurrency`)
and what the reads fetched (`transfers`, `transfer_report`).
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import torch

from ..errors import CorruptFileError, UnreadablePathError


@dataclass(frozen=True)
class TensorInfo:
    """What is known about a stored tensor before its data is read."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # storage dtype as the format names it: "BF16", "F32", "Q4_K", ...
    nbytes: int
    file: str  # the file holding the data

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class Reads(str, Enum):
    """What a tensor source reads cheaply."""

    WHOLE_TENSORS = "whole-tensors"  # every tensor whole, one after another (local files)
    ROW_BLOCKS = "row-blocks"  # runs of rows by range request; a whole matrix costs its bytes (remote files)


# (bytes, requests, retries) fetched so far: a reading of a transport's counters (`TensorSource.transfers`)
TransferCounts = tuple[int, int, int]


@dataclass
class TensorSource(ABC):
    """A checkpoint file (or set of files) whose tensors can be read one by one."""

    path: Path
    format: str = field(init=False, default="")
    reads: ClassVar[Reads] = Reads.WHOLE_TENSORS
    concurrency: ClassVar[int] = 1  # reads worth having in flight at once (several across a network)

    @abstractmethod
    def tensor_infos(self) -> list[TensorInfo]:
        """Every tensor, in storage order, without reading data."""

    @abstractmethod
    def read_tensor(self, name: str) -> torch.Tensor:
        """The named tensor's values (a fresh tensor owned by the caller)."""

    def read_tensor_into(self, name: str, buffer: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The named tensor, read into `buffer` (a flat uint8 tensor) where the format can.

        Returns the tensor and the buffer to pass next time (grown if it was too
        small). The tensor may be a view of the buffer: it is valid until the
        buffer is reused. Formats that cannot read into a buffer return a fresh
        tensor, as `read_tensor` does. Reusing one buffer spares the page faults
        of a fresh allocation per tensor (about as costly as reading it warm).
        """
        return self.read_tensor(name), buffer

    def read_rows(self, name: str, rows: np.ndarray) -> torch.Tensor:
        """Rows of the named tensor viewed as (-1, last dimension), in the order given (duplicates allowed).

        A source that reads `Reads.ROW_BLOCKS` fetches only those rows; this
        default reads the whole tensor and picks them.
        """
        tensor = self.read_tensor(name)
        if tensor.dim() < 2:
            raise ValueError(f"{name}: rows of a {tensor.dim()}-D tensor")
        return tensor.reshape(-1, tensor.shape[-1])[torch.from_numpy(np.asarray(rows, dtype=np.int64))]

    def reads_transposed_rows(self, name: str) -> bool:
        """True when the rows of the named tensor's last two dimensions swapped (its columns) are stored
        contiguously, so that `read_many_transposed` fetches them by range (gpt-oss's stacked MXFP4 experts,
        whose float layout [experts, in, out] is stored [experts, out, in/32, 16])."""
        return False

    def read_many_transposed(self, reads: list[tuple[str, np.ndarray]]) -> Iterator[tuple[int, torch.Tensor]]:
        """`read_many` of rows of each tensor with its last two dimensions swapped, viewed as (-1, its
        second-to-last dimension): a stacked tensor [E, in, out] as [E * out, in]. This default reads whole."""
        for index, (name, rows) in enumerate(reads):
            tensor = self.read_tensor(name).transpose(-1, -2)
            yield index, tensor.reshape(-1, tensor.shape[-1])[torch.from_numpy(np.asarray(rows, dtype=np.int64))]

    def read_many(self, reads: list[tuple[str, np.ndarray | None]]) -> Iterator[tuple[int, torch.Tensor]]:
        """Many reads at once: each (name, rows as for `read_rows`, or None for the whole tensor), handed back as
        (its index in `reads`, the tensor) in any order. Remote sources group them into few range requests
        (`remote.coalesce`); this default reads them one by one, keeping `concurrency` reads in flight (a remote
        GGUF file's row reads, say), never more: memory stays at that many tensors."""
        def one(index: int) -> tuple[int, torch.Tensor]:
            name, rows = reads[index]
            return index, self.read_tensor(name) if rows is None else self.read_rows(name, rows)

        if self.concurrency <= 1:
            for index in range(len(reads)):
                yield one(index)
            return
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            pending: deque = deque()
            for index in range(len(reads)):
                pending.append(pool.submit(one, index))
                if len(pending) >= self.concurrency:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def transfers(self) -> TransferCounts | None:
        """The counters of the transport this source reads through, now; None for local files."""
        return None

    def transfer_report(self, since: TransferCounts) -> dict[str, Any]:
        """What reading fetched since the reading `since` of `transfers()` (bytes, requests, ...); {} for local files."""
        return {}

    def file_entries(self) -> list[dict[str, Any]] | None:
        """How a fingerprint lists the files read, when they are not local paths (name, url, bytes); else None."""
        return None

    def metadata(self) -> dict[str, Any]:
        """Format-level key/value metadata (GGUF keys, safetensors __metadata__)."""
        return {}

    def files(self) -> list[Path]:
        """The files this source reads tensor data from."""
        return [self.path]

    def close(self) -> None:
        """Release any open handles."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def reusable(buffer: torch.Tensor | None, nbytes: int) -> torch.Tensor:
    """`buffer` if it holds `nbytes` bytes, else a new uint8 buffer of that size (for `read_tensor_into`)."""
    if buffer is None or buffer.numel() < nbytes:
        buffer = torch.empty(nbytes, dtype=torch.uint8)
    return buffer


def read_bytes_into(path: Path, offset: int, nbytes: int, buffer: torch.Tensor | None,
                    name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`nbytes` bytes of `path` from `offset`, read into `buffer` (grown if too small): (the bytes, the buffer).

    Plain `readinto` calls, as `cat` reads: no memory map, so no page faults
    and no mapped pages left resident. `name` is the tensor, for errors.
    """
    buffer = reusable(buffer, nbytes)
    data = buffer[:nbytes]
    if nbytes == 0:  # a zero-sized tensor: nothing to read (memoryview cannot view an empty array)
        return data, buffer
    view = memoryview(data.numpy())
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            filled = 0
            while filled < nbytes:
                count = handle.readinto(view[filled:])
                if not count:
                    raise CorruptFileError(path, f"tensor {name!r}: file ends {nbytes - filled} bytes before the "
                                                 "tensor's data does (truncated since it was opened?)")
                filled += count
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read tensor {name!r}: {exc.strerror or exc}") from exc
    return data, buffer
