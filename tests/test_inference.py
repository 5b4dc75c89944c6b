"""Structural inference: roles for tensor names that no family table knows."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import save_file

from provenance.architectures.roles import CanonicalKey
from provenance.model import Checkpoint

from .builders import llama_model

LAYERS, HIDDEN, INTER, VOCAB, HEADS, KV = 3, 32, 48, 64, 4, 2


def _llama_state() -> tuple[dict[str, torch.Tensor], dict]:
    model, config = llama_model(0, vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER,
                                num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, config.to_dict()


def _true_key(name: str) -> CanonicalKey:
    from provenance.architectures.families import all_families

    match = all_families()["llama"].match(name)
    assert match is not None
    return match.keys()[0]


def _write(tmp_path, renamed: dict[str, torch.Tensor], config: dict | None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    save_file(renamed, str(tmp_path / "model.safetensors"))
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    return Checkpoint.open(tmp_path)


def test_opaque_names_in_original_order_recover_every_role_and_layer(tmp_path):
    state, config = _llama_state()
    names = list(state)
    renamed = {f"t{i:03d}": state[name] for i, name in enumerate(names)}
    truth = {f"t{i:03d}": _true_key(name) for i, name in enumerate(names)}
    with _write(tmp_path, renamed, config) as checkpoint:
        got = {a.source: a for a in checkpoint.roles.assignments}
        assert set(got) == set(truth)
        for source, assignment in got.items():
            assert assignment.how == "inferred"
            assert assignment.key == truth[source], (source, assignment.reason)
            assert 0 < assignment.confidence <= 1
            assert assignment.reason
        # the values are the stored ones
        for assignment, tensor in checkpoint.iter_canonical():
            assert torch.equal(tensor, renamed[assignment.source])
        assert checkpoint.architecture.num_layers == LAYERS
        assert checkpoint.architecture.disagreements == ()


def test_opaque_shuffled_names_keep_candidates_that_include_the_truth(tmp_path):
    state, config = _llama_state()
    names = list(state)
    order = list(range(len(names)))
    random.Random(1).shuffle(order)
    renamed = {f"t{order[i]:03d}": state[name] for i, name in enumerate(names)}
    truth = {f"t{order[i]:03d}": _true_key(name) for i, name in enumerate(names)}
    with _write(tmp_path, renamed, config) as checkpoint:
        got = {a.source: a for a in checkpoint.roles.assignments}
        assert set(got) == set(truth)
        for source, assignment in got.items():
            true_role = truth[source].role
            assert true_role in assignment.candidates, (source, assignment.candidates, true_role)
            if len(assignment.candidates) == 1:  # e.g. mlp.down: its shape fits nothing else
                assert assignment.key.role == true_role
                assert assignment.confidence >= 0.9
            else:
                assert assignment.confidence < 0.9
        downs = [a for a in got.values() if a.key.role == "mlp.down"]
        assert len(downs) == LAYERS
        assert all(a.key.layer is None for a in got.values() if a.key.role.startswith(("attn.", "mlp.")))


def test_numbered_unknown_names_use_layer_numbers_and_name_words(tmp_path):
    state, config = _llama_state()
    spelling = {"self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk",
                "self_attn.v_proj": "attention.wv", "self_attn.o_proj": "attention.wo",
                "mlp.gate_proj": "feed_forward.gate", "mlp.up_proj": "feed_forward.up",
                "mlp.down_proj": "feed_forward.down", "input_layernorm": "attention_norm",
                "post_attention_layernorm": "ffn_norm"}
    renamed, truth = {}, {}
    for name, tensor in state.items():
        new = name.replace("model.layers.", "blocks.").replace("model.embed_tokens", "tok_embeddings")
        new = new.replace("model.norm", "final_norm").replace("lm_head", "output")
        for old, replacement in spelling.items():
            new = new.replace(old, replacement)
        renamed[new] = tensor
        truth[new] = _true_key(name)
    with _write(tmp_path, renamed, None) as checkpoint:
        got = {a.source: a for a in checkpoint.roles.assignments}
        wrong = {s: (a.key.label, truth[s].label) for s, a in got.items() if a.key != truth[s]}
        assert not wrong
        assert checkpoint.architecture.source == "tensor shapes"
        assert checkpoint.architecture.num_layers == LAYERS
        assert checkpoint.architecture.hidden_size == HIDDEN
        assert checkpoint.architecture.vocab_size == VOCAB


def test_partially_renamed_checkpoint_maps_known_names_by_table(tmp_path):
    state, config = _llama_state()
    renamed = dict(state)
    renamed["mystery_tensor"] = renamed.pop("model.layers.1.mlp.down_proj.weight")
    with _write(tmp_path, renamed, config) as checkpoint:
        by_source = {a.source: a for a in checkpoint.roles.assignments}
        assert by_source["model.layers.0.mlp.down_proj.weight"].how == "table"
        mystery = by_source["mystery_tensor"]
        assert mystery.how == "inferred"
        assert mystery.key.role == "mlp.down"


@pytest.mark.parametrize("shape,expected", [((VOCAB, HIDDEN), {"embed", "lm_head"}), ((INTER, HIDDEN), {"mlp.gate", "mlp.up"}),
                                            ((HIDDEN, INTER), {"mlp.down"}), ((KV * HIDDEN // HEADS, HIDDEN), {"attn.k", "attn.v"})])
def test_shape_classes(shape, expected):
    from provenance.architectures.inference import Dims, shape_candidates

    dims = Dims(hidden=HIDDEN, vocab=VOCAB, intermediate=INTER, kv_rows=KV * HIDDEN // HEADS)
    candidates, _ = shape_candidates(shape, dims, gated=True)
    assert set(candidates) == expected
