"""Disguised copies (rotated residual basis, permuted units and heads, rescaled units) and the layer test's null.

The copies are built the way a disguise is: every norm folded into the
matrices after it, one orthogonal map applied to the whole residual stream,
MLP units, KV groups and query heads within a group permuted, up rows and
down columns rescaled in pairs; the model computes the same function. The
tests check that such a copy is found through anchor-token responses, that
an independent model is not, and that the per-layer sign-flip statistic
stays calibrated when a model's roles are aligned with each other.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from safetensors.torch import save_file

from provenance.compare import compare_fingerprints
from provenance.compare.invariant import ResponseTables
from provenance.compare.signals import LayerView, layer_similarity
from provenance.compare.stats import sum_or_count_log10p
from provenance.fingerprint import Part
from provenance.fingerprint.load import fingerprint_for

from bench.zoo.transforms import prune_width

from .builders import llama_model

CONFIG = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)


def _tokenizer(vocab: int) -> dict:
    strings = [f"tok{i:03d}" for i in range(vocab)]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": None, "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "merges": [],
                      "vocab": {s: i for i, s in enumerate(strings)}}}


def _state(seed: int) -> tuple[dict[str, torch.Tensor], dict]:
    model, config = llama_model(seed, **CONFIG)
    state = {k: v.detach().clone().double() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in state.items():  # trained-looking norms, so that folding them changes the matrices
        if name.endswith("norm.weight"):
            state[name] = 1.0 + 0.3 * torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
    return state, config.to_dict()


def _save(path, state, config):
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config))
    (path / "tokenizer.json").write_text(json.dumps(_tokenizer(CONFIG["vocab_size"])))
    return path


def _disguise(state: dict[str, torch.Tensor], seed: int, noise: float = 0.0) -> dict[str, torch.Tensor]:
    """The same function under another residual basis, with units, KV groups and heads permuted and up/down
    rescaled; then `noise` (relative to each tensor's std) added to every matrix, as a fine-tune would."""
    rng = np.random.default_rng(seed)
    hidden, heads, kv = CONFIG["hidden_size"], CONFIG["num_attention_heads"], CONFIG["num_key_value_heads"]
    head_dim, group = hidden // heads, heads // kv
    rotation = torch.from_numpy(np.linalg.qr(rng.standard_normal((hidden, hidden)))[0])
    s = dict(state)
    for i in range(CONFIG["num_hidden_layers"]):
        p = f"model.layers.{i}"
        g1, g2 = s.pop(f"{p}.input_layernorm.weight"), s.pop(f"{p}.post_attention_layernorm.weight")
        s[f"{p}.input_layernorm.weight"] = torch.ones(hidden, dtype=torch.float64)
        s[f"{p}.post_attention_layernorm.weight"] = torch.ones(hidden, dtype=torch.float64)
        for role, norm in (("self_attn.q_proj", g1), ("self_attn.k_proj", g1), ("self_attn.v_proj", g1),
                           ("mlp.gate_proj", g2), ("mlp.up_proj", g2)):
            s[f"{p}.{role}.weight"] = s[f"{p}.{role}.weight"] * norm[None, :] @ rotation
        for role in ("self_attn.o_proj", "mlp.down_proj"):
            s[f"{p}.{role}.weight"] = rotation.T @ s[f"{p}.{role}.weight"]
        units = torch.from_numpy(rng.permutation(CONFIG["intermediate_size"]))
        scale = torch.from_numpy(rng.uniform(0.5, 2.0, CONFIG["intermediate_size"]))
        s[f"{p}.mlp.gate_proj.weight"] = s[f"{p}.mlp.gate_proj.weight"][units]
        s[f"{p}.mlp.up_proj.weight"] = s[f"{p}.mlp.up_proj.weight"][units] * scale[:, None]
        s[f"{p}.mlp.down_proj.weight"] = s[f"{p}.mlp.down_proj.weight"][:, units] / scale[None, :]
        groups = rng.permutation(kv)
        query_heads = np.concatenate([g * group + rng.permutation(group) for g in groups])
        q_rows = torch.from_numpy(np.concatenate([np.arange(h * head_dim, (h + 1) * head_dim) for h in query_heads]))
        kv_rows = torch.from_numpy(np.concatenate([np.arange(g * head_dim, (g + 1) * head_dim) for g in groups]))
        s[f"{p}.self_attn.q_proj.weight"] = s[f"{p}.self_attn.q_proj.weight"][q_rows]
        s[f"{p}.self_attn.o_proj.weight"] = s[f"{p}.self_attn.o_proj.weight"][:, q_rows]
        for role in ("k_proj", "v_proj"):
            s[f"{p}.self_attn.{role}.weight"] = s[f"{p}.self_attn.{role}.weight"][kv_rows]
    s["lm_head.weight"] = s["lm_head.weight"] * s.pop("model.norm.weight")[None, :] @ rotation
    s["model.norm.weight"] = torch.ones(hidden, dtype=torch.float64)
    s["model.embed_tokens.weight"] = s["model.embed_tokens.weight"] @ rotation
    generator = torch.Generator().manual_seed(seed)
    return {k: v + noise * v.std() * torch.randn(v.shape, generator=generator, dtype=v.dtype) if v.dim() == 2 else v
            for k, v in s.items()}


def _logits(model, state: dict[str, torch.Tensor]) -> torch.Tensor:
    model.load_state_dict({k: v.float() for k, v in state.items()})
    with torch.no_grad():
        return model(torch.arange(12)[None, :]).logits


def test_disguised_copies_are_found_and_an_independent_model_is_not(tmp_path):
    state, config = _state(0)
    exact, tuned = _disguise(state, 1), _disguise(state, 2, noise=0.05)
    # the disguise preserves the function (so a verdict of "no relation" would be wrong)
    model, _ = llama_model(0, **CONFIG)
    assert torch.allclose(_logits(model, exact), _logits(model, state), atol=1e-4)
    base = fingerprint_for(_save(tmp_path / "base", state, config))
    exact_fp = fingerprint_for(_save(tmp_path / "exact", exact, config))
    tuned_fp = fingerprint_for(_save(tmp_path / "tuned", tuned, config))
    other_fp = fingerprint_for(_save(tmp_path / "other", _state(1)[0], config))
    assert base.holds(Part.ANCHOR_RESPONSES)

    found = compare_fingerprints(exact_fp, base)
    assert found.verdict == "identical", found.summary
    assert "rotation of the residual basis" in found.summary
    tuned_result = compare_fingerprints(tuned_fp, base)
    assert tuned_result.verdict == "derived", tuned_result.summary
    assert any(e.signal.startswith("anchor-token responses") and e.log10p < -12 for e in tuned_result.evidence)
    assert all(row.reference_layer == row.candidate_layer for row in tuned_result.layers)
    unrelated = compare_fingerprints(other_fp, base)
    assert not unrelated.verdict.accusing, unrelated.summary
    tables = ResponseTables(other_fp, base)
    assert all(tables.match(i, i).near_copies == 0 for i in range(CONFIG["num_hidden_layers"]))


def test_layer_statistic_stays_calibrated_when_roles_are_aligned():
    """A model whose q and k sketches are one matrix (roles perfectly aligned): under the null (an independent
    reference) the per-layer p-value must stay uniform; Fisher's method over roles treated the two as
    independent evidence and gave p < 0.01 about twice as often."""
    rng = np.random.default_rng(0)
    shape = (16, 32)
    draws = []
    for _ in range(200):
        shared = rng.standard_normal(shape[0] * shape[1])
        cand = LayerView(1, {(0, "attn.q"): shared, (0, "attn.k"): shared.copy()}, {(0, "attn.q"): shape, (0, "attn.k"): shape})
        ref = LayerView(1, {(0, r): rng.standard_normal(shape[0] * shape[1]) for r in ("attn.q", "attn.k")},
                        {(0, "attn.q"): shape, (0, "attn.k"): shape})
        draws.append(layer_similarity(cand, ref, clusters=lambda s, role: np.tile(np.arange(s[1]), s[0])).log10p[0, 0])
    draws = np.asarray(draws)
    assert 0.02 <= np.mean(draws < np.log10(0.05)) <= 0.09
    assert np.mean(draws < -2) <= 0.025


def test_sign_count_reaches_far_below_the_t_approximation_for_a_copy():
    rng = np.random.default_rng(1)
    assert sum_or_count_log10p(np.abs(rng.standard_normal(64))) < -17  # every dimension agrees: 2^-64, halved
    uniform = [sum_or_count_log10p(rng.standard_normal(64)) for _ in range(400)]
    assert 0.02 <= np.mean(np.asarray(uniform) < np.log10(0.05)) <= 0.09


def test_structural_edits_are_named(tmp_path):
    state, config = _state(0)
    base = fingerprint_for(_save(tmp_path / "base", state, config))
    pruned_config, pruned_state = prune_width(config, state, 56, 96, seed=3)  # the zoo's width pruning
    pruned = fingerprint_for(_save(tmp_path / "pruned", pruned_state, pruned_config))
    result = compare_fingerprints(pruned, base)
    assert result.verdict == "derived", result.summary
    assert "width-pruned: 56 of 64 residual dimensions, 96 of 128 MLP units" in result.summary

    pooled = dict(state)  # two KV groups averaged into one (GQA -> MQA), queries kept
    for i in range(CONFIG["num_hidden_layers"]):
        for role in ("k_proj", "v_proj"):
            key = f"model.layers.{i}.self_attn.{role}.weight"
            pooled[key] = state[key].reshape(2, 16, 64).mean(dim=0)
    mqa = fingerprint_for(_save(tmp_path / "mqa", pooled, {**config, "num_key_value_heads": 1}))
    result = compare_fingerprints(mqa, base)
    assert result.verdict == "derived", result.summary
    assert "key/value heads pooled: 1 KV heads where the reference has 2" in result.summary

    generator = torch.Generator().manual_seed(5)
    replaced = {**state, "model.embed_tokens.weight": 0.02 * torch.randn(300, 64, generator=generator, dtype=torch.float64),
                "lm_head.weight": 0.02 * torch.randn(300, 64, generator=generator, dtype=torch.float64)}
    path = _save(tmp_path / "vocab", replaced, {**config, "vocab_size": 300})
    (path / "tokenizer.json").write_text(json.dumps(_tokenizer(300)))
    result = compare_fingerprints(fingerprint_for(path), base)
    assert result.verdict == "derived", result.summary
    assert "vocabulary replaced: 300 tokens where the reference has 256" in result.summary


def test_shared_initialisation_is_named_not_taken_for_copying(tmp_path):
    """Two teams start from the default initialisation under seed 42 and train independently (updates 1.5 times
    the initial weights' size): same-architecture, naming the seed. A model changed from the first one's trained
    weights keeps the first one's changes: still derived, saying the weights cannot tell the two stories apart."""
    start, config = _state(42)
    start = {k: v if k.endswith("norm.weight") else llama_model(42, **CONFIG)[0].state_dict()[k].double()
             for k, v in start.items()}

    def trained(state, seed, size=1.5):
        generator = torch.Generator().manual_seed(seed)
        return {k: v + size * v.norm() / math.sqrt(v.numel()) * torch.randn(v.shape, generator=generator, dtype=v.dtype)
                if v.dim() == 2 else v for k, v in state.items()}

    first, second = trained(start, 1), trained(start, 2)
    a = fingerprint_for(_save(tmp_path / "a", first, config))
    b = fingerprint_for(_save(tmp_path / "b", second, config))
    result = compare_fingerprints(a, b)
    assert result.verdict == "same-architecture", result.summary
    assert "seed 42" in result.summary and any("shared initialisation" in note for note in result.notes)
    changed = fingerprint_for(_save(tmp_path / "c", trained(first, 3, size=2.0), config))
    result = compare_fingerprints(changed, a)
    assert result.verdict == "derived", result.summary
    assert any("cannot tell these apart" in note for note in result.notes)
