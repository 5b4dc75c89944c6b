"""The accusation bar, identity explained by storage, rotations followed by changes, and the nulls behind them.

Each test generates its checkpoints in tmp_path (tiny LLaMA from transformers'
config class, the helpers of test_compare) or its signatures in memory.
"""

from __future__ import annotations

import numpy as np
import torch

from provenance.compare.signals.gram import gram_layer_tests
from provenance.compare.signals.units import unit_matching
from provenance.compare.thresholds import STORAGE_TOLERANCE, storage_tolerance
from provenance.fingerprint.sketch import projection
from provenance.fingerprint.store import Fingerprint

from .builders import llama_model
from .test_compare import CONFIG, _compare, _llama_state, _save

ACCUSING = {"identical", "derived", "assembled"}


def _anisotropic_signatures(rng, units=344, width=128, alpha=1.0, massive=3) -> np.ndarray:
    """Unit signatures of a model whose rows have a power-law spectrum in a basis of its own, with a few
    massive residual dimensions in its norm: the structure that broke the unwhitened test."""
    basis, _ = np.linalg.qr(rng.standard_normal((width, width)))
    rows = rng.standard_normal((units, width)) * np.arange(1, width + 1) ** -alpha @ basis.T
    norm = np.exp(0.3 * rng.standard_normal(width))
    norm[rng.choice(width, massive, replace=False)] *= 20
    directions = projection(width, 32).numpy().astype(np.float64)
    return (rows @ (directions * norm[:, None])).astype(np.float16)


def test_unit_matching_is_uniform_for_independent_anisotropic_models():
    rng = np.random.default_rng(3)
    p = []
    for _ in range(200):
        a = Fingerprint({}, {"units/0/mlp.up": _anisotropic_signatures(rng)})
        b = Fingerprint({}, {"units/0/mlp.up": _anisotropic_signatures(rng)})
        p.append(10 ** unit_matching(a, b, 0, 0).log10p)
    p = np.asarray(p)
    # Before whitening, about a quarter of such pairs fell below 1e-6.
    assert np.mean(p < 0.01) <= 0.04
    assert np.mean(p < 0.05) <= 0.12
    assert p.min() > 1e-5


def test_unit_matching_still_finds_a_permuted_noisy_copy():
    rng = np.random.default_rng(4)
    signatures = _anisotropic_signatures(rng).astype(np.float64)
    noisy = signatures + 0.05 * signatures.std(axis=0) * rng.standard_normal(signatures.shape)
    permuted = noisy[rng.permutation(len(noisy))]
    match = unit_matching(Fingerprint({}, {"units/0/mlp.up": permuted.astype(np.float16)}),
                          Fingerprint({}, {"units/0/mlp.up": signatures.astype(np.float16)}), 0, 0)
    assert match.log10p < -20


def _gram_fingerprint(grams: dict[str, np.ndarray], layers: int = 1) -> Fingerprint:
    arrays = {}
    for layer in range(layers):
        for role, matrix in grams.items():
            upper = np.triu_indices(matrix.shape[0], k=1)
            arrays[f"gram/{layer}/{role}"] = matrix[upper].astype(np.float32)
    tensors = {"layers.0.mlp.gate.weight": {"shape": [1, 1]}}
    return Fingerprint({"architecture": {"num_layers": layers}, "tensors": tensors}, arrays)


def test_gram_test_is_calibrated_for_independent_structured_units():
    """Units sharing a common direction (a mean row) make the Gram matrices of independent models look alike;
    the sign-flip clusters stay calibrated."""
    rng = np.random.default_rng(5)

    def units(count, width=96):
        mean = rng.standard_normal(width) * 2.0
        basis, _ = np.linalg.qr(rng.standard_normal((width, width)))
        rows = mean + rng.standard_normal((count, width)) * np.arange(1, width + 1) ** -0.7 @ basis.T
        signs = rng.choice([-1.0, 1.0], size=(count, 1))  # any unit's sign is as likely as the other
        rows = rows * signs
        return rows @ rows.T

    p = []
    for _ in range(300):
        a = _gram_fingerprint({"attn.v": units(64), "mlp.up": units(128), "mlp.down": units(128)})
        b = _gram_fingerprint({"attn.v": units(64), "mlp.up": units(128), "mlp.down": units(128)})
        p.append(10 ** gram_layer_tests(a, b).log10p[0, 0])
    p = np.asarray(p)
    assert np.mean(p < 0.05) <= 0.09
    assert np.mean(p < 0.01) <= 0.03


def test_storage_tolerance_is_the_candidates_rounding():
    assert storage_tolerance("F32") < 1e-5 < storage_tolerance("F16") < storage_tolerance("BF16") < 0.004
    assert storage_tolerance("Q8_0") < storage_tolerance("Q4_1")
    assert storage_tolerance("I8") == STORAGE_TOLERANCE["F32"]  # unknown storage excuses nothing


def test_small_float32_change_is_derived_not_identical(base, tmp_path):
    """0.3% relative change, far below the old 0.4% cut, far above float32 rounding."""
    state, config, path = base
    generator = torch.Generator().manual_seed(21)
    changed = {k: v + 0.003 * v.std() * torch.randn(v.shape, generator=generator) if k.startswith("model.layers.") and v.dim() == 2
               else v for k, v in state.items()}
    result = _compare(_save(tmp_path / "dpo", changed, config), path)
    assert result.verdict == "derived", result.summary


def test_qk_vo_updown_rescalings_are_identical(base, tmp_path):
    state, config, path = base
    heads, kv, hidden = CONFIG["num_attention_heads"], CONFIG["num_key_value_heads"], CONFIG["hidden_size"]
    d, group = hidden // heads, heads // kv
    generator = torch.Generator().manual_seed(22)
    rescaled = dict(state)
    for layer in range(CONFIG["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        half = torch.exp(0.5 * torch.randn(kv, d // 2, generator=generator))
        s = torch.cat([half, half], dim=1).reshape(-1)
        rescaled[p + "self_attn.q_proj.weight"] = state[p + "self_attn.q_proj.weight"] * s.reshape(kv, 1, d).expand(kv, group, d).reshape(-1, 1)
        rescaled[p + "self_attn.k_proj.weight"] = state[p + "self_attn.k_proj.weight"] / s[:, None]
        t = torch.exp(0.5 * torch.randn(kv * d, generator=generator))
        rescaled[p + "self_attn.v_proj.weight"] = state[p + "self_attn.v_proj.weight"] * t[:, None]
        rescaled[p + "self_attn.o_proj.weight"] = state[p + "self_attn.o_proj.weight"] / t.reshape(kv, 1, d).expand(kv, group, d).reshape(1, -1)
        u = torch.exp(0.5 * torch.randn(CONFIG["intermediate_size"], generator=generator))
        rescaled[p + "mlp.up_proj.weight"] = state[p + "mlp.up_proj.weight"] * u[:, None]
        rescaled[p + "mlp.down_proj.weight"] = state[p + "mlp.down_proj.weight"] / u[None, :]
    result = _compare(_save(tmp_path / "rescaled", rescaled, config), path)
    assert result.verdict == "identical", (result.summary, [r.rel_errors for r in result.layers])
    assert "rescaling" in result.summary


def test_a_rescaling_that_is_not_function_preserving_is_not_identical(base, tmp_path):
    """q rows rescaled without the inverse on k: the pair's scales do not multiply to one."""
    state, config, path = base
    generator = torch.Generator().manual_seed(23)
    broken = dict(state)
    for layer in range(CONFIG["num_hidden_layers"]):
        p = f"model.layers.{layer}.self_attn.q_proj.weight"
        broken[p] = state[p] * torch.exp(0.5 * torch.randn(state[p].shape[0], 1, generator=generator))
    result = _compare(_save(tmp_path / "broken", broken, config), path)
    assert result.verdict == "derived", result.summary


def _rotated(state, seed):
    h = CONFIG["hidden_size"]
    generator = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(h, h, generator=generator, dtype=torch.float64))
    rotation = rotation.float()
    rotated = {"model.embed_tokens.weight": state["model.embed_tokens.weight"] @ rotation, "model.norm.weight": torch.ones(h),
               "lm_head.weight": (state["lm_head.weight"] * state["model.norm.weight"]) @ rotation}
    for layer in range(CONFIG["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        for norm, readers in (("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                              ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"))):
            rotated[p + norm + ".weight"] = torch.ones(h)
            for reader in readers:
                rotated[p + reader + ".weight"] = (state[p + reader + ".weight"] * state[p + norm + ".weight"]) @ rotation
        for writer in ("self_attn.o_proj", "mlp.down_proj"):
            rotated[p + writer + ".weight"] = rotation.t() @ state[p + writer + ".weight"]
    return rotated


def test_rotated_then_changed_copy_is_derived_with_a_layer_map(base, tmp_path):
    state, config, path = base
    generator = torch.Generator().manual_seed(24)
    rotated = _rotated(state, 25)
    changed = {k: v + 0.1 * v.std() * torch.randn(v.shape, generator=generator) if v.dim() == 2 else v
               for k, v in rotated.items()}
    result = _compare(_save(tmp_path / "rotated-changed", changed, config), path)
    assert result.verdict == "derived", result.summary
    assert [r.reference_layer for r in result.layers] == list(range(CONFIG["num_hidden_layers"]))


def test_independent_model_is_not_accused_through_the_rotation_tests(base, tmp_path):
    _, config, path = base
    other, _ = _llama_state(31)
    result = _compare(_save(tmp_path / "other-rotated", _rotated(other, 26), config), path)
    assert result.verdict not in ACCUSING, result.summary


def test_one_copied_layer_is_not_assembled(base, tmp_path):
    """A single layer taken from the reference, the rest independent: never `assembled` on one layer."""
    state, config, path = base
    other, _ = _llama_state(32)
    mixed = {k: (state[k] if k.startswith("model.layers.1.") else v) for k, v in other.items()}
    result = _compare(_save(tmp_path / "one-layer", mixed, config), path)
    assert result.verdict != "assembled", result.summary


def test_independent_models_of_different_depth_are_not_accused(base, tmp_path):
    _, config, path = base
    deeper, deeper_config = _llama_state(33, layers=7)
    result = _compare(_save(tmp_path / "deeper", deeper, deeper_config), path)
    assert result.verdict not in ACCUSING, result.summary


def test_shared_initialisation_is_named(tmp_path):
    """Two models from one seed and one init code, changed independently: derived, with a note naming a shared
    initialisation as an explanation, since the shared weights look like untrained init."""
    models = []
    for name, seed in (("team-a", 41), ("team-b", 42)):
        model, config = llama_model(7, **CONFIG)  # the same init for both teams
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        generator = torch.Generator().manual_seed(seed)
        state = {k: v + 0.5 * v.std() * torch.randn(v.shape, generator=generator) if v.dim() == 2 else v
                 for k, v in state.items()}
        models.append(_save(tmp_path / name, state, config.to_dict()))
    result = _compare(*models)
    assert result.verdict == "derived", result.summary
    assert any("shared random initialisation" in note for note in result.notes), result.notes


def test_confidence_comes_from_the_evidence(base, tmp_path):
    state, config, path = base
    weak_and_strong = []
    for noise in (0.05, 1.5):
        generator = torch.Generator().manual_seed(27)
        noisy = {k: v + noise * v.std() * torch.randn(v.shape, generator=generator) if v.numel() > 1 else v
                 for k, v in state.items()}
        weak_and_strong.append(_compare(_save(tmp_path / f"noise{noise}", noisy, config), path))
    light, heavy = weak_and_strong
    assert light.verdict == "derived"
    assert 0 < light.confidence <= 1
    if heavy.verdict == "derived":
        assert heavy.confidence <= light.confidence
