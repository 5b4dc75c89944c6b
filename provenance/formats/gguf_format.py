"""GGUF files (llama.cpp): the header walked by `gguf_header`, tensor data read through a `ByteReader`.

GGUF lists dimensions innermost first (ggml order); we report and return
shapes in PyTorch order (outermost first), so a Q projection of a model with
hidden size 576 is (576, 576) here as in the Hugging Face checkpoint. F32 and
F16 tensors are returned as stored (no conversion); every other type is
returned dequantized to float32 by gguf's public `gguf.quants.dequantize`.

The header is parsed in the project (`gguf_header.read_gguf_header`), not by
`gguf.GGUFReader`, which needs a path or a memory map: the same parse then
serves a local file and a remote one (HTTP ranges), with every declared size
checked before it is trusted. gguf's public tables give the types and block
sizes (`GGMLQuantizationType`, `GGML_QUANT_SIZES`).

Rows: GGUF quantizes along the innermost dimension, so a row of a matrix
viewed as (-1, last dimension) is a whole number of blocks and its bytes are
contiguous; a row sample (a remote fingerprint) fetches only those rows.

Layout differences that depend on the architecture (llama.cpp's row
permutation of Q and K) are undone by the architecture layer, which knows the
head counts; this module only reads bytes.

Files written on a big-endian machine: plain types (F32, F16, F64, integers)
are read byte-swapped; quantized types are refused, since gguf's dequantizers
read their scales as little-endian.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CorruptFileError, UnsupportedError
from .base import TensorInfo
from .byte_reader import ByteReader, LocalFile
from .gguf_header import read_gguf_header
from .reader_source import ReaderSource

# Types stored as plain values (no blocks): numpy type of each.
PLAIN_TYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "I16": np.int16,
               "I32": np.int32, "I64": np.int64}
AS_STORED = ("F32", "F16")  # returned in their own dtype, not converted to float32


def dequantize_values(data: np.ndarray, tensor_type: Any, where: object, name: str, order: str = "<") -> np.ndarray:
    """float32 values of one tensor's data (or of whole rows of it) in ggml type `tensor_type`.

    `data` is raw bytes (uint8, one row of blocks per row); `order` is the
    file's byte order ("<" or ">").
    """
    from gguf.quants import dequantize  # lazy: gguf costs 125 ms, only for .gguf files

    try:
        plain = PLAIN_TYPES.get(tensor_type.name)
        if plain is not None:
            values = data.view(np.dtype(plain).newbyteorder(order)).astype(np.float32)
        elif order != "<":
            raise UnsupportedError(where, f"tensor {name!r}: {tensor_type.name} blocks of a big-endian GGUF file "
                                          "cannot be dequantized")
        else:
            values = dequantize(data, tensor_type)
    except NotImplementedError as exc:
        raise UnsupportedError(where, f"tensor {name!r}: quantization type {tensor_type.name} cannot be dequantized") from exc
    except (ValueError, TypeError) as exc:
        raise CorruptFileError(where, f"tensor {name!r} ({tensor_type.name}): {exc}") from exc
    return np.asarray(values, dtype=np.float32)


class GgufFile(ReaderSource):
    """One .gguf file: a local path, or any `ByteReader` (a remote file by HTTP ranges)."""

    def __init__(self, path: Path | ByteReader):
        reader = path if isinstance(path, ByteReader) else LocalFile(Path(path))
        super().__init__(reader, "gguf")
        self._header, self.header_bytes = read_gguf_header(reader)
        self._tensors = {t.name: t for t in self._header.tensors}
        self.set_infos([TensorInfo(name=t.name, shape=tuple(reversed(t.dims)), dtype=t.qtype.name, nbytes=t.nbytes,
                                   file=str(self.path)) for t in self._header.tensors])
        self._metadata: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        """All key/value pairs (tokenizer arrays included), decoded to Python values."""
        if self._metadata is None:
            self._metadata = self._header.metadata()
            self._header.raw = b""  # every value is decoded: the header's bytes are not needed any more
        return self._metadata

    def data_layout(self, name: str) -> tuple[int, Any]:
        """(offset of the tensor's data from the start of the file, its ggml type): what a range reader needs."""
        tensor = self._tensors[name]
        return tensor.offset, tensor.qtype

    def data_range(self, name: str) -> tuple[int, int]:
        tensor = self._tensors[name]  # KeyError for a name the file does not hold
        return tensor.offset, tensor.nbytes

    def row_bytes(self, name: str) -> int:
        from gguf import GGML_QUANT_SIZES  # lazy: gguf costs 125 ms, only for .gguf files

        tensor = self._tensors[name]
        block, type_size = GGML_QUANT_SIZES[tensor.qtype]
        return (tensor.dims[0] if tensor.dims else 1) // block * type_size

    def decode(self, name: str, data: bytes | np.ndarray, rows: int | None) -> torch.Tensor:
        info = self._by_name[name]
        tensor = self._tensors[name]
        shape = info.shape if rows is None else (rows, info.shape[-1])
        count = rows if rows is not None else (int(np.prod(info.shape[:-1], dtype=np.int64)) if info.shape else 1)
        raw = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
        if raw.size != count * self.row_bytes(name):
            raise CorruptFileError(self.path, f"tensor {name!r}: {raw.size} bytes read, {count * self.row_bytes(name)} "
                                              "expected (truncated since it was opened?)")
        if tensor.qtype.name in AS_STORED:
            values = raw.view(np.dtype(PLAIN_TYPES[tensor.qtype.name]).newbyteorder(self._header.order))
            if not values.dtype.isnative or not values.flags.writeable:
                values = values.astype(values.dtype.newbyteorder("="))  # a copy the caller owns, in native order
            return torch.from_numpy(values.reshape(shape))
        if raw.size == 0:
            return torch.empty(shape, dtype=torch.float32)
        values = dequantize_values(raw.reshape(count, -1), tensor.qtype, self.path, name, self._header.order)
        return torch.from_numpy(values.reshape(shape))

    def read_tensor(self, name: str) -> torch.Tensor:
        tensor, _ = self.read_tensor_into(name, None)
        return tensor

    def read_tensor_into(self, name: str, buffer: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """F32 and F16 tensors read as stored into `buffer` (no copy); others dequantized into a fresh tensor."""
        tensor = self._tensors[name]
        if tensor.qtype.name not in AS_STORED or self._header.order != "<":
            offset, length = self.data_range(name)
            return self.decode(name, self.reader.read(offset, length), None), buffer
        data, buffer = self.reader.read_into(tensor.offset, tensor.nbytes, buffer, name)
        return self.decode(name, data.numpy(), None), buffer
