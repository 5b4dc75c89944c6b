"""A `TensorSource` over any other that reads quantized weights back as the float weights they stand for.

`with_dequantization(source, config)` asks every scheme of `schemes.SCHEMES`
for its groups (with config.json's `quantization_config` when there is one)
and returns `source` itself when none finds any, so ordinary checkpoints are
read exactly as before. Otherwise the wrapper lists each group as one tensor
(the unquantized name and shape; dtype the scheme's storage name, which
`compare.thresholds.STORAGE_TOLERANCE` knows; bytes the group's stored bytes),
hides the stored tensors a group consists of, passes every other tensor
through, and dequantizes on read. Row reads (`read_rows`, remote sampling)
fetch only the rows of the codes and of the scales the rows need when the
scheme says which (`scheme.RowScheme`); otherwise the group is read whole.
A `ValueError` of a scheme (a scale of the wrong shape, a zero scale) becomes
a `CorruptFileError` naming the file and the tensor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from ...errors import CorruptFileError
from ..base import TensorInfo, TensorSource, TransferCounts
from .scheme import QuantizedTensor, QuantScheme
from .schemes import SCHEMES


def find_groups(infos: list[TensorInfo], config: Mapping[str, Any] | None,
                schemes: list[QuantScheme] = SCHEMES) -> list[tuple[QuantScheme, QuantizedTensor]]:
    """Each scheme's groups, a stored tensor going to the first scheme that claims it (a later scheme is not shown
    it, so it cannot misread, or refuse, what an earlier one understood)."""
    quantization_config = (config or {}).get("quantization_config")
    if not isinstance(quantization_config, Mapping):
        quantization_config = None
    files = {info.name: info.file for info in infos}
    claimed: set[str] = set()
    groups = []
    for scheme in schemes:
        unclaimed = [info for info in infos if info.name not in claimed]  # a later scheme never sees claimed ones
        try:
            found = scheme.find(unclaimed, quantization_config)
        except ValueError as exc:  # named after the file holding the first tensor the message quotes
            where = next((i.file for i in infos if repr(i.name) in str(exc)), infos[0].file if infos else None)
            raise CorruptFileError(where, f"{scheme.name} quantization: {exc}") from exc
        for group in found:
            stored = set(group.parts.values()) | set(hidden_parts(group))
            if stored & claimed or not stored <= files.keys():
                continue
            if group.name in files and group.name not in stored:
                raise CorruptFileError(files[group.name], f"holds tensor {group.name!r} and also its {scheme.name} "
                                                          f"quantized parts {sorted(stored)}")
            claimed |= stored
            groups.append((scheme, group))
    return groups


def hidden_parts(group: QuantizedTensor) -> tuple[str, ...]:
    """Stored tensors a group hides without reading them (a layer's activation scales)."""
    return tuple((group.detail or {}).get("hidden", ()))


def with_dequantization(source: TensorSource, config: Mapping[str, Any] | None) -> TensorSource:
    """`source` read through `DequantizingSource` when a scheme finds quantized groups in it, else `source`."""
    groups = find_groups(source.tensor_infos(), config)
    return DequantizingSource(source, groups) if groups else source


class DequantizingSource(TensorSource):
    """`inner` with every quantized group listed and read as one float32 tensor."""

    def __init__(self, inner: TensorSource, groups: list[tuple[QuantScheme, QuantizedTensor]]):
        super().__init__(inner.path)
        self.inner = inner
        self.format = inner.format
        self.reads = inner.reads
        self.concurrency = inner.concurrency
        self._groups = {group.name: (scheme, group) for scheme, group in groups}
        stored = {info.name: info for info in inner.tensor_infos()}
        position = {name: number for number, name in enumerate(stored)}
        listed: dict[str, TensorInfo | None] = {}  # stored name -> what is listed in its place (None: hidden)
        for scheme, group in groups:
            names = [*group.parts.values(), *hidden_parts(group)]
            for name in names:
                listed[name] = None
            listed[min(names, key=position.__getitem__)] = TensorInfo(  # in the place of its first stored part
                name=group.name, shape=tuple(group.shape), dtype=group.storage,
                nbytes=sum(stored[n].nbytes for n in names), file=stored[next(iter(group.parts.values()))].file)
        self._infos = [listed.get(name, info) for name, info in stored.items() if listed.get(name, info) is not None]
        self._files = {info.name: info.file for info in self._infos}

    def tensor_infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def read_tensor(self, name: str) -> torch.Tensor:
        if name not in self._groups:
            return self.inner.read_tensor(name)
        scheme, group = self._groups[name]
        names = list(group.parts)  # the parts in one batch: one range request when they are near in the file
        parts = {names[index]: tensor for index, tensor in self.inner.read_many([(group.parts[n], None) for n in names])}
        return self._dequantized(group, lambda: scheme.dequantize(group, parts))

    def read_tensor_into(self, name: str, buffer: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if name not in self._groups:
            return self.inner.read_tensor_into(name, buffer)
        return self.read_tensor(name), buffer

    def read_rows(self, name: str, rows: np.ndarray) -> torch.Tensor:
        if name not in self._groups:
            return self.inner.read_rows(name, rows)
        scheme, group = self._groups[name]
        plan = scheme.row_parts(group, rows) if hasattr(scheme, "row_parts") else None
        if plan is None:
            return TensorSource.read_rows(self, name, rows)
        parts = {part: (self.inner.read_tensor(group.parts[part]) if wanted is None
                        else self.inner.read_rows(group.parts[part], wanted))
                 for part, wanted in plan.items()}
        return self._dequantized(group, lambda: scheme.dequantize_rows(group, rows, parts))

    def reads_transposed_rows(self, name: str) -> bool:
        if name not in self._groups:
            return self.inner.reads_transposed_rows(name)
        scheme, group = self._groups[name]
        return hasattr(scheme, "transposed_row_parts") and scheme.transposed_row_parts(group, np.zeros(0)) is not None

    def read_many_transposed(self, reads: list[tuple[str, np.ndarray]]) -> Iterator[tuple[int, torch.Tensor]]:
        """Rows of stacked experts in their stored order (`TensorSource.read_many_transposed`), read by range
        where the scheme stores them as rows (`transposed_row_parts`), all in one batch as `read_many`."""
        if not all(name in self._groups for name, _ in reads):
            yield from TensorSource.read_many_transposed(self, reads)
            return
        yield from self.read_many(reads, transposed=True)

    def read_many(self, reads: list[tuple[str, np.ndarray | None]],
                  transposed: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
        """The inner source's `read_many` over every stored part the reads need, in one batch (a remote source
        groups them into few range requests); each group is dequantized once its parts have arrived.
        `transposed`: the rows are of the groups' last two dimensions swapped (`read_many_transposed`)."""
        inner_reads: list[tuple[str, np.ndarray | None]] = []
        owner: list[tuple[int, str | None]] = []  # per inner read: (index in `reads`, part name; None: passed on)
        plans: dict[int, tuple[Any, QuantizedTensor, np.ndarray | None, bool]] = {}  # index -> how to finish it
        waiting: dict[int, int] = {}  # index -> parts still to arrive
        for index, (name, rows) in enumerate(reads):
            if name not in self._groups:
                owner.append((index, None))
                inner_reads.append((name, rows))
                continue
            scheme, group = self._groups[name]
            if transposed:
                plan = scheme.transposed_row_parts(group, rows)
                if plan is None:
                    raise ValueError(f"{name}: its transposed rows are not stored as rows")
            else:
                plan = scheme.row_parts(group, rows) if rows is not None and hasattr(scheme, "row_parts") else None
            plans[index] = (scheme, group, rows, plan is not None)
            wanted = plan if plan is not None else {part: None for part in group.parts}
            waiting[index] = len(wanted)
            for part, part_rows in wanted.items():
                owner.append((index, part))
                inner_reads.append((group.parts[part], part_rows))
        arrived: dict[int, dict[str, torch.Tensor]] = {}
        for position, tensor in self.inner.read_many(inner_reads):
            index, part = owner[position]
            if part is None:
                yield index, tensor
                continue
            arrived.setdefault(index, {})[part] = tensor
            waiting[index] -= 1
            if waiting[index]:
                continue
            parts = arrived.pop(index)
            scheme, group, rows, by_rows = plans[index]
            if by_rows:
                yield index, self._dequantized(group, lambda: scheme.dequantize_rows(group, rows, parts))
                continue
            values = self._dequantized(group, lambda: scheme.dequantize(group, parts))
            yield index, values if rows is None else values.reshape(-1, values.shape[-1])[
                torch.from_numpy(np.asarray(rows, dtype=np.int64))]

    def _dequantized(self, group: QuantizedTensor, dequantize) -> torch.Tensor:
        try:
            return dequantize()
        except ValueError as exc:
            raise CorruptFileError(self._files[group.name], f"tensor {group.name!r} ({group.storage}): {exc}") from exc

    def transfers(self) -> TransferCounts | None:
        return self.inner.transfers()

    def transfer_report(self, since: TransferCounts) -> dict[str, Any]:
        return self.inner.transfer_report(since)

    def file_entries(self) -> list[dict[str, Any]] | None:
        return self.inner.file_entries()

    def metadata(self) -> dict[str, Any]:
        return self.inner.metadata()

    def files(self) -> list:
        return self.inner.files()

    @property
    def memory_note(self) -> str | None:
        return getattr(self.inner, "memory_note", None)

    def close(self) -> None:
        self.inner.close()
