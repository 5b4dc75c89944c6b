"""MLP units' anchor-token responses: layers a rotation and a permutation together hide from the other signals.

The statistic and its null are in `unit_responses.py`. Tested: the layers
still unplaced, or placed in their own place by a weaker rotation test, each
in its own place (equal depths only); when the pooled test passes the
layer-match bar, each tested layer is placed with its own corrected p-value
where that is stronger than what placed it, and one evidence entry states
the pooled test.
"""

from __future__ import annotations

import numpy as np

from ...fingerprint import Part
from ..results import Evidence
from ..stats import format_p
from ..thresholds import LAYER_MATCH_LOG10P
from ..unit_responses import VIA, ResponsePlacement, response_layers
from .base import Pair, Placement, Signal, SignalResult
from .gram import GRAM_VIA


class AnchorResponses(Signal):
    name = "MLP units' anchor-token responses"
    needs = frozenset({Part.ANCHOR_RESPONSES})
    null = ("the models were trained independently, so the candidate's weights are as likely with any MLP unit's up "
            "row and down column negated together, which flips that unit's signed agreement alone")

    def measure(self, pair: Pair) -> SignalResult:
        cand, ref, rows = pair.cand, pair.ref, pair.rows
        # a rotated copy whose heads were permuted can give the Gram test a weak partial signal: the responses may
        # do better
        open_rows = [r for r in rows if r.reference_layer is None
                     or (r.via == GRAM_VIA and r.reference_layer == r.candidate_layer)]
        if len(rows) != int(ref.arch.num_layers or 0):
            return SignalResult()  # different depths: not searched (each layer pair would cost a pairing)
        found = response_layers(cand, ref, [row.candidate_layer for row in open_rows]) if open_rows else None
        if found is None or found.pooled_log10p >= LAYER_MATCH_LOG10P:
            return SignalResult()
        by_layer = {t.layer_c: t for t in found.tests}
        placements = []
        for row in open_rows:
            test = by_layer.get(row.candidate_layer)
            if test is not None and (row.reference_layer is None or found.corrected[test.layer_c] < row.log10_p):
                placements.append(Placement(row.candidate_layer, test.layer_r, test.similarity,
                                            found.corrected[test.layer_c], {}, VIA))
        similarity = float(np.mean([t.similarity for t in found.tests]))
        worst = max(t.rel_error for t in found.tests)
        units = sum(t.clusters.size for t in found.tests)
        in_place = float(np.mean([t.in_place for t in found.tests]))
        in_order = float(np.mean([t.in_order for t in found.tests]))
        evidence = Evidence(
            VIA, similarity, found.pooled_log10p,
            f"{len(found.tests)} layers in their own places, {units} MLP units each paired with the reference unit "
            f"whose responses to the shared anchor tokens' embeddings agree best (sign-free), one pooled sign-flip "
            f"test: {format_p(found.pooled_log10p)}; {in_place:.0%} of the units paired with the unit of their "
            f"own index; matched responses differ by {worst:.2g} (relative, float16 values), which a rotated "
            "residual basis or permuted units or heads do not change")
        placed = ResponsePlacement([evidence], in_place, in_order)
        return SignalResult((evidence,), tuple(placements), measured=placed, accusing_summary=placed.summary())
