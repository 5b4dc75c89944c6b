"""safetensors files: header validated by us, then each tensor's bytes read at its validated offsets.

The format (https://huggingface.co/docs/safetensors): 8 bytes little-endian
header length N, N bytes of JSON mapping tensor names to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
section that follows), an optional "__metadata__" of string pairs, then the
data. The byte buffer must be covered exactly, without holes or overlaps.

We parse and check the header ourselves, from a `ByteReader` (a local file,
or HTTP ranges: `remote.byte_ranges`), so that a hostile or broken file gets
one precise message (which tensor, which value) instead of a generic
failure, so that no size in it is trusted before it has been checked against
the file's real size, and so that a remote file is parsed by the same code as
a local one (a remote reader fetches the 8 bytes, then the header, then only
the ranges asked for).

Tensor data is read through the same reader (`reader_source.ReaderSource`:
whole tensors, rows, many at once), not with `safetensors.safe_open`, for
local files too: the library parses the whole header again on every open
(quadratic in the tensor count over a pass: 9 s per tensor for a 96 MB
header), and a handle kept open for the whole pass leaves every page it
touched mapped, so the process would end up holding the whole model. A read
needs nothing the validated header does not already give (offsets, dtype,
shape); a local read is one `readinto` into a buffer the caller may reuse
(`LocalFile.read_into`), so memory is exactly the tensor being read, and
this is as fast as `cat` (bench/speed.py).
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import CorruptFileError, UnsupportedError
from .base import TensorInfo
from .byte_reader import ByteReader, LocalFile
from .limits import MAX_TENSORS, DuplicateKeyError, reject_duplicate_keys
from .reader_source import ReaderSource

# Largest header we accept; the safetensors library uses the same limit.
MAX_HEADER_BYTES = 100_000_000

# Bits per element of every dtype the safetensors spec names.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}




def read_safetensors_header(path: Path) -> tuple[list[TensorInfo], dict[str, str]]:
    """Parse and validate a local safetensors file's header; return tensors in data order."""
    infos, metadata, _, _ = read_layout(LocalFile(path))
    return infos, metadata


def read_layout(reader: ByteReader) -> tuple[list[TensorInfo], dict[str, str], dict[str, tuple[int, int]], int]:
    """The validated header, each tensor's [begin, end) in the data section, and where that section starts.

    Two reads: the 8-byte length (checked against the cap and the file's size
    before anything more is asked for), then the header.
    """
    prefix = reader.read(0, 8)
    file_size = reader.size
    header_len = check_header_length(reader.path, prefix, file_size)
    raw = reader.read(8, header_len)
    if len(raw) != header_len:  # the file shrank after its size was read
        raise CorruptFileError(reader.path, f"header length {header_len} runs past the end of the file (truncated?)")
    infos, metadata, offsets = parse_safetensors_header(reader.path, raw, file_size)
    return infos, metadata, offsets, 8 + header_len


def check_header_length(path: Any, prefix: bytes, file_size: int) -> int:
    """The header length the first 8 bytes give, refused if over the cap or past the end of the file.

    `path` only names the file in errors (a local path or a URL): remote readers
    call this on the first 8 bytes they fetch, before asking for the header.
    """
    if len(prefix) < 8:
        raise CorruptFileError(path, f"file is {file_size} bytes, too short for a safetensors header length")
    (header_len,) = struct.unpack("<Q", prefix[:8])
    if header_len > MAX_HEADER_BYTES:
        raise CorruptFileError(path, f"header length {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + header_len > file_size:
        raise CorruptFileError(path, f"header length {header_len} runs past the end of the {file_size}-byte file (truncated?)")
    return header_len


def parse_safetensors_header(path: Any, raw: bytes, file_size: int
                             ) -> tuple[list[TensorInfo], dict[str, str], dict[str, tuple[int, int]]]:
    """Validate the header bytes `raw` (what follows the 8-byte length) of a file of `file_size` bytes.

    Returns the tensors in data order, the `__metadata__` strings, and each
    tensor's [begin, end) byte offsets relative to the data section (which
    starts at 8 + len(raw)). `path` only names the file in errors and in
    `TensorInfo.file`.
    """
    header_len = len(raw)
    if raw.count(b'"data_offsets"') > MAX_TENSORS:  # before parsing: each listed tensor costs ~1 KB once parsed
        raise CorruptFileError(path, f"header lists more than {MAX_TENSORS} tensors, over the limit")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=reject_duplicate_keys)
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"header is not UTF-8 (byte {exc.start})") from exc
    except DuplicateKeyError as exc:
        raise CorruptFileError(path, f"header names {exc.args[0]!r} twice (duplicate tensor name or key)") from exc
    except ValueError as exc:
        raise CorruptFileError(path, f"header is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise CorruptFileError(path, "header JSON is nested too deeply") from exc
    if not isinstance(header, dict):
        raise CorruptFileError(path, f"header is a JSON {type(header).__name__}, expected an object")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CorruptFileError(path, "__metadata__ must map strings to strings")

    data_start = 8 + header_len
    data_len = file_size - data_start
    infos: list[tuple[int, int, TensorInfo]] = []
    for name, entry in header.items():
        infos.append(_validate_entry(path, name, entry, data_len))
    infos.sort(key=lambda item: (item[0], item[1]))

    expected_begin = 0
    for begin, end, info in infos:
        if begin < expected_begin:
            raise CorruptFileError(path, f"tensor {info.name!r} data [{begin}, {end}) overlaps the previous tensor (ends at {expected_begin})")
        if begin > expected_begin:
            raise CorruptFileError(path, f"tensor {info.name!r} starts at {begin}, leaving a hole after byte {expected_begin}")
        expected_begin = end
    if expected_begin != data_len:
        raise CorruptFileError(path, f"tensor data ends at byte {expected_begin} but the data section is {data_len} bytes")
    return [info for _, _, info in infos], dict(metadata), {info.name: (begin, end) for begin, end, info in infos}


def _validate_entry(path: Any, name: str, entry: Any, data_len: int) -> tuple[int, int, TensorInfo]:
    if not isinstance(entry, dict):
        raise CorruptFileError(path, f"tensor {name!r}: entry is not an object")
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise UnsupportedError(path, f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise CorruptFileError(path, f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise CorruptFileError(path, f"tensor {name!r}: data_offsets {offsets!r} is not a pair of integers")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise CorruptFileError(path, f"tensor {name!r}: data_offsets {offsets!r} are not increasing")
    if end > data_len:
        raise CorruptFileError(path, f"tensor {name!r}: data_offsets end {end} is past the {data_len}-byte data section (truncated?)")
    numel = math.prod(shape)
    expected = (numel * DTYPE_BITS[dtype] + 7) // 8
    if end - begin != expected:
        raise CorruptFileError(path, f"tensor {name!r}: {dtype} shape {shape} needs {expected} bytes but data_offsets give {end - begin}")
    return begin, end, TensorInfo(name=name, shape=tuple(shape), dtype=dtype, nbytes=end - begin, file=str(path))


# safetensors dtype -> name of the torch dtype (absent from older PyTorch versions for some).
_TORCH_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu", "I16": "int16", "U16": "uint16", "F16": "float16", "BF16": "bfloat16",
    "I32": "int32", "U32": "uint32", "F32": "float32", "I64": "int64", "U64": "uint64", "F64": "float64",
}


def torch_dtype_for(dtype: str) -> torch.dtype | None:
    """The PyTorch dtype holding a safetensors dtype, or None (F4, F6, or one this PyTorch lacks)."""
    attr = _TORCH_DTYPES.get(dtype)
    return getattr(torch, attr, None) if attr else None


def tensor_from_bytes(data: torch.Tensor, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A flat uint8 tensor of little-endian values reinterpreted as `dtype` of `shape` (no copy but for bools)."""
    target = torch_dtype_for(dtype)
    if target is None:
        raise ValueError(dtype)
    if target == torch.bool:  # any non-zero byte is True; a byte of 2 must not become an invalid bool
        return (data != 0).reshape(shape)
    values = data.view(target)
    if sys.byteorder != "little" and values.element_size() > 1:
        values = values.view(torch.uint8).reshape(-1, values.element_size()).flip(1).reshape(-1).view(target)
    return values.reshape(shape)


class SafetensorsFile(ReaderSource):
    """One .safetensors file: a local path, or any `ByteReader` (a remote file by HTTP ranges)."""

    def __init__(self, path: Path | ByteReader):
        reader = path if isinstance(path, ByteReader) else LocalFile(Path(path))
        super().__init__(reader, "safetensors")
        infos, self._metadata, self._offsets, self._data_start = read_layout(reader)
        self.header_bytes = self._data_start
        self.set_infos(infos)

    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def data_range(self, name: str) -> tuple[int, int]:
        begin, end = self._offsets[name]  # KeyError for a name the file does not hold
        return self._data_start + begin, end - begin

    def row_bytes(self, name: str) -> int:
        info = self._by_name[name]
        return info.shape[-1] * DTYPE_BITS[info.dtype] // 8 if info.shape else 0

    def _dtype(self, info: TensorInfo) -> torch.dtype:
        dtype = torch_dtype_for(info.dtype)
        if dtype is None:
            raise UnsupportedError(self.path, f"tensor {info.name!r}: dtype {info.dtype} cannot be read by this PyTorch "
                                              f"version ({torch.__version__}), which has no such dtype")
        return dtype

    def decode(self, name: str, data: bytes, rows: int | None) -> torch.Tensor:
        info = self._by_name[name]
        dtype = self._dtype(info)
        shape = info.shape if rows is None else (rows, info.shape[-1])
        if not data:
            return torch.empty(shape, dtype=dtype)
        return tensor_from_bytes(torch.frombuffer(bytearray(data), dtype=torch.uint8), info.dtype, shape)

    def read_tensor(self, name: str) -> torch.Tensor:
        tensor, _ = self.read_tensor_into(name, None)
        return tensor

    def read_tensor_into(self, name: str, buffer: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        info = self._by_name[name]  # KeyError for a name the file does not hold
        self._dtype(info)
        offset, length = self.data_range(name)
        # The size was checked against the file's size when the header was read, so this
        # allocation is bounded by the file, whatever the header claimed.
        data, buffer = self.reader.read_into(offset, length, buffer, name)
        return tensor_from_bytes(data, info.dtype, info.shape), buffer
