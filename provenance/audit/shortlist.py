"""Screening: a compact signature per fingerprint, and a shortlist of references worth comparing fully.

A full comparison costs 0.03-1 s, too much for thousands of references. Each
fingerprint (candidate or reference; no weights needed) is reduced to a small
signature, and only the references whose signatures come close are compared.

The signature (SIGNATURE_VERSION) holds four unit vectors of DIM float16
values, one per *component*, each built to survive a different set of
derivations (see the zoo's transforms):

- `weights`: sketch values and row samples of every layer matrix (norm
  weights folded in, as the compare engine folds them), standardised per
  tensor and *summed over layers*, keyed by role, shape and position. Survives renaming, casts,
  quantization, noise, fine-tuning, merges and norm rescaling; since layers are
  summed rather than keyed by depth, it also survives pruning, depth
  up-scaling, frankenmerges and MoE upcycling (expert 0 stands for the layer,
  as in the engine). Broken by unit permutations and rotations.
- `units`: per layer and role, the off-diagonal entries of the covariance of
  the unit signatures (U^T U, U = units x fixed residual directions), summed
  over layers. A sum over units is unchanged by any permutation of MLP units
  or attention heads, and the norm is folded into q/k/v/up, so norm
  rescaling changes nothing either. Broken by rotations of the residual basis.
- `gram`: the residual-space Gram matrices of each layer's first units,
  summed over layers: unchanged by a rotation of the residual basis (with
  norms folded). Broken by permutations.
- `embedding`: embedding (and untied head) rows of anchor tokens keyed by
  token *string* (survive vocabulary re-indexing, extension and pruning) plus
  the non-layer sketches by id (embedding, head with the final norm folded,
  position embeddings): catches students of one parent that share no layer.

Every feature goes through a count sketch (a seeded hash picks its bucket and
sign) into DIM buckets, so models of any shape share one vector space: equal
features of equal shapes add up, others fall into random buckets and add only
noise (the cosine of unrelated vectors is about N(0, 1/DIM)). The hash is a
fixed integer mix (splitmix64), not numpy's generator, so signatures stored
with one numpy version still agree with candidates computed under another.

Besides the vectors: `hashes`, the first 8 bytes of the sha256 of every
non-constant stored and canonical tensor (more than 64 values), and `keys`
(architecture shape key, family, vocabulary size and MinHash) for reports.

The shortlist, per component the candidate has (a remote fingerprint without
unit signatures or Gram matrices just skips those): the best reference by
cosine, and up to TOP_K references that stand out from the whole database
(z >= Z_MIN, z = cosine minus the median over all references, over their
robust spread, never below the 1/sqrt(DIM) of hashing noise); plus every
reference sharing an informative exact tensor hash with the candidate (a
hash found in more than HASH_FANOUT references is a common buffer or
constant, not evidence). The z rule keeps unrelated candidates cheap (about
one comparison per component) while every clearly related reference is
kept: on the zoo, true references score 0.4-1.0 in at least one component,
independent pairs below 0.1, and the noise is about 0.044.

Search is exact (one matrix product in numpy): at 10,000 references the
vectors take 80 MB as float32 and the product a few tens of milliseconds, so
an approximate index (hnswlib, faiss) would add an index file and
approximate recall for no measurable gain.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ..architectures.roles import PRECEDING_NORM, Role, in_layer, key_name, norm_scale
from ..fingerprint import Fingerprint
from ..fingerprint.sketch import row_sample_columns, sketch_positions
from ..registry.database import SignatureBlob

SIGNATURE_VERSION = 3
# The `weights` component's features: layer tensors of canonical names (CanonicalKey.name) and also the generic
# fingerprint's `layers.N.<role>.weight@<stored name>` entries, which CanonicalKey.parse refuses. Stored
# signatures depend on exactly this match: changing it means a new SIGNATURE_VERSION.
LAYER_TENSOR = re.compile(r"^layers\.(\d+)\.(?:experts\.(\d+)\.)?(.+)\.(weight|bias)$")
DIM = 512
COMPONENTS = ("weights", "units", "gram", "embedding")
TOP_K = 8  # at most this many references per component ...
ALWAYS = 1  # ... of which the best this many whatever their score
Z_MIN = 5.0  # and the others only when they stand out from the database by this many spreads
HASH_FANOUT = 64
MIN_HASHED_NUMEL = 64
UNIT_ROLES = (Role.MLP_UP, Role.MLP_DOWN, Role.ATTN_Q, Role.ATTN_K, Role.ATTN_V, Role.ATTN_O)
GRAM_ROLES = (Role.ATTN_Q, Role.ATTN_K, Role.ATTN_V, Role.ATTN_O, Role.MLP_GATE, Role.MLP_UP, Role.MLP_DOWN)

_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic): a fixed, well-spread integer hash."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def _label_seed(label: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(label.encode("utf-8", errors="replace"), digest_size=8).digest(),
                                    "little"))


@lru_cache(maxsize=2048)
def _buckets(label: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket and sign of features 0..count-1 of one kind (a role at one shape)."""
    hashed = _mix(np.arange(count, dtype=np.uint64) ^ _label_seed(label))
    return _split(hashed)


def _split(hashed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bucket = (hashed % np.uint64(DIM)).astype(np.int64)
    sign = 1.0 - 2.0 * ((hashed >> np.uint64(63)) & np.uint64(1)).astype(np.float64)
    return bucket, sign


def _standardised(values: np.ndarray) -> np.ndarray | None:
    """Zero mean, unit total energy (each tensor weighs the same whatever its size); None if constant."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size < 3:
        return None
    values = values - values.mean()
    norm = float(np.linalg.norm(values))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    return values / norm


def _add(vector: np.ndarray, label: str, values: np.ndarray | None) -> bool:
    if values is None:
        return False
    bucket, sign = _buckets(label, values.size)
    vector += np.bincount(bucket, weights=sign * values, minlength=DIM)
    return True


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 and np.isfinite(norm) else np.zeros_like(vector)


# --- the components ------------------------------------------------------------------------------

@lru_cache(maxsize=1024)
def _sketch_columns(shape: tuple[int, ...]) -> np.ndarray:
    return sketch_positions(shape) % shape[1]


def _norm_scale(fp: Fingerprint, key: str) -> np.ndarray | None:
    values = fp.array(f"sketch/{key}")
    if values is None:
        return None
    return norm_scale(values.astype(np.float64), fp.arch.norm_type)


@lru_cache(maxsize=1024)
def _row_sample_columns(shape: tuple[int, ...]) -> np.ndarray:
    return row_sample_columns(shape)


def _weights_component(fp: Fingerprint) -> np.ndarray:
    """Layer matrices' sketches and row samples, the preceding norm folded in as `compare.signals.layer_view` does.

    Sketches (`sketch/<key>`) and row samples (`rows/<key>`, all that a remote
    fingerprint reads of a matrix) are separate features: a fingerprint with
    only one of them still meets a fingerprint with both at cosine 0.7 for a copy.
    """
    vector = np.zeros(DIM)
    for key, record in fp.records.items():
        match = LAYER_TENSOR.match(key)
        shape = record.shape
        if not match or match[4] != "weight" or len(shape) != 2 or (match[2] is not None and match[2] != "0"):
            continue  # matrices only; expert 0 stands for the layer's experts
        role = match[3]
        scale = _norm_scale(fp, key_name(PRECEDING_NORM[role], int(match[1]))) if role in PRECEDING_NORM else None
        if scale is not None and scale.shape[0] != shape[1]:
            scale = None
        values = fp.array(f"sketch/{key}")
        if values is not None:
            values = values.astype(np.float64)
            columns = _sketch_columns(shape)
            if scale is not None and columns.size == values.size:
                values = values * scale[columns]
            _add(vector, f"weights:{role}:{shape}", _standardised(values))
        rows = fp.array(f"rows/{key}")
        columns = _row_sample_columns(shape)
        if rows is not None and rows.ndim == 2 and columns is not None and rows.shape[1] == columns.size:
            rows = rows.astype(np.float64)
            if scale is not None:
                rows = rows * scale[columns][None, :]
            _add(vector, f"rows:{role}:{shape}", _standardised(rows) if np.isfinite(rows).all() else None)
    return _unit(vector)


def _units_component(fp: Fingerprint) -> np.ndarray:
    vector = np.zeros(DIM)
    hidden = fp.arch.hidden_size
    for name, array in fp.arrays.items():
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != "units" or parts[2] not in UNIT_ROLES or array.ndim != 2:
            continue
        units = array.astype(np.float64)
        if units.shape[0] < 2 or units.shape[1] < 2 or not np.isfinite(units).all():
            continue
        # einsum rather than BLAS: for these thin matrices OpenBLAS's threads cost more than the product
        covariance = np.einsum("ij,ik->jk", units, units) / units.shape[0]
        upper = covariance[np.triu_indices(units.shape[1], k=1)]
        _add(vector, f"units:{parts[2]}:{hidden}:{units.shape[1]}", _standardised(upper))
    return _unit(vector)


def _gram_component(fp: Fingerprint) -> np.ndarray:
    vector = np.zeros(DIM)
    for name, array in fp.arrays.items():
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != "gram" or parts[2] not in GRAM_ROLES or array.ndim != 1:
            continue
        values = array.astype(np.float64)
        if np.isfinite(values).all():
            _add(vector, f"gram:{parts[2]}:{values.size}", _standardised(values))
    return _unit(vector)


def _token_hashes(tokens: list[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(t.encode("utf-8", errors="replace"), digest_size=8).digest(), "little")
                     for t in tokens], dtype=np.uint64)


def _embedding_component(fp: Fingerprint) -> np.ndarray:
    vector = np.zeros(DIM)
    tokens = list(fp.vocabulary.anchor_tokens) if fp.vocabulary is not None else []
    for role in (Role.EMBED, Role.LM_HEAD):
        rows = fp.array(f"anchors/{role}")
        if rows is None or rows.ndim != 2 or rows.shape[0] < 8 or len(tokens) < rows.shape[0]:
            continue
        rows = rows.astype(np.float64)
        if not np.isfinite(rows).all():
            continue
        centred = _standardised(rows - rows.mean(axis=0))  # embeddings share a mean direction
        if centred is None:
            continue
        # Feature (token string, hidden dimension): rows line up by string whatever their ids.
        dims = _mix(np.arange(rows.shape[1], dtype=np.uint64) ^ _label_seed(f"anchors:{role}:{rows.shape[1]}"))
        hashed = _mix(_token_hashes(tokens[: rows.shape[0]])[:, None] ^ dims[None, :]).reshape(-1)
        bucket, sign = _split(hashed)
        vector += np.bincount(bucket, weights=sign * centred, minlength=DIM)
    final_norm = _norm_scale(fp, key_name(Role.FINAL_NORM))
    for key, record in fp.records.items():
        shape = record.shape
        if in_layer(key) or "@" in key or len(shape) != 2:
            continue
        values = fp.array(f"sketch/{key}")
        if values is None:
            continue
        values = values.astype(np.float64)
        if key == key_name(Role.LM_HEAD) and final_norm is not None and final_norm.shape[0] == shape[1]:
            columns = _sketch_columns(shape)
            if columns.size == values.size:
                values = values * final_norm[columns]  # rescaling between norm and head changes nothing
        _add(vector, f"global:{key}:{shape}", _standardised(values))
    return _unit(vector)


def _tensor_hashes(fp: Fingerprint) -> np.ndarray:
    """First 8 bytes of the sha256 of each non-constant tensor with more than 64 values, stored and canonical."""
    # A stored tensor is constant when every canonical part of it is (a fused, all-zero q/k/v bias
    # has parts of 64 values or fewer): untrained models of one shape all share such hashes.
    varying: dict[str, bool] = {}
    found: set[str] = set()
    for record in fp.records.values():
        stats = record.stats
        constant = stats.get("std") == 0 or stats.get("min") == stats.get("max")
        varying[record.source] = varying.get(record.source, False) or not constant
        if stats.get("numel", 0) > MIN_HASHED_NUMEL and not constant and isinstance(record.sha256, str):
            found.add(record.sha256)
    constant_sources = {source for source, varies in varying.items() if not varies}
    for name, stored in fp.stored_records.items():
        if stored.numel > MIN_HASHED_NUMEL and name not in constant_sources and isinstance(stored.sha256, str):
            found.add(stored.sha256)
    values = []
    for digest in sorted(found):
        try:
            values.append(int(digest[:16], 16))
        except ValueError:
            continue
    return np.array(values, dtype=np.uint64)


def shape_key(architecture: dict[str, Any]) -> str:
    fields = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "vocab_size",
              "num_experts")
    return "/".join(str(architecture.get(f)) for f in fields)


# --- the signature -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signature:
    vectors: np.ndarray  # (len(COMPONENTS), DIM) float16, each row unit length or all zero
    hashes: np.ndarray  # uint64
    keys: dict[str, Any] = field(default_factory=dict)

    def vectors_bytes(self) -> bytes:
        return np.ascontiguousarray(self.vectors, dtype="<f2").tobytes()

    def hashes_bytes(self) -> bytes:
        return np.ascontiguousarray(self.hashes, dtype="<u8").tobytes()

    def keys_json(self) -> str:
        return json.dumps(self.keys, sort_keys=True)

    def blob(self) -> SignatureBlob:
        """The signature as the reference database stores it."""
        return SignatureBlob(SIGNATURE_VERSION, self.vectors_bytes(), self.hashes_bytes(), self.keys_json())


VECTOR_BYTES = len(COMPONENTS) * DIM * 2


def signature(fp: Fingerprint) -> Signature:
    """The screening signature of a fingerprint; a missing array only leaves its component at zero."""
    vectors = np.stack([_weights_component(fp), _units_component(fp), _gram_component(fp), _embedding_component(fp)])
    vocabulary = fp.vocabulary
    keys = {"shape": shape_key(fp.arch.to_dict()), "family": fp.family.name,
            "vocab_size": vocabulary.size if vocabulary else None, "minhash": list(vocabulary.minhash) if vocabulary else []}
    return Signature(vectors.astype(np.float16), _tensor_hashes(fp), keys)


def signature_blob(fp: Fingerprint) -> SignatureBlob:
    """What `Registry.add` stores with a reference (and `add_many` computes with this as its signer)."""
    return signature(fp).blob()


def add_reference(registry, name: str, fingerprint: Fingerprint, replace: bool = False):
    """`registry.add` with the reference's screening signature computed here (the registry never computes one)."""
    return registry.add(name, fingerprint, replace=replace, signature=signature_blob(fingerprint))


def signature_from_bytes(vectors: bytes | None, hashes: bytes | None) -> Signature | None:
    """A stored signature, or None when the blobs do not have the expected sizes (recompute it then)."""
    if vectors is None or hashes is None or len(vectors) != VECTOR_BYTES or len(hashes) % 8:
        return None
    return Signature(np.frombuffer(vectors, dtype="<f2").reshape(len(COMPONENTS), DIM),
                     np.frombuffer(hashes, dtype="<u8"))


# --- the shortlist -------------------------------------------------------------------------------

@dataclass
class Screen:
    """What screening chose, and why, for the audit report."""

    references: int  # references screened
    shortlist: list[str]  # names to compare fully, best first
    reasons: dict[str, list[str]]  # name -> why it was kept ("weights #1 0.982", "exact tensor hashes 12")
    scores: dict[str, dict[str, float]]  # name -> cosine per component
    k: int
    seconds: float
    backfilled: int = 0

    def add(self, name: str, why: str) -> None:
        """Compare `name` fully as well, whatever its scores (the audit needs it: a declared parent)."""
        if name not in self.shortlist:
            self.shortlist.append(name)
            self.reasons[name] = [why]
            self.scores.setdefault(name, {})

    def to_dict(self) -> dict[str, Any]:
        return {"references": self.references, "compared": len(self.shortlist),
                "not_compared": self.references - len(self.shortlist),
                "method": (f"per screening component ({', '.join(COMPONENTS)}; signature v{SIGNATURE_VERSION}, "
                           f"{DIM} dims each) the best {ALWAYS} reference(s) by cosine and up to {self.k} that stand "
                           f"out from the database by z >= {Z_MIN:g}, plus every reference sharing an exact tensor hash"),
                "seconds": round(self.seconds, 4), "signatures_backfilled": self.backfilled,
                "shortlist": [{"reference": n, "why": self.reasons[n], "scores": self.scores[n]} for n in self.shortlist]}


class ScreeningIndex:
    """Signatures of many references in one matrix, searched exactly."""

    def __init__(self, names: list[str], signatures: list[Signature]):
        self.names = list(names)
        count = len(self.names)
        if count:
            self.vectors = np.stack([s.vectors for s in signatures]).astype(np.float32)  # (N, C, DIM)
        else:
            self.vectors = np.zeros((0, len(COMPONENTS), DIM), dtype=np.float32)
        lengths = [s.hashes.size for s in signatures]
        self.hashes = np.concatenate([s.hashes for s in signatures]) if count else np.zeros(0, dtype=np.uint64)
        self.owner = np.repeat(np.arange(count, dtype=np.int64), lengths)

    def __len__(self) -> int:
        return len(self.names)

    def scores(self, candidate: Signature) -> np.ndarray:
        """(N, C) cosines of every reference with the candidate, per component."""
        query = candidate.vectors.astype(np.float32)
        return np.einsum("ncd,cd->nc", self.vectors, query, optimize=True)

    def shared_hashes(self, candidate: Signature) -> np.ndarray:
        """Per reference, how many of the candidate's informative tensor hashes it holds."""
        shared = np.zeros(len(self.names), dtype=np.int64)
        if candidate.hashes.size == 0 or self.hashes.size == 0:
            return shared
        mask = np.isin(self.hashes, candidate.hashes)
        if not mask.any():
            return shared
        values, owners = self.hashes[mask], self.owner[mask]
        # The same hash in many references is a common buffer or constant, not evidence.
        pairs = np.unique(np.stack([values.view(np.int64), owners]), axis=1)
        distinct, fanout = np.unique(pairs[0], return_counts=True)
        informative = np.isin(pairs[0], distinct[fanout <= HASH_FANOUT])
        np.add.at(shared, pairs[1][informative], 1)
        return shared

    def shortlist(self, candidate: Signature, k: int = TOP_K, always: int = ALWAYS,
                  z_min: float = Z_MIN) -> tuple[list[str], dict[str, list[str]], dict[str, dict]]:
        """Names to compare fully (best first), why each was kept, and its cosine per component.

        Per component, of the top k references those standing out from the
        rest (z >= z_min: cosine minus the median of all references, over their
        spread, never taken below the 1/sqrt(DIM) of hashing noise), and the top
        `always` whatever their z.
        """
        reasons: dict[str, list[str]] = {}
        best: dict[int, float] = {}
        if len(self.names) == 0:
            return [], reasons, {}
        scores = self.scores(candidate)
        present = np.linalg.norm(candidate.vectors.astype(np.float32), axis=1) > 0
        for c, component in enumerate(COMPONENTS):
            if not present[c]:
                continue
            column = scores[:, c]
            centre = float(np.median(column))
            spread = max(1.4826 * float(np.median(np.abs(column - centre))), 1.0 / np.sqrt(DIM))
            top = np.argsort(-column, kind="stable")[:k]
            for rank, i in enumerate(top, start=1):
                z = (float(column[i]) - centre) / spread
                if rank > always and z < z_min:
                    break
                reasons.setdefault(self.names[i], []).append(f"{component} #{rank} cos {column[i]:.3f} z {z:.1f}")
                best[int(i)] = max(best.get(int(i), -np.inf), z)
        shared = self.shared_hashes(candidate)
        for i in np.flatnonzero(shared):
            reasons.setdefault(self.names[i], []).append(f"exact tensor hashes {int(shared[i])}")
            best[int(i)] = np.inf  # exact copies first
        order = sorted(best, key=lambda i: (-best[i], self.names[i]))
        kept = [self.names[i] for i in order]
        scores_of = {self.names[i]: {c: round(float(scores[i, j]), 4) for j, c in enumerate(COMPONENTS)} for i in order}
        return kept, reasons, scores_of


def screen_registry(candidate: Fingerprint, registry, k: int = TOP_K) -> Screen:
    """Load every stored signature with one query (computing and storing missing ones), then shortlist."""
    started = time.perf_counter()
    names, signatures, backfilled = load_signatures(registry)
    index = ScreeningIndex(names, signatures)
    names_kept, reasons, scores = index.shortlist(signature(candidate), k)
    return Screen(len(index), names_kept, reasons, scores, k, time.perf_counter() - started, backfilled)


def load_signatures(registry) -> tuple[list[str], list[Signature], int]:
    """All weights references' signatures; stale or missing ones are computed and written back."""
    names, signatures, missing = [], [], []
    for row in registry.screening_rows(SIGNATURE_VERSION):
        name, fresh, vectors, hashes = row
        stored = signature_from_bytes(vectors, hashes) if fresh else None
        if stored is None:
            missing.append(name)
        names.append(name)
        signatures.append(stored)
    if missing:
        computed = {name: signature(registry.fingerprint(name)) for name in missing}
        try:
            registry.put_signatures((name, s.blob()) for name, s in computed.items())
        except sqlite3.Error:
            pass  # a read-only or busy database: use the computed signatures without storing them
        signatures = [s if s is not None else computed[n] for n, s in zip(names, signatures)]
    return names, signatures, len(missing)
