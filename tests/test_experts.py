"""Mixture-of-experts layers compared as sets: permuted, thinned, upcycled experts named; independent MoEs not accused."""

from __future__ import annotations

import pytest

from bench.moe_models import MoeEdit, MoeSpec, upcycled_layer, write_dense, write_moe
from provenance.compare.engine import compare_fingerprints
from provenance.fingerprint import build_fingerprint
from provenance.model import Checkpoint

SPEC = MoeSpec(layers=2, experts=8, hidden=64, expert_dim=32, shared_dim=32, vocab=128, shards=1)
SHUFFLED = (3, 1, 0, 2, 7, 6, 5, 4)


def _fingerprint(path):
    with Checkpoint.open(path) as checkpoint:
        return build_fingerprint(checkpoint)


@pytest.fixture(scope="module")
def moe(tmp_path_factory):
    root = tmp_path_factory.mktemp("moe")
    return root, _fingerprint(write_moe(root / "base", SPEC))


def test_expert_permutation_alone_is_identical_and_named(moe):
    root, base = moe
    copy = _fingerprint(write_moe(root / "perm", SPEC, MoeEdit(keep=SHUFFLED)))
    result = compare_fingerprints(copy, base)
    assert result.verdict == "identical"
    assert "experts permuted" in result.summary and "shared expert matched" in result.summary
    assert all("experts permuted" in row.via for row in result.layers)


def test_one_fine_tuned_expert_keeps_the_copy_from_being_identical(moe):
    root, base = moe

    def change_expert_5(layer, tensors):
        name = f"model.layers.{layer}.mlp.experts.5.up_proj.weight"
        return {**tensors, name: tensors[name] * 1.05}

    copy = _fingerprint(write_moe(root / "one", SPEC, layer_override=change_expert_5))
    result = compare_fingerprints(copy, base)
    assert result.verdict == "derived"  # expert 0 alone stood for the layer before
    assert all(row.rel_errors["mlp.up"] > 0.01 for row in result.layers)


def test_permutation_plus_noise_is_derived_with_the_matching_as_evidence(moe):
    root, base = moe
    noisy = _fingerprint(write_moe(root / "permn", SPEC, MoeEdit(keep=SHUFFLED, noise=0.05)))
    result = compare_fingerprints(noisy, base)
    assert result.verdict == "derived" and "experts permuted" in result.summary
    expert_evidence = [e for e in result.evidence if e.signal.startswith("expert matching")]
    assert expert_evidence and expert_evidence[0].log10p < -6


def test_half_the_experts_kept_is_derived_not_identical(moe):
    root, base = moe
    half = _fingerprint(write_moe(root / "half", SPEC, MoeEdit(keep=(0, 2, 4, 6))))
    result = compare_fingerprints(half, base)
    assert result.verdict == "derived"
    assert "4 of 8 experts kept" in result.summary and "reordered" not in result.summary


def test_dense_mlp_split_into_slightly_changed_experts_is_derived_upcycling(tmp_path):
    spec = MoeSpec(layers=2, experts=4, hidden=64, expert_dim=32, vocab=128, shards=1, seed=3)
    dense = _fingerprint(write_dense(tmp_path / "dense", spec, 128))
    upcycled = _fingerprint(write_moe(tmp_path / "up", spec, layer_override=upcycled_layer(spec, 128, noise=0.01,
                                                                                         shuffle=True)))
    result = compare_fingerprints(upcycled, dense)
    assert result.verdict == "derived"  # was "identical up to the rounding of the candidate's stored dtype"
    assert "experts 0-3 partition the reference's MLP units" in result.summary
    assert any(e.signal.startswith("experts placed among dense MLP units") and e.log10p < -6 for e in result.evidence)


def test_independent_moes_are_not_accused(moe, tmp_path):
    _, base = moe
    for seed in (11, 12):
        other = _fingerprint(write_moe(tmp_path / f"i{seed}", MoeSpec(**{**SPEC.__dict__, "seed": seed})))
        result = compare_fingerprints(other, base)
        assert result.verdict in ("same-architecture", "unrelated"), result.summary
        assert not any(e.signal.startswith("expert") for e in result.evidence)
