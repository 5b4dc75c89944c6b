"""A bounded walk over a GGUF header, checking every declared size before gguf's reader trusts it.

GGUF (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic
"GGUF", uint32 version, uint64 tensor count, uint64 key/value count, the
key/value pairs (string key, uint32 value type, value; arrays are an item
type, a uint64 count and the items), then per tensor its name, uint32
dimension count, uint64 dimensions, uint32 ggml type and uint64 offset
into the data section, which starts at the next multiple of the alignment
(`general.alignment`, default 32).

Hand-written because `gguf.GGUFReader` believes what the file says: a count
of 2^60 key/value pairs makes it loop until the file runs out, a string
length past the end is silently cut short (a truncated file can parse as a
valid one), and it builds a few Python objects per metadata array element
(~40 us and ~400 B each: one megabyte of uint8 array costs it 36 s and
600 MB). This walk reads only lengths and counts, checks each against the
bytes left in the file and the caps in `limits.py`, and checks each tensor
the way llama.cpp's loader does (known type, whole blocks, data offsets
contiguous and aligned, data inside the file). Only then is the reader run.

A remote reader (`remote.gguf_source`) has only a prefix of the file: it calls
`gguf_data_start(shown, prefix, file_size)`, which walks the same checks
against the whole file's size and raises `HeaderIncomplete` with the number of
bytes it needs when the header runs past the prefix.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from ..errors import CorruptFileError, UnreadablePathError, UnsupportedError
from .limits import MAX_GGUF_ARRAY, MAX_GGUF_ARRAY_TOTAL, MAX_GGUF_KV, MAX_GGUF_STRING, MAX_GGUF_STRINGS, MAX_TENSORS

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # what gguf's reader handles; version 1 used 32-bit counts
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS

# GGUF value types: fixed-size scalars by type id (bytes per value), then STRING = 8, ARRAY = 9.
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY, UINT32 = 8, 9, 4


class HeaderIncomplete(Exception):
    """The header continues past the bytes at hand (a remote prefix): `needed` bytes from the start are required."""

    def __init__(self, needed: int):
        super().__init__(f"the GGUF header needs at least {needed} bytes")
        self.needed = needed


class _Walk:
    """A cursor over the mapped header that refuses to step past the end of the file.

    `size` is the whole file's size; `data` may hold only its first bytes
    (a remote prefix), in which case stepping past them raises HeaderIncomplete.
    """

    def __init__(self, path: Path, data: mmap.mmap | bytes, order: str, size: int | None = None):
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


def validate_gguf_header(path: Path) -> None:
    """Raise a CorruptFileError/UnsupportedError naming the first problem; return if gguf may parse the file."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            if size < 24:
                handle.seek(0)
                _validate(path, handle.read())
                return
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                _validate(path, mapped)
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc


def gguf_data_start(shown: object, prefix: bytes, file_size: int) -> int:
    """Check a GGUF header from the first bytes of a `file_size`-byte file; the offset where tensor data starts.

    Raises HeaderIncomplete when `prefix` ends inside the header, and the
    errors `validate_gguf_header` raises otherwise (`shown` names the file).
    """
    if len(prefix) < min(24, file_size):
        raise HeaderIncomplete(min(24, file_size))
    return _validate(shown, prefix, file_size)  # type: ignore[arg-type]


def _validate(path: Path, data, size: int | None = None) -> int:
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
    keys: set[str] = set()
    elements = strings = 0
    for index in range(kv_count):
        key = _new_name(walk, keys, f"metadata key {index}", "metadata key")
        kind = walk.unpack("I", f"type of metadata key {key!r}")
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

    return _validate_tensors(walk, tensor_count, alignment)


def _validate_tensors(walk: _Walk, tensor_count: int, alignment: int) -> int:
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
        tensors.append((name, offset, numel // block * type_size))

    data_start = -(-walk.pos // alignment) * alignment
    data_size = walk.size - data_start
    expected = 0
    for name, offset, nbytes in tensors:
        if offset != expected:  # llama.cpp's rule: tensors follow each other, each padded to the alignment
            raise walk.fail(f"tensor {name!r} has data offset {offset}, expected {expected} (tensor data must be "
                            f"contiguous, each tensor aligned to {alignment} bytes)")
        if nbytes > data_size - offset:
            raise walk.fail(f"tensor {name!r} data [{offset}, {offset + nbytes}) runs past the end of the "
                            f"{max(data_size, 0)}-byte data section (truncated?)")
        expected = offset + -(-nbytes // alignment) * alignment
    return data_start
