"""The one small interface every checkpoint format implements.

A `TensorSource` first lists its tensors (name, shape, dtype, byte size)
without reading any tensor data, then reads one tensor at a time on request.
Nothing here ever holds more than the tensor being read.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CorruptFileError, UnreadablePathError


@dataclass(frozen=True)
class TensorInfo:
    """What is known about a stored tensor before its data is read."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # storage dtype as the format names it: "BF16", "F32", "Q4_K", ...
    nbytes: int
    file: str  # the file holding the data

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class TensorSource(ABC):
    """A checkpoint file (or set of files) whose tensors can be read one by one."""

    path: Path
    format: str = field(init=False, default="")

    @abstractmethod
    def tensor_infos(self) -> list[TensorInfo]:
        """Every tensor, in storage order, without reading data."""

    @abstractmethod
    def read_tensor(self, name: str) -> torch.Tensor:
        """The named tensor's values (a fresh tensor owned by the caller)."""

    def read_tensor_into(self, name: str, buffer: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The named tensor, read into `buffer` (a flat uint8 tensor) where the format can.

        Returns the tensor and the buffer to pass next time (grown if it was too
        small). The tensor may be a view of the buffer: it is valid until the
        buffer is reused. Formats that cannot read into a buffer return a fresh
        tensor, as `read_tensor` does. Reusing one buffer spares the page faults
        of a fresh allocation per tensor (about as costly as reading it warm).
        """
        return self.read_tensor(name), buffer

    def metadata(self) -> dict[str, Any]:
        """Format-level key/value metadata (GGUF keys, safetensors __metadata__)."""
        return {}

    def files(self) -> list[Path]:
        """The files this source reads tensor data from."""
        return [self.path]

    def close(self) -> None:
        """Release any open handles."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def reusable(buffer: torch.Tensor | None, nbytes: int) -> torch.Tensor:
    """`buffer` if it holds `nbytes` bytes, else a new uint8 buffer of that size (for `read_tensor_into`)."""
    if buffer is None or buffer.numel() < nbytes:
        buffer = torch.empty(nbytes, dtype=torch.uint8)
    return buffer


def read_bytes_into(path: Path, offset: int, nbytes: int, buffer: torch.Tensor | None,
                    name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`nbytes` bytes of `path` from `offset`, read into `buffer` (grown if too small): (the bytes, the buffer).

    Plain `readinto` calls, as `cat` reads: no memory map, so no page faults
    and no mapped pages left resident. `name` is the tensor, for errors.
    """
    buffer = reusable(buffer, nbytes)
    data = buffer[:nbytes]
    view = memoryview(data.numpy())
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            filled = 0
            while filled < nbytes:
                count = handle.readinto(view[filled:])
                if not count:
                    raise CorruptFileError(path, f"tensor {name!r}: file ends {nbytes - filled} bytes before the "
                                                 "tensor's data does (truncated since it was opened?)")
                filled += count
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read tensor {name!r}: {exc.strerror or exc}") from exc
    return data, buffer
