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
