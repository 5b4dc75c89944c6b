"""Disguised copies: a rotated residual basis with permuted MLP units and heads is found, independent models are not;
a width- or depth-pruned copy, pooled KV heads, a replaced vocabulary and reordered or repeated layers are named; a shared initialisation is named
beside `derived`; a dense MLP split into experts is never `identical`.

Models are the null suite's generated LLaMAs (`bench/nulls/models.py`: power-law spectra, massive residual
dimensions, non-uniform norms, GQA) at a small width, disguised with the zoo's function-preserving transforms
(`bench/zoo/transforms.py`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bench.moe_models import MoeSpec, upcycled_layer, write_dense, write_moe
from bench.nulls import models as M
from bench.zoo import transforms as T
from provenance.compare.engine import compare_fingerprints
from provenance.compare.thresholds import ACCUSATION_LOG10P
from provenance.compare.unit_responses import VIA, response_layers, response_test
from provenance.fingerprint import Fingerprint, Part
from provenance.fingerprint.load import fingerprint_for
from provenance.verdicts import ACCUSING

VOCAB = 1024


def _spec(seed: int) -> M.ModelSpec:
    return M.ModelSpec(name=f"d{seed}", group="disguise", family="llama", hidden=128, intermediate=256, heads=4,
                       kv_heads=2, layers=2, vocab=VOCAB, tied=False, seed=seed, alpha=0.75, massive=3)


def _save(path, state: dict[str, torch.Tensor], config: dict, vocab: int = VOCAB) -> Fingerprint:
    path.mkdir(parents=True)
    config = {k: v for k, v in config.items() if k != "_attn_implementation"} | {"torch_dtype": "float32"}
    (path / "config.json").write_text(json.dumps(config, default=str))
    (path / "tokenizer.json").write_text(json.dumps(M.tokenizer_json(vocab, "llama")))
    save_file({k: v.float().contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    return fingerprint_for(path)


def _disguised(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Norms folded and residual basis rotated, then MLP units, KV groups and query heads within groups permuted."""
    state = T.rotate_residual(config, state, 5)
    state = T.permute_mlp("llama", config, state, 6)
    return T.permute_heads("llama", config, state, 7)[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("disguise")
    state, config = M.generate_state(_spec(401))
    disguised = _disguised(state, config)
    other_state, other_config = M.generate_state(_spec(402))
    init = _hf_init(config)
    pruned, pruned_config = _width_pruned(state, config)
    depth, depth_config = _depth_pruned(state, config)
    pooled, pooled_config = _kv_pooled(state, config)
    replaced, replaced_config = _vocabulary_replaced(state, config, VOCAB + 176)
    reordered_config, reordered = T.assemble_layers("llama", config, state, [(state, 1), (state, 0)])
    repeated_config, repeated = T.assemble_layers("llama", config, state, [(state, 0), (state, 1), (state, 1)])
    return {"base": _save(root / "base", state, config),
            "reordered": _save(root / "reordered", reordered, reordered_config),
            "repeated": _save(root / "repeated", repeated, repeated_config),
            "depth": _save(root / "depth", T.add_noise(depth, 0.02, 12), depth_config),
            "pooled": _save(root / "pooled", T.add_noise(pooled, 0.02, 13), pooled_config),
            "pooled-exact": _save(root / "pooled-exact", pooled, pooled_config),
            "replaced": _save(root / "replaced", T.add_noise(replaced, 0.02, 14), replaced_config, vocab=VOCAB + 176),
            "exact": _save(root / "exact", disguised, config),
            "tuned": _save(root / "tuned", T.add_noise(disguised, 0.05, 8), config),
            "finetune": _save(root / "finetune", T.add_noise(state, 0.05, 9), config),
            "other": _save(root / "other", other_state, other_config),
            "pruned": _save(root / "pruned", T.add_noise(pruned, 0.02, 10), pruned_config),
            "seed42-a": _save(root / "seed42-a", _trained_from(init, state), config),
            "seed42-b": _save(root / "seed42-b", _trained_from(init, other_state), config)}


def _width_pruned(state: dict[str, torch.Tensor], config: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """112 of the 128 residual dimensions and 192 of the 256 MLP units of every layer kept (head size kept)."""
    rng = np.random.default_rng(11)
    keep = torch.from_numpy(np.sort(rng.choice(128, 112, replace=False)))
    units = torch.from_numpy(np.sort(rng.choice(256, 192, replace=False)))
    pruned = {}
    for key, value in state.items():
        if key.endswith("norm.weight"):
            value = value[keep]
        elif key.endswith(("o_proj.weight", "down_proj.weight")):
            value = value[keep]
        else:  # embedding, output head and the matrices reading the residual stream
            value = value[:, keep]
        if key.endswith(("gate_proj.weight", "up_proj.weight")):
            value = value[units]
        elif key.endswith("down_proj.weight"):
            value = value[:, units]
        pruned[key] = value.contiguous()
    return pruned, {**config, "hidden_size": 112, "intermediate_size": 192, "head_dim": 32}


def _depth_pruned(state: dict[str, torch.Tensor], config: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Layer 0 dropped, layer 1 kept as the only layer."""
    kept = {k.replace("model.layers.1.", "model.layers.0."): v for k, v in state.items()
            if not k.startswith("model.layers.0.")}
    return kept, {**config, "num_hidden_layers": 1}


def _kv_pooled(state: dict[str, torch.Tensor], config: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """The two KV heads of every layer averaged into one (GQA -> MQA), the four query heads kept."""
    pooled = dict(state)
    for key, value in state.items():
        if key.endswith(("k_proj.weight", "v_proj.weight")):
            pooled[key] = value.reshape(2, value.shape[0] // 2, value.shape[1]).mean(dim=0)
    return pooled, {**config, "num_key_value_heads": 1}


def _vocabulary_replaced(state: dict[str, torch.Tensor], config: dict, vocab: int):
    """Every layer kept, the embedding and output head drawn anew for a `vocab`-token vocabulary."""
    generator = torch.Generator().manual_seed(15)
    hidden = config["hidden_size"]
    new = {k: 0.02 * torch.randn(vocab, hidden, generator=generator) for k in ("model.embed_tokens.weight", "lm_head.weight")}
    return {**state, **new}, {**config, "vocab_size": vocab}


def _hf_init(config: dict) -> dict[str, torch.Tensor]:
    """transformers' own initialisation of this LLaMA after torch.manual_seed(42) (std 0.02, norms 1)."""
    import transformers

    torch.manual_seed(42)
    settings = {k: config[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                       "num_attention_heads", "num_key_value_heads", "tie_word_embeddings")}
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**settings))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _trained_from(init: dict[str, torch.Tensor], update: dict[str, torch.Tensor], scale: float = 1.5):
    """A stand-in for training from `init`: an independent structured update `scale` times the init's norm per
    matrix (norms take the update's values, as trained norms do)."""
    return {k: v if init[k].dim() == 1 else init[k] + v / v.norm() * init[k].norm() * scale
            for k, v in update.items()}


@pytest.mark.parametrize("name", ["exact", "tuned"])
def test_rotated_permuted_copy_is_derived_through_the_units_anchor_responses(models, name):
    result = compare_fingerprints(models[name], models["base"])
    assert result.verdict == "derived", result.summary
    found = [e for e in result.evidence if e.signal == VIA]
    assert found and found[0].log10p < ACCUSATION_LOG10P
    assert all(row.via == VIA for row in result.layers)
    assert "rotated residual basis" in result.summary and "the units were permuted" in result.summary
    assert "residual basis changed (rotated, or its dimensions permuted): all 2 matched layers" in result.summary


def test_the_disguise_hides_the_copy_from_every_other_signal(models):
    """What the test adds: without the anchor responses, the same comparison finds nothing."""
    cand, ref = models["tuned"], models["base"]
    parts = sorted(p.value for p in cand.parts if p is not Part.ANCHOR_RESPONSES)
    older = Fingerprint(meta={**cand.meta, "parts": parts},
                        arrays={k: v for k, v in cand.arrays.items() if not k.startswith("responses/")})
    assert compare_fingerprints(older, ref).verdict == "same-architecture"


def test_independent_models_are_not_accused_and_their_pooled_test_is_null_like(models):
    result = compare_fingerprints(models["other"], models["base"])
    assert result.verdict in ("same-architecture", "unrelated"), result.summary
    pooled = response_layers(models["other"], models["base"], [0, 1])
    assert pooled is not None and pooled.pooled_log10p > -3


def test_negating_candidate_units_flips_their_clusters_and_nothing_else(models):
    """The null's mechanism: the pairing is sign-free, so negating a unit's up row and down column (a function-
    preserving change, and one the null gives the same probability) flips its own c_u and no other."""
    cand, ref = models["other"], models["base"]
    before = response_test(cand, ref, 0, 0)
    flipped = np.random.default_rng(0).random(before.clusters.size) < 0.5
    sign = np.where(flipped, -1.0, 1.0).astype(np.float16)[:, None]
    arrays = dict(cand.arrays)
    for role in ("mlp.up", "mlp.down"):
        name = f"responses/0/{role}"
        arrays[name] = cand.arrays[name] * sign
    after = response_test(Fingerprint(meta=cand.meta, arrays=arrays), ref, 0, 0)
    assert np.allclose(after.clusters, np.where(flipped, -before.clusters, before.clusters))


def test_a_shared_initialisation_is_named_and_not_taken_for_copying(models):
    """Both trained from transformers' init under seed 42: the init is regenerated, and nothing relates the two
    beyond it (`compare/init_regeneration.py`; a seed it does not try keeps the statistical note:
    tests/test_init_regeneration.py)."""
    result = compare_fingerprints(models["seed42-b"], models["seed42-a"])
    assert result.verdict not in ACCUSING, result.summary
    assert any("default initialisation of this configuration under seed 42" in note
               and "independent trainings from a shared seed, not a copy" in note for note in result.notes)


def test_a_fine_tune_gets_no_shared_initialisation_note(models):
    result = compare_fingerprints(models["finetune"], models["base"])
    assert result.verdict == "derived"
    assert not any("initialisation" in note for note in result.notes)


@pytest.mark.parametrize("noise", [0.0, 0.002])
def test_a_dense_mlp_split_into_experts_is_never_identical(tmp_path, noise):
    """Experts cut from a dense MLP (a new router, so not the same function), unchanged or changed below the
    bfloat16 rounding: `derived` with the split named, never `identical` by the storage-rounding rule."""
    spec = MoeSpec(layers=2, experts=4, hidden=64, expert_dim=32, vocab=128, shards=1, seed=3)
    dense = fingerprint_for(write_dense(tmp_path / "dense", spec, 128))
    split = fingerprint_for(write_moe(tmp_path / "split", spec, layer_override=upcycled_layer(spec, 128, noise=noise)))
    result = compare_fingerprints(split, dense)
    assert result.verdict == "derived", result.summary
    assert "partition the reference's MLP units" in result.summary


def test_non_finite_responses_give_no_test_rather_than_a_nan_p_value(models):
    cand = models["exact"]
    arrays = dict(cand.arrays)
    arrays["responses/0/mlp.up"] = cand.arrays["responses/0/mlp.up"].copy()
    arrays["responses/0/mlp.up"][0, 0] = np.nan
    assert response_test(Fingerprint(meta=cand.meta, arrays=arrays), models["base"], 0, 0) is None
    assert response_test(cand, models["base"], 0, 0) is not None


def test_a_width_pruned_copy_is_derived_and_the_pruning_named(models):
    result = compare_fingerprints(models["pruned"], models["base"])
    assert result.verdict == "derived", result.summary
    assert "width-pruned: 112 of the reference's 128 residual dimensions" in result.summary
    assert "width-pruned: 192 of the reference's 256 MLP units" in result.summary
    # the kept units keep the reference's order at shifted indices: not called permuted
    assert "in the reference's order: a subset of its units" in result.summary
    assert "the units were permuted" not in result.summary
    assert "residual basis changed" not in result.summary  # pruned, not rotated


def test_a_depth_pruned_copy_is_named(models):
    result = compare_fingerprints(models["depth"], models["base"])
    assert result.verdict == "derived", result.summary
    assert ("depth-pruned: 1 of the reference's 2 layers, 1 of them matched to distinct reference layers "
            "(reference layers no candidate layer matched: 0)") in result.summary


def test_pooled_key_value_heads_are_named(models):
    result = compare_fingerprints(models["pooled"], models["base"])
    assert result.verdict == "derived", result.summary
    assert "key/value heads pooled: 1 KV heads where the reference has 2, for the same 4 query heads" in result.summary


def test_pooled_key_value_heads_without_other_change_are_not_identical(models):
    """The identity rule compares same-shaped roles only, so pooled k/v were never looked at: a stated shape that
    differs (here num_kv_heads) rules `identical` out."""
    result = compare_fingerprints(models["pooled-exact"], models["base"])
    assert result.verdict == "derived", result.summary


def test_a_replaced_vocabulary_is_named_through_the_layers_alone(models):
    result = compare_fingerprints(models["replaced"], models["base"])
    assert result.verdict == "derived", result.summary
    assert f"vocabulary replaced: {VOCAB + 176} tokens where the reference has {VOCAB}; the embeddings show no " \
           "relation to the reference's" in result.summary
    assert "2 of 2 layers match (found through the layers alone)" in result.summary


def test_reordered_layers_are_assembled_and_the_reordering_named(models):
    result = compare_fingerprints(models["reordered"], models["base"])
    assert result.verdict == "assembled", result.summary
    assert "layers reordered: candidate layers 0, 1 hold reference layers 1, 0" in result.summary
    assert "repeated" not in result.summary.split("(layer map")[1]


def test_a_repeated_layer_is_assembled_and_named(models):
    result = compare_fingerprints(models["repeated"], models["base"])
    assert result.verdict == "assembled", result.summary
    assert "layer 1 repeated: candidate layers 1, 2 match reference layer 1" in result.summary
    assert "reordered" not in result.summary and "depth-pruned" not in result.summary


def test_an_unchanged_fine_tune_names_no_structural_edit(models):
    result = compare_fingerprints(models["finetune"], models["base"])
    assert result.verdict in ("derived", "identical"), result.summary
    for edit in ("pruned", "widened", "key/value heads", "vocabulary replaced", "repeated", "reordered",
                 "residual basis changed"):
        assert edit not in result.summary, result.summary
