"""The GGUF header parsed by a bounded walk: every declared size checked before anything trusts it.

GGUF (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic
"GGUF", uint32 version, uint64 tensor count, uint64 key/value count, the
key/value pairs (string key, uint32 value type, value; arrays are an item
type, a uint64 count and the items), then per tensor its name, uint32
dimension count, uint64 dimensions, uint32 ggml type and uint64 offset
into the data section, which starts at the next multiple of the alignment
(`general.alignment`, default 32).

Parsed here, not by `gguf.GGUFReader`: that reader needs a path or a
memory map (impossible over HTTP), and it believes what the file says: a
count of 2^60 key/value pairs makes it loop until the file runs out, a string
length past the end is silently cut short (a truncated file can parse as a
valid one), and it builds a few Python objects per metadata array element
(~40 us and ~400 B each: one megabyte of uint8 array costs it 36 s and
600 MB). This walk checks every length and count against the bytes left in
the file and the caps in `limits.py`, and each tensor the way llama.cpp's
loader does (known type, whole blocks, data offsets contiguous and aligned,
data inside the file); gguf's public tables (`GGMLQuantizationType`,
`GGML_QUANT_SIZES`) name the types and their block sizes.

`read_gguf_header(reader)` fetches the header from a `ByteReader` (a local
file or HTTP ranges alike) by growing prefixes: the first 512 KiB, then twice
as much each time the walk says the header runs past what is at hand (it
raises `HeaderIncomplete` with the bytes it needs, having checked everything
before against the whole file's size), up to `MAX_GGUF_HEADER_BYTES`. The
walk records where each metadata value is; `GgufHeader.metadata()` decodes
them (numeric arrays as one block, strings as UTF-8) when first asked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, UnsupportedError
from .byte_reader import ByteReader
from .limits import (MAX_GGUF_ARRAY, MAX_GGUF_ARRAY_TOTAL, MAX_GGUF_HEADER_BYTES, MAX_GGUF_KV, MAX_GGUF_STRING,
                     MAX_GGUF_STRINGS, MAX_TENSORS)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # what gguf's reader handles; version 1 used 32-bit counts
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS

# GGUF value types: fixed-size scalars by type id (bytes per value), then STRING = 8, ARRAY = 9.
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY, UINT32 = 8, 9, 4
# numpy types of the scalar type ids, as gguf's reader decodes them (`GGUFReader.gguf_scalar_to_np`)
SCALAR_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32, 6: np.float32,
                7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
FIRST_READ = 512 << 10  # bytes of a header fetched first; more by doubling


@dataclass(frozen=True)
class GgufTensor:
    """One tensor of the header: ggml order dimensions (innermost first), type, where its data is."""

    name: str
    dims: tuple[int, ...]
    qtype: Any  # gguf.GGMLQuantizationType
    offset: int  # from the start of the file
    nbytes: int


@dataclass
class GgufHeader:
    """A walked GGUF header: where the data starts, the tensors, and each metadata value's place in `raw`."""

    shown: Any  # names the file in errors
    raw: bytes  # the header's bytes (a prefix of the file)
    order: str  # "<" or ">" (written on a big-endian machine)
    data_start: int
    tensors: list[GgufTensor]
    fields: list[tuple[str, int, int]] = field(default_factory=list)  # (key, value type, offset of the value)

    def metadata(self) -> dict[str, Any]:
        """Every key/value pair decoded to Python values (strings strictly as UTF-8), as gguf's reader gives them."""
        values: dict[str, Any] = {}
        for key, kind, offset in self.fields:
            if key.startswith("GGUF."):  # names gguf's reader keeps for its own pseudo-fields
                continue
            try:
                values[key] = self._value(kind, offset)
            except (UnicodeDecodeError, ValueError) as exc:
                raise CorruptFileError(self.shown, f"metadata key {key!r} cannot be decoded: {exc}") from exc
        return values

    def _value(self, kind: int, offset: int) -> Any:
        if kind in SCALAR_NUMPY:
            return self._scalars(kind, offset, 1)[0]
        if kind == STRING:
            return self._strings(offset, 1)[0]
        item, = struct.unpack_from(self.order + "I", self.raw, offset)
        count, = struct.unpack_from(self.order + "Q", self.raw, offset + 4)
        if item == STRING:
            return self._strings(offset + 12, count)
        return self._scalars(item, offset + 12, count)

    def _scalars(self, kind: int, offset: int, count: int) -> list:
        if not count:
            return []
        kind_type = np.dtype(SCALAR_NUMPY[kind]).newbyteorder(self.order)
        return np.frombuffer(self.raw, dtype=kind_type, count=count, offset=offset).tolist()

    def _strings(self, offset: int, count: int) -> list[str]:
        raw, length_format, out = self.raw, self.order + "Q", []
        for _ in range(count):
            length, = struct.unpack_from(length_format, raw, offset)
            out.append(str(raw[offset + 8:offset + 8 + length], "utf-8"))
            offset += 8 + length
        return out


class HeaderIncomplete(Exception):
    """The header continues past the bytes at hand (a remote prefix): `needed` bytes from the start are required."""

    def __init__(self, needed: int):
        super().__init__(f"the GGUF header needs at least {needed} bytes")
        self.needed = needed


class _Walk:
    """A cursor over the header's bytes that refuses to step past the end of the file.

    `size` is the whole file's size; `data` may hold only its first bytes
    (a remote prefix), in which case stepping past them raises HeaderIncomplete.
    """

    def __init__(self, path: Path, data: bytes, order: str, size: int | None = None):
        self.path, self.data, self.order, self.pos = path, data, order, 0
        self.available = len(data)
        self.size = len(data) if size is None else size

    def fail(self, problem: str) -> CorruptFileError:
        return CorruptFileError(self.path, problem)

    def need(self, count: int, what: str) -> None:
        if count > self.size - self.pos:
            raise self.fail(f"{what} needs {count} bytes at offset {self.pos}, past the end of the "
                            f"{self.size}-byte file (truncated?)")
        if count > self.available - self.pos:
            raise HeaderIncomplete(self.pos + count)

    def unpack(self, fmt: str, what: str) -> int:
        width = struct.calcsize(fmt)
        self.need(width, what)
        (value,) = struct.unpack_from(self.order + fmt, self.data, self.pos)
        self.pos += width
        return value

    def string(self, what: str) -> bytes:
        length = self.unpack("Q", f"length of {what}")
        if MAX_GGUF_STRING < length <= self.size - self.pos:  # refused before a remote reader fetches it
            raise self.fail(f"{what} claims {length} bytes, over the {MAX_GGUF_STRING}-byte limit")
        self.need(length, what)
        if length > MAX_GGUF_STRING:
            raise self.fail(f"{what} claims {length} bytes, over the {MAX_GGUF_STRING}-byte limit")
        start = self.pos
        self.pos += length
        return bytes(self.data[start:self.pos])

    def skip_strings(self, count: int, what: str) -> None:
        """Step over `count` strings (lengths only; nothing decoded)."""
        data, pos, size, order = self.data, self.pos, self.available, self.order + "Q"
        for index in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.need(8, f"length of {what} element {index}")
            (length,) = struct.unpack_from(order, data, pos)
            pos += 8
            if MAX_GGUF_STRING < length <= self.size - pos:  # refused before a remote reader fetches it
                raise self.fail(f"{what} element {index} claims {length} bytes, over the {MAX_GGUF_STRING}-byte limit")
            if length > size - pos:
                self.pos = pos
                self.need(length, f"{what} element {index}")
            if length > MAX_GGUF_STRING:
                raise self.fail(f"{what} element {index} claims {length} bytes, over the {MAX_GGUF_STRING}-byte limit")
            pos += length
        self.pos = pos


def _text(walk: _Walk, raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise walk.fail(f"{what} is not UTF-8 (byte {exc.start})") from exc


def _new_name(walk: _Walk, seen: set[str], label: str, what: str) -> str:
    """The next string of the header (UTF-8), refused when it names a `what` already in `seen`."""
    name = _text(walk, walk.string(label), label)
    if name in seen:
        raise walk.fail(f"{what} {name!r} appears twice")
    seen.add(name)
    return name


def read_gguf_header(reader: ByteReader) -> tuple[GgufHeader, int]:
    """The walked header of the GGUF file `reader` reads, and the bytes fetched for it (by growing prefixes)."""
    prefix = reader.read(0, FIRST_READ)
    size = reader.size
    while True:
        try:
            if len(prefix) < min(24, size):
                raise HeaderIncomplete(min(24, size))
            header = _validate(reader.path, prefix, size)
            break
        except HeaderIncomplete as more:
            if more.needed > MAX_GGUF_HEADER_BYTES:
                raise CorruptFileError(reader.path, f"GGUF header is over {more.needed} bytes, past the "
                                                    f"{MAX_GGUF_HEADER_BYTES}-byte limit") from None
            end = min(size, MAX_GGUF_HEADER_BYTES, max(more.needed, 2 * len(prefix)))
            if end <= len(prefix):  # the file ended early (truncated since its size was read)
                raise CorruptFileError(reader.path, f"file ends at byte {len(prefix)}, inside its GGUF header") from None
            more_bytes = reader.read(len(prefix), end - len(prefix))
            if not more_bytes:
                raise CorruptFileError(reader.path, f"file ends at byte {len(prefix)}, inside its GGUF header")
            prefix += more_bytes
    fetched = len(prefix)
    header.raw = prefix[:header.data_start] if len(prefix) > header.data_start else prefix
    return header, fetched


def _validate(path: Path, data: bytes, size: int | None = None) -> GgufHeader:
    if len(data) < 4 or bytes(data[:4]) != GGUF_MAGIC:
        raise CorruptFileError(path, f"not a GGUF file: starts with {bytes(data[:4])!r}, expected {GGUF_MAGIC!r}")
    walk = _Walk(path, data, "<", size)
    walk.pos = 4
    version = walk.unpack("I", "version")
    if version & 0xFFFF == 0 and version:  # written on a big-endian machine (gguf's reader handles both)
        walk.order = ">"
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedError(path, f"GGUF version {version} is not supported (this reader handles versions "
                                     f"{', '.join(map(str, SUPPORTED_VERSIONS))})")
    tensor_count = walk.unpack("Q", "tensor count")
    kv_count = walk.unpack("Q", "key/value count")
    if tensor_count > MAX_TENSORS:
        raise CorruptFileError(path, f"declares {tensor_count} tensors, over the {MAX_TENSORS}-tensor limit")
    if kv_count > MAX_GGUF_KV:
        raise CorruptFileError(path, f"declares {kv_count} metadata keys, over the {MAX_GGUF_KV}-key limit")

    alignment = DEFAULT_ALIGNMENT
    fields: list[tuple[str, int, int]] = []
    keys: set[str] = set()
    elements = strings = 0
    for index in range(kv_count):
        key = _new_name(walk, keys, f"metadata key {index}", "metadata key")
        kind = walk.unpack("I", f"type of metadata key {key!r}")
        fields.append((key, kind, walk.pos))
        if kind in SCALAR_SIZES:
            if key == "general.alignment":
                if kind != UINT32:
                    raise walk.fail(f"general.alignment has value type {kind}, expected uint32 ({UINT32})")
                alignment = walk.unpack("I", "general.alignment")
                if alignment == 0 or alignment & (alignment - 1):
                    raise walk.fail(f"general.alignment {alignment} is not a power of two")
            else:
                walk.need(SCALAR_SIZES[kind], f"value of {key!r}")
                walk.pos += SCALAR_SIZES[kind]
        elif kind == STRING:
            walk.string(f"value of {key!r}")
        elif kind == ARRAY:
            item = walk.unpack("I", f"item type of array {key!r}")
            count = walk.unpack("Q", f"length of array {key!r}")
            if count > MAX_GGUF_ARRAY:
                raise walk.fail(f"array {key!r} claims {count} elements, over the {MAX_GGUF_ARRAY}-element limit")
            elements += count
            if elements > MAX_GGUF_ARRAY_TOTAL:
                raise walk.fail(f"metadata arrays hold more than {MAX_GGUF_ARRAY_TOTAL} elements together "
                                f"(at {key!r}), over the limit")
            if item in SCALAR_SIZES:
                walk.need(count * SCALAR_SIZES[item], f"array {key!r} of {count} elements")
                walk.pos += count * SCALAR_SIZES[item]
            elif item == STRING:
                strings += count
                if strings > MAX_GGUF_STRINGS:
                    raise walk.fail(f"metadata arrays hold more than {MAX_GGUF_STRINGS} strings together "
                                    f"(at {key!r}), over the limit")
                walk.skip_strings(count, f"array {key!r}")
            elif item == ARRAY:
                raise UnsupportedError(path, f"array {key!r} holds arrays; nested arrays are not supported "
                                             "(llama.cpp cannot read them either)")
            else:
                raise walk.fail(f"array {key!r} has unknown item type {item}")
        else:
            raise walk.fail(f"metadata key {key!r} has unknown value type {kind}")

    data_start, tensors = _validate_tensors(walk, tensor_count, alignment)
    return GgufHeader(path, data, walk.order, data_start, tensors, fields)


def _validate_tensors(walk: _Walk, tensor_count: int, alignment: int) -> tuple[int, list[GgufTensor]]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # lazy: gguf costs 125 ms, only for .gguf files

    tensors = []
    names: set[str] = set()
    for index in range(tensor_count):
        name = _new_name(walk, names, f"name of tensor {index}", "tensor")
        n_dims = walk.unpack("I", f"dimension count of tensor {name!r}")
        if n_dims > MAX_DIMS:
            raise walk.fail(f"tensor {name!r} has {n_dims} dimensions, more than GGML's {MAX_DIMS}")
        dims = [walk.unpack("Q", f"dimensions of tensor {name!r}") for _ in range(n_dims)]
        raw_type = walk.unpack("I", f"type of tensor {name!r}")
        offset = walk.unpack("Q", f"data offset of tensor {name!r}")
        try:
            qtype = GGMLQuantizationType(raw_type)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise UnsupportedError(walk.path, f"tensor {name!r} has ggml type {raw_type}, which this gguf "
                                              "version does not know") from None
        if any(dim >= 1 << 63 for dim in dims):
            raise walk.fail(f"tensor {name!r} has dimensions {dims}, over the signed 64-bit range")
        numel = 1
        for dim in dims:
            numel *= dim
        if (dims[0] if dims else 1) % block or numel % block:
            raise walk.fail(f"tensor {name!r} ({qtype.name}) has rows of {dims[0] if dims else 1} elements, not a "
                            f"multiple of its {block}-element blocks")
        tensors.append((name, tuple(dims), qtype, offset, numel // block * type_size))

    data_start = -(-walk.pos // alignment) * alignment
    data_size = walk.size - data_start
    expected = 0
    for name, _, _, offset, nbytes in tensors:
        if offset != expected:  # llama.cpp's rule: tensors follow each other, each padded to the alignment
            raise walk.fail(f"tensor {name!r} has data offset {offset}, expected {expected} (tensor data must be "
                            f"contiguous, each tensor aligned to {alignment} bytes)")
        if nbytes > data_size - offset:
            raise walk.fail(f"tensor {name!r} data [{offset}, {offset + nbytes}) runs past the end of the "
                            f"{max(data_size, 0)}-byte data section (truncated?)")
        expected = offset + -(-nbytes // alignment) * alignment
    return data_start, [GgufTensor(name, dims, qtype, data_start + offset, nbytes)
                        for name, dims, qtype, offset, nbytes in tensors]
