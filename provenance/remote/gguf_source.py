"""A remote `.gguf` file as a `TensorSource`: the header by growing prefixes, then rows of blocks by range.

What is read:
- the header: the first 512 KiB, then twice as much each time the walk of
  `formats.gguf_header.gguf_data_start` (the same checks as a local file,
  against the whole file's size) says the header runs past what is at hand,
  up to `MAX_HEADER_BYTES`;
- tensor infos and metadata: parsed by the local reader (`GgufFile`) from a
  sparse temporary file holding those header bytes at offset 0 and nothing
  else (its length is the remote file's, so the reader's offset checks
  hold, and no tensor byte is ever written to it); it is deleted on close;
- tensor data: for a matrix, only the rows asked for (GGUF quantizes along
  the innermost dimension, so a row is a whole number of blocks and its
  bytes are contiguous: one range per run of consecutive rows), dequantized
  by `formats.gguf_format.dequantize_values`, the local reader's decoder;
  1-D tensors whole.
llama.cpp's row permutation of Q and K (RoPE) is undone by the
architecture layer as for a local GGUF: `fingerprint.row_blocks.stored_rows`
runs the same transform on row numbers, so the rows fetched are the stored
rows holding the canonical rows of the sample.

Not handled: GGUF files split in several parts (`-00001-of-0000N.gguf`), and
big-endian files (refused with a message).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES

from ..errors import CorruptFileError, ProvenanceError, UnsupportedError
from ..formats.base import TensorInfo, TensorSource
from ..formats.gguf_format import GgufFile, dequantize_values
from ..formats.gguf_header import HeaderIncomplete, gguf_data_start
from .http import RemoteFile
from .source import RemoteSource, read_row_bytes

FIRST_READ = 512 << 10
MAX_HEADER_BYTES = 256 << 20  # Gemma-3's 262,144-token vocabulary takes a few MB; this leaves ample room


class RemoteGgufFile(RemoteSource, TensorSource):
    """One remote .gguf file; nothing beyond its header is fetched until asked for."""

    def __init__(self, file: RemoteFile):
        prefix = self.open_file(file, "gguf", FIRST_READ)
        if len(prefix) >= 8 and prefix[:4] == b"GGUF" and prefix[4:6] == b"\0\0" and prefix[6:8] != b"\0\0":
            raise UnsupportedError(file, "big-endian GGUF files are read from local files only")
        while True:
            try:
                self._data_start = gguf_data_start(file, prefix, file.size)
                break
            except HeaderIncomplete as more:
                if more.needed > MAX_HEADER_BYTES:
                    raise CorruptFileError(file, f"GGUF header is over {more.needed} bytes, past the "
                                                 f"{MAX_HEADER_BYTES}-byte limit for remote reading") from None
                end = min(file.size, MAX_HEADER_BYTES, max(more.needed, 2 * len(prefix)))
                prefix += file.read(len(prefix), end)
        self._header_bytes = len(prefix)
        self._local = self._parse(prefix[:self._data_start], file.size)
        self._infos = [TensorInfo(i.name, i.shape, i.dtype, i.nbytes, str(file)) for i in self._local.tensor_infos()]
        self._by_name = {info.name: info for info in self._infos}

    def _parse(self, header: bytes, size: int) -> GgufFile:
        handle, name = tempfile.mkstemp(prefix="provenance-remote-", suffix=".gguf")
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(header)
                out.truncate(size)  # sparse: the tensor data is never written, only its length
            local = GgufFile(path)
        except ProvenanceError as exc:
            path.unlink(missing_ok=True)
            raise type(exc)(self.file, exc.problem) from exc  # name the URL, not the temporary file
        except OSError as exc:  # e.g. a claimed size past what the file system allows
            path.unlink(missing_ok=True)
            raise UnsupportedError(self.file, f"the header cannot be staged in a temporary file of "
                                              f"{size} bytes: {exc.strerror or exc}") from exc
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self.on_close(lambda: path.unlink(missing_ok=True))
        return local

    @property
    def header_bytes(self) -> int:
        """Bytes fetched before any tensor data (the header, plus what the last prefix read past it)."""
        return self._header_bytes

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def metadata(self) -> dict[str, Any]:
        return self._local.metadata()

    def _row_layout(self, name: str) -> tuple[int, Any, int, int]:
        """(file offset of the data, ggml type, bytes per row, rows) of a tensor viewed as (-1, last dim)."""
        info = self._by_name[name]
        offset, qtype = self._local.data_layout(name)
        block, type_size = GGML_QUANT_SIZES[qtype]
        columns = info.shape[-1] if info.shape else 1
        return offset, qtype, columns // block * type_size, math.prod(info.shape[:-1]) if info.shape else 1

    def read_tensor(self, name: str) -> torch.Tensor:
        info = self._by_name[name]
        offset, qtype, row_bytes, rows = self._row_layout(name)
        data = np.frombuffer(self.file.read(offset, offset + rows * row_bytes), dtype=np.uint8)
        values = dequantize_values(data.reshape(rows, row_bytes), qtype, self.file, name)
        return torch.from_numpy(values.reshape(info.shape).copy())

    def read_rows(self, name: str, rows: np.ndarray) -> torch.Tensor:
        """Rows of the tensor viewed as (-1, last dimension), in the order given (duplicates allowed)."""
        info = self._by_name[name]
        if len(info.shape) < 2:
            raise ValueError(f"{name}: rows of a {len(info.shape)}-D tensor")
        offset, qtype, row_bytes, total_rows = self._row_layout(name)
        unique, data = read_row_bytes(self.file, name, rows, total_rows, offset, row_bytes)
        raw = np.frombuffer(data, dtype=np.uint8).reshape(len(unique), row_bytes)
        block = torch.from_numpy(dequantize_values(raw, qtype, self.file, name).reshape(len(unique), info.shape[-1]).copy())
        return block[torch.from_numpy(np.searchsorted(unique, np.asarray(rows, dtype=np.int64)))]

    def files(self) -> list:
        return [self.file]

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        self.run_cleanups()
