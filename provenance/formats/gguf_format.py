"""GGUF files (llama.cpp), read with the `gguf` package's reader and dequantizers.

GGUF lists dimensions innermost first (ggml order); we report and return
shapes in PyTorch order (outermost first), so a Q projection of a model with
hidden size 576 is (576, 576) here as in the Hugging Face checkpoint. F32 and
F16 tensors are returned as stored (read from the file, no conversion);
every other type is returned dequantized to float32.

Every size the header declares is checked first by `gguf_header`, so the
reader never loops over or allocates for a count the file cannot hold.

Layout differences that depend on the architecture (llama.cpp's row
permutation of Q and K) are undone by the architecture layer, which knows the
head counts; this module only reads bytes.
"""

from __future__ import annotations

import inspect
import mmap
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CorruptFileError, UnreadablePathError, UnsupportedError
from .base import TensorInfo, TensorSource, read_bytes_into
from .gguf_header import validate_gguf_header

# Metadata arrays longer than this are kept out of `metadata()` summaries.
LARGE_ARRAY = 64


def _reader_class():
    """gguf's reader, with metadata arrays parsed in one step instead of one recursive call per element.

    Upstream slices its np.memmap a few times per array element (~40 us each:
    a 1M-element uint8 array takes 36 s and 600 MB; SmolLM2's 98,000 tokenizer
    strings take 6 s). This subclass returns a numeric array as one view
    (`ReaderField.contents()` flattens the parts it indexes, so the values are
    the same) and slices strings out of a plain ndarray view of the map
    (~1 us each). Lengths need no checks here: `gguf_header` has already
    walked them. It overrides a private method; if gguf changes that
    method's signature, the upstream reader is used as it is.
    """
    from gguf import GGUFReader, GGUFValueType  # lazy: gguf costs 125 ms, only for .gguf files

    try:
        parameters = list(inspect.signature(GGUFReader._get_field_parts).parameters)
    except (AttributeError, TypeError, ValueError):
        return GGUFReader
    if parameters != ["self", "orig_offs", "raw_type"]:
        return GGUFReader

    class BlockArrayReader(GGUFReader):
        def _get_field_parts(self, orig_offs, raw_type):
            if raw_type == GGUFValueType.ARRAY:
                raw_itype = self._get(orig_offs, np.uint32)
                itype = int(raw_itype[0]) if len(raw_itype) else -1
                nptype = self.gguf_scalar_to_np.get(GGUFValueType(itype)) if itype in _SCALAR_IDS else None
                if nptype is not None:
                    alen = self._get(orig_offs + 4, np.uint64)
                    values = self._get(orig_offs + 12, nptype, int(alen[0]))
                    size = int(raw_itype.nbytes + alen.nbytes + values.nbytes)
                    return size, [raw_itype, alen, values], [2], [GGUFValueType.ARRAY, GGUFValueType(itype)]
                if itype == GGUFValueType.STRING:
                    return self._string_array(orig_offs, raw_itype)
            return super()._get_field_parts(orig_offs, raw_type)

        def _string_array(self, orig_offs, raw_itype):
            alen = self._get(orig_offs + 4, np.uint64)
            plain = self.data.view(np.ndarray)  # slicing the memmap subclass is what costs
            order = "<Q" if (self.byte_order == "I") == (sys.byteorder == "little") else ">Q"
            length_type = np.dtype(np.uint64).newbyteorder(order[0])
            parts, indices = [raw_itype, alen], []
            offs = orig_offs + 12
            for _ in range(int(alen[0])):
                (length,) = struct.unpack_from(order, plain, offs)
                parts.append(plain[offs:offs + 8].view(length_type))
                parts.append(plain[offs + 8:offs + 8 + length])
                indices.append(len(parts) - 1)
                offs += 8 + length
            return offs - orig_offs, parts, indices, [GGUFValueType.ARRAY, GGUFValueType.STRING]

    return BlockArrayReader


_SCALAR_IDS = {0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12}


def _field_value(field: Any) -> Any:
    value = field.contents()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    return value


# Types the reader returns already typed and gguf has no "dequantizer" for (not quantized).
PLAIN_TYPES = {"F64": np.float64, "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64}


def dequantize_values(data: np.ndarray, tensor_type: Any, where: object, name: str) -> np.ndarray:
    """float32 values of one tensor's data (or of whole rows of it) in ggml type `tensor_type`.

    `data` is what gguf's reader gives (typed for plain types, uint8 blocks
    otherwise) or raw bytes fetched by range (uint8, one row of blocks per
    row), so local and remote reads decode through the same call.
    """
    from gguf.quants import dequantize  # lazy: gguf costs 125 ms, only for .gguf files

    try:
        plain = PLAIN_TYPES.get(tensor_type.name)
        if plain is not None:
            values = (data.view(plain) if data.dtype == np.uint8 else data).astype(np.float32)
        else:
            values = dequantize(data, tensor_type)
    except NotImplementedError as exc:
        raise UnsupportedError(where, f"tensor {name!r}: quantization type {tensor_type.name} cannot be dequantized") from exc
    except (ValueError, TypeError) as exc:
        raise CorruptFileError(where, f"tensor {name!r} ({tensor_type.name}): {exc}") from exc
    return np.asarray(values, dtype=np.float32)


class GgufFile(TensorSource):
    """One .gguf file."""

    def __init__(self, path: Path):
        super().__init__(Path(path))
        self.format = "gguf"
        if not self.path.is_file():
            raise UnreadablePathError(self.path, "cannot read: not a regular file (missing, a directory, or a dangling symlink)")
        validate_gguf_header(self.path)
        try:
            self._reader = _reader_class()(str(self.path), "r")
        except PermissionError as exc:
            raise UnreadablePathError(self.path, f"cannot read: {exc.strerror or exc}") from exc
        except (ValueError, IndexError, OSError, KeyError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
            first = (str(exc).strip().splitlines() or [repr(exc)])[0]
            raise CorruptFileError(self.path, f"not a readable GGUF file: {first}") from exc
        self._tensors = {t.name: t for t in self._reader.tensors}
        self._infos = [
            TensorInfo(name=t.name, shape=tuple(int(d) for d in reversed(t.shape.tolist())),
                       dtype=t.tensor_type.name, nbytes=int(t.n_bytes), file=str(self.path))
            for t in self._reader.tensors
        ]
        self._metadata: dict[str, Any] | None = None

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def metadata(self) -> dict[str, Any]:
        """All key/value pairs (tokenizer arrays included), decoded to Python values."""
        if self._metadata is None:
            values: dict[str, Any] = {}
            for key, field in self._reader.fields.items():
                if key.startswith("GGUF."):
                    continue
                try:
                    values[key] = _field_value(field)
                except Exception as exc:  # a malformed field should not hide the others
                    raise CorruptFileError(self.path, f"metadata key {key!r} cannot be decoded: {exc}") from exc
            self._metadata = values
        return self._metadata

    def data_layout(self, name: str) -> tuple[int, Any]:
        """(offset of the tensor's data from the start of the file, its ggml type): what a range reader needs."""
        tensor = self._tensors[name]
        return int(tensor.data_offset), tensor.tensor_type

    def read_tensor(self, name: str) -> torch.Tensor:
        tensor = self._tensors[name]
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        if tensor.tensor_type.name in ("F32", "F16"):  # as stored, copied out of the map in slices
            result, _ = self.read_tensor_into(name, None)
            return result
        values = dequantize_values(np.asarray(tensor.data), tensor.tensor_type, self.path, name)
        if np.may_share_memory(values, self._reader.data):
            values = values.copy()  # F32 tensors are views of the mapped file
        result = torch.from_numpy(values.reshape(shape))
        self._release_pages()
        return result

    def read_tensor_into(self, name: str, buffer: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """F32 and F16 tensors copied out of the map as stored (into `buffer` if given); others dequantized."""
        from gguf import GGMLQuantizationType  # lazy: gguf costs 125 ms, only for .gguf files

        tensor = self._tensors[name]
        if tensor.tensor_type not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            return self.read_tensor(name), buffer
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        stored = np.asarray(tensor.data)
        kind = np.float32 if tensor.tensor_type == GGMLQuantizationType.F32 else np.float16
        if stored.dtype != kind or stored.size != int(np.prod(shape, dtype=np.int64)):
            raise CorruptFileError(self.path, f"tensor {name!r} ({tensor.tensor_type.name}): data does not "
                                              f"hold {list(shape)} values")
        # Read from the file at the tensor's offset (checked against the file's size by gguf_header),
        # as `cat` reads: a copy out of the map would fault every page in and leave it mapped.
        data, buffer = read_bytes_into(self.path, int(tensor.data_offset), stored.nbytes, buffer, name)
        return torch.from_numpy(data.numpy().view(kind).reshape(shape)), buffer

    def _release_pages(self) -> None:
        """Drop this file's pages from our address space after each tensor.

        The reader maps the whole file; without this, every page read during a
        pass would stay resident and the process would hold the whole model.
        """
        mapped = getattr(self._reader.data, "_mmap", None)
        if mapped is not None and hasattr(mapped, "madvise"):
            try:
                mapped.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self._reader = None  # type: ignore[assignment]
        self._tensors = {}
