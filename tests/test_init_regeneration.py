"""A shared standard initialisation named, not mistaken for copying (`compare/init_regeneration.py`).

Two teams build one LLaMA configuration right after `torch.manual_seed(s)` (the Hugging Face default init) and
then train independently: updates several times the init's norm, each team's own. With s = 42, a seed the tool
regenerates, the relation the sketches find is the init's, and nothing remains beyond it: not accused. A copy of
one team's model with 5% noise still descends from it beyond the init: `derived`. With a seed the tool does not
try, nothing is regenerated that explains it: the earlier behaviour (`derived`, the statistical note).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bench.nulls.models import tokenizer_json
from provenance.api import compare_models
from provenance.compare.init_regeneration import SEEDS
from provenance.fingerprint.initialisation import MAX_PARAMETERS, unavailable_reason
from provenance.verdicts import ACCUSING

CONFIG = {"vocab_size": 1024, "hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 4,
          "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": False}
UPDATE = 3.0  # each team's update, in units of the init's norm (per tensor)


def _init(seed: int, family: str = "Llama", **config) -> dict[str, torch.Tensor]:
    import transformers as T

    torch.manual_seed(seed)
    model = getattr(T, f"{family}ForCausalLM")(getattr(T, f"{family}Config")(**{**CONFIG, **config}))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if config.get("tie_word_embeddings"):
        state.pop("lm_head.weight")
    return state


def _trained(init: dict[str, torch.Tensor], team: int, scale: float = UPDATE) -> dict[str, torch.Tensor]:
    """The init plus a team's own update: a random matrix with uneven column scales, `scale` times the init's
    norm; norms trained to their own values."""
    generator = torch.Generator().manual_seed(1000 + team)
    out = {}
    for name, w0 in init.items():
        if w0.dim() == 1:
            out[name] = 1.0 + 0.1 * torch.randn(w0.shape, generator=generator)
            continue
        update = torch.randn(w0.shape, generator=generator) * torch.rand(w0.shape[1], generator=generator)[None, :]
        out[name] = w0 + update / update.norm() * w0.norm() * scale
    return out


def _save(path: Path, state: dict[str, torch.Tensor], family: str = "Llama", **config) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    (path / "tokenizer.json").write_text(json.dumps(tokenizer_json(CONFIG["vocab_size"], "llama")))  # anchor rows
    (path / "config.json").write_text(json.dumps({"model_type": family.lower(), "architectures": [f"{family}ForCausalLM"],
                                                  "rms_norm_eps": 1e-6, **{**CONFIG, **config}}))
    return path


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return {k: v + 0.05 * v.std() * torch.randn(v.shape, generator=generator) if v.dim() > 1 else v
            for k, v in state.items()}


@pytest.fixture(scope="module")
def seed42(tmp_path_factory):
    """Two teams' models from the seed-42 init, trained far (3x the init's norm) and briefly (0.5x), and a 5% copy
    of each kind: {(scale, name): path}."""
    root = tmp_path_factory.mktemp("init42")
    init = _init(42)
    paths = {}
    for scale in (UPDATE, 0.5):
        a, b = _trained(init, 1, scale), _trained(init, 2, scale)
        paths[scale, "a"], paths[scale, "b"] = _save(root / f"a{scale}", a), _save(root / f"b{scale}", b)
        paths[scale, "copy"] = _save(root / f"copy{scale}", _copy(a))
    return paths


@pytest.mark.parametrize("scale", [UPDATE, 0.5])
def test_two_trainings_from_seed_42_are_not_accused_and_the_seed_is_named(seed42, scale):
    result = compare_models(seed42[scale, "a"], seed42[scale, "b"])
    assert result.verdict not in ACCUSING, result.summary
    notes = " ".join(result.notes)
    assert "seed 42" in notes and "independent trainings from a shared seed, not a copy" in notes
    assert "standard initialisation" in result.summary


def test_a_copy_of_a_briefly_trained_one_is_still_derived_beyond_the_init(seed42):
    result = compare_models(seed42[0.5, "copy"], seed42[0.5, "a"])
    assert result.verdict == "derived"
    notes = " ".join(result.notes)
    assert "seed 42" in notes and "a relation remains beyond it" in notes


def test_a_copy_of_a_far_trained_one_shares_more_than_an_init_and_nothing_is_rebuilt(seed42):
    """The shared part (the whole model, standard deviation about 0.06) is larger than the 0.02 init could be."""
    result = compare_models(seed42[UPDATE, "copy"], seed42[UPDATE, "a"])
    assert result.verdict == "derived"
    assert not any("initialisation" in note for note in result.notes)


@pytest.mark.parametrize("family, config", [("Qwen2", {}), ("Mistral", {}), ("Llama", {"tie_word_embeddings": True})])
def test_every_family_regenerated_is_read_back_in_the_fingerprints_layout(tmp_path, family, config):
    init = _init(42, family, **config)
    a = _save(tmp_path / "a", _trained(init, 1), family, **config)
    b = _save(tmp_path / "b", _trained(init, 2), family, **config)
    result = compare_models(a, b)
    assert result.verdict not in ACCUSING, result.summary
    assert any("under seed 42 (transformers" in note and f"{family}ForCausalLM" in note for note in result.notes)


def test_a_seed_not_tried_keeps_the_statistical_note(tmp_path):
    assert 7 not in SEEDS
    init = _init(7)
    a, b = _save(tmp_path / "a", _trained(init, 1)), _save(tmp_path / "b", _trained(init, 2))
    result = compare_models(a, b)
    assert result.verdict == "derived"
    notes = " ".join(result.notes)
    assert "cannot be told from a shared trained ancestor" in notes
    assert "none reproduces the shared part" in notes


def test_models_over_the_cap_or_of_other_families_are_not_rebuilt():
    big = {"hidden_size": 4096, "intermediate_size": 11008, "num_layers": 32, "num_heads": 32, "num_kv_heads": 32,
           "vocab_size": 32000, "gated_mlp": True}
    assert f"{MAX_PARAMETERS:.2g}" in unavailable_reason(big, "llama")
    assert "not regenerated" in unavailable_reason(dict(big, num_layers=1), "gpt2")
    small = dict(big, hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=4, vocab_size=512)
    assert unavailable_reason(small, "llama") is None
    for hostile in ({"num_heads": 0}, {"num_kv_heads": 3}, {"vocab_size": -5}, {"hidden_size": "x"}, {"num_layers": None}):
        assert unavailable_reason(dict(small, **hostile), "llama") is not None, hostile


def test_rebuilding_an_init_leaves_the_global_generator_alone():
    from provenance.fingerprint.initialisation import regenerate

    arch = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2,
            "vocab_size": 64, "gated_mlp": True, "family": "llama"}
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert regenerate(arch, "llama", 42) is not None
    assert torch.equal(torch.rand(3), expected)


def test_an_older_fingerprint_without_anchor_ids_keeps_the_verdict_and_says_why(seed42):
    """The anchor rows' test reached the bar; without their token ids it cannot be re-run beyond the init."""
    from provenance.fingerprint import Fingerprint
    from provenance.fingerprint.load import fingerprint_for

    a, b = (fingerprint_for(seed42[UPDATE, side]) for side in ("a", "b"))
    vocabulary = {k: v for k, v in b.meta["vocabulary"].items() if k != "anchor_ids"}
    older = Fingerprint(meta={**b.meta, "vocabulary": vocabulary}, arrays=b.arrays)
    result = compare_models(a, older)
    notes = " ".join(result.notes)
    assert result.verdict == "derived", result.summary  # the anchor rows (1e-18) accuse on their own
    assert "seed 42" in notes and "embedding by token string reached the bar and cannot be checked" in notes
    assert "provenance fingerprint" in notes
