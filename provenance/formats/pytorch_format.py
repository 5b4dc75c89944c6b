"""PyTorch pickles (.bin/.pt/.pth), read as data only.

`torch.load(..., weights_only=True)` is PyTorch's own allow-list unpickler: a
pickle that names any global outside tensors, storages and plain containers
(`os.system`, `builtins.exec`, ...) is refused before anything is called. We
never fall back to a full unpickler.

Zip-format files (the default since PyTorch 1.6) are memory-mapped, so listing
tensors reads only the small pickle, and each read maps the file again and
copies one tensor out; the legacy (pre-1.6, non-zip) format cannot be mapped
and is loaded whole, which the `memory_note` property says.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CorruptFileError, UnsafeFileError
from .base import TensorInfo, TensorSource

_TORCH_DTYPE_NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16", torch.int32: "I32",
    torch.int64: "I64", torch.bool: "BOOL",
}


def torch_dtype_name(dtype: torch.dtype) -> str:
    return _TORCH_DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def _flatten_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a state dict, also when nested ({"state_dict": {...}}, {"model": {...}})."""
    found: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        found[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            found.update(_flatten_tensors(value, f"{prefix}{key}."))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            found.update(_flatten_tensors(value, f"{prefix}{index}."))
    return found


_GLOBAL_RE = re.compile(r"(?:Unsupported global|GLOBAL)\s*:?\s*(?:GLOBAL\s+)?([\w.]+)")


def _load(path: Path, mmap: bool) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        match = _GLOBAL_RE.search(text)
        culprit = match.group(1) if match else "a callable"
        if "Unsupported global" in text or "not an allowed global" in text or "GLOBAL" in text:
            raise UnsafeFileError(path, f"refused: the pickle would call {culprit}, which is not tensor data; nothing was executed") from exc
        raise CorruptFileError(path, f"not a readable PyTorch pickle: {text.splitlines()[0] if text else exc!r}") from exc
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError, AttributeError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [repr(exc)])[0]
        raise CorruptFileError(path, f"not a readable PyTorch checkpoint: {first}") from exc
    return _flatten_tensors(obj)


class PytorchFile(TensorSource):
    """One PyTorch pickle file holding a state dict."""

    def __init__(self, path: Path):
        super().__init__(Path(path))
        self.format = "pytorch"
        self.is_zip = zipfile.is_zipfile(self.path)
        tensors = _load(self.path, mmap=self.is_zip)
        self._infos = [
            TensorInfo(name=name, shape=tuple(t.shape), dtype=torch_dtype_name(t.dtype),
                       nbytes=t.numel() * t.element_size(), file=str(self.path))
            for name, t in tensors.items()
        ]
        # Legacy files are already fully in memory; keep them rather than load twice.
        self._legacy_tensors = None if self.is_zip else tensors

    @property
    def memory_note(self) -> str | None:
        if self.is_zip:
            return None
        return "legacy (non-zip) PyTorch format cannot be memory-mapped; it was loaded whole"

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def read_tensor(self, name: str) -> torch.Tensor:
        if self._legacy_tensors is not None:
            return self._legacy_tensors[name].clone()
        # Map the file again for this one tensor and copy it out, so pages of
        # earlier tensors do not stay mapped for the rest of the pass.
        tensors = _load(self.path, mmap=True)
        tensor = tensors[name].clone()
        del tensors
        return tensor

    def close(self) -> None:
        self._legacy_tensors = None
