"""Pieces of a fingerprint shared by every reading (whole tensors or row blocks).

Anchor tokens and the vocabulary's signature, the unit signatures,
residual-space Gram matrices and anchor-token responses of one matrix, and
the directions units are projected on. `whole.py` (whole tensors) and `row_blocks.py` (row blocks read by
range requests) both use them, so a signal is computed one way whatever
the source.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from ..architectures.roles import PRECEDING_NORM as PRECEDING_NORM_OF
from ..architectures.roles import WRITES_RESIDUAL
from ..architectures.roles import norm_scale
from ..formats.tokenizer import Vocabulary
from .sketch import UNIT_PROJECTIONS, projection

__all__ = ["ANCHOR_COUNT", "PRECEDING_NORM_OF", "RESPONSE_ANCHORS", "RESPONSE_ROLES", "WRITES_RESIDUAL", "SIGNATURE_WIDTH",
           "anchor_responses", "anchor_tokens", "minhash", "norm_scale", "residual_gram", "response_basis", "unit_basis",
           "unit_signature", "vocabulary_meta"]

ANCHOR_COUNT = 512
DOWN_PROJECTIONS = 16
HEAD_PROJECTIONS = 8


def anchor_tokens(vocabulary: Vocabulary, count: int = ANCHOR_COUNT) -> list[tuple[str, int]]:
    """A bottom-k sample of the vocabulary by hash of the token string.

    Two vocabularies that share most strings pick mostly the same anchors,
    whatever ids the strings have: consistent sampling, no fixed word list.
    """
    ranked = []
    for token, index in vocabulary.ids_by_string().items():
        if not token.strip() or len(token) > 64:
            continue
        digest = hashlib.sha256(token.encode("utf-8", errors="replace")).digest()[:8]
        ranked.append((digest, token, index))
    ranked.sort()
    return [(token, index) for _, token, index in ranked[:count]]


def vocabulary_meta(vocabulary: Vocabulary | None, anchors: list[tuple[str, int]]) -> dict[str, Any] | None:
    if vocabulary is None:
        return None
    return {"kind": vocabulary.kind, "size": len(vocabulary.tokens), "vocab_sha256": vocabulary.vocab_hash(),
            "merges_sha256": vocabulary.merges_hash, "special_tokens": vocabulary.special_tokens[:64],
            "source": vocabulary.source, "minhash": minhash(vocabulary.tokens),
            "anchor_tokens": [token for token, _ in anchors]}


def minhash(tokens: list[str], count: int = 128) -> list[int]:
    """MinHash of the set of token strings (for a quick Jaccard estimate of two vocabularies)."""
    seeds = np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    hashes = np.array([int.from_bytes(hashlib.blake2b(t.encode("utf-8", errors="replace"), digest_size=8).digest(), "little")
                       for t in set(tokens)], dtype=np.uint64)
    if hashes.size == 0:
        return []
    with np.errstate(over="ignore"):
        mixed = (hashes[None, :] ^ seeds[:, None]) * np.uint64(0xBF58476D1CE4E5B9)
    return [int(v) for v in mixed.min(axis=1)]


GRAM_UNITS = 128


# Projections per unit signature: MLP up rows (matched on half, tested on half),
# MLP down columns, and attention rows/columns (grouped by head when compared).
SIGNATURE_WIDTH = {"mlp.up": UNIT_PROJECTIONS, "mlp.down": DOWN_PROJECTIONS, "attn.q": HEAD_PROJECTIONS,
                   "attn.k": HEAD_PROJECTIONS, "attn.v": HEAD_PROJECTIONS, "attn.o": HEAD_PROJECTIONS}


def unit_signature(values: torch.Tensor, role: str, scale: torch.Tensor | None) -> np.ndarray | None:
    """Each unit of a matrix projected on fixed orthonormal directions of the residual space.

    Units are rows for matrices reading the residual stream (with the norm
    before them folded in) and columns for those writing to it.
    """
    if role not in SIGNATURE_WIDTH:
        return None
    units = values if role in PRECEDING_NORM_OF else values.t()
    basis = projection(units.shape[1], SIGNATURE_WIDTH[role])
    if role in PRECEDING_NORM_OF and scale is not None and scale.shape[0] == units.shape[1]:
        basis = basis * scale[:, None]
    return (units @ basis).to(torch.float16).numpy()


def residual_gram(values: torch.Tensor, role: str, scale: torch.Tensor | None) -> np.ndarray | None:
    """Inner products among the first GRAM_UNITS units, taken in the residual space.

    A rotation (or permutation) of the residual basis, applied consistently to a
    model with its norms folded, changes every weight but not these inner
    products; rescaling between a norm and the next layer does not change them
    either. Stored as the upper triangle, float32.
    """
    if role in PRECEDING_NORM_OF:
        rows = values[:GRAM_UNITS]
        if scale is not None and scale.shape[0] == values.shape[1]:
            rows = rows * scale[None, :]
    elif role in WRITES_RESIDUAL:
        rows = values[:, :GRAM_UNITS].t()
    else:
        return None
    gram = rows @ rows.t()
    upper = torch.triu_indices(gram.shape[0], gram.shape[0], offset=1)
    return gram[upper[0], upper[1]].numpy().astype(np.float32)


def unit_basis(role: str, width: int, scale: torch.Tensor | None) -> torch.Tensor | None:
    """The directions a role's units are projected on (`unit_signature` without the product).

    For matrices reading the residual stream the norm before them is folded in.
    """
    if role not in SIGNATURE_WIDTH:
        return None
    basis = projection(width, SIGNATURE_WIDTH[role])
    if role in PRECEDING_NORM_OF and scale is not None and scale.shape[0] == width:
        basis = basis * scale[:, None]
    return basis


# Anchor-token responses: each unit's inner product with the embedding rows of the first RESPONSE_ANCHORS anchor
# tokens (as the norm before a layer sees them). Units of the MLP (up rows, down columns) and of attention values
# (v rows, o columns): the pairs whose units a permutation moves together.
RESPONSE_ANCHORS = 32
RESPONSE_ROLES = ("mlp.up", "mlp.down", "attn.v", "attn.o")
RESPONSE_CHUNK = 4096  # units per product, so no float32 copy of a whole matrix is made
FLOAT16_MAX = 65504.0


def response_basis(rows: torch.Tensor, norm_type: str | None) -> torch.Tensor | None:
    """The anchor tokens' embedding rows as a norm sees them: centred for LayerNorm, scaled to unit RMS.

    A rotation of the residual basis (with the norms' weights folded into the
    matrices after them) rotates these rows and every unit alike, so their
    inner products do not change; neither does a permutation of the units.
    """
    rows = rows[:RESPONSE_ANCHORS].to(torch.float32)
    if rows.shape[0] == 0:
        return None
    if norm_type == "layernorm":
        rows = rows - rows.mean(dim=1, keepdim=True)
    rms = rows.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-12)
    return torch.nan_to_num(rows / rms, nan=0.0, posinf=0.0, neginf=0.0)


def anchor_responses(values: torch.Tensor, role: str, scale: torch.Tensor | None,
                     basis: torch.Tensor | None) -> np.ndarray | None:
    """(units, anchors) float16: each unit's inner product with each anchor row of `response_basis`.

    Units are rows for matrices reading the residual stream (the norm before
    them folded in) and columns for those writing to it, as in `unit_signature`.
    """
    if role not in RESPONSE_ROLES or basis is None or values.dim() != 2:
        return None
    reads = role in PRECEDING_NORM_OF
    width = values.shape[1] if reads else values.shape[0]
    if basis.shape[1] != width:
        return None
    directions = basis.t()
    if reads and scale is not None and scale.shape[0] == width:
        directions = directions * scale[:, None]
    units = values.shape[0] if reads else values.shape[1]
    if units == 0 or width == 0:  # a zero-sized matrix has no units to describe
        return None
    parts = []
    for start in range(0, units, RESPONSE_CHUNK):
        stop = min(start + RESPONSE_CHUNK, units)
        block = values[start:stop] if reads else values[:, start:stop].t()
        parts.append(torch.nan_to_num(block.to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0) @ directions)
    found = torch.cat(parts).clamp(-FLOAT16_MAX, FLOAT16_MAX)
    return found.to(torch.float16).numpy()
