"""MLP units matched through their responses to shared anchor tokens: a test no rotation or permutation hides.

Each fingerprint holds, per layer, every MLP unit's response to the
embedding rows of its first anchor tokens (`fingerprint.parts.anchor_responses`:
the `mlp.up` row, norm folded, and the `mlp.down` column, each dotted with
the probes). A rotation of the residual basis applied to the whole model
(norms folded) rotates the embedding with the units, so the responses do
not change; permuting the units, the attention heads or the KV groups
reorders or leaves them. Tokens are aligned by string, so the two
vocabularies may order their ids differently.

The test, for a candidate layer against a reference layer: each candidate
unit u is paired with the reference unit v of largest sign-free score
|corr(up_u, up_v) + corr(down_u, down_v)| (correlations over the shared
anchors), and contributes c_u = corr(up_u, up_v) + corr(down_u, down_v), signed.

Null, in one sentence: the models were trained independently, so the
candidate's weights are as likely as with any of its MLP units' up row and
down column negated together (a gated MLP computes the same function, and
its initialisation and training are symmetric under the negation). The
pairing reads only sign-free scores, so negating unit u leaves every
pairing as it was and flips c_u alone: the c_u have independent random
signs under the null whatever the weights' structure (shared token
semantics, aligned matrices, heavy tails), and the self-normalised
sign-flip test (`stats.sign_flip_log10p`) applies. Units of different
layers negate independently, so the clusters of several layers, compared
in a map fixed in advance, pool into one test.

What it cannot see: a copy whose units were negated (a negative rescaling
of up and down) answers c_u < 0 and is missed, as any test under this null
would miss it; non-gated MLPs (GELU is not odd, so the negation is no
symmetry) are not tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..architectures.roles import Role, has_gated_mlp
from ..fingerprint import Fingerprint, Part
from .results import Evidence
from .stats import bonferroni_log10p, sign_flip_log10p, standardise

ROLES = (Role.MLP_UP, Role.MLP_DOWN)
MIN_SHARED_ANCHORS = 16
# Wording only (never a decision): units kept in the reference's order, at shifted indices, read "a subset of its
# units" when this share of consecutive candidate units have increasing partners. Randomly permuted units give about
# 0.5 (standard deviation about 1/(2 sqrt(units))), a pruned subset in order nearly 1.
IN_ORDER_SHARE = 0.9
VIA = "MLP units' anchor-token responses (rotation- and permutation-invariant)"


@dataclass(frozen=True)
class ResponseTest:
    """One layer pair: the matched units' signed agreements and what they give."""

    layer_c: int
    layer_r: int
    clusters: np.ndarray  # c_u per candidate unit
    log10p: float  # uncorrected sign-flip log10 p of this layer pair
    similarity: float  # mean of the matched pairs' correlation (up and down averaged)
    rel_error: float  # relative difference of the matched responses (an identity check on float16 values)
    in_place: float  # share of candidate units paired with the reference unit of the same index
    in_order: float = 0.0  # share of consecutive candidate units whose partners' indices increase


def _shared_columns(cand: Fingerprint, ref: Fingerprint, width_c: int, width_r: int) -> tuple[list[int], list[int]]:
    """Columns of the two response arrays that hold the same anchor token (by string)."""
    tokens_c = list(cand.vocabulary.anchor_tokens if cand.vocabulary else ())[:width_c]
    tokens_r = list(ref.vocabulary.anchor_tokens if ref.vocabulary else ())[:width_r]
    where_r = {token: i for i, token in enumerate(tokens_r)}
    pairs = [(i, where_r[token]) for i, token in enumerate(tokens_c) if token in where_r]
    return [i for i, _ in pairs], [j for _, j in pairs]


def gated(fp: Fingerprint) -> bool:
    return has_gated_mlp(fp.records)


def response_test(cand: Fingerprint, ref: Fingerprint, layer_c: int, layer_r: int) -> ResponseTest | None:
    """The test of one layer pair, or None when the two fingerprints lack what it reads."""
    if not (cand.holds(Part.ANCHOR_RESPONSES) and ref.holds(Part.ANCHOR_RESPONSES) and gated(cand) and gated(ref)):
        return None
    arrays = {role: (cand.part_array(Part.ANCHOR_RESPONSES, layer_c, role),
                     ref.part_array(Part.ANCHOR_RESPONSES, layer_r, role)) for role in ROLES}
    if any(a is None or b is None or a.ndim != 2 or b.ndim != 2 for a, b in arrays.values()):
        return None
    if not all(np.isfinite(a).all() and np.isfinite(b).all() for a, b in arrays.values()):
        return None  # a damaged or hostile fingerprint: no test rather than a NaN p-value
    up_c, up_r = arrays[Role.MLP_UP]
    cols_c, cols_r = _shared_columns(cand, ref, up_c.shape[1], up_r.shape[1])
    if len(cols_c) < MIN_SHARED_ANCHORS:
        return None
    scores, matched = [], []
    for role in ROLES:
        a, b = arrays[role]
        if (a.shape[0] != up_c.shape[0] or b.shape[0] != up_r.shape[0]
                or max(cols_c) >= a.shape[1] or max(cols_r) >= b.shape[1]):
            return None
        a = standardise(a[:, cols_c].astype(np.float64))
        b = standardise(b[:, cols_r].astype(np.float64))
        scores.append(a @ b.T)
        matched.append((a, b))
    signed = scores[0] + scores[1]
    partner = np.argmax(np.abs(signed), axis=1)  # sign-free: a negated candidate unit keeps its partner
    rows = np.arange(signed.shape[0])
    clusters = signed[rows, partner]
    raw = [(arrays[role][0][:, cols_c].astype(np.float64), arrays[role][1][partner][:, cols_r].astype(np.float64))
           for role in ROLES]
    rel = float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in raw) / max(sum(np.sum(b * b) for _, b in raw), 1e-30)))
    in_place = float(np.mean(partner == rows))
    in_order = float(np.mean(np.diff(partner) > 0)) if partner.size > 1 else 0.0
    return ResponseTest(layer_c, layer_r, clusters, sign_flip_log10p(clusters), float(np.mean(clusters) / 2), rel,
                        in_place, in_order)


@dataclass(frozen=True)
class ResponseLayers:
    """The layers tested in place, each corrected for the layers tested, and their pooled test."""

    tests: list[ResponseTest]
    corrected: dict[int, float]  # candidate layer -> log10 p, Bonferroni over the layers tested
    pooled_log10p: float  # one sign-flip test over every tested layer's clusters (a map fixed in advance)


def response_layers(cand: Fingerprint, ref: Fingerprint, layers: list[int]) -> ResponseLayers | None:
    """Candidate layers tested against the reference layer in their own place (a rotated and permuted copy keeps
    its layers where they were); None when no layer could be tested."""
    tests = [t for t in (response_test(cand, ref, i, i) for i in layers) if t is not None]
    if not tests:
        return None
    corrected = {t.layer_c: bonferroni_log10p(t.log10p, len(tests)) for t in tests}
    pooled = sign_flip_log10p(np.concatenate([t.clusters for t in tests]))
    return ResponseLayers(tests, corrected, pooled)


@dataclass(frozen=True)
class ResponsePlacement:
    """What the test placed: its evidence entry (none when it placed nothing) and how many units kept their index."""

    evidence: list[Evidence]
    in_place: float | None = None  # mean share over the tested layers of units paired with their own index
    in_order: float | None = None  # mean share of consecutive units whose partners' indices increase

    def summary(self) -> str | None:
        """The words the verdict's summary adds, saying only what the pairing shows."""
        if self.in_place is None:
            return None
        if self.in_place >= 0.5:
            order = "the units kept their indices"
        elif self.in_order is not None and self.in_order >= IN_ORDER_SHARE:
            order = "most units sit at other indices but in the reference's order: a subset of its units, as pruning leaves"
        else:
            order = "most units sit at other indices: the units were permuted"
        return (f"MLP units matched through their responses to shared anchor tokens, which a rotated residual basis "
                f"and permuted units or heads do not change ({order})")
