"""A checkpoint opened for auditing: files, architecture, canonical roles, streaming reads.

`Checkpoint.open(path)` reads headers and side files only. Tensor data is read
by `iter_canonical()`, one stored tensor at a time (a fused tensor is read once
and all its parts are yielded before the next read), so memory stays at about
the largest single tensor.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .architectures.descriptor import Architecture
from .architectures.layouts import HeadLayout, apply_transform
from .architectures.mapping import RoleAssignment, RoleMap, map_checkpoint
from .architectures.roles import CanonicalKey, Role
from .formats import CheckpointFiles, TensorInfo, open_checkpoint_files
from .formats.read_ahead import read_ahead
from .remote import is_remote
from .remote.checkpoint import open_remote_checkpoint_files


@dataclass
class Checkpoint:
    files: CheckpointFiles
    infos: list[TensorInfo]
    roles: RoleMap
    architecture: Architecture

    @classmethod
    def open(cls, path: str | Path) -> "Checkpoint":

        if is_remote(path):  # http(s):// or hf://: headers now, rows later by HTTP range requests

            files = open_remote_checkpoint_files(str(path))
        else:
            files = open_checkpoint_files(path)
        try:
            infos = files.source.tensor_infos()
            metadata = files.source.metadata() if files.format == "gguf" else None
            roles, architecture = map_checkpoint(infos, files.config, metadata, str(files.path))
        except Exception:
            files.close()
            raise
        return cls(files=files, infos=infos, roles=roles, architecture=architecture)

    @property
    def path(self) -> Path:
        return self.files.path

    @property
    def format(self) -> str:
        return self.files.format

    def metadata(self) -> dict[str, Any]:
        return self.files.source.metadata()

    def _heads(self) -> HeadLayout:
        arch = self.architecture
        return HeadLayout(arch.num_heads, arch.num_kv_heads, arch.head_dim)

    def iter_canonical(self, small_first: bool = False,
                       on_stored: Callable[[TensorInfo, torch.Tensor], None] | None = None,
                       prefetch: bool = False, reuse_buffers: bool = False,
                       ) -> Iterator[tuple[RoleAssignment, torch.Tensor]]:
        """Every canonical tensor with its values, reading each stored tensor once.

        With `small_first`, 1-D tensors (norms, biases) come before the rest, so
        that a consumer can fold norm weights into the matrices that follow them,
        and the token embedding before the other matrices, so that its anchor
        rows can probe the layers' units (`fingerprint.parts.anchor_responses`).
        `on_stored` sees each stored tensor as read, before it is split.
        With `prefetch`, stored tensors are read (and passed to `on_stored`) on a
        background thread while the consumer works on the previous one: at most
        two stored tensors are held at a time. With `reuse_buffers` as well,
        they are read into two buffers in turn: each yielded tensor (possibly a
        view of one) is valid only until the next stored tensor's parts are
        asked for, so a consumer copies what it keeps.
        """
        by_source: dict[str, list[RoleAssignment]] = defaultdict(list)
        for assignment in self.roles.assignments:
            by_source[assignment.source].append(assignment)
        heads = self._heads()
        def embeds(info: TensorInfo) -> bool:
            return any(a.key.role == Role.EMBED for a in by_source.get(info.name, ()))

        infos = sorted(self.infos, key=lambda i: (len(i.shape) > 1, not embeds(i))) if small_first else self.infos
        plan = [(info, by_source[info.name]) for info in infos if by_source.get(info.name)]
        reads = (read_ahead(self.files.source, plan, on_stored, reuse_buffers) if prefetch
                 else self._read_in_turn(plan, on_stored))
        for info, wanted, stored in reads:
            for assignment in wanted:
                yield assignment, apply_transform(stored, assignment.transform, heads, info.file)
            del stored

    def _read_in_turn(self, plan, on_stored):
        for info, wanted in plan:
            stored = self.files.source.read_tensor(info.name)
            if on_stored is not None:
                on_stored(info, stored)
            yield info, wanted, stored
            del stored

    def read(self, key: CanonicalKey) -> torch.Tensor:
        """One canonical tensor (reads its whole stored tensor)."""
        for assignment in self.roles.assignments:
            if assignment.key == key:
                stored = self.files.source.read_tensor(assignment.source)
                return apply_transform(stored, assignment.transform, self._heads(), str(self.path))
        raise KeyError(key.name)

    def close(self) -> None:
        self.files.close()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
