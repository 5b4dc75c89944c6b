"""Whether a `derived` relation is a shared standard initialisation: the family's default init regenerated.

Two trainings that each ran `torch.manual_seed(s)` and built the model from
its config start from one set of weights w0; every matrix is then w0 + d_c
and w0 + d_r, and the sketch tests find the shared w0 as they would find a
shared trained ancestor. For a `derived` comparison whose two architectures
state the same shapes (`architecture_match` "same-shapes") in a family the
project regenerates (`fingerprint.initialisation.MODEL_CLASSES`, at most
`MAX_PARAMETERS`), the Hugging Face default initialisation of that
configuration is rebuilt under each seed of SEEDS
(`fingerprint.initialisation.regenerate`) and compared, with the engine's
own tests and nulls (the comparison function is passed in), when the part
the two models share is no larger than such an init (its standard deviation,
from the sketches' covariance in the median matched `attn.q` / `mlp.up`,
at most SHARED_STD_MAX times the default 0.02: a fine-tune of a trained model
shares far more, and costs no rebuild):

1. *reproduced*: each model, restricted to its sketches, 1-D tensors and
   anchor rows, against a fingerprint of the regenerated init at the same
   positions: both must reach the accusation bar (strongest corrected
   decisive p < 1e-12), else the next seed is tried;
2. *beyond it*: the init's component is removed from every matrix of both
   models (its coefficient fitted by least squares on the sketch, per
   matrix and per model: the exact init has coefficient 1, and a uniform
   shrinkage toward zero such as weight decay, or another initializer scale,
   is removed with it; 1-D tensors are kept as they are) and the residuals
   are compared the same way. Under the null "the two trainings are
   independent given the shared init" the residuals' sign-flip tests keep
   their null (the projection removes one direction of 2048, a negligible
   change of the clusters' symmetry);
3. a side whose every matrix is the init itself (residual within its stored
   dtype's rounding: an untrained model) leaves nothing to compare beyond
   it: the verdict stands, and the note names the init and says that
   starting from an untrained model and from a shared seed look the same;
4. the relation is *explained* when the residuals show no signal past the bar
   and every signal that reached the bar in the original comparison was
   re-run on the residuals (the Gram, unit-matching and anchor-response
   tests read parts that cannot be residualised: when one of them accused,
   the verdict stands and the note says so).

An explained relation is `same-architecture` (the two models share a
random starting point, no training: the design's independent weights on a
borrowed architecture), abstaining when the residuals' strongest signal lies
between the layer bar and the accusation bar; a relation that remains beyond
the init keeps `derived`, with a note that the init was found and a relation
remains. When no seed reproduces the shared part, the statistical note of
`shared_init.py` stands, saying which seeds were tried. Anchor rows are
residualised only for fingerprints that record the anchor tokens' ids
(`vocabulary.anchor_ids`, from this version on); an older fingerprint's anchor
rows are left out of all three comparisons.

Limits: the regenerated init is that of the installed transformers version
(named in the note); custom init code, other seeds, or an init made in
another dtype or on another device are not reproduced (the causal-LM class,
`AutoModelForCausalLM.from_config` and the base model give the same weights
under one seed with transformers 5.25); training updates that depend on the init
in other ways than a uniform shrinkage can leave a relation in the residuals
(the verdict then stays `derived`, as before this check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..fingerprint import Fingerprint, Part
from ..fingerprint.initialisation import DEFAULT_INIT_STD, Initialisation, regenerate, unavailable_reason
from ..fingerprint.store import array_name
from .alignment import architecture_match, strongest_decisive
from .results import Comparison, Evidence, LayerMatch
from .shared_init import shared_part_std
from .stats import format_p
from .thresholds import ACCUSATION_LOG10P, storage_tolerance

# The seeds training scripts use most (the Hugging Face examples' 42, PyTorch's 0, 1234, and 3407).
SEEDS = (0, 42, 1234, 3407)
# A shared init contributes at most its own variance to the two models' covariance (less after weight decay):
# a shared part larger than this many times the default init's standard deviation is more than the init, and
# nothing is rebuilt (a fine-tune of a trained model: SmolLM2-135M's matrices have a standard deviation near 0.2).
SHARED_STD_MAX = 1.5
# Set in the meta of the fingerprints made here, so that comparing them never regenerates again.
MARK = "regenerated_initialisation"
KEPT_PARTS = (Part.SKETCHES, Part.VECTORS, Part.ANCHORS)


@dataclass(frozen=True)
class InitCheck:
    """What regenerating the common initialisations found."""

    note: str  # the explanation's words
    seed: int | None = None  # the seed whose init both models start from (None: none reproduced, or not tried)
    beyond_log10p: float | None = None  # strongest decisive log10 p between the residuals (seed found)
    explains: bool = False  # the shared init accounts for every accusing signal: the verdict is not `derived`

    def evidence(self) -> Evidence | None:
        """The residuals' test as an evidence row (not decisive itself: the decision reads `beyond_log10p`)."""
        if self.seed is None or self.beyond_log10p is None:
            return None
        return Evidence(f"weights beyond the regenerated default initialisation (seed {self.seed})", 0.0,
                        self.beyond_log10p, "strongest decisive signal between the two models once the Hugging Face "
                        f"default initialisation under seed {self.seed} is removed from both, corrected over the "
                        "signals", decisive=False)


def _anchor_ids(fp: Fingerprint) -> list[int] | None:
    """The ids of the rows in this fingerprint's `anchors/embed` (and `anchors/lm_head`), or None if unrecorded."""
    ids = fp.vocabulary.anchor_ids if fp.vocabulary is not None else None
    return [int(i) for i in ids] if ids is not None else None


def _restricted(fp: Fingerprint, arrays: dict[str, np.ndarray], anchors: bool, seed: int) -> Fingerprint:
    parts = [p for p in KEPT_PARTS if fp.holds(p) and (p is not Part.ANCHORS or anchors)]
    prefixes = tuple(f"{array_name(p)}/" for p in parts)
    return fp.with_parts(parts, {k: v for k, v in arrays.items() if k.startswith(prefixes)}, **{MARK: seed})


def _init_arrays(fp: Fingerprint, init: Initialisation, anchors: bool) -> dict[str, np.ndarray] | None:
    """The init's values wherever this fingerprint holds sketches, vectors and (if `anchors`) anchor rows."""
    arrays: dict[str, np.ndarray] = {}
    for key in fp.records:
        name = array_name(Part.SKETCHES, key)
        held = fp.arrays.get(name)
        if held is None:
            continue
        values = init.sketches.get(key)
        if values is None or values.shape != held.shape:
            return None  # the regenerated model is laid out differently: no comparison
        arrays[name] = values
    if anchors:
        ids = _anchor_ids(fp) or []
        for role, by_id in init.rows.items():
            held = fp.part_array(Part.ANCHORS, role)
            if held is None:
                continue
            rows = [by_id[i] for i in ids if i in by_id]
            if len(rows) != held.shape[0]:
                return None
            arrays[array_name(Part.ANCHORS, role)] = np.stack(rows).astype(np.float32)
    return arrays


def _residual(values: np.ndarray, init: np.ndarray) -> np.ndarray:
    """`values` less its least-squares component along `init` (both flattened)."""
    x, w = values.astype(np.float64).reshape(-1), init.astype(np.float64).reshape(-1)
    beta = float(x @ w / (w @ w)) if float(w @ w) > 0 else 0.0
    return (x - beta * w).reshape(values.shape).astype(np.float32)


def _residual_arrays(fp: Fingerprint, init_arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(fp.arrays)
    for name, init in init_arrays.items():
        held = fp.arrays[name]
        if held.ndim == 2 or _is_matrix(fp, name):  # anchor rows, or a matrix's sketch (1-D tensors kept)
            out[name] = _residual(held, init)
    return out


def _is_the_init(fp: Fingerprint, init_arrays: dict[str, np.ndarray]) -> bool:
    """Every matrix of `fp` is the init (its least-squares residual within the rounding of its stored dtype)."""
    checked = False
    for name, init in init_arrays.items():
        if not _is_matrix(fp, name):
            continue
        held = fp.arrays[name].astype(np.float64)
        size = float(np.linalg.norm(held))
        tolerance = storage_tolerance(_dtype(fp, name.split("/", 1)[1]))
        if size > 0 and float(np.linalg.norm(_residual(held, init))) > tolerance * size:
            return False
        checked = True
    return checked


def _is_matrix(fp: Fingerprint, name: str) -> bool:
    record = fp.records.get(name.split("/", 1)[1])
    return record is not None and len(record.shape) >= 2


def _dtype(fp: Fingerprint, key: str) -> str | None:
    record = fp.records.get(key)
    return record.dtype if record is not None else None


def _strongest(comparison: Comparison) -> float:
    return strongest_decisive(comparison.evidence)


def _accusing_signals(evidence: list[Evidence]) -> list[str]:
    return [e.signal for e in evidence if e.decisive and e.log10p is not None and e.log10p <= ACCUSATION_LOG10P]


def regenerated_init_check(cand: Fingerprint, ref: Fingerprint, matched: list[LayerMatch], evidence: list[Evidence],
                           compare: Callable[[Fingerprint, Fingerprint], Comparison]) -> InitCheck | None:
    """For a `derived` comparison: whether a common seed's default initialisation explains the relation (see the
    module's docstring), or None when the check does not apply (different shapes, no sketches, a fingerprint
    made here, a shared part larger than an init). `compare` is the engine's comparison of two fingerprints."""
    if cand.mark(MARK) is not None or ref.mark(MARK) is not None:
        return None
    if not (cand.holds(Part.SKETCHES) and ref.holds(Part.SKETCHES)):
        return None
    arch = cand.arch
    family = arch.family or cand.family.name
    if architecture_match(arch, ref.arch) != "same-shapes" or family != ref.arch.family:
        return None
    shared = shared_part_std(cand, ref, matched)
    if shared is None or shared > SHARED_STD_MAX * DEFAULT_INIT_STD:
        return None
    reason = unavailable_reason(arch.to_dict(), family)
    if reason is not None:
        return InitCheck(f"the family's default initialisation was not regenerated: {reason}")
    anchors = (cand.holds(Part.ANCHORS) and ref.holds(Part.ANCHORS)
               and _anchor_ids(cand) is not None and _anchor_ids(ref) is not None)
    wanted = tuple(sorted(set(_anchor_ids(cand) or []) | set(_anchor_ids(ref) or []))) if anchors else ()
    accusing = _accusing_signals(evidence)
    for seed in SEEDS:
        init = regenerate(arch.to_dict(), family, seed, wanted)
        if init is None:
            return InitCheck("the family's default initialisation could not be rebuilt from this configuration")
        init_c, init_r = _init_arrays(cand, init, anchors), _init_arrays(ref, init, anchors)
        if init_c is None or init_r is None:
            return InitCheck("the family's default initialisation was regenerated but its tensors are laid out "
                             "unlike the fingerprints': not compared")
        c_from = _strongest(compare(_restricted(cand, cand.arrays, anchors, seed),
                                    _restricted(cand, init_c, anchors, seed)))
        if c_from > ACCUSATION_LOG10P:
            continue
        r_from = _strongest(compare(_restricted(ref, ref.arrays, anchors, seed),
                                    _restricted(ref, init_r, anchors, seed)))
        if r_from > ACCUSATION_LOG10P:
            continue
        start = (f"both models start from the Hugging Face default initialisation of this configuration under "
                 f"seed {seed} ({init.made_by}, regenerated: candidate {format_p(c_from)}, reference "
                 f"{format_p(r_from)} against it)")
        untrained = [side for side, fp, arrays in (("candidate", cand, init_c), ("reference", ref, init_r))
                     if _is_the_init(fp, arrays)]
        if untrained:  # nothing beyond the init on one side: the residual test would compare nothing
            return InitCheck(f"{start}; the {' and the '.join(untrained)}'s matrices are that initialisation itself "
                             "(untrained, within the storage rounding): starting from an untrained model and from a "
                             "shared seed cannot be told apart, and nothing beyond the initialisation is left to "
                             "compare", seed)
        residuals = compare(_restricted(cand, _residual_arrays(cand, init_c), anchors, seed),
                            _restricted(ref, _residual_arrays(ref, init_r), anchors, seed))
        beyond = _strongest(residuals)
        # the smallest p of any one signal between the residuals (each corrected within itself), for the words
        shown = min((e.log10p for e in residuals.evidence if e.decisive and e.log10p is not None), default=0.0)
        rerun = {e.signal for e in residuals.evidence if e.log10p is not None}
        unchecked = sorted({s for s in accusing if s not in rerun})
        if beyond <= ACCUSATION_LOG10P:
            return InitCheck(f"{start}; a relation remains beyond it ({format_p(shown)} once the initialisation is "
                             "removed from both): a shared trained ancestor, or trainings from this seed whose "
                             "updates moved alike (short trainings from one start on similar data stay related beyond "
                             "it); the weights alone do not tell these apart", seed, beyond)
        if unchecked:
            older = (" (a fingerprint made before this version does not record its anchor tokens' ids: rebuilt with "
                     "`provenance fingerprint`, its anchor rows can be)"
                     if not anchors and cand.holds(Part.ANCHORS) and ref.holds(Part.ANCHORS) else "")
            return InitCheck(f"{start}; beyond it the sketches show no relation (strongest {format_p(shown)}), but "
                             f"{', '.join(unchecked)} reached the bar and cannot be checked beyond the initialisation"
                             f"{older}, so the verdict stands", seed, beyond)
        return InitCheck(f"{start}; beyond it, their weights show no relation (strongest signal {format_p(shown)} "
                         "once the initialisation is removed from both): independent trainings from a shared seed, "
                         "not a copy", seed, beyond, explains=True)
    tried = ", ".join(str(s) for s in SEEDS)
    return InitCheck(f"the Hugging Face default initialisation of this configuration was regenerated under seeds "
                     f"{tried} and none reproduces the shared part")
