"""Several files read as one checkpoint: sharded safetensors or PyTorch bins.

The index (`*.index.json`, {"weight_map": {tensor: shard}}) is validated
before any shard is opened: every shard must exist inside the checkpoint's
directory, and the index must agree with what the shards hold.

Shards may be local files or remote ones (`remote.checkpoint` opens them over
HTTP ranges): reads go to the shard holding the tensor, many reads are
grouped per shard, and what the shards' transport fetched is reported once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..errors import CorruptFileError, MissingShardError
from .base import TensorInfo, TensorSource, TransferCounts
from .byte_reader import transfer_report
from .limits import MAX_SHARDS, MAX_TENSORS, read_json_limited, resolve_inside


class MultiFileSource(TensorSource):
    """A checkpoint spread over shards; each tensor is read from its own shard."""

    def __init__(self, path: Any, shards: list[TensorSource], format: str, index_path: Any = None,
                 weight_map: dict[str, str] | None = None, index_entry: dict[str, Any] | None = None):
        """`path` and `index_path` are local Paths, or remote files (whose str() names them in errors);
        `index_entry` is how a fingerprint lists a remote index (name, url)."""
        super().__init__(path if index_entry is not None else Path(path))
        self.format = format
        self.shards = shards
        self.index_path = index_path
        self.index_entry = index_entry
        if shards:
            self.reads = shards[0].reads  # type: ignore[misc]  # the shards' transport: all local or all remote
            self.concurrency = shards[0].concurrency  # type: ignore[misc]
        self._owner: dict[str, TensorSource] = {}
        self._infos: list[TensorInfo] = []
        for shard in shards:
            for info in shard.tensor_infos():
                if info.name in self._owner:
                    other = self._owner[info.name].path.name
                    raise CorruptFileError(shard.path, f"tensor {info.name!r} is also stored in shard {other}")
                self._owner[info.name] = shard
                self._infos.append(info)
        if weight_map is not None:
            self._check_index(weight_map)

    def _check_index(self, weight_map: dict[str, str]) -> None:
        where = self.index_path or self.path
        for name, shard_file in weight_map.items():
            owner = self._owner.get(name)
            if owner is None:
                raise CorruptFileError(where, f"index names tensor {name!r} in {shard_file}, but that shard does not hold it")
            if owner.path.name != Path(shard_file).name:
                raise CorruptFileError(where, f"index puts tensor {name!r} in {shard_file}, but it is stored in {owner.path.name}")
        missing = [name for name in self._owner if name not in weight_map]
        if missing:
            raise CorruptFileError(where, f"{len(missing)} stored tensors are not in the index, e.g. {missing[0]!r}")

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def read_tensor(self, name: str) -> torch.Tensor:
        return self._owner[name].read_tensor(name)

    def read_tensor_into(self, name: str, buffer: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._owner[name].read_tensor_into(name, buffer)

    def read_rows(self, name: str, rows: np.ndarray) -> torch.Tensor:
        return self._owner[name].read_rows(name, rows)

    def read_many(self, reads: list[tuple[str, np.ndarray | None]]) -> Iterator[tuple[int, torch.Tensor]]:
        """Each shard's reads handed to that shard at once (a remote shard groups them into few range requests)."""
        by_shard: dict[int, list[int]] = {}
        for index, (name, _) in enumerate(reads):
            by_shard.setdefault(id(self._owner[name]), []).append(index)
        for indices in by_shard.values():
            shard = self._owner[reads[indices[0]][0]]
            for position, tensor in shard.read_many([reads[i] for i in indices]):
                yield indices[position], tensor

    def transfers(self) -> TransferCounts | None:
        return self.shards[0].transfers() if self.shards else None

    def transfer_report(self, since: TransferCounts) -> dict[str, Any]:
        now = self.transfers()
        entries = self._shard_entries()
        if now is None or entries is None:
            return {}
        header_bytes = sum(getattr(shard, "header_bytes", 0) for shard in self.shards)
        return transfer_report(since, now, header_bytes, sum(entry.get("bytes") or 0 for entry in entries))

    def _shard_entries(self) -> list[dict[str, Any]] | None:
        entries = [shard.file_entries() for shard in self.shards]
        if not entries or any(entry is None for entry in entries):
            return None
        return [row for entry in entries for row in entry]  # type: ignore[union-attr]

    def file_entries(self) -> list[dict[str, Any]] | None:
        entries = self._shard_entries()
        if entries is None:
            return None
        return ([self.index_entry] if self.index_entry is not None else []) + entries

    def metadata(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for shard in self.shards:
            merged.update(shard.metadata())
        return merged

    def files(self) -> list[Path]:
        files = [shard.path for shard in self.shards]
        return ([self.index_path] if self.index_path else []) + files

    def close(self) -> None:
        for shard in self.shards:
            shard.close()


def checked_weight_map(where: Any, index: Any) -> dict[str, str]:
    """The `weight_map` of a parsed index (`*.index.json`, local or remote: `where` names it in errors), checked to
    map at most MAX_TENSORS tensor names to at most MAX_SHARDS shard file names, all strings."""
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CorruptFileError(where, "index has no 'weight_map' object mapping tensor names to shard files")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CorruptFileError(where, "'weight_map' must map tensor names (strings) to shard file names (strings)")
    if len(weight_map) > MAX_TENSORS:
        raise CorruptFileError(where, f"index lists {len(weight_map)} tensors, over the {MAX_TENSORS}-tensor limit")
    shards = len(set(weight_map.values()))
    if shards > MAX_SHARDS:
        raise CorruptFileError(where, f"index names {shards} shard files, over the {MAX_SHARDS}-shard limit")
    return weight_map


def open_sharded(index_path: Path, root: Path, open_shard: Callable[[Path], TensorSource], format: str) -> MultiFileSource:
    """Open the shards an index names, refusing shards that are missing or outside `root`."""
    weight_map = checked_weight_map(index_path, read_json_limited(index_path, "index", unique_keys=True))
    shard_names = list(dict.fromkeys(weight_map.values()))
    paths = []
    seen: dict[Path, str] = {}
    for shard_name in shard_names:
        if not shard_name or "\x00" in shard_name:
            raise CorruptFileError(index_path, f"index names an invalid shard file name {shard_name!r}")
        shard_path = index_path.parent / shard_name
        if not shard_path.exists():
            raise MissingShardError(index_path, f"index names shard {shard_name!r}, which is not there")
        resolved = resolve_inside(shard_path, root)
        if resolved in seen:
            raise CorruptFileError(index_path, f"shards {seen[resolved]!r} and {shard_name!r} are the same file")
        seen[resolved] = shard_name
        paths.append(shard_path)
    shards = open_shards(paths, open_shard, index_path)
    return MultiFileSource(index_path.parent, shards, format, index_path=index_path, weight_map=weight_map)


def open_shards(paths: list[Path], open_shard: Callable[[Path], TensorSource], where: Path) -> list[TensorSource]:
    """Open each shard's header, refusing (before opening more) when the tensors add up past MAX_TENSORS."""
    if len(paths) > MAX_SHARDS:
        raise CorruptFileError(where, f"{len(paths)} shard files, over the {MAX_SHARDS}-shard limit")
    shards: list[TensorSource] = []
    total = 0
    try:
        for path in paths:
            shards.append(open_shard(path))
            total += len(shards[-1].tensor_infos())
            if total > MAX_TENSORS:
                raise CorruptFileError(where, f"the shards hold more than {MAX_TENSORS} tensors together, over the limit")
    except BaseException:
        for shard in shards:
            shard.close()
        raise
    return shards

