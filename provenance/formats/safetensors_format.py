"""safetensors files: header validated by us first, tensor data read with `safe_open`.

The format (https://huggingface.co/docs/safetensors): 8 bytes little-endian
header length N, N bytes of JSON mapping tensor names to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
section that follows), an optional "__metadata__" of string pairs, then the
data. The byte buffer must be covered exactly, without holes or overlaps.

We parse and check the header ourselves before handing the file to the
library, so that a hostile or broken file gets one precise message (which
tensor, which value) instead of a generic failure, and so that no size in it
is trusted before it has been checked against the file's real size.
Each read opens the file with `safe_open` for that one tensor only: a handle
kept open for the whole pass leaves every page it touched mapped, and the
process would end up holding the whole model.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import torch

from ..errors import CorruptFileError, UnreadablePathError, UnsupportedError
from .base import TensorInfo, TensorSource

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


class _DuplicateKey(ValueError):
    """A JSON object names the same key twice (json.loads would keep the last silently)."""


def _reject_duplicate_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def read_safetensors_header(path: Path) -> tuple[list[TensorInfo], dict[str, str]]:
    """Parse and validate a safetensors header; return tensors in data order."""
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CorruptFileError(path, f"file is {file_size} bytes, too short for a safetensors header length")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES:
                raise CorruptFileError(path, f"header length {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
            if 8 + header_len > file_size:
                raise CorruptFileError(path, f"header length {header_len} runs past the end of the {file_size}-byte file (truncated?)")
            raw = handle.read(header_len)
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicate_names)
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"header is not UTF-8 (byte {exc.start})") from exc
    except _DuplicateKey as exc:
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
    return [info for _, _, info in infos], dict(metadata)


def _validate_entry(path: Path, name: str, entry: Any, data_len: int) -> tuple[int, int, TensorInfo]:
    if not isinstance(entry, dict):
        raise CorruptFileError(path, f"tensor {name!r}: entry is not an object")
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if dtype not in DTYPE_BITS:
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


class SafetensorsFile(TensorSource):
    """One .safetensors file."""

    def __init__(self, path: Path):
        super().__init__(Path(path))
        self.format = "safetensors"
        self._infos, self._metadata = read_safetensors_header(self.path)
        self._by_name = {info.name: info for info in self._infos}

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def read_tensor(self, name: str) -> torch.Tensor:
        info = self._by_name[name]  # KeyError for a name the file does not hold
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt") as handle:
                return handle.get_tensor(name)
        except MemoryError:
            raise
        except Exception as exc:  # the library's own error types vary by version
            first = (str(exc).strip().splitlines() or [repr(exc)])[0]
            if "not understood" in first or "not supported" in first.lower():
                raise UnsupportedError(self.path, f"tensor {name!r}: dtype {info.dtype} cannot be read by this "
                                                  f"PyTorch/safetensors version ({first})") from exc
            raise CorruptFileError(self.path, f"cannot read tensor {name!r}: {first}") from exc
