"""The trained-null bench's pieces that run in seconds: its tail table, its alignment statistic, and the null
generator's trained draw kind (which leaves the default draws as they were). `bench/trained_nulls.py` is the
full run (trainings of about an hour, cached)."""

from __future__ import annotations

import numpy as np
import torch

from bench import trained_nulls as T
from bench.nulls import models as M

SPEC = M.ModelSpec("t", "t", "llama", 64, 160, 4, 2, 2, 256, False, 11)


def test_tail_rows_count_at_or_below_alpha_and_flag_above_twice_alpha():
    logs = [np.log10(p) for p in (0.5, 0.2, 0.1, 0.05, 0.009, 1e-5)] + [0.0] * 4
    row = T.tail_rows({"s": logs})[0]
    assert row["draws"] == 10 and row["min_log10p"] == -5.0
    assert [t["count"] for t in row["tails"]] == [4, 2, 1, 1]  # p = 0.1 counts at alpha 0.1
    assert [t["flag"] for t in row["tails"]] == [True, True, True, True]
    assert "| s | 10 | 0.4000 (4) **!** |" in "\n".join(T.table([row]))


def test_product_alignment_is_one_for_independent_bases_and_large_for_shared_ones():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 16)) * (np.arange(1, 17) ** -1.0)[None, :]
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    b = q @ rng.standard_normal((16, 64))
    assert 0.5 < np.mean([T.product_alignment(a, np.linalg.qr(rng.standard_normal((16, 16)))[0] @ b)
                          for _ in range(50)]) < 1.5
    assert T.product_alignment(a, a.T) > 3.0


def test_trained_kind_keeps_default_draws_and_aligns_the_coupled_pairs():
    default, _ = M.generate_state(SPEC)
    assert "aligned_qk" not in SPEC.to_dict()  # the keys of cached default draws are unchanged
    trained_spec = M.ModelSpec(**{**SPEC.to_dict(), "aligned_qk": 0.7, "aligned_vo": 0.7, "aligned_ud": 0.3})
    trained, _ = M.generate_state(trained_spec)
    changed = {k for k in default if not torch.equal(default[k], trained[k])}
    assert changed and all(k.endswith(("q_proj.weight", "o_proj.weight", "down_proj.weight")) for k in changed)
    for key in changed:  # singular values kept
        assert torch.allclose(torch.linalg.svdvals(default[key]), torch.linalg.svdvals(trained[key]), rtol=1e-3, atol=1e-6)
    before, after = T.model_structure("llama", default, 4), T.model_structure("llama", trained, 4)
    for key in ("qk_alignment", "vo_alignment", "up_down_alignment"):
        assert after[key] > 1.5 * before[key]
