"""The "remote" fingerprint variant: built from headers, 1-D tensors and sampled rows only.

What is read, per canonical tensor:
- 1-D tensors (norms, biases) whole: the same record as a local fingerprint
  (sha256, statistics, `sketch/<key>` = the whole vector), so norms can be
  folded into the matrices after them at comparison time;
- matrices: the rows of the row sample (`fingerprint.sketch.row_sample_rows`,
  4 blocks of 8 consecutive rows, i.e. 4 range requests) stored as
  `rows/<key>` exactly as a local fingerprint stores them; for `mlp.up`, the
  sampled rows' unit signatures (`rowunits/<layer>/mlp.up`, the same
  projections as the local `units/`), which find permuted MLP units against
  a local fingerprint; for the embedding and output head, also the anchor
  tokens' rows (`anchors/<role>`);
- fused tensors are read by the stored rows each canonical row comes from;
  transposed ones (GPT-2 Conv1D), whose canonical rows are stored columns,
  are read whole, which the fingerprint notes.
Nothing else: no hash, statistics or sketch of a matrix, no unit signature
of a whole matrix, no Gram matrix. `meta["variant"] = "remote"` says so,
and `meta["remote"]` records the bytes and requests it took.
"""

from __future__ import annotations

import datetime as dt
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..architectures.layouts import HeadLayout, apply_transform
from ..formats.base import TensorInfo
from ..formats.lineage import lineage_claims
from ..formats.tokenizer import load_vocabulary
from ..remote.http import CONCURRENCY, TRANSFERS
from .parts import PRECEDING_NORM_OF, anchor_tokens, norm_scale, unit_signature, vocabulary_meta
from .sketch import content_hash, row_sample, row_sample_rows, sketch_positions
from .tensor_pass import sample_statistics
from .store import FINGERPRINT_SCHEMA, Fingerprint

VARIANT = "remote"


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


def build_sampled_fingerprint(checkpoint, on_tensor: Callable[[int, int], None] | None = None) -> Fingerprint:
    source = checkpoint.files.source
    arch = checkpoint.architecture
    heads = HeadLayout(arch.num_heads, arch.num_kv_heads, arch.head_dim)
    gguf_metadata = checkpoint.metadata() if checkpoint.format == "gguf" else None  # a GGUF carries its tokenizer
    vocabulary = load_vocabulary(checkpoint.files.tokenizer_paths, gguf_metadata, str(checkpoint.path))
    anchors = anchor_tokens(vocabulary) if vocabulary else []
    infos = {info.name: info for info in checkpoint.infos}
    start = TRANSFERS.snapshot()

    vectors = [a for a in checkpoint.roles.assignments if len(a.shape) <= 1]
    matrices = [a for a in checkpoint.roles.assignments if len(a.shape) == 2]
    others = [a for a in checkpoint.roles.assignments if len(a.shape) > 2]
    plans: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # id(assignment) -> canonical rows, stored map
    whole: list = []
    planned = sum(infos[name].nbytes for name in {a.source for a in vectors})
    for assignment in matrices:
        info = infos[assignment.source]
        wanted = row_sample_rows(assignment.shape)
        if assignment.key.role in ("embed", "lm_head") and assignment.key.param == "weight" and anchors:
            ids = np.array([i for _, i in anchors if i < assignment.shape[0]], dtype=np.int64)
            wanted = np.union1d(wanted, ids)
        mapping = stored_rows(info, assignment, heads)
        if mapping is None:
            whole.append(assignment)
            planned += info.nbytes
        else:
            plans[id(assignment)] = (wanted, mapping)
            planned += len(wanted) * info.nbytes // max(math.prod(info.shape[:-1]), 1)

    records: dict[str, dict[str, Any]] = {}
    arrays: dict[str, np.ndarray] = {}
    norms: dict[tuple[int | None, str], torch.Tensor] = {}
    stored_hashes: dict[str, str] = {}
    total = len(checkpoint.roles.assignments)
    done = 0
    notes: list[str] = []

    def record(assignment, values: torch.Tensor | None) -> str:
        key = assignment.key.name
        record_key = key if key not in records else f"{key}@{assignment.source}"
        entry: dict[str, Any] = {"shape": list(assignment.shape), "dtype": infos[assignment.source].dtype,
                                 "source": assignment.source, "how": assignment.how, "sha256": None}
        if values is not None:  # a whole 1-D tensor: everything a local fingerprint has
            entry["sha256"] = (stored_hashes[assignment.source] if assignment.transform.is_identity
                               else content_hash(values))
            entry["stats"] = sample_statistics(values)[0]
        records[record_key] = entry
        return record_key

    # 1-D tensors, whole, several at a time; each stored tensor is read once.
    names = list(dict.fromkeys(a.source for a in vectors))
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        stored_vectors = dict(zip(names, pool.map(source.read_tensor, names)))
    for name, tensor in stored_vectors.items():
        stored_hashes[name] = content_hash(tensor)
    for assignment in vectors:
        values = apply_transform(stored_vectors[assignment.source], assignment.transform, heads,
                                 infos[assignment.source].file).to(torch.float32)
        record_key = record(assignment, values)
        arrays[f"sketch/{record_key}"] = values.reshape(-1)[torch.from_numpy(sketch_positions(tuple(values.shape)))].numpy().copy()
        key = assignment.key
        if values.dim() == 1 and key.role.endswith("norm") and key.param == "weight":
            norms[(key.layer, key.role)] = norm_scale(values, arch.norm_type)
        done += 1
        if on_tensor:
            on_tensor(done, total)
    del stored_vectors

    def fetch(assignment) -> torch.Tensor:
        wanted, mapping = plans[id(assignment)]
        return source.read_rows(assignment.source, mapping[wanted]).to(torch.float32)

    planned_matrices = [a for a in matrices if id(a) in plans]
    with ThreadPoolExecutor(max_workers=max(1, CONCURRENCY // 2)) as pool:
        fetched = pool.map(fetch, planned_matrices)
        for assignment, rows in zip(planned_matrices, fetched):
            wanted = plans[id(assignment)][0]
            _matrix_arrays(assignment, record(assignment, None), wanted, rows, anchors, norms, arrays)
            done += 1
            if on_tensor:
                on_tensor(done, total)
    for assignment in whole:
        values = apply_transform(source.read_tensor(assignment.source), assignment.transform, heads,
                                 infos[assignment.source].file).to(torch.float32)
        wanted = row_sample_rows(assignment.shape)
        if assignment.key.role in ("embed", "lm_head") and anchors:
            wanted = np.union1d(wanted, [i for _, i in anchors if i < assignment.shape[0]]).astype(np.int64)
        _matrix_arrays(assignment, record(assignment, None), wanted, values[torch.from_numpy(wanted)], anchors,
                       norms, arrays)
        del values
        done += 1
        if on_tensor:
            on_tensor(done, total)
    if whole:
        notes.append(f"{len(whole)} transposed tensors were read whole (their rows are stored as columns)")
    for assignment in others:
        record(assignment, None)

    end = TRANSFERS.snapshot()
    index = getattr(source, "index_path", None)
    files = [f for f in source.files() if f is not index]
    checkpoint_bytes = sum(f.size or 0 for f in files)
    header_bytes = sum(shard.header_bytes for shard in getattr(source, "shards", [source]))
    read = end[0] - start[0] + header_bytes
    meta = {
        "schema": FINGERPRINT_SCHEMA,
        "variant": VARIANT,
        "tool_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"path": str(checkpoint.path), "format": checkpoint.format,
                   "files": ([{"name": index.name, "url": index.url}] if index is not None else [])
                   + [{"name": f.name, "url": f.url, "bytes": f.size} for f in files]},
        # bytes of the weight files fetched: headers plus tensor data (side files such as the tokenizer not counted)
        "remote": {"bytes_read": read, "header_bytes": header_bytes, "tensor_bytes_planned": planned,
                   "tensor_requests": end[1] - start[1], "retries": end[2] - start[2],
                   "checkpoint_bytes": checkpoint_bytes,
                   "fraction_read": round(read / checkpoint_bytes, 6) if checkpoint_bytes else None,
                   "notes": notes},
        "family": {"name": checkpoint.roles.family, "reason": checkpoint.roles.family_reason},
        "architecture": arch.to_dict(),
        "tensors": records,
        "stored_tensors": {name: {"sha256": digest, "numel": infos[name].numel, "shape": list(infos[name].shape)}
                           for name, digest in stored_hashes.items()},
        "renamed_tensors": [{"tensor": r.stored, "standard": r.standard, "role": r.role}
                            for r in checkpoint.roles.renamed],
        "vocabulary": vocabulary_meta(vocabulary, anchors),
        "lineage_claims": [{"where": c.where, "value": c.value}
                           for c in lineage_claims(checkpoint.files.config, checkpoint.files.model_card, None)],
    }
    return Fingerprint(meta=meta, arrays=arrays)


def _matrix_arrays(assignment, record_key: str, wanted: np.ndarray, rows: torch.Tensor, anchors, norms,
                   arrays: dict[str, np.ndarray]) -> None:
    """Row sample, anchor rows and sampled unit signatures of one matrix from its fetched rows (`wanted`, sorted)."""
    key = assignment.key
    shape = tuple(assignment.shape)
    sample = row_sample_rows(shape)
    positions = torch.from_numpy(np.searchsorted(wanted, sample))
    sampled = rows[positions]
    arrays[f"rows/{record_key}"] = row_sample(sampled, shape)
    if key.role in ("embed", "lm_head") and key.param == "weight" and anchors:
        ids = np.array([i for _, i in anchors if i < shape[0]], dtype=np.int64)
        arrays[f"anchors/{key.role}"] = rows[torch.from_numpy(np.searchsorted(wanted, ids))].to(torch.float16).numpy()
    if key.role == "mlp.up" and key.param == "weight" and key.expert is None and key.layer is not None:
        signature = unit_signature(sampled, key.role, norms.get((key.layer, PRECEDING_NORM_OF[key.role])))
        if signature is not None:
            arrays[f"rowunits/{key.layer}/mlp.up"] = signature
