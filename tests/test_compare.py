"""Fingerprint and compare: each verdict on small generated pairs, and statistics against their nulls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from provenance.compare import compare_fingerprints
from provenance.compare.results import LayerMatch
from provenance.compare.stats import p_from_log10
from provenance.compare.views import EVERY_UNIT, SAMPLED_UNITS, unit_view
from provenance.fingerprint import Fingerprint, Part, build_fingerprint, load_fingerprint
from provenance.fingerprint.load import fingerprint_for
from provenance.fingerprint.store import ROW_READ_PARTS, WHOLE_TENSOR_PARTS
from provenance.model import Checkpoint

from .builders import llama_model

CONFIG = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)


def _llama_state(seed: int, layers: int = 4) -> tuple[dict[str, torch.Tensor], dict]:
    model, config = llama_model(seed, **{**CONFIG, "num_hidden_layers": layers})
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, tensor in state.items():  # give norms non-trivial values, as training would
        if name.endswith("layernorm.weight") or name == "model.norm.weight":
            state[name] = 1.0 + 0.3 * torch.randn_like(tensor)
    return state, config.to_dict()


def _save(path, state, config):
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().clone() for k, v in state.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config))
    return path


def _compare(a, b):
    return compare_fingerprints(fingerprint_for(a), fingerprint_for(b))


def test_fingerprint_roundtrip_and_same_verdict_either_way(base, tmp_path):
    state, config, path = base
    with Checkpoint.open(path) as checkpoint:
        fingerprint = build_fingerprint(checkpoint)
    saved = fingerprint.save(tmp_path / "base.fp.safetensors")
    loaded = load_fingerprint(saved)
    assert loaded.meta["schema"] == "provenance.fingerprint/4"
    assert set(loaded.arrays) == set(fingerprint.arrays)
    for verdict_pair in [(path, saved), (saved, path), (saved, saved)]:
        assert _compare(*verdict_pair).verdict == "identical"


def test_renamed_and_cast_copy_is_identical(base, tmp_path):
    state, config, path = base
    renamed = {k.replace("input_layernorm", "ln1").replace("post_attention_layernorm", "ln2"): v.to(torch.bfloat16)
               for k, v in state.items()}
    result = _compare(_save(tmp_path / "yi", renamed, config), path)
    assert result.verdict == "identical", result.summary
    assert any(r["candidate"].endswith("ln1.weight") for r in result.renamed)


def test_permuted_mlp_units_are_identical(base, tmp_path):
    state, config, path = base
    permuted = dict(state)
    generator = torch.Generator().manual_seed(5)
    for layer in range(CONFIG["num_hidden_layers"]):
        order = torch.randperm(CONFIG["intermediate_size"], generator=generator)
        prefix = f"model.layers.{layer}.mlp."
        permuted[prefix + "gate_proj.weight"] = state[prefix + "gate_proj.weight"][order]
        permuted[prefix + "up_proj.weight"] = state[prefix + "up_proj.weight"][order]
        permuted[prefix + "down_proj.weight"] = state[prefix + "down_proj.weight"][:, order]
    result = _compare(_save(tmp_path / "perm", permuted, config), path)
    assert result.verdict == "identical", (result.summary, result.layers)


def test_rescaled_norms_are_identical(base, tmp_path):
    state, config, path = base
    rescaled = dict(state)
    scale = torch.rand(CONFIG["hidden_size"]) + 0.5
    for layer in range(CONFIG["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        rescaled[prefix + "post_attention_layernorm.weight"] = state[prefix + "post_attention_layernorm.weight"] * scale
        for name in ("mlp.gate_proj.weight", "mlp.up_proj.weight"):
            rescaled[prefix + name] = state[prefix + name] / scale
    result = _compare(_save(tmp_path / "rescaled", rescaled, config), path)
    assert result.verdict == "identical", (result.summary, result.layers)


@pytest.mark.parametrize("noise", [0.05, 0.5, 1.0])
def test_noisy_copy_is_derived(base, tmp_path, noise):
    state, config, path = base
    generator = torch.Generator().manual_seed(11)
    noisy = {k: v + noise * v.std() * torch.randn(v.shape, generator=generator) if v.numel() > 1 else v
             for k, v in state.items()}
    result = _compare(_save(tmp_path / "noisy", noisy, config), path)
    assert result.verdict == "derived", result.summary


def test_independent_seed_is_same_architecture(base, tmp_path):
    _, config, path = base
    other, _ = _llama_state(1)
    result = _compare(_save(tmp_path / "other", other, config), path)
    assert result.verdict == "same-architecture", result.summary
    assert result.verdict not in ("identical", "derived", "assembled")


def test_other_architecture_is_unrelated(base, tmp_path):
    import transformers as T

    _, _, path = base
    torch.manual_seed(3)
    gpt2 = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=256, n_embd=48, n_layer=2, n_head=4))
    gpt2.save_pretrained(tmp_path / "gpt2")
    result = _compare(tmp_path / "gpt2", path)
    assert result.verdict == "unrelated", result.summary


def test_pruned_layers_are_derived(base, tmp_path):
    state, config, path = base
    keep = [0, 1, 3]
    pruned = {}
    for name, tensor in state.items():
        if name.startswith("model.layers."):
            layer = int(name.split(".")[2])
            if layer in keep:
                pruned[name.replace(f"layers.{layer}.", f"layers.{keep.index(layer)}.")] = tensor
        else:
            pruned[name] = tensor
    result = _compare(_save(tmp_path / "pruned", pruned, {**config, "num_hidden_layers": 3}), path)
    assert result.verdict == "derived", result.summary
    assert [r.reference_layer for r in result.layers] == keep


def test_repeated_layers_are_assembled(base, tmp_path):
    state, config, path = base
    order = [0, 1, 2, 1, 2, 3]  # depth up-scaling with overlapping copies
    stacked = {}
    for name, tensor in state.items():
        if name.startswith("model.layers."):
            continue
        stacked[name] = tensor
    for new, old in enumerate(order):
        for name, tensor in state.items():
            if name.startswith(f"model.layers.{old}."):
                stacked[name.replace(f"layers.{old}.", f"layers.{new}.")] = tensor
    result = _compare(_save(tmp_path / "dus", stacked, {**config, "num_hidden_layers": 6}), path)
    assert result.verdict == "assembled", result.summary
    assert [r.reference_layer for r in result.layers] == order


def test_half_from_another_model_is_assembled(base, tmp_path):
    state, config, path = base
    other, _ = _llama_state(7)
    mixed = {k: (other[k] if k.startswith(("model.layers.2.", "model.layers.3.")) else v) for k, v in state.items()}
    result = _compare(_save(tmp_path / "franken", mixed, config), path)
    assert result.verdict == "assembled", result.summary


def test_pearson_null_is_uniform():
    from provenance.compare.stats import pearson, pearson_log10p

    rng = np.random.default_rng(0)
    p = np.array([10 ** pearson_log10p(pearson(rng.standard_normal(500), rng.standard_normal(500)), 500)
                  for _ in range(2000)])
    assert 0.035 < np.mean(p < 0.05) < 0.065
    assert 0.4 < np.mean(p < 0.5) < 0.6


def test_unit_matching_null_is_uniform():
    """Held-out test after matching: independent signatures give uniform p-values."""
    from provenance.compare.signals.units import unit_matching
    from provenance.fingerprint.store import Fingerprint

    rng = np.random.default_rng(1)
    rates = []
    for trial in range(300):
        a = rng.standard_normal((128, 32)).astype(np.float16)
        b = rng.standard_normal((128, 32)).astype(np.float16)
        fa = Fingerprint(meta={}, arrays={"units/0/mlp.up": a})
        fb = Fingerprint(meta={}, arrays={"units/0/mlp.up": b})
        rates.append(10 ** unit_matching(fa, fb, 0, 0, sample=64).log10p)
    rates = np.asarray(rates)
    assert 0.02 < np.mean(rates < 0.05) < 0.09
    assert 0.38 < np.mean(rates < 0.5) < 0.62


def test_fisher_combination_null_is_uniform():
    from provenance.compare.stats import fisher_log10p

    rng = np.random.default_rng(2)
    combined = np.array([10 ** fisher_log10p(np.log10(rng.uniform(size=8))) for _ in range(2000)])
    assert 0.035 < np.mean(combined < 0.05) < 0.065


def test_permuted_attention_heads_are_identical(base, tmp_path):
    state, config, path = base
    heads, kv_heads = CONFIG["num_attention_heads"], CONFIG["num_key_value_heads"]
    head_dim = CONFIG["hidden_size"] // heads
    group = heads // kv_heads
    permuted = dict(state)
    generator = torch.Generator().manual_seed(9)
    for layer in range(CONFIG["num_hidden_layers"]):
        kv_order = torch.randperm(kv_heads, generator=generator)  # permute KV groups, and heads within groups
        q_order = torch.cat([torch.randperm(group, generator=generator) + g * group for g in kv_order])
        q_rows = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in q_order])
        kv_rows = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in kv_order])
        prefix = f"model.layers.{layer}.self_attn."
        permuted[prefix + "q_proj.weight"] = state[prefix + "q_proj.weight"][q_rows]
        permuted[prefix + "k_proj.weight"] = state[prefix + "k_proj.weight"][kv_rows]
        permuted[prefix + "v_proj.weight"] = state[prefix + "v_proj.weight"][kv_rows]
        permuted[prefix + "o_proj.weight"] = state[prefix + "o_proj.weight"][:, q_rows]
    result = _compare(_save(tmp_path / "heads", permuted, config), path)
    assert result.verdict == "identical", (result.summary, result.layers)
    assert any("attention heads" in r.via for r in result.layers)


def _tokenizer_json(vocab: list[str]) -> dict:
    """A minimal byte-level BPE tokenizer.json whose vocabulary is `vocab` (id = position)."""
    return {"version": "1.0", "added_tokens": [], "pre_tokenizer": {"type": "ByteLevel"},
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": {token: index for index, token in enumerate(vocab)}, "merges": []}}


def _words(count: int) -> list[str]:
    import random as _random

    rng = _random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < count:
        words.add("Ġ" + "".join(rng.choice(letters) for _ in range(rng.randint(2, 7))))
    return sorted(words)


@pytest.fixture(scope="module")
def base_with_tokenizer(tmp_path_factory, base):
    state, config, _ = base
    vocab = _words(CONFIG["vocab_size"])
    path = _save(tmp_path_factory.mktemp("tok"), state, config)
    (path / "tokenizer.json").write_text(json.dumps(_tokenizer_json(vocab)))
    return state, config, vocab, path


def test_reindexed_vocabulary_is_derived_through_token_strings(base_with_tokenizer, tmp_path):
    state, config, vocab, path = base_with_tokenizer
    order = torch.randperm(len(vocab), generator=torch.Generator().manual_seed(3))
    new_vocab = [vocab[i] for i in order]
    shuffled = dict(state)
    shuffled["model.embed_tokens.weight"] = state["model.embed_tokens.weight"][order]
    shuffled["lm_head.weight"] = state["lm_head.weight"][order]
    out = _save(tmp_path / "reindexed", shuffled, config)
    (out / "tokenizer.json").write_text(json.dumps(_tokenizer_json(new_vocab)))
    result = _compare(out, path)
    assert result.verdict in ("derived", "identical"), result.summary
    by_signal = {e.signal: e for e in result.evidence}
    assert by_signal["embedding by token string"].value > 0.99
    assert by_signal["embed.weight (by id)"].log10p > -3  # ids no longer line up


def test_extended_vocabulary_is_derived(base_with_tokenizer, tmp_path):
    state, config, vocab, path = base_with_tokenizer
    extra = 32
    new_vocab = vocab + [f"Ġnewtoken{i}" for i in range(extra)]
    extended = dict(state)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        extended[name] = torch.cat([state[name], 0.02 * torch.randn(extra, CONFIG["hidden_size"])])
    out = _save(tmp_path / "extended", extended, {**config, "vocab_size": len(new_vocab)})
    (out / "tokenizer.json").write_text(json.dumps(_tokenizer_json(new_vocab)))
    result = _compare(out, path)
    assert result.verdict == "derived", result.summary


def test_moe_upcycled_from_dense_is_derived(base, tmp_path):
    import transformers as T

    state, config, path = base
    experts = 3
    moe_config = T.MixtralConfig(vocab_size=CONFIG["vocab_size"], hidden_size=CONFIG["hidden_size"],
                                 intermediate_size=CONFIG["intermediate_size"], num_hidden_layers=CONFIG["num_hidden_layers"],
                                 num_attention_heads=CONFIG["num_attention_heads"],
                                 num_key_value_heads=CONFIG["num_key_value_heads"], num_local_experts=experts,
                                 tie_word_embeddings=False)
    generator = torch.Generator().manual_seed(4)
    moe = {}
    for name, tensor in state.items():
        if ".mlp." not in name:
            moe[name] = tensor
            continue
        layer_prefix, leaf = name.split(".mlp.")
        target = {"gate_proj.weight": "w1.weight", "down_proj.weight": "w2.weight", "up_proj.weight": "w3.weight"}[leaf]
        for e in range(experts):
            noise = 0.1 * tensor.std() * torch.randn(tensor.shape, generator=generator)
            moe[f"{layer_prefix}.block_sparse_moe.experts.{e}.{target}"] = tensor + noise
    for layer in range(CONFIG["num_hidden_layers"]):
        moe[f"model.layers.{layer}.block_sparse_moe.gate.weight"] = 0.02 * torch.randn(experts, CONFIG["hidden_size"])
    result = _compare(_save(tmp_path / "moe", moe, moe_config.to_dict()), path)
    assert result.verdict == "derived", result.summary


def test_clustered_test_stays_calibrated_when_magnitudes_share_structure():
    """Rows with shared norms (frequent tokens) but independent bases: the plain
    Pearson test would reject far too often; the per-dimension clustered test does not."""
    from provenance.compare.stats import clustered_log10p

    rng = np.random.default_rng(3)
    p_values = []
    for _ in range(400):
        norms = rng.lognormal(0.0, 1.0, size=(100, 1))
        x = norms * rng.standard_normal((100, 48))
        y = norms * rng.standard_normal((100, 48))
        columns = np.tile(np.arange(48), (100, 1))
        p_values.append(10 ** clustered_log10p(x.ravel(), y.ravel(), columns.ravel())[1])
    p_values = np.asarray(p_values)
    assert 0.02 < np.mean(p_values < 0.05) < 0.09
    assert np.mean(p_values < 0.001) < 0.01


def _rotated(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every norm folded into the next layer, then the residual stream rotated by an orthogonal R."""
    h = CONFIG["hidden_size"]
    generator = torch.Generator().manual_seed(12)
    rotation, _ = torch.linalg.qr(torch.randn(h, h, generator=generator, dtype=torch.float64))
    rotation = rotation.float()
    rotated = {"model.embed_tokens.weight": state["model.embed_tokens.weight"] @ rotation,
               "model.norm.weight": torch.ones(h),
               "lm_head.weight": (state["lm_head.weight"] * state["model.norm.weight"]) @ rotation}
    for layer in range(CONFIG["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        for norm, readers in (("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                              ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"))):
            scale = state[p + norm + ".weight"]
            rotated[p + norm + ".weight"] = torch.ones(h)
            for reader in readers:
                rotated[p + reader + ".weight"] = (state[p + reader + ".weight"] * scale) @ rotation
        for writer in ("self_attn.o_proj", "mlp.down_proj"):
            rotated[p + writer + ".weight"] = rotation.t() @ state[p + writer + ".weight"]
    return rotated


def test_rotated_residual_basis_is_identical(base, tmp_path):
    state, config, path = base
    result = _compare(_save(tmp_path / "rotated", _rotated(state), config), path)
    assert result.verdict == "identical", result.summary
    assert "rotation" in result.summary


def _holding(fp: Fingerprint, parts) -> Fingerprint:
    """The same fingerprint declaring that it holds only `parts` (its arrays untouched)."""
    return Fingerprint({**fp.meta, "parts": sorted(part.value for part in parts)}, fp.arrays)


def test_each_step_reads_only_parts_both_sides_hold(base, tmp_path):
    """One engine: what both fingerprints hold picks the views, whatever else their arrays contain."""
    state, config, path = base
    whole = fingerprint_for(path)
    full = compare_fingerprints(whole, whole)
    assert full.verdict == "identical" and full.confidence == 1.0
    assert any(e.signal == "exact tensor hashes" for e in full.evidence)
    assert {r.via for r in full.layers} == {"sketch"} and not full.notes

    # a side holding what a range reader makes: row samples, no hashes, a capped identical and the remote note
    rows_only = compare_fingerprints(_holding(whole, ROW_READ_PARTS), whole)
    assert rows_only.verdict == "identical" and rows_only.confidence <= 0.95
    assert rows_only.summary.endswith("(on the sampled rows read remotely)")
    assert not any("exact" in e.signal or "std curve" in e.signal for e in rows_only.evidence)
    assert {r.via for r in rows_only.layers} == {"row sample"}
    assert rows_only.notes[0].startswith("remote comparison: the candidate fingerprint was read over HTTP")
    assert "lm_head.weight (by id, sampled rows)" in [e.signal for e in rows_only.evidence]

    # a rotated copy is identical through the Gram matrices only while both sides hold them
    rotated = fingerprint_for(_save(tmp_path / "rotated", _rotated(state), config))
    assert "rotation" in compare_fingerprints(rotated, whole).summary
    no_gram = compare_fingerprints(_holding(rotated, WHOLE_TENSOR_PARTS - {Part.GRAM}), whole)
    assert no_gram.verdict != "identical", no_gram.summary
    assert not any("Gram" in e.signal for e in no_gram.evidence)


def test_unit_view_pairs_full_or_sampled_signatures():
    def holding(*parts):
        return Fingerprint({"parts": [p.value for p in parts]}, {})

    full, sampled, neither = (holding(Part.UNIT_SIGNATURES), holding(Part.SAMPLED_UNIT_SIGNATURES),
                              holding(Part.ROW_SAMPLES))
    assert unit_view(full, full) is EVERY_UNIT
    assert unit_view(sampled, full) is SAMPLED_UNITS and unit_view(full, sampled) is SAMPLED_UNITS
    assert unit_view(sampled, sampled) is None and unit_view(neither, full) is None


def test_layer_match_json_entry_keeps_the_compare_schema():
    row = LayerMatch(3, None, 0.0, 1.0, 0.0, 0)
    assert list(row.to_dict()) == ["candidate_layer", "reference_layer", "similarity", "p_value", "log10_p", "via"]
    assert row.to_dict()["reference_layer"] is None and row.to_dict()["via"] == "none"
    assert row.best_reference_layer is None and row.rel_errors == {} and row.tolerances == {}
    row.place(5, 0.12344, -12.5, {"mlp.up": 0.1}, "matched MLP units (permuted)")
    assert row.to_dict() == {"candidate_layer": 3, "reference_layer": 5, "similarity": 0.1234,
                             "p_value": p_from_log10(-12.5), "log10_p": -12.5, "via": "matched MLP units (permuted)"}
    assert row.rel_errors == {"mlp.up": 0.1}
