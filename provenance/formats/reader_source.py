"""What a `TensorSource` reading one file through a `ByteReader` shares, whatever the format.

A format (safetensors, GGUF) says where a tensor's bytes are and how rows
of it are laid out (`row_layout`: a matrix viewed as (-1, last dimension),
each row a run of `row_bytes` bytes), and how bytes become values
(`decode`). This class turns reads of whole tensors, of rows (contiguous rows
make one range) and many of both at once into byte ranges asked of the
reader, and passes on what the reader reads cheaply and fetched
(`reads`, `concurrency`, `transfers`, `transfer_report`, `file_entries`).
Local or remote is the reader's business only.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, Iterator

import numpy as np
import torch

from .base import TensorInfo, TensorSource, TransferCounts
from .byte_reader import ByteReader, transfer_report


class ReaderSource(TensorSource):
    """One file read through a `ByteReader`; subclasses parse the header and decode bytes."""

    def __init__(self, reader: ByteReader, format: str):
        super().__init__(reader.path)  # a local Path, or the remote file (str() gives how errors name it)
        self.format = format
        self.reader = reader
        self.reads = reader.reads  # type: ignore[misc]  # what this file's transport reads cheaply
        self.concurrency = reader.concurrency  # type: ignore[misc]
        self.header_bytes = 0  # bytes fetched before any tensor data (set by the format's header parse)
        self._infos: list[TensorInfo] = []
        self._by_name: dict[str, TensorInfo] = {}

    def set_infos(self, infos: list[TensorInfo]) -> None:
        self._infos = infos
        self._by_name = {info.name: info for info in infos}

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    # -- what a format says ---------------------------------------------------------------------------------

    @abstractmethod
    def data_range(self, name: str) -> tuple[int, int]:
        """(file offset, byte length) of the named tensor's data."""

    @abstractmethod
    def row_bytes(self, name: str) -> int:
        """Bytes of one row of the tensor viewed as (-1, last dimension)."""

    @abstractmethod
    def decode(self, name: str, data: bytes, rows: int | None) -> torch.Tensor:
        """The values of `data`: the whole tensor (`rows` None), or that many rows of it, shaped (rows, last dim)."""

    # -- reads ----------------------------------------------------------------------------------------------

    def read_tensor(self, name: str) -> torch.Tensor:
        offset, length = self.data_range(name)
        return self.decode(name, self.reader.read(offset, length), None)

    def read_rows(self, name: str, rows: np.ndarray) -> torch.Tensor:
        """Rows of the tensor viewed as (-1, last dimension), in the order given (duplicates allowed); only
        those rows' bytes are read."""
        ranges, unique = self._row_ranges(name, rows)
        _, data = next(iter(self.reader.read_many([ranges])))
        return self._picked(name, data, unique, rows)

    def read_many(self, reads: list[tuple[str, np.ndarray | None]]) -> Iterator[tuple[int, torch.Tensor]]:
        """Whole tensors (rows None) and rows, asked of the reader at once (a remote one groups them into few
        range requests: `remote.coalesce`)."""
        plans: list[tuple[list[tuple[int, int]], np.ndarray | None]] = []
        for name, rows in reads:
            if rows is None:
                plans.append(([self.data_range(name)], None))
            else:
                plans.append(self._row_ranges(name, rows))
        for index, data in self.reader.read_many([ranges for ranges, _ in plans]):
            name, rows = reads[index]
            unique = plans[index][1]
            yield index, (self.decode(name, data, None) if unique is None else self._picked(name, data, unique, rows))

    def _row_ranges(self, name: str, rows: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
        info = self._by_name[name]  # KeyError for a name the file does not hold
        if len(info.shape) < 2:
            raise ValueError(f"{name}: rows of a {len(info.shape)}-D tensor")
        total_rows = math.prod(info.shape[:-1])
        offset, _ = self.data_range(name)
        row_bytes = self.row_bytes(name)
        unique, runs = row_runs(name, rows, total_rows)
        return [(offset + a * row_bytes, (b - a) * row_bytes) for a, b in runs], unique

    def _picked(self, name: str, data: bytes, unique: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        block = self.decode(name, data, len(unique))
        return block[torch.from_numpy(np.searchsorted(unique, np.asarray(rows, dtype=np.int64)))]

    # -- what the transport fetched -------------------------------------------------------------------------

    def transfers(self) -> TransferCounts | None:
        return self.reader.transfers()

    def transfer_report(self, since: TransferCounts) -> dict[str, Any]:
        now = self.reader.transfers()
        if now is None:
            return {}
        return transfer_report(since, now, self.header_bytes, self.reader.size)

    def file_entries(self) -> list[dict[str, Any]] | None:
        entry = self.reader.entry()
        return None if entry is None else [entry]

    def files(self) -> list:
        return [self.reader.path]

    def close(self) -> None:
        self.reader.close()


def row_runs(name: str, rows: np.ndarray, total_rows: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The sorted distinct rows asked for, and the runs [a, b) of consecutive ones (one range each)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= total_rows):
        raise IndexError(f"{name}: row outside 0..{total_rows - 1}")
    unique = np.unique(rows)
    runs: list[tuple[int, int]] = []
    for row in unique.tolist():
        if runs and runs[-1][1] == row:
            runs[-1] = (runs[-1][0], row + 1)
        else:
            runs.append((row, row + 1))
    return unique, runs
