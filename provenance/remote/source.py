"""Remote safetensors checkpoints as `TensorSource`s: headers validated, then tensors or rows by range.

A remote `.safetensors` file is read as: 8 bytes (the header length, checked
against the cap and the file size), the header (validated by the same code as
a local file: `formats.safetensors_format.parse_safetensors_header`), then
only the byte ranges asked for: whole tensors (`read_tensor`) or rows
(`read_rows`, contiguous rows cost one range each), or many of both at once
(`read_many`: grouped into few large range requests by `coalesce.py`).

A sharded checkpoint is its index `.json` plus the shards it names, which
must be plain file names beside the index (no folders, no other hosts), like
the local rule that shards stay inside the checkpoint directory.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..errors import CorruptFileError, UnsupportedError
from ..formats.base import Reads, TensorInfo, TensorSource, TransferCounts
from ..formats.limits import MAX_JSON_BYTES, DuplicateKeyError, reject_duplicate_keys
from ..formats.multi import MultiFileSource, checked_weight_map, open_shards
from ..formats.safetensors_format import (check_header_length, parse_safetensors_header, tensor_from_bytes,
                                          torch_dtype_for)
from .coalesce import Read, fetch_coalesced
from .http import CONCURRENCY, TRANSFERS, RemoteFile


class RemoteSource:
    """What every remote source shares: it reads row blocks by range, reports its transfers, owns side files.

    `transfers` reads the process-wide counters of `http.TRANSFERS`, so two
    builds running at once in one process see each other's bytes.
    """

    reads = Reads.ROW_BLOCKS
    concurrency = CONCURRENCY
    index_file: RemoteFile | None = None  # a sharded checkpoint's index (not a weights file)

    def transfers(self) -> TransferCounts:
        return TRANSFERS.snapshot()

    def transfer_report(self, since: TransferCounts) -> dict[str, Any]:
        """Bytes of the weight files fetched since `since`: headers plus tensor data (side files such as the
        tokenizer not counted), the requests and retries it took, and the share of the checkpoint it was."""
        now = TRANSFERS.snapshot()
        checkpoint_bytes = sum(f.size or 0 for f in self.weight_files())
        read = now[0] - since[0] + self.header_bytes
        return {"bytes_read": read, "header_bytes": self.header_bytes, "tensor_requests": now[1] - since[1],
                "retries": now[2] - since[2], "checkpoint_bytes": checkpoint_bytes,
                "fraction_read": round(read / checkpoint_bytes, 6) if checkpoint_bytes else None}

    def file_entries(self) -> list[dict[str, Any]]:
        index = self.index_file
        return (([{"name": index.name, "url": index.url}] if index is not None else [])
                + [{"name": f.name, "url": f.url, "bytes": f.size} for f in self.weight_files()])

    def weight_files(self) -> list[RemoteFile]:
        return [f for f in self.files() if f is not self.index_file]

    def open_file(self, file: RemoteFile, format: str, first_read: int) -> bytes:
        """Set this source up on one remote file; returns the file's first `first_read` bytes."""
        TensorSource.__init__(self, file)  # `path` is the RemoteFile (str() gives its URL)
        self.format = format
        self.file = file
        self._cleanups: list[Callable[[], None]] = []
        prefix = file.read(0, first_read)
        if file.size is None:
            raise CorruptFileError(file, "the server did not say how large the file is (no Content-Range total)")
        return prefix

    def on_close(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def run_cleanups(self) -> None:
        while self._cleanups:
            self._cleanups.pop()()


class RemoteSafetensorsFile(RemoteSource, TensorSource):
    """One remote .safetensors file; nothing beyond its header is fetched until asked for."""

    def __init__(self, file: RemoteFile):
        prefix = self.open_file(file, "safetensors", 8)
        header_len = check_header_length(file, prefix, file.size)
        raw = file.read(8, 8 + header_len)
        self._infos, self._metadata, self._offsets = parse_safetensors_header(file, raw, file.size)
        self._data_start = 8 + header_len
        self._by_name = {info.name: info for info in self._infos}

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def _dtype(self, info: TensorInfo) -> torch.dtype:
        dtype = torch_dtype_for(info.dtype)
        if dtype is None:
            raise UnsupportedError(self.file, f"tensor {info.name!r}: dtype {info.dtype} cannot be decoded remotely")
        return dtype

    def read_tensor(self, name: str) -> torch.Tensor:
        info = self._by_name[name]
        begin, end = self._offsets[name]
        data = self.file.read(self._data_start + begin, self._data_start + end)
        return _decode(data, self._dtype(info), info.dtype, info.shape)

    def read_rows(self, name: str, rows: np.ndarray) -> torch.Tensor:
        """Rows of the tensor viewed as (-1, last dimension), in the order given (duplicates allowed)."""
        info = self._by_name[name]
        dtype = self._dtype(info)
        if len(info.shape) < 2:
            raise ValueError(f"{name}: rows of a {len(info.shape)}-D tensor")
        columns = info.shape[-1]
        total_rows = math.prod(info.shape[:-1])
        row_bytes = columns * torch.empty((), dtype=dtype).element_size()
        base = self._data_start + self._offsets[name][0]
        unique, data = read_row_bytes(self.file, name, rows, total_rows, base, row_bytes)
        block = _decode(data, dtype, info.dtype, (len(unique), columns))
        return block[torch.from_numpy(np.searchsorted(unique, rows))]

    def read_many(self, reads: list[tuple[str, np.ndarray | None]]) -> Iterator[tuple[int, torch.Tensor]]:
        """Whole tensors (rows None) and rows, grouped into few range requests (`coalesce.fetch_coalesced`)."""
        plans = []
        for name, rows in reads:
            info = self._by_name[name]
            begin, end = self._offsets[name]
            base = self._data_start + begin
            if rows is None:
                plans.append((Read(((base, self._data_start + end),)), None, info.shape))
                continue
            if len(info.shape) < 2:
                raise ValueError(f"{name}: rows of a {len(info.shape)}-D tensor")
            columns = info.shape[-1]
            row_bytes = columns * torch.empty((), dtype=self._dtype(info)).element_size()
            unique, runs = row_runs(name, rows, math.prod(info.shape[:-1]))
            plans.append((Read(tuple((base + a * row_bytes, base + b * row_bytes) for a, b in runs)),
                          (unique, np.asarray(rows, dtype=np.int64)), (len(unique), columns)))
        for index, data in fetch_coalesced([plan[0] for plan in plans], self.file.read_ranges):
            name = reads[index][0]
            _, picked, shape = plans[index]
            tensor = _decode(data, self._dtype(self._by_name[name]), self._by_name[name].dtype, tuple(shape))
            if picked is not None:
                unique, rows = picked
                tensor = tensor[torch.from_numpy(np.searchsorted(unique, rows))]
            yield index, tensor

    @property
    def header_bytes(self) -> int:
        """Bytes fetched before any tensor data: the length prefix and the header."""
        return self._data_start

    def files(self) -> list:
        return [self.file]

    def close(self) -> None:
        self.run_cleanups()


class RemoteShardedSource(RemoteSource, MultiFileSource):
    """Remote shards named by a remote index; rows are read from the shard that holds the tensor."""

    def __init__(self, index: RemoteFile, shards: list[RemoteSafetensorsFile], weight_map: dict[str, str] | None):
        # MultiFileSource checks duplicates and the index against the shards; its `path` is made a Path,
        # which would mangle a URL, so it is set to the index file afterwards.
        super().__init__(Path("."), shards, "safetensors", index_path=index, weight_map=weight_map)
        self.path = index
        self.index_file = index
        self._holder = {info.name: shard for shard in shards for info in shard.tensor_infos()}
        self._cleanups: list[Callable[[], None]] = []

    def read_rows(self, name: str, rows: np.ndarray) -> torch.Tensor:
        return self._holder[name].read_rows(name, rows)

    def read_many(self, reads: list[tuple[str, np.ndarray | None]]) -> Iterator[tuple[int, torch.Tensor]]:
        """Each shard's reads grouped into its own few range requests."""
        by_shard: dict[int, list[int]] = {}
        for index, (name, _) in enumerate(reads):
            by_shard.setdefault(id(self._holder[name]), []).append(index)
        for indices in by_shard.values():
            shard = self._holder[reads[indices[0]][0]]
            for position, tensor in shard.read_many([reads[i] for i in indices]):
                yield indices[position], tensor

    @property
    def header_bytes(self) -> int:
        return sum(shard.header_bytes for shard in self.shards)

    def close(self) -> None:
        MultiFileSource.close(self)
        self.run_cleanups()


def read_row_bytes(file: RemoteFile, name: str, rows: np.ndarray, total_rows: int, base: int,
                   row_bytes: int) -> tuple[np.ndarray, bytes]:
    """The sorted distinct rows asked for and their bytes, rows of `row_bytes` bytes each from offset `base`.

    Consecutive rows make one range; ranges are fetched concurrently (`RemoteFile.read_ranges`).
    """
    unique, runs = row_runs(name, rows, total_rows)
    blobs = file.read_ranges([(base + a * row_bytes, base + b * row_bytes) for a, b in runs])
    return unique, b"".join(blobs)


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


def _decode(data: bytes, dtype: torch.dtype, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not data:
        return torch.empty(shape, dtype=dtype)
    return tensor_from_bytes(torch.frombuffer(bytearray(data), dtype=torch.uint8), name, shape)


def parse_index(index: RemoteFile) -> dict[str, str]:
    """The weight_map of a remote sharded index, validated like a local one."""
    raw = index.read_small(MAX_JSON_BYTES["index"])
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=reject_duplicate_keys)
    except UnicodeDecodeError as exc:
        raise CorruptFileError(index, f"not UTF-8 text (byte {exc.start})") from exc
    except DuplicateKeyError as exc:  # the local index reader's rule (formats.limits)
        raise CorruptFileError(index, f"names {exc.args[0]!r} twice in one JSON object") from exc
    except (ValueError, RecursionError) as exc:
        raise CorruptFileError(index, f"not valid JSON: {exc}") from exc
    weight_map = checked_weight_map(index, data)
    for shard in set(weight_map.values()):
        if not shard or shard in (".", "..") or any(c in shard for c in "/\\?#:") or not shard.endswith(".safetensors"):
            raise CorruptFileError(index, f"index names shard {shard!r}; remote shards must be .safetensors files beside the index")
    return weight_map


def open_sharded(index: RemoteFile, sibling: Callable[[str], RemoteFile]) -> RemoteShardedSource:
    weight_map = parse_index(index)
    names = list(dict.fromkeys(weight_map.values()))
    shards = open_shards(names, lambda name: RemoteSafetensorsFile(sibling(name)), index)  # same tensor cap as local
    return RemoteShardedSource(index, shards, weight_map)


def side_directory_cleanup(directory: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(directory, ignore_errors=True)
