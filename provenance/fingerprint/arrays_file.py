"""A fingerprint's arrays kept in a file and read when asked for: memory bounded by the arrays in use.

Two users:

- the builder spills each array as it is made into a `Spool` (an unnamed
  temporary file), so its peak memory no longer grows with the tensor count
  by the fingerprint's arrays (610 MB of them for the DeepSeek-V3 shape at
  full depth); `Spool.finish` gives the arrays as an `ArrayFile`;
- `store.load_fingerprint` gives a file's arrays as an `ArrayFile` over the
  file itself (a schema-4 stack's rows at their offsets), so a comparison
  reads only the arrays it looks up, and an audit no longer holds every
  array of both fingerprints.

An `ArrayFile` is a read-only `Mapping` of name -> array: each lookup reads
that array's bytes (a fresh, writable array; nothing is cached), `spec`
gives its dtype and shape without reading, and `deferred` an object the
file writer (`writer.py`) streams from. The file stays open while the
mapping lives (on POSIX a removed or replaced file stays readable through
it: a reference copied from the database to a temporary file, the cache
entry rewritten); it is closed when the mapping is garbage. A pickled
`ArrayFile` (a process pool's result) is a plain dict of its arrays.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from .packing import STACK_PREFIX, TABLE_PREFIX, PackingError, decode_strings, stack_names

# safetensors dtype names of the arrays a fingerprint file holds -> numpy dtypes (little-endian)
NUMPY_OF = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"),
            "I32": np.dtype("<i4"), "U8": np.dtype("|u1"), "BOOL": np.dtype("|b1")}


class ArrayReadError(OSError):
    """An array's bytes could not be read back (the file shrank under us)."""


class _Reader:
    """Reads byte ranges of one open file, from any thread."""

    def __init__(self, handle: BinaryIO, name: str):
        self.handle = handle
        self.name = name
        self.lock = threading.Lock()
        self.closer = weakref.finalize(self, handle.close)

    def read_bytes(self, offset: int, size: int) -> bytes:
        """`size` bytes at `offset` (one pread where the platform has it: what the writer copies)."""
        if hasattr(os, "pread"):
            data = os.pread(self.handle.fileno(), size, offset)
            if len(data) == size:
                return data
        buffer = bytearray(size)
        self.read_into(offset, buffer)
        return bytes(buffer)

    def read_into(self, offset: int, buffer: bytearray) -> None:
        view = memoryview(buffer)
        if hasattr(os, "preadv"):
            done = 0
            while done < len(buffer):
                got = os.preadv(self.handle.fileno(), [view[done:]], offset + done)
                if got <= 0:
                    break
                done += got
        else:  # no pread (Windows): one reader at a time
            with self.lock:
                self.handle.seek(offset)
                done = self.handle.readinto(view) or 0
        if done != len(buffer):
            raise ArrayReadError(f"{self.name}: {len(buffer)} bytes at offset {offset} could not be read "
                                 f"(got {done}; the file changed?)")


class Deferred:
    """One array not read yet: its dtype and shape, its bytes (`raw`, what the writer copies) and its values when
    `np.asarray` asks."""

    __slots__ = ("dtype", "shape", "nbytes", "_reader", "_offset")

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...], reader: _Reader, offset: int):
        self.dtype, self.shape, self._reader, self._offset = dtype, shape, reader, offset
        self.nbytes = math.prod(shape) * dtype.itemsize

    def raw(self) -> bytes:
        return self._reader.read_bytes(self._offset, self.nbytes) if self.nbytes else b""

    def __array__(self, dtype=None, copy=None):
        values = np.frombuffer(bytearray(self.raw()), dtype=self.dtype).reshape(self.shape)
        return values if dtype is None else values.astype(dtype)


class ArrayFile(Mapping):
    """name -> array, each read from the file when looked up (see the module docstring)."""

    def __init__(self, reader: _Reader, entries: dict[str, tuple[np.dtype, tuple[int, ...], int]]):
        self._reader = reader
        self._entries = entries  # name -> (dtype, shape, absolute byte offset)

    def __getitem__(self, name: str) -> np.ndarray:
        dtype, shape, offset = self._entries[name]
        count = math.prod(shape)
        buffer = bytearray(count * dtype.itemsize)
        if buffer:
            self._reader.read_into(offset, buffer)
        return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def spec(self, name: str) -> tuple[np.dtype, tuple[int, ...]]:
        """An array's dtype and shape, without reading it."""
        dtype, shape, _ = self._entries[name]
        return dtype, shape

    def deferred(self, name: str) -> Deferred:
        dtype, shape, offset = self._entries[name]
        return Deferred(dtype, shape, self._reader, offset)

    def deferred_items(self) -> Iterator[tuple[str, Deferred]]:
        return ((name, self.deferred(name)) for name in self._entries)

    def total_bytes(self) -> int:
        return sum(math.prod(shape) * dtype.itemsize for dtype, shape, _ in self._entries.values())

    def __reduce__(self):  # across processes: the values themselves (an open file does not travel)
        return dict, (dict(self.items()),)

    def __repr__(self) -> str:
        return f"ArrayFile({self._reader.name}, {len(self)} arrays)"

    @classmethod
    def open(cls, path: str | Path, entries: dict[str, tuple[np.dtype, tuple[int, ...], int]]) -> "ArrayFile":
        return cls(_Reader(open(path, "rb"), str(path)), entries)


def spool_directory() -> str:
    """Where a build spills its arrays: $PROVENANCE_SPOOL_DIR, else the temporary directory (TMPDIR)."""
    return os.environ.get("PROVENANCE_SPOOL_DIR") or tempfile.gettempdir()


class Spool:
    """Arrays written to an unnamed temporary file as they are made (`spool[name] = array`), then read back.

    The builder's `Collected.arrays`: memory holds one array at a time and a
    few dozen bytes per name. The file is removed when the mapping `finish`
    returns (and every fingerprint holding it) is garbage; on a tmpfs
    temporary directory it is in memory all the same, so $PROVENANCE_SPOOL_DIR
    (or TMPDIR) can point it at a disk.
    """

    def __init__(self, directory: str | None = None):
        self._handle = tempfile.TemporaryFile(prefix="provenance-spool-", dir=directory or spool_directory())
        self._reader = _Reader(self._handle, "fingerprint spool")
        self._entries: dict[str, tuple[np.dtype, tuple[int, ...], int]] = {}
        self._end = 0

    def __setitem__(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if array.dtype.str not in {d.str for d in NUMPY_OF.values()}:
            raise ValueError(f"array {name} has dtype {array.dtype}, which a fingerprint file does not hold")
        if not hasattr(os, "preadv"):  # reads seek the handle there (pread leaves its position at the end)
            self._handle.seek(self._end)
        if array.size:
            self._handle.write(memoryview(array).cast("B"))
        self._entries[name] = (array.dtype, tuple(array.shape), self._end)
        self._end += array.nbytes

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> np.ndarray:
        self._handle.flush()
        return ArrayFile(self._reader, self._entries)[name]

    def finish(self) -> ArrayFile:
        """The arrays written, by name in sorted order, read from the spool file from now on."""
        self._handle.flush()
        return ArrayFile(self._reader, {name: self._entries[name] for name in sorted(self._entries)})


def unstacked(stored: ArrayFile, tables: dict[str, np.ndarray]) -> ArrayFile:
    """`packing.unstack_arrays` without reading a stack: each row of `stack/<i>` named again, at its offset.

    `tables` holds the file's name tables (`stack/<i>/names/...`, read); the
    checks are `unstack_arrays`'s (a row per name, no name given twice).
    """
    entries = {n: e for n, e in stored._entries.items() if not n.startswith((STACK_PREFIX, TABLE_PREFIX))}
    for stacked in stack_names(stored):
        try:
            names = decode_strings(tables[f"{stacked}/names/codes"], tables[f"{stacked}/names/bytes"],
                                   tables[f"{stacked}/names/offsets"])
        except KeyError as exc:
            raise PackingError(f"array {exc.args[0]} is missing") from exc
        dtype, shape, offset = stored._entries[stacked]
        rows = shape[0] if shape else 0
        if not shape or len(names) != rows or any(n is None for n in names):
            raise PackingError(f"array {stacked} has {rows} rows for {len(names)} names")
        row_shape = tuple(shape[1:])
        row_bytes = math.prod(row_shape) * dtype.itemsize
        for index, name in enumerate(names):
            if name in entries or name.startswith((STACK_PREFIX, TABLE_PREFIX)):
                raise PackingError(f"array {name[:80]!r} is given twice")
            entries[name] = (dtype, row_shape, offset + index * row_bytes)
    # in name order, as the builder gives them: the file saved again is the same bytes
    return ArrayFile(stored._reader, {name: entries[name] for name in sorted(entries)})
