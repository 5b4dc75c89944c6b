"""The reading of a source that reads row blocks by range: 1-D tensors whole, a few rows of every matrix.

What is read, per canonical tensor:
- 1-D tensors (norms, biases) whole, several at a time: a record with hash
  and statistics and `sketch/<key>` = the whole vector (the `VECTORS` part),
  so norms can be folded into the matrices after them at comparison time;
- matrices: the rows of the row sample (`sketch.row_sample_rows`, 4 blocks
  of 8 consecutive rows, i.e. at most 4 ranges, merged with near ones) plus, for the embedding and
  output head, the anchor tokens' rows; from them `Collected.add_rows` makes
  the row sample, the anchor rows and the sampled `mlp.up` rows' unit
  signatures, exactly as a whole-tensor reading makes them from whole
  matrices. Fused tensors are read by the stored rows each canonical row
  comes from (`stored_rows`); transposed ones (GPT-2 Conv1D), whose
  canonical rows are stored columns, are read whole, which is noted (a
  count of stored tensors), unless the source stores their canonical rows
  as rows (`reads_transposed_rows`: gpt-oss's stacked MXFP4 experts, whose
  blocks are [experts, out, in/32, 16]), which are then read by range too;
- larger tensors: a record only.
Nothing else: no hash, statistics or sketch of a matrix, no unit signature of
a whole matrix, no Gram matrix. The reads go to the source in two batches
(vectors, then every matrix's rows: `TensorSource.read_many`), which a remote
source groups into few large range requests (`remote/coalesce.py`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import torch

from ..architectures.layouts import HeadLayout, apply_transform
from ..formats.base import TensorInfo
from .collect import Collected
from .sketch import sketch_positions
from .tensor_pass import sample_statistics, value_hash

# id(assignment) -> (canonical rows wanted, sorted; stored row of each canonical row)
RowPlans = dict[int, tuple[np.ndarray, np.ndarray]]


def stored_rows(info: TensorInfo, assignment, heads: HeadLayout) -> np.ndarray | None:
    """For each canonical row, the stored row (of the stored tensor viewed as (-1, last dim)) holding it.

    Found by running the assignment's transform on a column of row numbers, so
    every split layout (concatenated, per-head interleaved, grouped, stacked
    experts) maps without a rule of its own. None when canonical rows are not
    stored rows (a transposed tensor).
    """
    transform = assignment.transform
    if transform.transposed or len(info.shape) < 2:
        return None
    ids = torch.arange(math.prod(info.shape[:-1]), dtype=torch.int64).reshape(*info.shape[:-1], 1)
    mapped = apply_transform(ids, replace(transform, norm_offset=0.0), heads, info.file)
    if mapped.dim() != 2 or mapped.shape[0] != assignment.shape[0]:
        return None
    return mapped.reshape(-1).numpy()


def transposed_stored_rows(info: TensorInfo, assignment, heads: HeadLayout) -> np.ndarray | None:
    """For a transposed tensor, each canonical row's row in the stored tensor with its last two dimensions
    swapped, viewed as (-1, second-to-last dim) (`TensorSource.read_many_transposed`); None if not transposed."""
    transform = assignment.transform
    if not transform.transposed or len(info.shape) < 2:
        return None
    *lead, _, outer = info.shape
    ids = torch.arange(math.prod(lead) * outer, dtype=torch.int64).reshape(*lead, 1, outer)
    mapped = apply_transform(ids, replace(transform, norm_offset=0.0), heads, info.file)
    if mapped.dim() != 2 or mapped.shape[0] != assignment.shape[0]:
        return None
    return mapped.reshape(-1).numpy()


def plan_rows(collected: Collected, matrices: list, infos: dict[str, TensorInfo],
              heads: HeadLayout) -> tuple[RowPlans, RowPlans, list, int]:
    """Which stored rows to fetch per matrix, which rows of transposed tensors the source reads by range
    (`TensorSource.reads_transposed_rows`), the matrices to read whole instead, and the tensor bytes planned."""
    source = collected.checkpoint.files.source
    plans: RowPlans = {}
    transposed: RowPlans = {}
    whole: list = []
    read_whole: set[str] = set()
    planned = 0
    for assignment in matrices:
        info = infos[assignment.source]
        wanted = collected.rows_wanted(assignment.key, tuple(assignment.shape))
        mapping = stored_rows(info, assignment, heads)
        swapped = (transposed_stored_rows(info, assignment, heads)
                   if mapping is None and source.reads_transposed_rows(info.name) else None)
        if swapped is not None:
            transposed[id(assignment)] = (wanted, swapped)
            rows = math.prod(info.shape[:-2]) * info.shape[-1]
            planned += len(wanted) * info.nbytes // max(rows, 1)
        elif mapping is None:
            planned += 0 if info.name in read_whole else info.nbytes  # read once, however many matrices it holds
            read_whole.add(info.name)
            whole.append(assignment)
        else:
            plans[id(assignment)] = (wanted, mapping)
            planned += len(wanted) * info.nbytes // max(math.prod(info.shape[:-1]), 1)
    return plans, transposed, whole, planned


def read_row_blocks(collected: Collected, on_tensor: Callable[[int, int], None] | None) -> dict[str, Any]:
    """Reduce the checkpoint into `collected` from row blocks; returns the bytes planned and notes."""
    checkpoint = collected.checkpoint
    source = checkpoint.files.source
    arch = checkpoint.architecture
    heads = HeadLayout(arch.num_heads, arch.num_kv_heads, arch.head_dim)
    infos = {info.name: info for info in checkpoint.infos}
    assignments = checkpoint.roles.assignments
    vectors = [a for a in assignments if len(a.shape) <= 1]
    matrices = [a for a in assignments if len(a.shape) == 2]
    others = [a for a in assignments if len(a.shape) > 2]
    plans, transposed, whole, planned = plan_rows(collected, matrices, infos, heads)
    planned += sum(infos[name].nbytes for name in {a.source for a in vectors})
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_tensor:
            on_tensor(done, len(assignments))

    # 1-D tensors, whole, all in one grouped read (`TensorSource.read_many`); each stored tensor is read once.
    names = list(dict.fromkeys(a.source for a in vectors))
    stored_vectors = {names[index]: tensor for index, tensor in source.read_many([(name, None) for name in names])}
    for name, tensor in stored_vectors.items():
        collected.stored_hashes[name] = value_hash(tensor)
    for assignment in vectors:
        values = apply_transform(stored_vectors[assignment.source], assignment.transform, heads,
                                 infos[assignment.source].file).to(torch.float32)
        record_key = collected.record_key(assignment)
        digest = (collected.stored_hashes[assignment.source] if assignment.transform.is_identity
                  else value_hash(values))
        collected.record(record_key, assignment, assignment.shape, infos[assignment.source].dtype, digest,
                         sample_statistics(values)[0])
        positions = torch.from_numpy(sketch_positions(tuple(values.shape)))
        collected.add_sketch(record_key, values.reshape(-1)[positions], values.dim())
        collected.add_norm(assignment.key, values)
        tick()
    del stored_vectors


    def add_matrix(assignment, wanted: np.ndarray, rows: torch.Tensor) -> None:
        record_key = collected.record_key(assignment)
        collected.record(record_key, assignment, assignment.shape, infos[assignment.source].dtype, None)
        collected.add_rows(assignment.key, record_key, tuple(assignment.shape),
                           lambda ids: rows[torch.from_numpy(np.searchsorted(wanted, ids))])
        tick()

    # the row samples of every matrix in one grouped read: near blocks of many tensors share a range request
    planned_matrices = [a for a in matrices if id(a) in plans]
    reads = [(a.source, plans[id(a)][1][plans[id(a)][0]]) for a in planned_matrices]
    for index, rows in source.read_many(reads):
        assignment = planned_matrices[index]
        add_matrix(assignment, plans[id(assignment)][0], rows.to(torch.float32))
    # transposed tensors whose canonical rows the source stores as rows (gpt-oss's stacked MXFP4 experts): the
    # same rows by range, in one more grouped read
    swapped = [a for a in matrices if id(a) in transposed]
    reads = [(a.source, transposed[id(a)][1][transposed[id(a)][0]]) for a in swapped]
    for index, rows in (source.read_many_transposed(reads) if reads else ()):
        assignment = swapped[index]
        add_matrix(assignment, transposed[id(assignment)][0], rows.to(torch.float32))
    # each stored tensor read whole once for every canonical matrix it holds (a stacked experts tensor holds one
    # per expert), one stored tensor in memory at a time
    by_source: dict[str, list] = {}
    for assignment in whole:
        by_source.setdefault(assignment.source, []).append(assignment)
    for name, held in by_source.items():
        stored = source.read_tensor(name)
        for assignment in held:
            values = apply_transform(stored, assignment.transform, heads, infos[name].file).to(torch.float32)
            wanted = collected.rows_wanted(assignment.key, tuple(assignment.shape))
            add_matrix(assignment, wanted, values[torch.from_numpy(wanted)])
            del values
        del stored
    for assignment in others:
        collected.record(collected.record_key(assignment), assignment, assignment.shape,
                         infos[assignment.source].dtype, None)
        tick()
    # counted as stored tensors (a stacked experts tensor is one, however many matrices it holds)
    notes = [f"{len(by_source)} transposed tensors were read whole (their rows are stored as columns)"] if whole else []
    return {"tensor_bytes_planned": planned, "notes": notes}
