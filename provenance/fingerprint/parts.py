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
from ..architectures.roles import WRITES_RESIDUAL, Role
from ..architectures.roles import norm_scale
from ..formats.tokenizer import Vocabulary
from .sketch import UNIT_PROJECTIONS, projection

__all__ = ["ANCHOR_COUNT", "PRECEDING_NORM_OF", "RESPONSE_ANCHORS", "RESPONSE_ROLES", "WRITES_RESIDUAL", "SIGNATURE_WIDTH",
           "anchor_probes", "anchor_responses", "anchor_tokens", "minhash", "norm_scale", "residual_gram", "unit_basis",
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
            "anchor_tokens": [token for token, _ in anchors],
            # their ids: a regenerated initialisation's rows at these ids are what the anchor rows started from
            "anchor_ids": [int(i) for _, i in anchors]}


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
SIGNATURE_WIDTH = {Role.MLP_UP: UNIT_PROJECTIONS, Role.MLP_DOWN: DOWN_PROJECTIONS, Role.ATTN_Q: HEAD_PROJECTIONS,
                   Role.ATTN_K: HEAD_PROJECTIONS, Role.ATTN_V: HEAD_PROJECTIONS, Role.ATTN_O: HEAD_PROJECTIONS}


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


# Anchor tokens whose embedding rows probe the MLP units (the first of the anchor order, so two vocabularies
# sharing most strings probe with mostly the same tokens), and the roles probed: 2 x units x 32 float16 values
# per layer (192 KiB for a layer of 1536 units).
RESPONSE_ANCHORS = 32
RESPONSE_ROLES = (Role.MLP_UP, Role.MLP_DOWN)


def anchor_probes(rows: torch.Tensor) -> torch.Tensor:
    """The probe vectors made of the first RESPONSE_ANCHORS anchor rows of the token embedding.

    Each row is scaled to unit RMS (what an RMSNorm does before the first
    layer), then the rows' mean is taken out (a direction every token shares
    would make every unit's responses alike). Both steps commute with a
    rotation of the residual basis, so a rotated copy's probes are the
    original's rotated.
    """
    rows = rows[:RESPONSE_ANCHORS].to(torch.float64)
    rms = rows.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-30)
    rows = rows / rms
    return (rows - rows.mean(dim=0, keepdim=True)).to(torch.float32)


def anchor_responses(values: torch.Tensor, role: str, scale: torch.Tensor | None,
                     probes: torch.Tensor) -> np.ndarray | None:
    """Each unit's response to the anchor probes: units x probes, float16.

    Units are rows for matrices reading the residual stream (with the norm
    before them folded in) and columns for those writing to it. A rotation Q
    of the residual basis (norms folded) maps a reading row w to w Q and each
    probe p to p Q, so w . p is unchanged: the responses are invariant to
    the rotation and move with the units when they are permuted.
    """
    if role not in RESPONSE_ROLES or values.dim() != 2:
        return None
    units = values if role in PRECEDING_NORM_OF else values.t()
    if units.shape[1] != probes.shape[1]:
        return None
    probes = probes.t()
    if role in PRECEDING_NORM_OF and scale is not None and scale.shape[0] == units.shape[1]:
        probes = probes * scale.to(torch.float32)[:, None]  # (w * g) . p = w . (g * p): no copy of the matrix
    return (units.to(torch.float32) @ probes).to(torch.float16).numpy()
