"""Layers compared through what no residual rotation, unit permutation or rescaling changes: anchor-token responses.

Every MLP unit (its up row with the norm before it folded in, and its down
column) and every value unit (a row of v, a column of o) is described by its
inner products with the embedding rows of the first anchor tokens, which
both fingerprints choose by token *string* (`fingerprint.parts.anchor_responses`).
Rotating the residual basis of a model with its norms folded rotates those
rows and the units alike, so the inner products do not move; permuting units
or heads only reorders them; scaling a unit changes only its length. A copy
disguised by any composition of these keeps, for each of its units, a partner
in the reference with the same response to every anchor token.

The test, per layer pair and per group of units (MLP units; v rows; o columns):
the anchor tokens both sides hold are split in two halves; each side's
descriptors are whitened with that side's own covariance over its units (so
the halves carry no linear information about each other within a model);
each candidate unit is matched to the reference unit most correlated with it
on the first half (by absolute value: a unit's sign is arbitrary), oriented
by that correlation's sign, and its correlation on the second half is taken.
A unit is a *near copy* when that held-out correlation is at least
`thresholds.NEAR_COPY_CORRELATION` and no other candidate unit chose the same
partner. Two independent models share token semantics, so matched units do
correlate somewhat, and no symmetry of a model makes this statistic's null
exact (any function-preserving transform a null could flip is one a disguise
may apply, and the statistic is built to ignore it). The null is therefore a
stated bound: under independence a unit is a near copy with probability at
most `thresholds.NEAR_COPY_RATE_BOUND`, far above the rate measured on the
null suite (reported in the README), and the count of near copies is tested
against a binomial tail at that rate. Copies reach nearly every unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from ..fingerprint import Fingerprint, Part
from .results import Evidence, LayerMatch
from .stats import LOG10P_FLOOR, bonferroni_log10p, format_p, standardise, whiten
from .thresholds import ACCUSATION_LOG10P, LAYER_MATCH_LOG10P, NEAR_COPY_CORRELATION, NEAR_COPY_RATE_BOUND

# The unit groups compared: each lists the roles whose responses describe one unit together.
GROUPS = {"MLP units": ("mlp.up", "mlp.down"), "value rows": ("attn.v",), "output columns": ("attn.o",)}
MIN_SHARED_TOKENS = 16  # at least 8 anchor tokens to match on and 8 to test on
MATCH_CHUNK = 2048  # candidate units per similarity block (bounds memory for wide MLPs)
SEARCH_UNITS = 256  # candidate units per group when searching every reference layer (different depths)
SIGNAL = "anchor-token responses (rotation- and permutation-invariant)"
VIA = "anchor-token responses (rotated basis or permuted units and heads)"


@dataclass(frozen=True)
class GroupMatch:
    """One group of units of a layer pair: how many were compared, how many are near copies, and the identity error."""

    group: str
    units: int  # candidate units compared
    reference_units: int
    near_copies: int
    correlation: float  # median held-out correlation of the matched units
    rel_error: float  # relative difference of the matched raw responses after per-unit scales


@dataclass(frozen=True)
class ResponseMatch:
    """A layer pair compared through anchor-token responses."""

    layer_c: int
    layer_r: int
    groups: tuple[GroupMatch, ...]
    tokens: int  # anchor tokens both sides hold
    log10p: float  # binomial tail of the near copies (uncorrected)

    @property
    def units(self) -> int:
        return sum(g.units for g in self.groups)

    @property
    def near_copies(self) -> int:
        return sum(g.near_copies for g in self.groups)

    @property
    def correlation(self) -> float:
        return float(np.median([g.correlation for g in self.groups])) if self.groups else 0.0

    @property
    def rel_error(self) -> float:
        return max((g.rel_error for g in self.groups), default=float("inf"))


def near_copy_log10p(near_copies: int, units: int) -> float:
    """log10 P(at least `near_copies` of `units` under the stated per-unit bound), binomial."""
    if units <= 0 or near_copies <= 0:
        return 0.0
    return float(max(st.binom.logsf(near_copies - 1, units, NEAR_COPY_RATE_BOUND) / np.log(10.0), LOG10P_FLOOR))


def response_tokens(fp: Fingerprint) -> list[str]:
    """The anchor token strings the responses were taken on, in column order (the first anchors with rows)."""
    vocabulary = fp.meta.get("vocabulary") or {}
    anchors = fp.part_array(Part.ANCHORS, "embed")
    tokens = list(vocabulary.get("anchor_tokens") or [])
    return tokens[: anchors.shape[0]] if anchors is not None else tokens


def shared_columns(cand: Fingerprint, ref: Fingerprint, width_c: int, width_r: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of the anchor tokens both sides' responses hold, in the candidate's order."""
    c_tokens, r_tokens = response_tokens(cand)[:width_c], response_tokens(ref)[:width_r]
    r_index = {t: i for i, t in enumerate(r_tokens)}
    pairs = [(i, r_index[t]) for i, t in enumerate(c_tokens) if t in r_index]
    if not pairs:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    c_cols, r_cols = zip(*pairs)
    return np.asarray(c_cols), np.asarray(r_cols)


def _descriptors(fp: Fingerprint, layer: int, roles: tuple[str, ...], columns: np.ndarray) -> list[np.ndarray] | None:
    found = [fp.part_array(Part.ANCHOR_RESPONSES, layer, role) for role in roles]
    if any(a is None for a in found) or len({a.shape[0] for a in found}) != 1:
        return None
    return [a.astype(np.float64)[:, columns] for a in found]


def _halves(parts: list[np.ndarray], split: int) -> tuple[np.ndarray, np.ndarray]:
    """Whitened match and test halves of the concatenated per-role descriptors (each role's row standardised
    first, so that a unit scaled by s in one role and 1/s in another keeps its descriptor)."""
    whole = whiten(np.concatenate([standardise(p) for p in parts], axis=1))
    width = parts[0].shape[1]
    match_cols = np.concatenate([np.arange(k * width, k * width + split) for k in range(len(parts))])
    test_cols = np.setdiff1d(np.arange(whole.shape[1]), match_cols)
    return whole[:, match_cols], whole[:, test_cols]


def _partners(match_c: np.ndarray, match_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate unit's most correlated reference unit (by absolute value) and the sign of that correlation."""
    a, b = standardise(match_c).astype(np.float32), standardise(match_r).astype(np.float32)
    partner = np.zeros(len(a), dtype=int)
    sign = np.ones(len(a))
    for start in range(0, len(a), MATCH_CHUNK):
        block = a[start:start + MATCH_CHUNK] @ b.T
        best = np.argmax(np.abs(block), axis=1)
        partner[start:start + MATCH_CHUNK] = best
        sign[start:start + MATCH_CHUNK] = np.where(block[np.arange(len(best)), best] < 0, -1.0, 1.0)
    return partner, sign


def _scaled_error(parts_c: list[np.ndarray], parts_r: list[np.ndarray], partner: np.ndarray, sign: np.ndarray) -> float:
    """Largest relative difference over roles of the matched raw responses, each unit scaled by its least-squares
    factor, and of the paired scales from one (a function-preserving rescaling multiplies them to one)."""
    errors, scales = [], []
    for a, b in zip(parts_c, parts_r):
        b = b[partner] * sign[:, None]
        norms = (b * b).sum(axis=1)
        scale = np.divide((a * b).sum(axis=1), norms, out=np.ones(len(a)), where=norms > 0)
        errors.append(float(np.linalg.norm(a - scale[:, None] * b) / max(np.linalg.norm(b), 1e-30)))
        scales.append(scale)
    if len(scales) == 2:  # up rows times s, down columns divided by s: the product is one
        errors.append(float(np.max(np.abs(scales[0] * scales[1] - 1.0))) if len(scales[0]) else 0.0)
    # A value row's scale pairs with output columns of another group (with permuted heads, which ones is not
    # known here), so a single-role group's scales are left unchecked: the identity holds up to them.
    return max(errors)


@dataclass(frozen=True)
class _Side:
    """One fingerprint's groups of one layer, prepared once: whitened halves and raw per-role responses."""

    match: np.ndarray
    test: np.ndarray
    raw: list[np.ndarray]


class ResponseTables:
    """Both fingerprints' anchor-token responses on the tokens they share, prepared once per layer and group;
    `match(i, j)` compares candidate layer i with reference layer j."""

    def __init__(self, cand: Fingerprint, ref: Fingerprint):
        self.cand, self.ref = cand, ref
        self.columns: tuple[np.ndarray, np.ndarray] | None = None
        self.prepared: dict[tuple[str, int, str], _Side | None] = {}

    def _columns(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.columns is None:
            self.columns = shared_columns(self.cand, self.ref, a.shape[1], b.shape[1])
        return self.columns

    def _side(self, which: str, layer: int, group: str, columns: np.ndarray) -> _Side | None:
        key = (which, layer, group)
        if key not in self.prepared:
            fp = self.cand if which == "c" else self.ref
            parts = _descriptors(fp, layer, GROUPS[group], columns)
            side = None
            if parts is not None and parts[0].shape[0] >= 2:
                match, test = _halves(parts, len(columns) // 2)
                side = _Side(match, test, parts)
            self.prepared[key] = side
        return self.prepared[key]

    def match(self, layer_c: int, layer_r: int, sample: int | None = None) -> ResponseMatch | None:
        """Candidate layer `layer_c` against reference layer `layer_r` (None: neither side holds comparable responses);
        `sample`: only the first that many candidate units of each group (a quick search over many layer pairs)."""
        groups = []
        tokens = 0
        for name, roles in GROUPS.items():
            a = self.cand.part_array(Part.ANCHOR_RESPONSES, layer_c, roles[0])
            b = self.ref.part_array(Part.ANCHOR_RESPONSES, layer_r, roles[0])
            if a is None or b is None:
                continue
            c_cols, r_cols = self._columns(a, b)
            if len(c_cols) < MIN_SHARED_TOKENS:
                continue
            side_c, side_r = self._side("c", layer_c, name, c_cols), self._side("r", layer_r, name, r_cols)
            if side_c is None or side_r is None:
                continue
            take = slice(0, sample)
            partner, sign = _partners(side_c.match[take], side_r.match)
            held = (standardise(side_c.test[take]) * standardise(side_r.test)[partner]).sum(axis=1) * sign
            unique = np.bincount(partner, minlength=len(side_r.match))[partner] == 1
            near = int(np.count_nonzero((held >= NEAR_COPY_CORRELATION) & unique))
            error = _scaled_error([p[take] for p in side_c.raw], side_r.raw, partner, sign) if sample is None else 0.0
            groups.append(GroupMatch(name, len(held), len(side_r.match), near, float(np.median(held)), error))
            tokens = len(c_cols)
        if not groups:
            return None
        units, near = sum(g.units for g in groups), sum(g.near_copies for g in groups)
        return ResponseMatch(layer_c, layer_r, tuple(groups), tokens, near_copy_log10p(near, units))


def pooled_log10p(matches: list[ResponseMatch]) -> float:
    """One binomial tail over the units of several layer pairs fixed in advance (each layer in its own place)."""
    return near_copy_log10p(sum(m.near_copies for m in matches), sum(m.units for m in matches))


def anchor_gram_error(cand: Fingerprint, ref: Fingerprint) -> float | None:
    """Relative difference of the inner products among the anchor tokens' embedding rows (shared by string): equal
    for a copy whose residual basis was rotated, whatever the rotation (None: fewer than 16 shared tokens)."""
    a, b = cand.part_array(Part.ANCHORS, "embed"), ref.part_array(Part.ANCHORS, "embed")
    if a is None or b is None:
        return None
    c_cols, r_cols = shared_columns(cand, ref, a.shape[0], b.shape[0])
    if len(c_cols) < MIN_SHARED_TOKENS:
        return None
    x, y = a[c_cols].astype(np.float64), b[r_cols].astype(np.float64)
    gram_x, gram_y = x @ x.T, y @ y.T
    return float(np.linalg.norm(gram_x - gram_y) / max(np.linalg.norm(gram_y), 1e-30))


@dataclass(frozen=True)
class ResponsePlacement:
    """What the anchor-response step found: each tested layer pair with its corrected log10 p, and the pooled
    test over layers in their own places (None at different depths)."""

    tested: list[tuple[ResponseMatch, float]]
    pooled: float | None

    @property
    def placed(self) -> list[tuple[ResponseMatch, float]]:
        return [(m, p) for m, p in self.tested if p < LAYER_MATCH_LOG10P]


def place_by_responses(cand: Fingerprint, ref: Fingerprint, rows: list[LayerMatch]) -> ResponsePlacement:
    """Layers no earlier step placed, or placed short of the accusation bar, tested through anchor-token responses;
    places (or places again) those whose corrected p-value is below the layer bar and below what placed them.

    Same depth: each layer against the layer in its place (a disguised copy
    keeps its layers where they were), Bonferroni over the layers tested, and
    one pooled test over them (a map fixed in advance: no correction); on a
    sample of SEARCH_UNITS units per group first, and on every unit only when
    the sample's pooled test passes the layer bar (both are valid tests).
    Different depths: each layer against every reference layer on a sample
    of its units, then in full against the best, Bonferroni over the
    reference layers searched and the layers tested.
    """
    still = [r for r in rows if r.reference_layer is None or r.log10_p > ACCUSATION_LOG10P]
    layers_r = int(ref.architecture.get("num_layers") or 0)
    if not still or not layers_r:
        return ResponsePlacement([], None)
    tables = ResponseTables(cand, ref)
    same_depth = len(rows) == layers_r
    # Same depth: a sample of units first; only when the sample shows a relation is every unit matched (an
    # unrelated pair, the common case in an audit, then costs a sample per layer).
    quick = ([m for m in (tables.match(r.candidate_layer, r.candidate_layer, sample=SEARCH_UNITS) for r in still)
              if m is not None] if same_depth else [])
    if same_depth and pooled_log10p(quick) >= LAYER_MATCH_LOG10P:
        tested = [(m, bonferroni_log10p(m.log10p, len(quick))) for m in quick]
        return ResponsePlacement(tested, pooled_log10p(quick))
    tested: list[tuple[ResponseMatch, float]] = []
    for row in still:
        i = row.candidate_layer
        if same_depth:
            found, searched = tables.match(i, i), 1
        else:
            quick = [m for m in (tables.match(i, j, sample=SEARCH_UNITS) for j in range(layers_r)) if m is not None]
            best = min(quick, key=lambda m: m.log10p, default=None)
            found, searched = (tables.match(i, best.layer_r) if best is not None else None), layers_r
        if found is not None:
            tested.append((found, found.log10p + math.log10(searched)))
    tested = [(m, bonferroni_log10p(p, len(tested))) for m, p in tested]
    pooled = pooled_log10p([m for m, _ in tested]) if same_depth and tested else None
    placement = ResponsePlacement(tested, pooled)
    for match, corrected in placement.placed:
        row = rows[match.layer_c]
        if row.reference_layer is None or corrected < row.log10_p:
            row.place(match.layer_r, match.correlation, corrected, {}, VIA)
    return placement


def describe(match: ResponseMatch) -> str:
    """The groups of a layer pair in words: '1536 of 1536 MLP units, 192 of 192 value rows ... near copies'."""
    return ", ".join(f"{g.near_copies} of {g.units} {g.group}" for g in match.groups)


def response_evidence(placement: ResponsePlacement) -> list[Evidence]:
    """The pooled test (same depth) and the strongest layer pair, when below the layer bar."""
    found = []
    tested = placement.tested
    if placement.pooled is not None and placement.pooled < LAYER_MATCH_LOG10P:
        near, units = sum(m.near_copies for m, _ in tested), sum(m.units for m, _ in tested)
        found.append(Evidence(
            SIGNAL, float(np.median([m.correlation for m, _ in tested])), placement.pooled,
            f"every layer not already placed past the bar, in its own place ({len(tested)} layers), one test: "
            f"{near} of {units} units are near copies of a reference unit (held-out response correlation >= "
            f"{NEAR_COPY_CORRELATION} on {tested[0][0].tokens // 2} anchor tokens not used to match them), {format_p(placement.pooled)} "
            f"against a per-unit rate of {NEAR_COPY_RATE_BOUND:g} for independent models"))
    if placement.placed:
        match, corrected = min(placement.placed, key=lambda item: item[1])
        found.append(Evidence(
            SIGNAL, match.correlation, corrected,
            f"candidate layer {match.layer_c} vs reference layer {match.layer_r}: {describe(match)} are near copies, "
            f"{format_p(corrected)} (Bonferroni over the {len(tested)} layers tested)"))
    return found


def responses_identical(placement: ResponsePlacement, rows: list[LayerMatch], tolerance: float,
                        gram_error: float | None) -> bool:
    """Every layer placed in its own place, those placed through responses equal to `tolerance` after matching and
    per-unit scales, and the anchor embeddings equal up to a rotation: the same model, rotated and permuted."""
    by_layer = {m.layer_c: m for m, _ in placement.placed}
    return (bool(by_layer) and gram_error is not None and gram_error < tolerance
            and all(r.reference_layer == r.candidate_layer for r in rows)
            and all(r.candidate_layer in by_layer
                    or (r.rel_errors and all(e <= r.tolerances.get(k, 0.0) for k, e in r.rel_errors.items()))
                    for r in rows)
            and all(m.rel_error < tolerance for m in by_layer.values()))
