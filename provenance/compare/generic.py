"""The generic comparison: stored tensors paired one to one, for checkpoints no transformer role map fits.

A Stable Diffusion UNet, VAE or text encoder, or a ViT, is not a stack of
decoder layers; the structural grouping that the layer engine relies on
falls differently on every such model (it found two "layers" in a UNet's
three blocks, and one unmatched "layer" was enough to abstain). This path
depends on no grouping. It reads the `generic/<stored name>` samples of
`provenance.fingerprint.generic` and:

1. pairs stored tensors: first by equal name and shape (without looking at
   values); then each remaining candidate tensor with the remaining reference
   tensor *of its shape* that correlates best with it, its p-value multiplied
   by the number k of same-shaped tensors it was chosen from (a union bound,
   so the choice manufactures no strength). This finds the tensors of a
   renamed copy whatever order its new names put them in: pairing by
   storage order would depend on how the new names happen to sort (safetensors
   stores tensors sorted by name);
2. tests every pair with `stats.clustered_log10p`: the correlation of the two
   samples, with the products summed per *input channel* (the column of a
   matrix, the `in` index of a conv kernel (out, in, kh, kw), taken as the
   matrix (out, in*kh*kw)); 1-D tensors use one cluster per value. Null: the
   two models were initialised and trained independently, so flipping the
   sign of a hidden channel of one of them (which changes nothing in its
   distribution) flips the sign of that channel's sum: the self-normalised
   sum then follows the sign-flip distribution whatever the magnitudes the
   two models share. Leading dimensions of size 1 are dropped first, so a
   (1, positions, hidden) position embedding is clustered by hidden channel;
3. combines the pairs and decides:
   - `identical`: the two files hold the same shapes, every tensor is paired
     one to one and every pair is explained by storage: the stored-tensor
     hashes (float32 values) are
     equal, or the two stored dtypes differ and both samples, rounded to
     the less precise of the two dtypes, agree within ROUNDING_TOLERANCE
     of that dtype (relative RMS);
   - `derived`: the strongest pair, Bonferroni-corrected over the N pairs
     tested, is below STRONG, and at least MATCHED_SHARE of the *testable*
     pairs (by count) match at corrected p below MATCHED, and at least
     MIN_MATCHED of them;
   - otherwise `same-architecture` when the two files hold the same
     tensors (every tensor paired, or SAME_ARCHITECTURE_SHARE of them paired
     by name and shape), else `unrelated`; significant but insufficient
     evidence is reported as an abstention. `assembled` is never reached
     here: a layer map is what shows layers from several sources.

Thresholds (log10 p; see docs/how-it-decides.md for the measured null rates):
- MATCHED = -6: a pair counts as matched below 1e-6 after Bonferroni over
  the pairs tested (times k for a partner chosen by value); the layer engine's bar for a matched layer, so a model
  of N tested pairs has under 1e-6 chance of a single false match.
- STRONG = -12: the accusation bar of every accusing verdict (the layer
  engine's STRONG): the strongest corrected pair must leave no doubt.
- MATCHED_SHARE = 0.5 and MIN_MATCHED = 2: the strongest pair alone could
  be one shared public component (an autoencoder, a text encoder's
  embedding); a descendant shares most of its tensors, so at least half of
  those that *could* match must, and never fewer than two.
- A pair is *testable* when a perfect copy could pass MATCHED: with C
  clusters the self-normalised sum is at most sqrt(C), so a tensor with
  fewer than about 48 input channels (conv_in of a UNet, 4 channels; a
  ViT's patch embedding, 3) can never reach 1e-6 and gets no vote either
  way. Constant tensors (GroupNorm weights at 1, zero biases) are not tested.
- ROUNDING_TOLERANCE: relative RMS difference allowed after rounding both
  samples to the coarser dtype: float32/64 1e-6 (arithmetic through a
  re-layout), float16 1e-3 and bfloat16 3e-3 (about one unit in the last
  place, for a cast that rounded differently from round-to-nearest);
  8-bit floats 0.07 (one unit at 3 mantissa bits). Quantized GGUF dtypes
  have no rounding to reproduce here: only equal hashes make them identical.
- GENERIC_UNMAPPED_SHARE = 0.1: the generic path takes over when either
  side left more than 10% of its stored parameters without any role (a
  UNet leaves about 90%, a VAE 94%, a ViT 15%; a renamed LLaMA, whose roles
  inference recovers, 0%) and both sides carry generic samples.
- SAME_ARCHITECTURE_SHARE = 0.5: half of the tensors of the larger side
  paired by name and shape means the same design (e.g. another depth).

Confidence: for `derived`, 0.5 + 0.5 x strength x matched share (strength =
-log10 p / 50, capped at 1); for `identical`, 1.0 when every hash is equal,
else 0.99; for verdicts that accuse nothing, 1 minus the share of testable
pairs whose corrected p is below 0.01 (halved on an abstention).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterator

import numpy as np
import torch
from scipy import stats as scipy_stats

from ..errors import CorruptFileError
from ..fingerprint import Fingerprint, Part
from ..fingerprint.generic import ARRAY_PREFIX
from ..fingerprint.records import GenericTensorRecord, RecordError
from ..fingerprint.sketch import sketch_positions
from ..verdicts import ACCUSING
from .results import Comparison, Evidence
from .thresholds import (ACCUSATION_LOG10P, DERIVED_MIN_LAYER_SHARE, GENERIC_LEANING_LOG10P, GENERIC_MIN_MATCHED,
                         GENERIC_SAME_ARCHITECTURE_SHARE, LAYER_MATCH_LOG10P)
from .stats import LN10, bonferroni_log10p, clustered_log10p, format_p
from .verdict import GenericInputs, decide

MATCHED = LAYER_MATCH_LOG10P  # the layer engine's bars (thresholds.py), so one bar serves every accusation
STRONG = ACCUSATION_LOG10P
MATCHED_SHARE = DERIVED_MIN_LAYER_SHARE
MIN_MATCHED = GENERIC_MIN_MATCHED
LEANING = GENERIC_LEANING_LOG10P  # corrected p < 0.01: a pair leaning towards dependence (confidence only)
GENERIC_UNMAPPED_SHARE = 0.1
SAME_ARCHITECTURE_SHARE = GENERIC_SAME_ARCHITECTURE_SHARE
EVIDENCE_PAIRS = 5  # strongest pairs listed one by one in the evidence
ROUNDING_TOLERANCE = {"F64": 1e-6, "F32": 1e-6, "F16": 1e-3, "BF16": 3e-3, "F8_E4M3": 0.07, "F8_E5M2": 0.14}
TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


class StoredTensor:
    """One stored tensor as the generic comparison sees it: name, shape, dtype, storage order, sample, hash."""

    __slots__ = ("name", "shape", "dtype", "order", "sample", "sha256")

    def __init__(self, name: str, shape: tuple[int, ...], dtype: str, order: int, sample: np.ndarray,
                 sha256: str | None):
        self.name, self.shape, self.dtype, self.order, self.sample, self.sha256 = name, shape, dtype, order, sample, sha256


class PairTest:
    """The test of one candidate/reference pair."""

    __slots__ = ("cand", "ref", "how", "alternatives", "correlation", "log10p", "corrected", "clusters", "testable",
                 "tested", "storage_equal", "exact")

    def __init__(self, cand: StoredTensor, ref: StoredTensor, how: str):
        self.cand, self.ref, self.how = cand, ref, how
        self.alternatives = [ref]  # reference tensors the partner was chosen from (by value: see _test)
        self.correlation, self.log10p, self.corrected, self.clusters = 0.0, 0.0, 0.0, 0
        self.testable = self.tested = self.storage_equal = self.exact = False


def generic_tensors(fp: Fingerprint) -> dict[str, StoredTensor] | None:
    """The fingerprint's generic view, checked like everything else read from an untrusted file (None if absent)."""
    section = fp.generic
    if section is None:
        return None
    where = fp.source.path
    view: dict[str, StoredTensor] = {}
    for name, record in _checked(section.records(), where):
        shape = record.shape
        sample = fp.array(f"{ARRAY_PREFIX}{name}")
        expected = len(_positions(shape))
        if sample is None or sample.ndim != 1 or sample.shape[0] != expected:
            raise CorruptFileError(where, f"generic sample of {name[:80]!r} holds "
                                          f"{None if sample is None else list(sample.shape)} values, expected {expected}")
        stored = fp.stored_records.get(name)
        digest = stored.sha256 if stored is not None else None
        view[name] = StoredTensor(name, shape, record.dtype, record.order,
                                  np.asarray(sample, dtype=np.float64), digest if isinstance(digest, str) else None)
    return view


def _checked(records: Iterator[tuple[str, GenericTensorRecord]], where: str | None
             ) -> Iterator[tuple[str, GenericTensorRecord]]:
    """The records as checked: a bad one is a corrupt fingerprint file, named by where it was made from."""
    try:
        yield from records
    except RecordError as exc:
        raise CorruptFileError(where, str(exc)) from exc


def generic_applies(cand: Fingerprint, ref: Fingerprint) -> bool:
    """Both sides carry generic samples and either leaves over GENERIC_UNMAPPED_SHARE of its parameters roleless."""
    sections = [fp.generic for fp in (cand, ref)]
    if not (cand.holds(Part.TENSOR_HASHES) and ref.holds(Part.TENSOR_HASHES)):
        return False  # generic samples and stored-tensor hashes come from whole tensors, not rows read remotely
    if not all(s is not None and s.entries for s in sections):
        return False
    shares = [s.unmapped_share for s in sections]
    return any(isinstance(s, (int, float)) and s > GENERIC_UNMAPPED_SHARE for s in shares)


def compare_generic(cand: Fingerprint, ref: Fingerprint) -> Comparison | None:
    """The generic comparison, or None when the layer engine applies (see `generic_applies`)."""
    if not generic_applies(cand, ref):
        return None
    cand_view, ref_view = generic_tensors(cand), generic_tensors(ref)
    if not cand_view or not ref_view:
        return None
    pairs = pair_tensors(cand_view, ref_view)
    tested = [p for p in pairs if _prepare(p)]
    for pair in tested:
        _test(pair, len(tested))
    tested = [p for p in tested if p.tested]
    used: set[str] = set()
    for pair in pairs:
        # A partner chosen by shape is, for the storage check, any unused one the pair's values are equal to.
        options = [pair.ref] + [a for a in pair.alternatives if a is not pair.ref] if pair.how == "shape" else [pair.ref]
        for other in options:
            if other.name in used and pair.how == "shape":
                continue
            equal, exact = _storage_equal(pair.cand, other)
            if equal:
                pair.ref, pair.storage_equal, pair.exact = other, True, exact
                used.add(other.name)
                break
    return _decide(pairs, tested, cand_view, ref_view)


def pair_tensors(cand: dict[str, StoredTensor], ref: dict[str, StoredTensor]) -> list[PairTest]:
    """Pairs by name and shape; each remaining candidate tensor with every remaining reference tensor of its shape.

    The second kind is tested against all its `alternatives` and keeps the
    best (`_test` multiplies its p-value by their number).
    """
    pairs = []
    for name, tensor in sorted(cand.items(), key=lambda item: item[1].order):
        other = ref.get(name)
        if other is not None and other.shape == tensor.shape:
            pairs.append(PairTest(tensor, other, "name"))
    taken_c = {p.cand.name for p in pairs}
    taken_r = {p.ref.name for p in pairs}
    by_shape_r: dict[tuple[int, ...], list[StoredTensor]] = {}
    for tensor in sorted(ref.values(), key=lambda t: t.order):
        if tensor.name not in taken_r:
            by_shape_r.setdefault(tensor.shape, []).append(tensor)
    for tensor in sorted(cand.values(), key=lambda t: t.order):
        group = by_shape_r.get(tensor.shape)
        if tensor.name not in taken_c and group:
            pair = PairTest(tensor, group[0], "shape")
            pair.alternatives = group
            pairs.append(pair)
    return pairs


_POSITIONS: dict[tuple[int, ...], np.ndarray] = {}


def _positions(shape: tuple[int, ...]) -> np.ndarray:
    if shape not in _POSITIONS:
        if len(_POSITIONS) > 4096:
            _POSITIONS.clear()
        _POSITIONS[shape] = sketch_positions(shape)
    return _POSITIONS[shape]


def input_channel_clusters(shape: tuple[int, ...]) -> np.ndarray | None:
    """Input channel of every sampled position (None for a vector: one cluster per value)."""
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    if len(dims) <= 1:
        return None
    inner = math.prod(dims[2:])
    return (_positions(shape) // inner) % dims[1]


def best_possible_log10p(clusters: int) -> float:
    """The smallest log10 p the clustered test can give with this many clusters (all sums equal: z = sqrt(C))."""
    if clusters < 3:
        return 0.0
    return float(scipy_stats.t.logsf(math.sqrt(clusters), clusters - 1) / LN10)


def _prepare(pair: PairTest) -> bool:
    """Count the pair's clusters; False for a pair no test can be run on (constant, or under 3 clusters)."""
    x, y = pair.cand.sample, pair.ref.sample
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return False
    clusters = input_channel_clusters(pair.cand.shape)
    pair.clusters = int(x.size if clusters is None else np.unique(clusters).size)
    pair.tested = pair.clusters >= 3
    return pair.tested


def _test(pair: PairTest, tests: int) -> None:
    """The clustered test; a partner chosen by value among k alternatives pays a factor k (union bound)."""
    clusters = input_channel_clusters(pair.cand.shape)
    best = None
    for other in pair.alternatives:
        if np.ptp(other.sample) == 0:
            continue
        r, log10p = clustered_log10p(pair.cand.sample, other.sample, clusters)
        if best is None or log10p < best[1]:
            best = (r, log10p, other)
    if best is None:
        pair.tested = False
        return
    pair.correlation, pair.log10p, pair.ref = best
    chosen_from = len(pair.alternatives)
    pair.corrected = bonferroni_log10p(pair.log10p, tests * chosen_from)
    pair.testable = bonferroni_log10p(best_possible_log10p(pair.clusters), tests * chosen_from) < MATCHED


def _rounded(values: np.ndarray, dtype: str) -> np.ndarray:
    return torch.from_numpy(values.astype(np.float32)).to(TORCH_DTYPES[dtype]).to(torch.float64).numpy()


def _storage_equal(cand: StoredTensor, ref: StoredTensor) -> tuple[bool, bool]:
    """(explained by storage, bit-identical as float32)."""
    if cand.sha256 is not None and cand.sha256 == ref.sha256:
        return True, True
    if cand.dtype == ref.dtype and cand.sha256 is not None and ref.sha256 is not None:
        return False, False  # stored alike, yet different values: not a matter of storage
    if cand.dtype not in ROUNDING_TOLERANCE or ref.dtype not in ROUNDING_TOLERANCE:
        return False, False  # quantized: no rounding to reproduce
    coarse = max(cand.dtype, ref.dtype, key=lambda d: float(torch.finfo(TORCH_DTYPES[d]).eps))
    x, y = _rounded(cand.sample, coarse), _rounded(ref.sample, coarse)
    scale = float(np.sqrt(np.mean(y * y))) if y.size else 0.0
    error = float(np.sqrt(np.mean((x - y) ** 2))) if y.size else 0.0
    return (error <= ROUNDING_TOLERANCE[coarse] * scale if scale > 0 else error == 0.0), False


def _decide(pairs: list[PairTest], tested: list[PairTest], cand_view: dict[str, StoredTensor],
            ref_view: dict[str, StoredTensor]) -> Comparison:
    """The evidence of the paired tensors, and the decision on it (`verdict.decide`)."""
    by_name = [p for p in pairs if p.how == "name"]
    by_shape = [p for p in pairs if p.how == "shape"]
    all_paired = (len(pairs) == len(cand_view) == len(ref_view)
                  and Counter(t.shape for t in cand_view.values()) == Counter(t.shape for t in ref_view.values()))
    name_share = len(by_name) / max(len(cand_view), len(ref_view))
    match_kind = "same-shapes" if all_paired else "same-family" if name_share >= SAME_ARCHITECTURE_SHARE else "different"
    testable = [p for p in tested if p.testable]
    matched = [p for p in tested if p.corrected < MATCHED]
    strongest_pair = min(tested, key=lambda p: (p.corrected, p.log10p), default=None)
    strongest = strongest_pair.corrected if strongest_pair else 0.0
    exact = [p for p in pairs if p.exact and np.ptp(p.cand.sample) > 0]  # equal constants say nothing
    informative = [p for p in pairs if np.ptp(p.cand.sample) > 0]
    evidence: list[Evidence] = []
    notes: list[str] = []

    pairing = (f"{len(by_name)} by name and shape, {len(by_shape)} by shape (best of the same-shaped tensors); "
               f"{len(cand_view) - len(pairs)} of {len(cand_view)} candidate and {len(ref_view) - len(pairs)} of "
               f"{len(ref_view)} reference tensors unpaired")
    if exact:
        evidence.append(Evidence("exact stored-tensor hashes", len(exact) / len(informative), None,
                                 f"{len(exact)} of {len(informative)} non-constant candidate tensors are bit-identical "
                                 "(as float32) to their paired reference tensor"))
    if strongest_pair is not None:
        p = strongest_pair
        evidence.append(Evidence(
            "generic tensor pairs (clustered correlation), strongest", p.correlation, strongest,
            f"{p.cand.name} ~ {p.ref.name} {list(p.cand.shape)}: correlation {p.correlation:.3f} over "
            f"{p.cand.sample.size} sampled values in {p.clusters} input-channel clusters, {format_p(p.log10p)}, "
            f"Bonferroni over {len(tested)} tested pairs: {format_p(strongest)}"))
    share = len(matched) / len(testable) if testable else 0.0
    evidence.append(Evidence(
        "generic tensor pairs matched", share, None,
        f"{len(matched)} of {len(testable)} testable pairs match at corrected p < 1e-6 (derived needs half and at "
        f"least {MIN_MATCHED}); {len(tested) - len(testable)} tested pairs have too few input channels to reach "
        f"that bar, {len(pairs) - len(tested)} are constant; pairing: {pairing}"))
    for p in sorted(tested, key=lambda p: p.corrected)[1:EVIDENCE_PAIRS]:
        evidence.append(Evidence(
            "generic tensor pair (clustered correlation)", p.correlation, p.corrected,
            f"{p.cand.name} ~ {p.ref.name} {list(p.cand.shape)}: correlation {p.correlation:.3f}, "
            f"{p.clusters} clusters, corrected {format_p(p.corrected)}", decisive=False))

    renamed = [{"candidate": p.cand.name, "reference": p.ref.name, "role": "generic (paired by shape and value)"}
               for p in by_shape if p.cand.name != p.ref.name]
    storage_identical = bool(all_paired and pairs and all(p.storage_equal for p in pairs))
    rounded = [p for p in pairs if not p.exact]
    if storage_identical and rounded:
        evidence.append(Evidence("storage rounding check", len(rounded) / len(pairs), None,
                                 f"{len(rounded)} pairs agree after rounding both samples to the coarser dtype "
                                 f"(relative RMS within {', '.join(f'{k} {v:g}' for k, v in ROUNDING_TOLERANCE.items())})"))
    decision = decide(GenericInputs(
        match_kind=match_kind, storage_identical=storage_identical, pairs=len(pairs), rounded=len(rounded),
        renamed=len(by_shape), matched=len(matched), testable=len(testable), strongest=strongest,
        leaning=sum(1 for p in testable if p.corrected < LEANING),
        same_architecture=all_paired or name_share >= SAME_ARCHITECTURE_SHARE), notes)
    return Comparison(decision.verdict, decision.confidence, decision.summary, evidence, [],
                      renamed if decision.verdict in ACCUSING else [], match_kind, decision.abstained, notes)
