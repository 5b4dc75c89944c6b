"""PyTorch pickles (.bin/.pt/.pth), read as data only.

`torch.load(..., weights_only=True)` is PyTorch's own allow-list unpickler: a
pickle that names any global outside tensors, storages and plain containers
(`os.system`, `builtins.exec`, ...) is refused before anything is called. We
never fall back to a full unpickler.

Zip-format files (the default since PyTorch 1.6) are memory-mapped, so listing
tensors reads only the small pickle. Each contiguous tensor is then read from
the file at its offset with plain reads (`storage_offsets` finds where each
storage's bytes start and checks it against the map); others are copied out
of the map, which is made again every REMAP_BYTES. The legacy (pre-1.6, non-zip) format cannot be mapped
and is loaded whole, which the `memory_note` property says.

Before torch sees a zip file, its directory is checked: every entry must be
stored uncompressed (as torch.save writes them; a compressed entry would be
read as raw bytes when memory-mapped, or could be a decompression bomb), lie
inside the file, and the pickle must be under MAX_PICKLE_BYTES. After
loading, no tensor may view more bytes than its storage holds (a stride-0
view could otherwise claim terabytes that a copy would try to allocate).
"""

from __future__ import annotations

import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CorruptFileError, UnreadablePathError, UnsafeFileError, UnsupportedError
from .base import TensorInfo, TensorSource, read_bytes_into, reusable
from .limits import MAX_PICKLE_BYTES, MAX_TENSORS

_TORCH_DTYPE_NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16", torch.int32: "I32",
    torch.int64: "I64", torch.bool: "BOOL",
}
# Names shared with safetensors for the dtypes that only recent PyTorch versions have.
for _attr, _name in (("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64"),
                     ("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")):
    if hasattr(torch, _attr):
        _TORCH_DTYPE_NAMES[getattr(torch, _attr)] = _name

# Keys under which training stacks nest the state dict ({"state_dict": {...}, "optimizer": ...}).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "model_state", "weights", "params")

# Bounds on the static pickle scan that explains a refusal.
MAX_SCAN_OPS = 20_000_000
MAX_LEGACY_PICKLES = 5  # magic number, protocol, sys info, object, storage keys


def torch_dtype_name(dtype: torch.dtype) -> str:
    return _TORCH_DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def _flatten_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a (possibly nested) container, named by their dotted path.

    Iterative, so that an adversarially deep container cannot exhaust the stack.
    """
    found: dict[str, torch.Tensor] = {}
    stack: list[tuple[Any, str]] = [(obj, prefix)]
    seen: set[int] = set()
    while stack:
        item, where = stack.pop()
        if isinstance(item, torch.Tensor):
            found[where.rstrip(".")] = item
        elif isinstance(item, (dict, list, tuple)):
            if id(item) in seen:  # a container reachable twice (pickle memo) is listed once
                continue
            seen.add(id(item))
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((value, f"{where}{key}.") for key, value in reversed(list(pairs)))
    return found


def _state_dict_tensors(obj: Any) -> dict[str, torch.Tensor]:
    """The tensors of a state dict, unwrapping {"state_dict": {...}}-style checkpoints.

    A training checkpoint that nests the weights under a wrapper key also holds
    optimizer state (more tensors); only the wrapped state dict is the model.
    """
    for _ in range(4):  # {"model": {"state_dict": {...}}} at most a few levels deep
        if not isinstance(obj, dict) or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict) and _flatten_tensors(obj[k])), None)
        if inner is None:
            break
        obj = inner
    return _flatten_tensors(obj)


_GLOBAL_RE = re.compile(r"(?:Unsupported global|GLOBAL)\s*:?\s*(?:GLOBAL\s+)?([\w.]+)")
# Python 2 / platform module names as pickles spell them, and the names users know.
_MODULE_ALIASES = {"__builtin__": "builtins", "posix": "os", "nt": "os"}
_OPERAND_RE = re.compile(r"Unsupported operand (\d+)")
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _allowed_globals() -> set[str]:
    """Globals PyTorch's weights-only unpickler accepts ("module.name")."""
    try:
        # lazy, in the try: a private torch helper that a torch version may lack
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = set(_get_allowed_globals())
    except Exception:  # a private helper; without it, judge by module
        allowed = set()
    try:
        allowed.update(f"{g.__module__}.{g.__qualname__}" for g in torch.serialization.get_safe_globals()
                       if hasattr(g, "__module__"))
    except Exception:
        pass
    return allowed


def _pickle_globals(stream) -> tuple[list[str], bool]:
    """Globals ("module.name") one pickle names, found by reading opcodes only; nothing is executed.

    Also whether the pickle ended cleanly (a STOP opcode), so that a caller walking
    several pickles in a row stops at the first garbled one.
    """
    names: list[str] = []

    def add(module: str, name: str) -> None:
        names.append(f"{_MODULE_ALIASES.get(module, module)}.{name}")

    memo: dict[Any, Any] = {}
    strings: list[str] = []
    last: Any = None
    finished = False
    try:
        for count, (op, arg, _pos) in enumerate(pickletools.genops(stream)):
            if count > MAX_SCAN_OPS:
                break
            kind = op.name
            value = None
            if kind in _STRING_OPS:
                value = arg.decode("latin-1") if isinstance(arg, bytes) else arg
                strings.append(value)
            elif kind in ("GLOBAL", "INST"):
                module, _, name = str(arg).partition(" ")
                add(module, name)
            elif kind == "STACK_GLOBAL":
                if len(strings) >= 2:
                    add(strings[-2], strings[-1])
                else:
                    names.append("an unknown global")
            elif kind == "MEMOIZE":
                memo[len(memo)] = last
            elif kind in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = last
            elif kind in ("GET", "BINGET", "LONG_BINGET"):
                value = memo.get(arg)
                if isinstance(value, str):
                    strings.append(value)
            if kind not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME"):
                last = value
            finished = kind == "STOP"
    except Exception:  # truncated or garbled after some opcodes: what was seen so far still counts
        pass
    return names, finished


def _forbidden_global(path: Path) -> str | None:
    """The first global the file's pickles name that the weights-only unpickler refuses, if any."""
    allowed = _allowed_globals()

    def refused(names: list[str]) -> str | None:
        for name in names:
            module = name.split(".", 1)[0]
            if name in allowed or (not allowed and module == "torch"):
                continue
            if module == "torch" and name.rsplit(".", 1)[-1].endswith("Storage"):
                continue  # storage classes are allowed under several spellings
            return name
        return None

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith(".pkl"):
                        with archive.open(member) as stream:
                            culprit = refused(_pickle_globals(stream)[0])
                        if culprit:
                            return culprit
            return None
        with open(path, "rb") as stream:
            for _ in range(MAX_LEGACY_PICKLES):
                names, finished = _pickle_globals(stream)
                culprit = refused(names)
                if culprit or not finished:
                    return culprit
    except Exception:  # a stream we cannot even walk: torch's own error stands
        return None
    return None


def _torch_reason(text: str) -> str:
    """The informative line of a torch.load error (not its boilerplate about weights_only)."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch 2.6")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(boilerplate)]
    return _ENFORCE_RE.sub("", (useful or lines or ["unknown error"])[0]) or "unknown error"


# c10's prefix: a source line and the failed condition ("err == 0."), not the problem.
_ENFORCE_RE = re.compile(r"^\[enforce fail at [^\]]*\]\s*(?:[^.]*(?:==|!=|<|>)[^.]*\.\s+|\.\s*)?")


def _load(path: Path, mmap: bool) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():  # torch warns on stderr about pickle protocols; we report instead
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except MemoryError:
        raise
    except OSError as exc:
        if not path.is_file():  # missing, a dangling symlink, unreadable: about the path, not the contents
            raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc
        first = (str(exc).strip().splitlines() or [repr(exc)])[0]
        raise CorruptFileError(path, f"not a readable PyTorch checkpoint: {first}") from exc
    except Exception as exc:
        text = str(exc)
        culprit = _forbidden_global(path)
        if culprit is None and isinstance(exc, pickle.UnpicklingError) and (
                "Unsupported global" in text or "GLOBAL" in text):
            match = _GLOBAL_RE.search(text)
            culprit = match.group(1) if match else "a callable"
        if culprit is not None:
            raise UnsafeFileError(path, f"refused: the pickle would call {culprit}, which is not tensor data; "
                                        "nothing was executed") from exc
        operand = _OPERAND_RE.search(text)
        opcode = pickletools.code2op.get(chr(int(operand.group(1)))) if operand else None
        if opcode is not None:  # a valid pickle opcode that the weights-only unpickler does not implement
            raise UnsupportedError(path, f"uses pickle opcode {opcode.name} (protocol {opcode.proto}), which PyTorch's "
                                         "weights-only unpickler cannot read; re-save it with torch.save's default "
                                         "protocol (2) or as safetensors") from exc
        kind = "pickle" if isinstance(exc, pickle.UnpicklingError) else "checkpoint"
        raise CorruptFileError(path, f"not a readable PyTorch {kind}: {_torch_reason(text) if text else repr(exc)}") from exc
    return _state_dict_tensors(obj)


def _check_zip(path: Path) -> None:
    """Refuse a zip whose directory torch would trust: compressed or out-of-file entries, an oversized pickle."""
    try:
        file_size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except MemoryError:
        raise
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc
    except Exception as exc:  # BadZipFile, struct.error, ValueError...: the stdlib parsing a hostile directory
        raise CorruptFileError(path, f"not a readable zip archive: {exc}") from exc
    if len(entries) > 2 * MAX_TENSORS + 16:  # one record per storage plus a few small ones
        raise CorruptFileError(path, f"zip archive has {len(entries)} entries, over the limit")
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED:
            raise UnsupportedError(path, f"zip entry {entry.filename!r} is compressed (method {entry.compress_type}); "
                                         "torch.save stores entries uncompressed, and a compressed one is either "
                                         "misread as raw bytes or a decompression bomb; refusing it")
        if entry.file_size != entry.compress_size or entry.header_offset + entry.file_size > file_size:
            raise CorruptFileError(path, f"zip entry {entry.filename!r} claims {entry.file_size} bytes, "
                                         f"more than the {file_size}-byte file holds")
        if entry.filename.endswith(".pkl") and entry.file_size > MAX_PICKLE_BYTES:
            raise CorruptFileError(path, f"pickle {entry.filename!r} is {entry.file_size} bytes, over the "
                                         f"{MAX_PICKLE_BYTES}-byte limit (a real state dict's pickle is a few KB to a few MB)")


ZIP_LOCAL_HEADER = 30  # bytes before the name and extra field of a zip entry's local header


def storage_offsets(path: Path, tensors: dict[str, torch.Tensor]) -> dict[str, int] | None:
    """Where each memory-mapped tensor's bytes start in the file, or None when that cannot be told for sure.

    torch maps the whole file and views each storage at the offset of its
    zip entry (`.../data/<key>`); the zip module does not say where an
    entry's data starts, so it is computed from the entry's local header
    (ZIP spec: 30 bytes, then the name and the extra field). The storages
    sorted by address must then sit at the data entries sorted by offset, all
    at one distance from the map's start; if that fails in any way, None, and
    tensors are copied out of the map instead.
    """
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
            starts = []
            for entry in archive.infolist():
                if "/data/" not in entry.filename or not entry.file_size:  # empty storages are not mapped
                    continue
                handle.seek(entry.header_offset)
                header = handle.read(ZIP_LOCAL_HEADER)
                if len(header) != ZIP_LOCAL_HEADER or header[:4] != b"PK\x03\x04":
                    return None
                name_length, extra_length = struct.unpack("<HH", header[26:30])
                starts.append((entry.header_offset + ZIP_LOCAL_HEADER + name_length + extra_length, entry.file_size))
    except (OSError, zipfile.BadZipFile, ValueError, struct.error):
        return None
    storages = sorted({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                       for t in tensors.values() if t.untyped_storage().nbytes()}.items())
    starts.sort()
    if not storages or len(storages) != len(starts):
        return None
    base = storages[0][0] - starts[0][0]
    if any(address - base != start or nbytes > size for (address, nbytes), (start, size) in zip(storages, starts)):
        return None
    return {name: t.data_ptr() - base for name, t in tensors.items() if t.numel()}


def _check_not_broken_zip(path: Path) -> None:
    """A file that starts like a zip but has no readable directory is a damaged zip, not a legacy pickle."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(4)
    except OSError as exc:
        raise UnreadablePathError(path, f"cannot read: {exc.strerror or exc}") from exc
    if start == b"PK\x03\x04":
        raise CorruptFileError(path, "not a readable PyTorch checkpoint: it starts like a zip archive (torch.save's "
                                     "format) but the zip directory at its end is missing or damaged (truncated?)")


def _check_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse more tensors than MAX_TENSORS, or a tensor with more elements than its storage's bytes."""
    if len(tensors) > MAX_TENSORS:
        raise CorruptFileError(path, f"holds {len(tensors)} tensors, over the {MAX_TENSORS}-tensor limit")
    for name, tensor in tensors.items():
        needed = tensor.numel() * tensor.element_size()
        held = tensor.untyped_storage().nbytes()
        if needed > held:
            raise CorruptFileError(path, f"tensor {name!r} of shape {list(tensor.shape)} views {needed} bytes but its "
                                         f"storage holds {held} (overlapping strides); refusing to expand it")


REMAP_BYTES = 256 * 1024 * 1024


class PytorchFile(TensorSource):
    """One PyTorch pickle file holding a state dict."""

    def __init__(self, path: Path):
        super().__init__(Path(path))
        self.format = "pytorch"
        try:
            self.is_zip = zipfile.is_zipfile(self.path)
        except OSError as exc:
            raise UnreadablePathError(self.path, f"cannot read: {exc.strerror or exc}") from exc
        if not self.path.is_file():
            raise UnreadablePathError(self.path, "cannot read: not a regular file (missing, a directory, or a dangling symlink)")
        if self.is_zip:
            _check_zip(self.path)
        else:
            _check_not_broken_zip(self.path)
        tensors = _load(self.path, mmap=self.is_zip)
        _check_tensors(self.path, tensors)
        # Contiguous tensors of a zip file are read at their offsets (plain reads, no mapped pages).
        offsets = storage_offsets(self.path, tensors) if self.is_zip else None
        self._offsets = {name: offsets[name] for name, t in tensors.items()
                         if offsets is not None and name in offsets and t.is_contiguous()}
        self._infos = [
            TensorInfo(name=name, shape=tuple(t.shape), dtype=torch_dtype_name(t.dtype),
                       nbytes=t.numel() * t.element_size(), file=str(self.path))
            for name, t in tensors.items()
        ]
        # Legacy files are already fully in memory; keep them rather than load twice.
        self._legacy_tensors = None if self.is_zip else tensors
        self._by_name = {info.name: info for info in self._infos}
        self._dtypes = {name: t.dtype for name, t in tensors.items()}
        self._mapped: dict[str, torch.Tensor] | None = None
        self._read_since_map = 0

    @property
    def memory_note(self) -> str | None:
        if self.is_zip:
            return None
        return "legacy (non-zip) PyTorch format cannot be memory-mapped; it was loaded whole"

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def read_tensor(self, name: str) -> torch.Tensor:
        tensor, _ = self.read_tensor_into(name, None, fresh=True)
        return tensor

    def read_tensor_into(self, name: str, buffer: torch.Tensor | None,
                         fresh: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._legacy_tensors is not None:
            return self._legacy_tensors[name].clone(), buffer
        if name in self._offsets:  # (a fresh read: no buffer given, so a new one)
            info = self._by_name[name]
            data, buffer = read_bytes_into(self.path, self._offsets[name], info.nbytes, buffer, name)
            return data.view(self._dtypes[name]).view(info.shape), buffer
        # Tensors are copied out of a memory map of the file. Pages read stay
        # mapped while the map lives, so it is dropped and made again after every
        # REMAP_BYTES read: memory stays bounded and the pickle is parsed only
        # once per REMAP_BYTES, not once per tensor.
        if self._mapped is None or self._read_since_map > REMAP_BYTES:
            self._mapped = None
            self._mapped = _load(self.path, mmap=True)
            self._read_since_map = 0
        mapped = self._mapped[name]
        nbytes = mapped.numel() * mapped.element_size()
        try:
            if fresh:
                tensor = mapped.clone()
            else:
                buffer = reusable(buffer, nbytes)
                tensor = buffer[:nbytes].view(mapped.dtype).view(mapped.shape)
                tensor.copy_(mapped)
        except RuntimeError as exc:  # e.g. the file was truncated after it was opened
            raise CorruptFileError(self.path, f"cannot read tensor {name!r}: {_torch_reason(str(exc))}") from exc
        self._read_since_map += nbytes
        return tensor, buffer

    def close(self) -> None:
        self._legacy_tensors = None
        self._mapped = None
