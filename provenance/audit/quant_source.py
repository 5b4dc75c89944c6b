"""Was a quantized GGUF made from exactly this reference? Re-quantize the reference's rows and compare blocks.

For a GGUF candidate whose matrices are stored in a type gguf-py quantizes
(Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: `gguf.quants.quantize`, written to match
llama.cpp's reference quantizers), sampled rows of the reference's
floating-point tensors are quantized with the candidate's type and
dequantized again, and each block of 32 values is compared bit for bit
with the candidate's dequantized block. Dequantization is a fixed function
of the block's bytes, so equal bytes give equal values: a candidate
quantized from exactly these weights matches in every block, while any
change to a block's weights before quantizing (a fine-tune far smaller than
the quantization step still moves the block's scale) changes it.

- every sampled block identical: "quantized from exactly this reference";
- fewer than CHANGED_BELOW of them: "changed, then quantized";
- in between (a different quantizer build, a change to few weights): said,
  and not decided.
For other types (the k-quants, IQ types) and for files llama-quantize made
with an importance matrix (`quantize.imatrix.*` keys), no quantizer is ported here, so the output is a tolerance check only: how far
the candidate's rows are from the reference's, never a decision.

Only candidate tensors stored as they are read (no fused parts, no RoPE
row permutation, no transposition) are used, so blocks line up with the
reference's canonical rows. The reference's weights are read from the
folder its fingerprint was made from, when that folder is still on this
machine; otherwise nothing is checked.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ProvenanceError
from ..fingerprint.store import is_fingerprint_file
from ..model import Checkpoint
from .lineage_check import accusing_rows, quantized_tensors

BIT_EXACT = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")  # what gguf.quants.quantize implements
MAX_TENSORS = 6  # matrices sampled
ROWS_PER_TENSOR = 8  # rows sampled per matrix: 8 rows of a 4096-wide matrix are 1024 blocks of 32
# Below this share of identical blocks the weights were changed before quantizing: a candidate quantized from
# exactly the reference matches in every block, and one quantized from changed weights in almost none
# (a changed value moves its block's scale or rounding), so the bar sits far from both.
CHANGED_BELOW = 0.5


def _plain_matrices(checkpoint: Checkpoint) -> dict[str, Any]:
    """Canonical 2-D tensors stored exactly as they are read (no transform): key name -> assignment."""
    return {a.key.name: a for a in checkpoint.roles.assignments if len(a.shape) == 2 and a.transform.is_identity}


def _reference_rows(reference: Checkpoint, key: str, rows: np.ndarray) -> np.ndarray:
    for assignment in reference.roles.assignments:
        if assignment.key.name == key:
            return reference.read(assignment.key)[torch.from_numpy(rows)].to(torch.float32).numpy()
    raise KeyError(key)


def _sample(keys: list[str]) -> list[str]:
    """Up to MAX_TENSORS keys in a fixed pseudo-random order (roles and depths mixed, the same on every run)."""
    return sorted(keys, key=lambda k: zlib.crc32(k.encode()))[:MAX_TENSORS]


def _rows(key: str, count: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return np.sort(rng.choice(count, size=min(ROWS_PER_TENSOR, count), replace=False)).astype(np.int64)


def compare_quantized(candidate_path: str | Path, reference_path: str | Path) -> dict[str, Any] | None:
    """The block comparison of a GGUF candidate with a floating-point reference checkpoint (None: nothing to
    compare: not a quantized GGUF, or no matrix both hold in the same shape)."""
    # lazy: gguf costs 125 ms to import, paid only when a GGUF candidate is checked
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    with Checkpoint.open(candidate_path) as candidate, Checkpoint.open(reference_path) as reference:
        if candidate.format != "gguf":
            return None
        stored = {info.name: info for info in candidate.infos}
        ref_shapes = {a.key.name: tuple(a.shape) for a in reference.roles.assignments}
        usable = {k: a for k, a in _plain_matrices(candidate).items()
                  if ref_shapes.get(k) == tuple(a.shape) and stored[a.source].dtype not in ("F32", "F16", "BF16")}
        if not usable:
            return None
        # an importance matrix changes how llama-quantize rounds every type: only a tolerance check is honest
        imatrix = any(str(k).startswith("quantize.imatrix") for k in candidate.metadata())
        exact_keys = [] if imatrix else sorted(k for k, a in usable.items() if stored[a.source].dtype in BIT_EXACT)
        keys = _sample(exact_keys or sorted(usable))
        types = sorted({stored[usable[k].source].dtype for k in keys})
        blocks = identical = 0
        errors: list[float] = []
        for key in keys:
            assignment = usable[key]
            rows = _rows(key, assignment.shape[0])
            got = candidate.files.source.read_rows(assignment.source, rows).to(torch.float32).numpy()
            want = _reference_rows(reference, key, rows)
            if exact_keys:
                qtype = GGMLQuantizationType[stored[assignment.source].dtype]
                block = GGML_QUANT_SIZES[qtype][0]
                have = got.reshape(len(rows), -1, block).view(np.uint32)
                # the reference's values as they are, or cast to float16 first (convert_hf_to_gguf --outtype f16,
                # then llama-quantize): the closer of the two routes counts
                same = max((np.all(dequantize(quantize(route, qtype), qtype).reshape(have.shape).view(np.uint32)
                                   == have, axis=2) for route in (want, want.astype(np.float16).astype(np.float32))),
                           key=lambda s: int(s.sum()))
                blocks += same.size
                identical += int(same.sum())
            else:
                errors.append(float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)))
    if exact_keys:
        share = identical / blocks
        exact = True if identical == blocks else False if share < CHANGED_BELOW else None
        if exact is True:
            summary = f"quantized from exactly this reference ({identical} of {blocks} sampled {'/'.join(types)} blocks identical)"
        elif exact is False:
            summary = f"changed, then quantized ({identical} of {blocks} sampled {'/'.join(types)} blocks identical)"
        else:
            summary = (f"{identical} of {blocks} sampled {'/'.join(types)} blocks identical: another quantizer build "
                       "or a change to few weights; not decided")
        return {"method": "bit-exact", "types": types, "tensors": keys, "blocks": blocks, "identical": identical,
                "exact_source": exact, "summary": summary}
    error = float(np.median(errors))
    return {"method": "tolerance", "types": types, "tensors": keys, "blocks": None, "identical": None,
            "exact_source": None, "relative_error": error,
            "summary": f"tolerance check only ({'/'.join(types)}"
                       f"{', importance matrix' if imatrix else ''}: no bit-exact quantizer here): the sampled rows "
                       f"differ from the reference's by {100 * error:.1f}% of their norm (median)"}


def check_best_source(candidate, candidate_path: str, rows) -> dict[str, Any] | None:
    """The block comparison with the best accusing reference, when the candidate is a quantized local GGUF and
    that reference's source folder is on this machine; None otherwise (or when it cannot be read)."""
    accusing = accusing_rows(rows)
    if candidate.source.format != "gguf" or not accusing or not quantized_tensors(candidate) or not accusing[0].source:
        return None
    # lazy: gguf costs 125 ms to import, paid only for a GGUF candidate
    from gguf.quants import QuantError

    here, there = Path(candidate_path), Path(accusing[0].source)
    if not here.exists() or not there.exists() or is_fingerprint_file(here) or is_fingerprint_file(there):
        return None
    try:
        found = compare_quantized(here, there)
    except (ProvenanceError, OSError, KeyError, ValueError, QuantError):
        return None  # the reference's folder changed since its fingerprint was made, or no longer reads: no check
    if found is not None:
        found["reference"] = accusing[0].reference
    return found
