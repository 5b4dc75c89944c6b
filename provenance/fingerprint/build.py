"""Build a fingerprint of a checkpoint: one entry, whatever its tensor source reads cheaply.

What is recorded, per canonical tensor: shape, stored dtype, a hash of its
values, summary statistics, and a sketch (values at shape-seeded positions;
1-D tensors whole, so norm weights can be centred and folded into the
matrices after them at comparison time). Per layer: signatures of every
MLP unit (rows of gate/up with the pre-MLP norm folded in, columns of down)
projected on a fixed random basis, which let two models' units be matched
after a permutation. Per model: the vocabulary's signature and the embedding
rows of anchor tokens chosen by token *string*, so vocabularies that were
extended, pruned or re-indexed still line up.
Per matrix, also a *row sample* (`rows/<key>`: 4 shape-seeded blocks of 8
consecutive rows, 256 shape-seeded columns of each, float16: 16 KiB per matrix,
3.7 MB for LLaMA-7B's 226 matrices), the part of the fingerprint a reader of
row blocks can fetch cheaply.

What is made depends on what the tensor source reads cheaply
(`formats.base.Reads`), not on where its files are:
- whole tensors (local files): one streaming pass over every tensor
  (`whole.py`) makes every part (`store.WHOLE_TENSOR_PARTS`);
- row blocks by range (files over HTTP): 1-D tensors whole and the rows of
  each matrix's row sample (`row_blocks.py`) make `store.ROW_READ_PARTS`: no
  hash, statistics, sketch or unit signature of a whole matrix, but the
  sampled `mlp.up` rows' unit signatures. Such a fingerprint is the
  "remote" variant (`meta["variant"]`), and `meta["remote"]` records what
  the reading fetched (the source's transfer report).
`meta["parts"]` lists the parts made (`store.Part`); both readings share the
per-tensor steps of `collect.py` and this module's one metadata writer.

Size, for L layers of hidden size h, MLP width I, query/key/value widths
Dq, Dkv, T tensors: 8 KiB x T (sketches) + 4 B x h x norms + L x 2 B x
(32 I + 16 I + 8 (2 Dq + 2 Dkv)) (unit and head signatures) + 2 B x h x 512
(anchor rows, per embedding matrix). For LLaMA-7B (h = Dq = Dkv = 4096,
I = 11008, L = 32, T = 291) that is 2.4 + 0.5 + 33.8 + 8.4 + 8.4 = about 54 MB,
0.4% of its 13.5 GB in bf16.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from .. import __version__
from ..formats.base import Reads, TransferCounts
from ..formats.lineage import lineage_claims
from ..model import Checkpoint
from .collect import Collected
from .parts import vocabulary_meta
from .row_blocks import read_row_blocks
from .store import FINGERPRINT_SCHEMA, ROW_READ_PARTS, WHOLE_TENSOR_PARTS, Fingerprint, Part, as_saved
from .tensor_pass import HASH_NAME
from .whole import read_whole_tensors

VARIANT = "remote"  # `meta["variant"]` of a fingerprint made from row blocks
# What a source's reading can make, and the reading that makes it.
PARTS_READ = {Reads.WHOLE_TENSORS: WHOLE_TENSOR_PARTS, Reads.ROW_BLOCKS: ROW_READ_PARTS}
READINGS: dict[Reads, Callable[[Collected, Callable[[int, int], None] | None], dict[str, Any]]] = {
    Reads.WHOLE_TENSORS: read_whole_tensors, Reads.ROW_BLOCKS: read_row_blocks}


def build_fingerprint(checkpoint: Checkpoint, file_hashes: dict[str, str] | None = None,
                      on_tensor: Callable[[int, int], None] | None = None) -> Fingerprint:
    """Every part of a fingerprint the checkpoint's source allows; `on_tensor(done, total)` reports progress."""
    source = checkpoint.files.source
    collected = Collected.start(checkpoint, PARTS_READ[source.reads])
    mark = source.transfers()
    reading = READINGS[source.reads](collected, on_tensor)
    # As saved and loaded (JSON, keys sorted): a fingerprint built now and one read from its file are the
    # same object, so outputs never depend on whether a fingerprint came from the cache.
    meta = as_saved(_meta(collected, file_hashes, mark, reading))
    arrays = collected.arrays.finish()  # read from the spool file when looked up, in name order
    return Fingerprint(meta=meta, arrays=arrays)


def _meta(collected: Collected, file_hashes: dict[str, str] | None, mark: TransferCounts | None,
          reading: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint's metadata, for either reading."""
    checkpoint = collected.checkpoint
    source = checkpoint.files.source
    made = collected.made & collected.allowed
    files = source.file_entries()
    if files is None:  # local files: sizes, and their sha256 when the caller has it
        files = [{"name": f.name, "bytes": f.stat().st_size,
                  **({"sha256": file_hashes[str(f)]} if file_hashes and str(f) in file_hashes else {})}
                 for f in checkpoint.files.all_files()]
    meta: dict[str, Any] = {
        "schema": FINGERPRINT_SCHEMA,
        "tool_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"path": str(checkpoint.path), "format": checkpoint.format, "files": files},
        "parts": sorted(part.value for part in made),
        "family": {"name": checkpoint.roles.family, "reason": checkpoint.roles.family_reason},
        "architecture": checkpoint.architecture.to_dict(),
        "tensors": collected.records,
        "stored_tensors": {info.name: {"sha256": collected.stored_hashes[info.name], "numel": info.numel,
                                       "shape": list(info.shape)}
                           for info in checkpoint.infos if collected.stored_hashes.get(info.name)},
        "renamed_tensors": [{"tensor": r.stored, "standard": r.standard, "role": r.role}
                            for r in checkpoint.roles.renamed],
        "vocabulary": vocabulary_meta(collected.vocabulary, collected.anchors),
        **collected.generic.meta(),
        # What the files claim about their origin (unverified; shown beside the measurement in reports).
        # Fingerprints made before this key existed lack it: readers use .get().
        "lineage_claims": [{"where": c.where, "value": c.value}
                           for c in lineage_claims(checkpoint.files.config, checkpoint.files.model_card,
                                                   collected.gguf_metadata, checkpoint.files.lineage_paths)],
    }
    if Part.TENSOR_HASHES in made:
        meta["value_hash"] = HASH_NAME  # what the "sha256" fields hold (the key keeps its old name)
    if source.reads is Reads.ROW_BLOCKS:
        meta["variant"] = VARIANT
        meta["remote"] = {**source.transfer_report(mark), **reading}
    if collected.unusual:
        unusual = collected.unusual
        meta["notes"] = [f"NaN or infinite values in {len(unusual)} tensor(s) ({sum(unusual.values())} values, "
                         f"e.g. {next(iter(unusual))}): hashed as stored, counted as 0 in statistics and samples"]
    return meta
