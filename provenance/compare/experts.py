"""Mixture-of-experts layers compared as sets of experts, each edit named, each match with its null.

The layer map (`signals.layers.layer_map`) lets expert 0 stand for a layer's
experts, so without this step an MoE whose experts were permuted, thinned,
extended or fine-tuned one by one, or that was made by splitting a dense
model's MLP into experts (upcycling, as Qwen1.5-MoE was made from Qwen-1.8B),
could pass for `identical`: the expert-0 tensors, or nothing at all when the
widths differ, were all the MLP check saw. Here, per matched layer:

- both sides MoE: every expert is a signature (its `mlp.gate`, `mlp.up`,
  `mlp.down` samples, concatenated), the experts are matched as a set
  (`scipy.optimize.linear_sum_assignment` on the correlation matrix), and
  each matched pair is tested with the sign-flip null of the layer map
  (`stats.clustered_log10p`: values clustered by residual dimension;
  Bonferroni over the reference experts the partner was chosen from). What
  was matched is named: experts permuted, N of M experts kept, experts
  added, the shared expert matched. The MLP roles of the layer are then held
  to the largest difference over *all* matched experts (unmatched ones count
  as different), so one fine-tuned expert makes the layer differ;
- candidate MoE, reference dense (or the reverse): the sampled units of the
  experts (`units/<layer>/experts.<e>.mlp.up`, see `fingerprint/collect.py`)
  are placed among the dense layer's units with the held-out test of
  `signals.unit_matching` (match on half the projections, test on the other
  half, after whitening in the reference's coordinates: a valid null for
  trained, anisotropic weights). Nearest units then say how the experts were
  made: "experts 0-3 partition the reference's MLP units", or copies of it.
  The layer can then never be `identical`: an MoE is not the dense model.

A layer where this step finds differences gets the role `moe.experts` in its
`rel_errors` (1.0: a different set of experts), which keeps it from being
called identical; its `via` names the edit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as st
from scipy.optimize import linear_sum_assignment

from ..architectures.roles import CanonicalKey, Role, expert_role_name, key_name
from ..fingerprint import Fingerprint, Part, array_name
from .results import Evidence, LayerMatch
from .signals.units import unit_matching
from .stats import LOG10P_FLOOR, bonferroni_log10p, clustered_log10p, correlation_matrix, format_p
from .thresholds import LAYER_MATCH_LOG10P, identity_tolerance
from .views import SampleView

EXPERT_ROLES = (Role.MLP_GATE, Role.MLP_UP, Role.MLP_DOWN)
SHARED_ROLES = (Role.SHARED_MLP_GATE, Role.SHARED_MLP_UP, Role.SHARED_MLP_DOWN)
ROUTER = Role.MOE_ROUTER
SET_ROLE = "moe.experts"  # the layer map role for "the same set of experts" (0.0) or not (1.0)
# A sampled expert unit is "the" reference unit when their stored signatures differ by less than this
# (relative); only used to describe how experts were made, never to accuse (the held-out test does that).
UNIT_NEAR = 0.25


def _shape(fp: Fingerprint, key: str) -> tuple[int, ...] | None:
    record = fp.records.get(key)
    return record.shape if record is not None else None


def _dtype(fp: Fingerprint, key: str) -> str | None:
    record = fp.records.get(key)
    return record.dtype if record is not None else None


@dataclass
class Experts:
    """A fingerprint's experts: per layer, the expert indices it holds and the shape of each role."""

    by_layer: dict[int, list[int]] = field(default_factory=dict)
    shapes: dict[tuple[int, str], tuple[int, ...]] = field(default_factory=dict)
    shared: set[int] = field(default_factory=set)  # layers with a shared expert
    dense: set[int] = field(default_factory=set)  # layers with a dense MLP (no expert index)

    @classmethod
    def of(cls, fp: Fingerprint) -> "Experts":
        found = cls()
        for key, record in fp.records.items():
            parsed = CanonicalKey.parse(key)
            if parsed is None or parsed.layer is None or parsed.param != "weight":
                continue
            if parsed.expert is not None and parsed.role in EXPERT_ROLES:
                experts = found.by_layer.setdefault(parsed.layer, [])
                if parsed.role == Role.MLP_UP:
                    experts.append(parsed.expert)
                found.shapes.setdefault((parsed.layer, parsed.role), record.shape)
            elif parsed.role in SHARED_ROLES:
                found.shared.add(parsed.layer)
            elif parsed.role == Role.MLP_UP:
                found.dense.add(parsed.layer)
        for experts in found.by_layer.values():
            experts.sort()
        return found

    @property
    def any(self) -> bool:
        return bool(self.by_layer)


@dataclass(frozen=True)
class ExpertMatch:
    """The experts of candidate layer `layer_c` matched with those of reference layer `layer_r`."""

    layer_c: int
    layer_r: int
    experts_c: int
    experts_r: int
    pairs: list[tuple[int, int]]  # (candidate expert, reference expert), significant after correction
    log10p: float  # the strongest pair, Bonferroni over the pairs and the reference experts searched
    rel_error: float  # largest relative difference over candidate experts (1.0 for an unmatched one)
    shared: str | None  # what became of the shared expert, when either side has one

    @property
    def permuted(self) -> bool:
        """The matched experts are not in the reference's order (a subset kept in order is not permuted)."""
        order = [r for _, r in sorted(self.pairs)]
        return order != sorted(order)

    def describe(self) -> str:
        parts = []
        if self.pairs and len(self.pairs) == self.experts_c == self.experts_r:
            parts.append("experts permuted" if self.permuted else "experts in place")
        elif self.experts_c < self.experts_r and len(self.pairs) == self.experts_c:
            parts.append(f"{self.experts_c} of {self.experts_r} experts kept"
                         + (", reordered" if self.permuted else ""))
        elif self.experts_c > self.experts_r and len(self.pairs) == self.experts_r:
            parts.append(f"{self.experts_r} reference experts kept, {self.experts_c - self.experts_r} experts added")
        else:
            parts.append(f"{len(self.pairs)} of {self.experts_c} experts matched among the reference's {self.experts_r}")
        if self.shared:
            parts.append(self.shared)
        return ", ".join(parts)


def _expert_signatures(fp: Fingerprint, layer: int, experts: list[int], roles: list[tuple[str, tuple[int, ...]]],
                       view: SampleView) -> np.ndarray | None:
    rows = []
    for expert in experts:
        values = []
        for role, shape in roles:
            sample = view.sample(fp, key_name(role, layer, expert), shape)
            if sample is None:
                return None
            values.append(sample.reshape(-1))
        rows.append(np.concatenate(values))
    return np.stack(rows) if rows else None


def _shared_expert(cand: Fingerprint, ref: Fingerprint, i: int, j: int, ce: Experts, re: Experts,
                   view: SampleView) -> tuple[str | None, float]:
    """What became of the shared expert (a phrase or None) and the largest relative difference of its roles."""
    if i not in ce.shared and j not in re.shared:
        return None, 0.0
    if i not in ce.shared:
        return "shared expert removed", 1.0
    if j not in re.shared:
        return "shared expert added", 1.0
    worst, strongest = 0.0, 0.0
    for role in SHARED_ROLES:
        ck, rk = key_name(role, i), key_name(role, j)
        shape_c, shape_r = _shape(cand, ck), _shape(ref, rk)
        if not shape_c or shape_c != shape_r:
            return "shared expert resized", 1.0
        a, b = view.sample(cand, ck, tuple(shape_c)), view.sample(ref, rk, tuple(shape_r))
        if a is None or b is None:
            return None, 0.0
        worst = max(worst, float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)))
        strongest = min(strongest, clustered_log10p(a, b, view.clusters(tuple(shape_c), role))[1])
    return ("shared expert matched" if strongest < LAYER_MATCH_LOG10P else "shared expert not matched"), worst


def _assigned_pairs_log10p(a: np.ndarray, b: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """`stats.clustered_log10p` of each row of `a` with the same row of `b`, all at once (a layer of 256
    experts has 256 assigned pairs): per-cluster sums of centred products, then the sign-flip t test."""
    _, inverse = np.unique(clusters, return_inverse=True)
    one_hot = np.zeros((len(inverse), int(inverse.max()) + 1))
    one_hot[np.arange(len(inverse)), inverse] = 1.0
    sums = ((a - a.mean(axis=1, keepdims=True)) * (b - b.mean(axis=1, keepdims=True))) @ one_hot
    count = np.count_nonzero(sums, axis=1)
    scale = np.sqrt((sums * sums).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(scale > 0, sums.sum(axis=1) / scale, 0.0)
    log10p = np.maximum(st.t.logsf(z, np.maximum(count - 1, 1)) / np.log(10.0), LOG10P_FLOOR)
    return np.where((count >= 3) & (scale > 0), log10p, 0.0)


def match_experts(cand: Fingerprint, ref: Fingerprint, i: int, j: int, ce: Experts, re: Experts,
                  view: SampleView) -> ExpertMatch | None:
    """The experts of two MoE layers matched as a set; None when their shapes differ or samples are missing."""
    experts_c, experts_r = ce.by_layer.get(i), re.by_layer.get(j)
    if not experts_c or not experts_r:
        return None
    roles = [(role, ce.shapes[(i, role)]) for role in EXPERT_ROLES
             if (i, role) in ce.shapes and ce.shapes[(i, role)] == re.shapes.get((j, role))]
    if not roles:
        return None
    a = _expert_signatures(cand, i, experts_c, roles, view)
    b = _expert_signatures(ref, j, experts_r, roles, view)
    if a is None or b is None:
        return None
    clusters = np.concatenate([view.clusters(shape, role) for role, shape in roles])
    rows, partners = linear_sum_assignment(-correlation_matrix(a, b))
    log10ps = _assigned_pairs_log10p(a[rows], b[partners], clusters)
    pairs, strongest = [], 0.0
    errors = np.ones(len(experts_c))
    for k, (x, y) in enumerate(zip(rows, partners)):
        corrected = bonferroni_log10p(float(log10ps[k]), len(experts_r))
        if corrected < LAYER_MATCH_LOG10P:
            pairs.append((experts_c[x], experts_r[y]))
            errors[x] = float(np.linalg.norm(a[x] - b[y]) / max(np.linalg.norm(b[y]), 1e-30))
        strongest = min(strongest, corrected)
    shared, shared_error = _shared_expert(cand, ref, i, j, ce, re, view)
    return ExpertMatch(i, j, len(experts_c), len(experts_r), sorted(pairs),
                       bonferroni_log10p(strongest, max(len(rows), 1)), max(float(errors.max()), shared_error), shared)


def _router_after_permutation(cand: Fingerprint, ref: Fingerprint, i: int, j: int, pairs: list[tuple[int, int]],
                              view: SampleView, param: str = "weight") -> float | None:
    """The router's relative difference (its weight, or its bias: one value per expert, as gpt-oss's) with the
    reference's rows put in the candidate's expert order; None when a sample does not hold the whole tensor (its
    rows then cannot be reordered)."""
    ck, rk = key_name(ROUTER, i, param=param), key_name(ROUTER, j, param=param)
    shape = _shape(cand, ck) or ()
    if len(shape) not in (1, 2) or shape != (_shape(ref, rk) or ()):
        return None
    a, b = view.sample(cand, ck, shape), view.sample(ref, rk, shape)
    size = int(np.prod(shape))
    if a is None or b is None or a.size != size or b.size != size:
        return None
    a, b = a.reshape(shape[0], -1), b.reshape(shape[0], -1)
    order = dict(pairs)
    if sorted(order) != list(range(shape[0])):
        return None
    b = b[[order[e] for e in range(shape[0])]]
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def experts_identical(rows: list[LayerMatch]) -> bool:
    """Every MoE layer's experts (all of them, matched as a set) equal the reference's within its bar."""
    return all(error <= row.tolerances.get(role, 0.0) for row in rows for role, error in row.rel_errors.items()
               if role == SET_ROLE or (SET_ROLE in row.rel_errors and role.startswith(("mlp.", "shared_mlp."))))


@dataclass(frozen=True)
class Upcycling:
    """The experts of an MoE layer placed among a dense layer's MLP units (either side may be the MoE)."""

    layer_c: int
    layer_r: int
    log10p: float  # held-out test of the sampled expert units placed among the dense units
    correlation: float
    description: str


def _span(experts: list[int]) -> str:
    if experts == list(range(experts[0], experts[0] + len(experts))):
        return f"experts {experts[0]}-{experts[-1]}" if len(experts) > 1 else f"expert {experts[0]}"
    return f"{len(experts)} experts"


def upcycling(moe: Fingerprint, dense: Fingerprint, i: int, j: int, experts: list[int], candidate_is_moe: bool) -> Upcycling | None:
    """The sampled units of layer `i`'s experts (in `moe`) among the MLP units of layer `j` of `dense`."""
    full = dense.part_array(Part.UNIT_SIGNATURES, j, Role.MLP_UP)
    samples = [moe.part_array(Part.UNIT_SIGNATURES, i, expert_role_name(e, Role.MLP_UP)) for e in experts]
    if full is None or any(s is None or s.shape[1] != full.shape[1] for s in samples) or not samples:
        return None
    owner = np.concatenate([np.full(s.shape[0], e) for e, s in zip(experts, samples)])
    units = np.concatenate(samples)
    # the held-out test places at most as many units as the dense layer has, one to one
    keep = np.linspace(0, len(units) - 1, min(len(units), full.shape[0], 512)).round().astype(int)
    name = array_name(Part.UNIT_SIGNATURES, 0, Role.MLP_UP)
    test = unit_matching(Fingerprint({}, {name: units[keep]}), Fingerprint({}, {name: full}), 0, 0,
                         sampled_candidate=True)
    if test is None:
        return None
    # how the experts were made, from each sampled unit's nearest dense unit
    raw_u, raw_f = units.astype(np.float64), full.astype(np.float64)
    distance = np.linalg.norm(raw_u[:, None, :] - raw_f[None, :, :], axis=-1) if len(units) * len(full) <= 4_000_000 else None
    dense_side = "reference's" if candidate_is_moe else "candidate's"
    description = f"experts hold units of the {dense_side} dense MLP"
    if distance is not None:
        nearest = distance.argmin(axis=1)
        near = distance[np.arange(len(units)), nearest] < UNIT_NEAR * np.linalg.norm(raw_f[nearest], axis=1)
        found = {e: set(nearest[(owner == e) & near].tolist()) for e in experts}
        covered = [e for e in experts if found[e] and (owner == e).sum() == len(found[e])]
        if covered == experts:
            overlap = sum(len(found[e]) for e in experts) - len(set().union(*found.values()))
            if overlap == 0:
                description = f"{_span(experts)} partition the {dense_side} MLP units"
            else:
                description = f"{_span(experts)} are copies of parts of the {dense_side} MLP (sparse upcycling)"
        elif covered:
            description = f"{len(covered)} of {len(experts)} experts hold units of the {dense_side} dense MLP"
    if not candidate_is_moe:
        description = f"the candidate's dense MLP gathers the reference's experts ({description})"
    return Upcycling(i, j, test.log10p, test.correlation, description)


@dataclass(frozen=True)
class ExpertFindings:
    evidence: list[Evidence]
    edits: list[str]  # what was done to the experts, most common first ("experts permuted", ...)
    permuted_only: bool  # every MoE layer holds the reference's experts, some reordered (function-preserving)


def compare_experts(cand: Fingerprint, ref: Fingerprint, rows: list[LayerMatch], view: SampleView) -> ExpertFindings:
    """Per matched layer with experts on either side: match them, name the edit, and hold the layer to it."""
    ce, re = Experts.of(cand), Experts.of(ref)
    if not ce.any and not re.any:
        return ExpertFindings([], [], False)
    matches: list[ExpertMatch] = []
    upcycled: list[Upcycling] = []
    for row in rows:
        i, j = row.candidate_layer, row.reference_layer
        if j is None or (i not in ce.by_layer and j not in re.by_layer):
            continue
        tolerance = identity_tolerance(_dtype(cand, key_name(Role.MLP_UP, i, 0)), _dtype(ref, key_name(Role.MLP_UP, j, 0)))
        if i in ce.by_layer and j in re.by_layer:
            match = match_experts(cand, ref, i, j, ce, re, view)
            if match is None:
                row.rel_errors[SET_ROLE], row.tolerances[SET_ROLE] = 1.0, 0.0
                continue
            matches.append(match)
            same_set = len(match.pairs) == match.experts_c == match.experts_r and not (
                match.shared and match.shared != "shared expert matched")
            for role in [r for r in row.rel_errors if r.startswith(("mlp.", "shared_mlp."))]:
                row.rel_errors[role] = match.rel_error
                row.tolerances[role] = tolerance
            row.rel_errors[SET_ROLE], row.tolerances[SET_ROLE] = (0.0 if same_set else 1.0), 0.0
            row.via = f"{row.via}; {match.describe()}"
            for role, param, what in ((ROUTER, "weight", "rows"), (ROUTER + ".bias", "bias", "bias")):
                if not match.permuted or role not in row.rel_errors:
                    continue
                error = _router_after_permutation(cand, ref, i, j, match.pairs, view, param)
                if error is None:  # its rows cannot be put in the experts' order from a sample: not compared
                    del row.rel_errors[role]
                    row.via = f"{row.via} (router {what} not compared: sampled)"
                else:
                    row.rel_errors[role] = error
        else:
            moe_side, dense_side = (cand, ref) if i in ce.by_layer else (ref, cand)
            layer_m, layer_d = (i, j) if i in ce.by_layer else (j, i)
            experts = (ce if i in ce.by_layer else re).by_layer[layer_m]
            found = upcycling(moe_side, dense_side, layer_m, layer_d, experts, candidate_is_moe=i in ce.by_layer)
            row.rel_errors[SET_ROLE], row.tolerances[SET_ROLE] = 1.0, 0.0
            if found is not None:
                upcycled.append(found)
                if found.log10p < LAYER_MATCH_LOG10P:
                    row.via = f"{row.via}; {found.description}"
            else:
                row.via = f"{row.via}; MoE layer against a layer without experts (its units not placed)"
    edits = Counter([m.describe() for m in matches]
                    + [u.description for u in upcycled if u.log10p < LAYER_MATCH_LOG10P])
    permuted_only = bool(matches) and not upcycled and all(
        len(m.pairs) == m.experts_c == m.experts_r for m in matches) and any(m.permuted for m in matches)
    return ExpertFindings(_evidence(matches, upcycled), [e for e, _ in edits.most_common()], permuted_only)


def _evidence(matches: list[ExpertMatch], upcycled: list[Upcycling]) -> list[Evidence]:
    evidence = []
    tested = max(len(matches), 1)
    strong = [m for m in matches if bonferroni_log10p(m.log10p, tested) < LAYER_MATCH_LOG10P]
    if strong:
        best = min(strong, key=lambda m: m.log10p)
        kinds = sorted({m.describe() for m in strong})
        corrected = bonferroni_log10p(best.log10p, tested)
        evidence.append(Evidence(
            "expert matching (as a set)", sum(len(m.pairs) for m in strong) / sum(m.experts_c for m in strong),
            corrected,
            f"experts matched one to one (Hungarian assignment on expert samples) in {len(strong)} of {len(matches)} "
            f"MoE layers: {'; '.join(kinds[:3])}{' ...' if len(kinds) > 3 else ''}; strongest pair in candidate layer "
            f"{best.layer_c}, {format_p(corrected)} (sign-flip null, Bonferroni over experts and layers)"))
    tested = max(len(upcycled), 1)
    strong_up = [u for u in upcycled if bonferroni_log10p(u.log10p, tested) < LAYER_MATCH_LOG10P]
    if strong_up:
        best_up = min(strong_up, key=lambda u: u.log10p)
        corrected = bonferroni_log10p(best_up.log10p, tested)
        evidence.append(Evidence(
            "experts placed among dense MLP units (upcycling)", best_up.correlation, corrected,
            f"in {len(strong_up)} of {len(upcycled)} layers the experts' sampled units are the dense layer's units "
            f"(held-out correlation {best_up.correlation:.3f}, {format_p(corrected)}, Bonferroni over layers): "
            f"{best_up.description}"))
    return evidence
