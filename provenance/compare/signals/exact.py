"""Exact tensor hashes: tensors bit-identical (as float32) to a reference tensor, under any name.

A deterministic check, no p-value: the entry gives the share of the
candidate's tensors (of more than EXACT_MIN_NUMEL values) found among the
reference's. Hashes of fingerprints made by different versions (sha256 of
float32 values; XXH3 of the shortest exact float type) never agree, so they
are compared only when both sides hold the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...fingerprint import Fingerprint, Part
from ..results import Evidence
from .base import Pair, Signal, SignalResult

# Tensors of at most this many values (norms of tiny models, scalars) say nothing about copying when equal.
EXACT_MIN_NUMEL = 64


@dataclass(frozen=True)
class ExactTensors:
    """Tensors bit-identical (as float32) to a reference tensor, under any name."""

    pairs: list[tuple[str, str]]  # (candidate key, reference key)
    candidate_tensors: list[str]  # the candidate's tensors of more than EXACT_MIN_NUMEL values
    reference_tensors: list[str]
    comparable: bool  # both sides hash values the same way


def big_tensors(fp: Fingerprint) -> list[str]:
    return [k for k, r in fp.records.items() if r.numel > EXACT_MIN_NUMEL]


class ExactHashes(Signal):
    name = "exact tensor hashes"
    needs = frozenset({Part.TENSOR_HASHES})
    null = ("independently trained models never share a tensor of more than EXACT_MIN_NUMEL values bit for bit "
            "(a deterministic check, no p-value)")

    def measure(self, pair: Pair) -> SignalResult:
        cand, ref = pair.cand, pair.ref
        notes = []
        comparable = cand.value_hash == ref.value_hash
        if not comparable:
            notes.append("the two fingerprints hash tensor values differently (made by different versions): "
                         "exact-copy checks are skipped; rebuild the older one with `provenance fingerprint` to use "
                         "them")
        ref_hashes: dict[str, str] = ({ref.records[k].sha256: k for k in big_tensors(ref)} if comparable else {})
        pairs = [(k, ref_hashes[r.sha256]) for k, r in cand.records.items() if r.sha256 in ref_hashes]
        exact = ExactTensors(pairs, big_tensors(cand), big_tensors(ref), comparable)
        evidence = ()
        if exact.pairs:
            evidence = (Evidence(self.name, len(exact.pairs) / max(len(exact.candidate_tensors), 1), None,
                                 f"{len(exact.pairs)} of {len(exact.candidate_tensors)} candidate tensors are "
                                 "bit-identical (as float32) to reference tensors"),)
        return SignalResult(evidence, notes=tuple(notes), measured=exact, weights_compared=bool(exact.pairs))
