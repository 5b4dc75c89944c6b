"""The reading of a source that reads whole tensors: one streaming pass, every part of the fingerprint.

Stored tensors are read (and hashed) on a background thread, one ahead of
this one (`Checkpoint.iter_canonical`); each canonical tensor is then reduced
in its stored dtype, in chunks (`tensor_pass`: value hash, statistics, unit
projections fused), and its sketch, row sample, anchor rows, unit signatures,
residual-space Gram matrices and MLP units' anchor responses are taken while
it is in memory (the embedding is read before the other matrices, so its
anchor rows are there to probe them). Tensors no
role fits are hashed too, so that a copy with opaque names is recognised as
the same set of stored tensors.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable

import numpy as np
import torch

from .collect import Collected
from .parts import GRAM_UNITS, PRECEDING_NORM_OF, RESPONSE_ROLES, WRITES_RESIDUAL, anchor_responses, residual_gram, unit_basis
from .sketch import sketch_positions
from .store import Part
from .tensor_pass import tensor_pass, value_hash

MAX_WORKERS = 8


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def _take_rows(values: torch.Tensor, as_float: Callable[[torch.Tensor], torch.Tensor], rows: np.ndarray) -> torch.Tensor:
    return as_float(values[torch.from_numpy(rows)])


def read_whole_tensors(collected: Collected, on_tensor: Callable[[int, int], None] | None) -> None:
    """Reduce every tensor of the checkpoint into `collected`, one whole tensor at a time."""
    workers = _workers()
    threads = torch.get_num_threads()
    # The pass splits each tensor among `workers` threads itself, so each runs PyTorch on one
    # thread. OpenMP's thread count is per thread: it is set in every thread that calls PyTorch
    # (two threads each running a 2-thread OpenMP team made small products 20 times slower).
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fingerprint",
                                initializer=torch.set_num_threads, initargs=(1,)) as executor:
            _pass(collected, on_tensor, executor, workers)
    finally:
        torch.set_num_threads(threads)


def _pass(collected: Collected, on_tensor: Callable[[int, int], None] | None, executor: ThreadPoolExecutor,
          workers: int) -> None:
    checkpoint = collected.checkpoint
    total = len(checkpoint.roles.assignments)
    reader = threading.local()

    def hash_stored(info, stored: torch.Tensor) -> None:
        # The stored tensor as a whole, before any split or transpose: equal for a
        # renamed copy even when its names no longer say how to split it.
        if not getattr(reader, "single", False):  # the reading thread, as the workers (see read_whole_tensors)
            torch.set_num_threads(1)
            reader.single = True
        collected.stored_hashes[info.name] = value_hash(stored)
        collected.generic.add(info, stored)

    # Tensors are read into two reused buffers: everything kept below is a copy.
    canonical = checkpoint.iter_canonical(small_first=True, on_stored=hash_stored, prefetch=True, reuse_buffers=True)
    for done, (assignment, tensor) in enumerate(canonical, start=1):
        key = assignment.key
        values = tensor.detach()
        shape = tuple(values.shape)
        record_key = collected.record_key(assignment)
        # an unsplit, untransposed tensor has the stored tensor's hash already
        digest = (collected.stored_hashes[assignment.source] if assignment.transform.is_identity
                  else value_hash(values))
        sketch = values.reshape(-1)[torch.from_numpy(sketch_positions(shape))].to(torch.float32)
        matrix = key.expert is None and key.param == "weight" and values.dim() == 2 and key.layer is not None
        scale = collected.norm_before(key) if matrix else None
        reads = key.role in PRECEDING_NORM_OF
        basis = unit_basis(key.role, shape[1] if reads else shape[0], scale) if matrix else None
        done_pass = tensor_pass(values, basis, reads, executor, workers)
        nonfinite = done_pass.nonfinite

        def as_float(part: torch.Tensor) -> torch.Tensor:
            # hashed as stored, but 0 in statistics and samples, which stay comparable
            part = part.to(torch.float32)
            return torch.nan_to_num(part, nan=0.0, posinf=0.0, neginf=0.0)

        collected.record(record_key, assignment, shape, collected.dtypes.get(assignment.source), digest,
                         done_pass.stats, nonfinite)
        collected.add_sketch(record_key, as_float(sketch), values.dim())
        if values.dim() == 2:  # the rows a row-block reading also takes (see sketch.row_sample_rows)
            collected.add_rows(key, record_key, shape, partial(_take_rows, values, as_float))
        if values.dim() == 1:
            collected.add_norm(key, as_float(values))
        if key.expert is not None and values.dim() == 2:
            collected.add_expert_units(key, shape[0], partial(_take_rows, values, as_float))
        if matrix:
            if done_pass.projections is not None:
                collected.put(Part.UNIT_SIGNATURES, done_pass.projections.to(torch.float16).numpy(), key.layer, key.role)
            if key.role in PRECEDING_NORM_OF or key.role in WRITES_RESIDUAL:
                head = values[:GRAM_UNITS] if key.role in PRECEDING_NORM_OF else values[:, :GRAM_UNITS]
                gram = residual_gram(as_float(head), key.role, scale)
                if gram is not None:
                    collected.put(Part.GRAM, gram, key.layer, key.role)
            if collected.probes is not None and key.role in RESPONSE_ROLES:
                responses = anchor_responses(as_float(values), key.role, scale, collected.probes)
                if responses is not None:
                    collected.put(Part.ANCHOR_RESPONSES, responses, key.layer, key.role)
        del values, tensor
        if on_tensor:
            on_tensor(done, total)
    if collected.records:  # every canonical tensor was hashed and measured
        collected.made.update((Part.TENSOR_HASHES, Part.STATISTICS))

    for info in checkpoint.infos:
        if info.name in checkpoint.roles.unmapped:
            hash_stored(info, checkpoint.files.source.read_tensor(info.name))
