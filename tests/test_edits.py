"""The structural edits named in an accusing comparison's summary, on made-up architectures and layer maps: each
edit is named from the evidence it rests on, and not named when that evidence is missing or points elsewhere."""

from __future__ import annotations

from dataclasses import replace

from provenance.architectures.descriptor import Architecture
from provenance.compare.edits import (basis_edit, depth_edit, kv_edit, name_edits, reorder_edit, repetition_edit,
                                      vocabulary_edit)
from provenance.compare.unit_responses import VIA
from provenance.compare.results import LayerMatch

ARCH = Architecture(num_layers=4, hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=2, vocab_size=256)


def _rows(*refs: int | None) -> list[LayerMatch]:
    return [LayerMatch(i, j, 0.9 if j is not None else 0.0, 1e-9 if j is not None else 0.5,
                       -9.0 if j is not None else -0.3, 5) for i, j in enumerate(refs)]


def test_an_unchanged_copy_names_no_edit():
    assert name_edits(ARCH, replace(ARCH), _rows(0, 1, 2, 3), -40.0) == []


def test_nothing_is_named_when_no_layer_matched():
    assert name_edits(replace(ARCH, num_layers=2, num_kv_heads=1, vocab_size=300), ARCH, _rows(None, None), None) == []


def test_depth_pruning_needs_fewer_layers_on_distinct_reference_layers():
    assert depth_edit(_rows(0, 2, 3), 4) == ("depth-pruned: 3 of the reference's 4 layers, 3 of them matched to "
                                             "distinct reference layers (reference layers no candidate layer matched: 1)")
    assert "2 of them matched" in depth_edit(_rows(0, None, 3), 4)
    assert depth_edit(_rows(0, 0, 3), 4) is None  # repetition, not pruning
    assert depth_edit(_rows(0, 1, 2, 3), 4) is None
    assert depth_edit(_rows(0, 1), None) is None


def test_kv_pooling_needs_as_many_query_heads():
    assert kv_edit(replace(ARCH, num_kv_heads=1), ARCH) == (
        "key/value heads pooled: 1 KV heads where the reference has 2, for the same 4 query heads")
    assert kv_edit(replace(ARCH, num_kv_heads=4), ARCH).startswith("key/value heads split: 4 KV heads")
    assert kv_edit(replace(ARCH, num_kv_heads=None), replace(ARCH, num_kv_heads=1)).startswith("key/value heads split")
    assert kv_edit(replace(ARCH, num_heads=8, num_kv_heads=1), ARCH) is None
    assert kv_edit(ARCH, ARCH) is None


def test_vocabulary_replacement_needs_unrelated_embeddings_and_matched_layers():
    other = replace(ARCH, vocab_size=300)
    named = vocabulary_edit(other, ARCH, _rows(0, 1, None, 3), -0.4)
    assert named.startswith("vocabulary replaced: 300 tokens where the reference has 256; the embeddings show no "
                            "relation to the reference's (strongest p = 0.4)")
    assert named.endswith("yet 3 of 4 layers match (found through the layers alone)")
    assert "no embedding row could be compared" in vocabulary_edit(other, ARCH, _rows(0, 1), None)
    assert vocabulary_edit(other, ARCH, _rows(0, 1), -12.0) is None  # related embeddings: extended or cut
    assert vocabulary_edit(ARCH, ARCH, _rows(0, 1), -0.4) is None
    assert vocabulary_edit(other, ARCH, _rows(None, None), -0.4) is None


def test_edits_are_listed_together_width_first():
    cand = replace(ARCH, num_layers=3, hidden_size=56, num_kv_heads=1, vocab_size=300)
    edits = name_edits(cand, ARCH, _rows(0, 1, 3), None)
    assert [e.split(":")[0] for e in edits] == ["width-pruned", "depth-pruned", "key/value heads pooled",
                                                "vocabulary replaced"]


def test_a_repeated_layer_is_named_with_the_candidate_layers_holding_it():
    assert repetition_edit(_rows(0, 1, 2, 2, 3)) == "layer 2 repeated: candidate layers 2, 3 match reference layer 2"
    solar = repetition_edit(_rows(0, 1, 2, 1, 2, 3))
    assert solar.startswith("layers 1, 2 repeated: candidate layers 1, 3 match reference layer 1; candidate layers 2, 4")
    assert repetition_edit(_rows(0, 1, None, 3)) is None


def test_reordered_layers_are_named_and_a_repeated_block_is_not_a_reordering():
    assert reorder_edit(_rows(0, 2, 1, 3)) == "layers reordered: candidate layers 1, 2 hold reference layers 2, 1"
    assert reorder_edit(_rows(0, 1, 2, 1, 2, 3)) is None  # depth up-scaling: the repeated block keeps its order
    assert reorder_edit(_rows(0, 1, None, 3)) is None
    assert reorder_edit(_rows(3, 0, 1, 2)) == ("layers reordered: candidate layers 0, 1, 2, 3 hold reference layers "
                                               "3, 0, 1, 2")


def test_order_edits_follow_depth_pruning_in_the_list():
    edits = name_edits(ARCH, ARCH, _rows(0, 2, 2, 1), None)
    assert [e.split(":")[0] for e in edits] == ["layer 2 repeated", "layers reordered"]


def test_a_changed_basis_needs_every_layer_found_through_the_responses_and_unrelated_embeddings():
    rows = _rows(0, 1, 2, 3)
    for row in rows:
        row.via = VIA
    named = basis_edit(ARCH, ARCH, rows, -0.3)
    assert named.startswith("residual basis changed (rotated, or its dimensions permuted): all 4 matched layers")
    assert basis_edit(ARCH, ARCH, rows, -20.0) is None  # embeddings related per dimension: the basis is the same
    assert basis_edit(ARCH, ARCH, rows, None) is None  # nothing compared per dimension: not named
    assert basis_edit(replace(ARCH, hidden_size=56), ARCH, rows, -0.3) is None  # width pruning, named as such
    rows[2].via = "sketch"
    assert basis_edit(ARCH, ARCH, rows, -0.3) is None  # a layer found per dimension: the basis is the reference's
    assert name_edits(ARCH, ARCH, _rows(0, 1, 2, 3), -0.3) == []
