"""Build a fingerprint in one streaming pass over a checkpoint (one tensor in memory at a time).

What is recorded, per canonical tensor: shape, stored dtype, a hash of its
float32 values, summary statistics, and a sketch (values at shape-seeded
positions; 1-D tensors whole, so norm weights can be centred and folded into
the matrices after them at comparison time). Per layer: signatures of every
MLP unit (rows of gate/up with the pre-MLP norm folded in, columns of down)
projected on a fixed random basis, which let two models' units be matched
after a permutation. Per model: the vocabulary's signature and the embedding
rows of anchor tokens chosen by token *string*, so vocabularies that were
extended, pruned or re-indexed still line up.
Per matrix, also a *row sample* (`rows/<key>`: 4 shape-seeded blocks of 8
consecutive rows, 256 shape-seeded columns of each, float16: 16 KiB per matrix,
3.7 MB for LLaMA-7B's 226 matrices), the part
of the fingerprint a remote reader can fetch cheaply by HTTP range requests;
a remote fingerprint (`sampled.py`) is made of that part alone.

Size, for L layers of hidden size h, MLP width I, query/key/value widths
Dq, Dkv, T tensors: 8 KiB x T (sketches) + 4 B x h x norms + L x 2 B x
(32 I + 16 I + 8 (2 Dq + 2 Dkv)) (unit and head signatures) + 2 B x h x 512
(anchor rows, per embedding matrix). For LLaMA-7B (h = Dq = Dkv = 4096,
I = 11008, L = 32, T = 291) that is 2.4 + 0.5 + 33.8 + 8.4 + 8.4 = about 54 MB,
0.4% of its 13.5 GB in bf16.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..formats.lineage import lineage_claims
from ..formats.tokenizer import load_vocabulary
from ..model import Checkpoint
from .generic import GenericSketches
from .parts import (GRAM_UNITS, PRECEDING_NORM_OF, WRITES_RESIDUAL, anchor_tokens, norm_scale, residual_gram,
                    unit_basis, vocabulary_meta)
from .sampled import build_sampled_fingerprint
from .sketch import row_sample, row_sample_rows, sketch_positions
from .store import FINGERPRINT_SCHEMA, Fingerprint
from .tensor_pass import HASH_NAME, tensor_pass, value_hash

def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


MAX_WORKERS = 8


def build_fingerprint(checkpoint: Checkpoint, file_hashes: dict[str, str] | None = None,
                      on_tensor: Callable[[int, int], None] | None = None) -> Fingerprint:
    if getattr(checkpoint.files.source, "remote", False):
        # Over HTTP only headers, 1-D tensors and sampled rows are read: the "remote" variant.

        return build_sampled_fingerprint(checkpoint, on_tensor=on_tensor)
    workers = _workers()
    threads = torch.get_num_threads()
    # The pass splits each tensor among `workers` threads itself, so each runs PyTorch on one
    # thread. OpenMP's thread count is per thread: it is set in every thread that calls PyTorch
    # (two threads each running a 2-thread OpenMP team made small products 20 times slower).
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fingerprint",
                                initializer=torch.set_num_threads, initargs=(1,)) as executor:
            return _build(checkpoint, file_hashes, on_tensor, executor, workers)
    finally:
        torch.set_num_threads(threads)


def _build(checkpoint: Checkpoint, file_hashes: dict[str, str] | None, on_tensor: Callable[[int, int], None] | None,
           executor: ThreadPoolExecutor, workers: int) -> Fingerprint:
    arch = checkpoint.architecture
    metadata = checkpoint.metadata() if checkpoint.format == "gguf" else None
    vocabulary = load_vocabulary(checkpoint.files.tokenizer_paths, metadata, str(checkpoint.path))
    anchors = anchor_tokens(vocabulary) if vocabulary else []

    records: dict[str, dict[str, Any]] = {}
    arrays: dict[str, np.ndarray] = {}
    norms: dict[tuple[int | None, str], torch.Tensor] = {}
    stored_dtype = {info.name: info.dtype for info in checkpoint.infos}
    total = len(checkpoint.roles.assignments)
    stored_hashes: dict[str, str] = {}
    unusual: dict[str, int] = {}  # canonical key -> count of NaN/Inf values
    generic = GenericSketches(checkpoint, arrays)  # stored tensors no role map fits (see generic.py)

    reader = threading.local()

    def hash_stored(info, stored: torch.Tensor) -> None:
        # The stored tensor as a whole, before any split or transpose: equal for a
        # renamed copy even when its names no longer say how to split it.
        if not getattr(reader, "single", False):  # the reading thread, as the workers (see build_fingerprint)
            torch.set_num_threads(1)
            reader.single = True
        stored_hashes[info.name] = value_hash(stored)
        generic.add(info, stored)

    # Stored tensors are read (and hashed) on a background thread, one ahead of this one;
    # each canonical tensor is then reduced in its stored dtype, in chunks (tensor_pass).
    # Tensors are read into two reused buffers: everything kept below is a copy.
    canonical = checkpoint.iter_canonical(small_first=True, on_stored=hash_stored, prefetch=True, reuse_buffers=True)
    for done, (assignment, tensor) in enumerate(canonical, start=1):
        key = assignment.key
        values = tensor.detach()
        shape = tuple(values.shape)
        # Inferred roles whose layer is unknown (opaque, shuffled names) can share a
        # key; the stored name keeps each one apart.
        record_key = key.name if key.name not in records else f"{key.name}@{assignment.source}"
        # an unsplit, untransposed tensor has the stored tensor's hash already
        digest = stored_hashes[assignment.source] if assignment.transform.is_identity else value_hash(values)
        sketch = values.reshape(-1)[torch.from_numpy(sketch_positions(shape))].to(torch.float32)
        matrix = key.expert is None and key.param == "weight" and values.dim() == 2 and key.layer is not None
        scale = norms.get((key.layer, PRECEDING_NORM_OF.get(key.role, ""))) if matrix else None
        reads = key.role in PRECEDING_NORM_OF
        basis = unit_basis(key.role, shape[1] if reads else shape[0], scale) if matrix else None
        done_pass = tensor_pass(values, basis, reads, executor, workers)
        stats, nonfinite = done_pass.stats, done_pass.nonfinite

        def as_float(part: torch.Tensor) -> torch.Tensor:
            # hashed as stored, but 0 in statistics and samples, which stay comparable
            return torch.nan_to_num(part.to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0)

        if nonfinite:
            unusual[record_key] = nonfinite
        records[record_key] = {
            "shape": list(shape), "dtype": stored_dtype.get(assignment.source), "source": assignment.source,
            "how": assignment.how, "sha256": digest, "stats": stats,
            **({"nonfinite": nonfinite} if nonfinite else {}),
        }
        arrays[f"sketch/{record_key}"] = as_float(sketch).numpy().copy()
        if values.dim() == 2:  # the rows a remote fingerprint also reads (see sketch.row_sample_rows)
            picked = values[torch.from_numpy(row_sample_rows(shape))]
            arrays[f"rows/{record_key}"] = row_sample(as_float(picked), shape)
        if values.dim() == 1 and key.role.endswith("norm") and key.param == "weight":
            norms[(key.layer, key.role)] = norm_scale(as_float(values).clone(), arch.norm_type)
        if key.role in ("embed", "lm_head") and key.param == "weight" and anchors and values.dim() == 2:
            ids = torch.tensor([i for _, i in anchors if i < values.shape[0]], dtype=torch.long)
            arrays[f"anchors/{key.role}"] = as_float(values[ids]).to(torch.float16).numpy()
        if matrix:
            if done_pass.projections is not None:
                arrays[f"units/{key.layer}/{key.role}"] = done_pass.projections.to(torch.float16).numpy()
            if key.role in PRECEDING_NORM_OF or key.role in WRITES_RESIDUAL:
                head = values[:GRAM_UNITS] if key.role in PRECEDING_NORM_OF else values[:, :GRAM_UNITS]
                gram = residual_gram(as_float(head), key.role, scale)
                if gram is not None:
                    arrays[f"gram/{key.layer}/{key.role}"] = gram
        del values, tensor
        if on_tensor:
            on_tensor(done, total)

    # Tensors no role fits are still part of the model: hash them too, so that a
    # copy with opaque names is recognised as the same set of stored tensors.
    for info in checkpoint.infos:
        if info.name in checkpoint.roles.unmapped:
            hash_stored(info, checkpoint.files.source.read_tensor(info.name))

    files = checkpoint.files.all_files()
    meta = {
        "schema": FINGERPRINT_SCHEMA,
        "value_hash": HASH_NAME,  # what the "sha256" fields hold (the key keeps its old name)
        "tool_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"path": str(checkpoint.path), "format": checkpoint.format,
                   "files": [{"name": f.name, "bytes": f.stat().st_size,
                              **({"sha256": file_hashes[str(f)]} if file_hashes and str(f) in file_hashes else {})}
                             for f in files]},
        "family": {"name": checkpoint.roles.family, "reason": checkpoint.roles.family_reason},
        "architecture": arch.to_dict(),
        "tensors": records,
        "stored_tensors": {name: {"sha256": digest, "numel": info.numel, "shape": list(info.shape)}
                           for info in checkpoint.infos
                           for name, digest in [(info.name, stored_hashes.get(info.name))] if digest},
        "renamed_tensors": [{"tensor": r.stored, "standard": r.standard, "role": r.role}
                            for r in checkpoint.roles.renamed],
        "vocabulary": vocabulary_meta(vocabulary, anchors),
        **generic.meta(),
        # What the files claim about their origin (unverified; shown beside the measurement in reports).
        # Fingerprints made before this key existed lack it: readers use .get().
        "lineage_claims": [{"where": c.where, "value": c.value}
                           for c in lineage_claims(checkpoint.files.config, checkpoint.files.model_card, metadata)],
    }
    if unusual:
        meta["notes"] = [f"NaN or infinite values in {len(unusual)} tensor(s) ({sum(unusual.values())} values, "
                         f"e.g. {next(iter(unusual))}): hashed as stored, counted as 0 in statistics and samples"]
    return Fingerprint(meta=meta, arrays=arrays)
