"""A safetensors file written array by array: a fingerprint's stacks streamed row by row, never stacked in memory.

Part of the file layout: called from `store.py` only; the JSON it writes is the
safetensors header, with the metadata string `store.py` encoded.

`safetensors.numpy.save_file` wants each array whole and contiguous, so
writing a schema-4 fingerprint through it stacked every group of same-shaped
arrays first (`packing.stack_arrays`): a second copy of the fingerprint's
arrays at the moment of saving (100 MB and more for a frontier MoE's). This
writer computes the header from the shapes, then writes each stack's rows one
after another, which gives the bytes the stacked array would hold. The file
is the safetensors format as the library reads it (`safetensors` docs,
"Format"): an 8-byte little-endian header length, the JSON header (dtype,
shape, data_offsets of each tensor, `__metadata__` of strings) padded with
spaces to a multiple of 8 bytes, then the data, contiguous, in offset order.
"""

from __future__ import annotations

import json
import struct
from typing import BinaryIO

import numpy as np

# numpy dtype -> safetensors dtype name (the dtypes a fingerprint holds)
DTYPE_NAMES = {"<f2": "F16", "<f4": "F32", "<f8": "F64", "<i8": "I64", "<i4": "I32", "|u1": "U8", "|b1": "BOOL"}


def _entry(name: str, rows: list[np.ndarray]) -> tuple[str, tuple[int, ...]]:
    dtype = rows[0].dtype.str
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"array {name} has dtype {rows[0].dtype}, which a fingerprint file does not hold")
    if any(row.dtype.str != dtype or row.shape != rows[0].shape for row in rows):
        raise ValueError(f"stack {name} mixes dtypes or shapes")
    return DTYPE_NAMES[dtype], tuple(rows[0].shape)


def write_safetensors(handle: BinaryIO, stacks: dict[str, list[np.ndarray]], arrays: dict[str, np.ndarray],
                      metadata: dict[str, str]) -> None:
    """Write `arrays` and, for each name of `stacks`, its rows stacked along a new first axis, to `handle`."""
    entries: list[tuple[str, list[np.ndarray], bool]] = sorted(
        [(name, rows, True) for name, rows in stacks.items()] + [(name, [a], False) for name, a in arrays.items()],
        key=lambda entry: entry[0])
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    offset = 0
    for name, rows, stacked in entries:
        dtype, shape = _entry(name, rows)
        nbytes = sum(row.nbytes for row in rows)
        header[name] = {"dtype": dtype, "shape": [len(rows), *shape] if stacked else list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    handle.write(struct.pack("<Q", len(encoded)))
    handle.write(encoded)
    for _, rows, _ in entries:
        _write_rows(handle, rows)


def _write_rows(handle: BinaryIO, rows: list[np.ndarray]) -> None:
    for row in rows:  # an array, or an `arrays_file.Deferred` whose bytes are read only now
        raw = getattr(row, "raw", None)
        if raw is not None:
            handle.write(raw())
        elif row.nbytes:  # an empty array has no bytes (and memoryview cannot cast a view with a zero in its shape)
            handle.write(memoryview(np.ascontiguousarray(row)).cast("B"))
