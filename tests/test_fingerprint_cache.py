"""The fingerprint cache: a checkpoint whose files have not changed is fingerprinted once."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from provenance import cli
from provenance.fingerprint import cache as cache_module
from provenance.fingerprint import load as load_module
from provenance.fingerprint.cache import FingerprintCache, cache_key, default_directory

HIDDEN, INTER, LAYERS, VOCAB = 64, 96, 2, 128


def _model(path, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    state = {"model.embed_tokens.weight": torch.randn(VOCAB, HIDDEN, generator=g),
             "model.norm.weight": torch.ones(HIDDEN), "lm_head.weight": torch.randn(VOCAB, HIDDEN, generator=g)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for name, shape in (("self_attn.q_proj", (HIDDEN, HIDDEN)), ("self_attn.k_proj", (HIDDEN, HIDDEN)),
                            ("self_attn.v_proj", (HIDDEN, HIDDEN)), ("self_attn.o_proj", (HIDDEN, HIDDEN)),
                            ("mlp.gate_proj", (INTER, HIDDEN)), ("mlp.up_proj", (INTER, HIDDEN)),
                            ("mlp.down_proj", (HIDDEN, INTER))):
            state[p + name + ".weight"] = torch.randn(*shape, generator=g) * 0.02
        state[p + "input_layernorm.weight"] = torch.ones(HIDDEN)
        state[p + "post_attention_layernorm.weight"] = torch.ones(HIDDEN)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, str(path / "model.safetensors"))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
              "intermediate_size": INTER, "num_attention_heads": 4, "num_key_value_heads": 4,
              "num_hidden_layers": LAYERS, "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture()
def builds(monkeypatch, tmp_path):
    """The cache in a fresh folder, and a list that grows by one per fingerprint actually built."""
    monkeypatch.setenv("PROVENANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROVENANCE_NO_CACHE", raising=False)
    built = []
    real = load_module.build_fingerprint

    def counting(checkpoint, **kwargs):
        built.append(str(checkpoint.path))
        return real(checkpoint, **kwargs)

    monkeypatch.setattr(load_module, "build_fingerprint", counting)
    return built


def test_second_fingerprint_of_unchanged_files_comes_from_the_cache(builds, tmp_path):
    model = _model(tmp_path / "m")
    first = load_module.fingerprint_for(model)
    second = load_module.fingerprint_for(model)
    assert len(builds) == 1
    assert set(first.arrays) == set(second.arrays)
    assert all((first.arrays[k] == second.arrays[k]).all() for k in first.arrays)
    assert first.meta["tensors"] == second.meta["tensors"]
    entries = list((tmp_path / "cache").glob("*.fp.safetensors"))
    assert len(entries) == 1


def test_a_changed_builder_never_serves_old_entries(builds, tmp_path, monkeypatch):
    """The key covers the code that computes fingerprints, not only the tool's version number."""
    model = _model(tmp_path / "m")
    load_module.fingerprint_for(model)
    monkeypatch.setattr(cache_module, "builder_digest", lambda: "another builder")
    load_module.fingerprint_for(model)
    assert len(builds) == 2


def test_changed_files_are_fingerprinted_again(builds, tmp_path):
    model = _model(tmp_path / "m")
    load_module.fingerprint_for(model)
    weights = model / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched
    load_module.fingerprint_for(model)
    assert len(builds) == 2
    _model(tmp_path / "m", seed=1)  # rewritten with other values, same size and header
    changed = load_module.fingerprint_for(model)
    assert len(builds) == 3
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-6}))  # a side file counts too
    load_module.fingerprint_for(model)
    assert len(builds) == 4
    load_module.fingerprint_for(model)
    assert len(builds) == 4
    assert changed.meta["tensors"]["embed.weight"]["sha256"] != \
        load_module.fingerprint_for(_model(tmp_path / "other", seed=0)).meta["tensors"]["embed.weight"]["sha256"]


def test_restored_modification_time_still_misses(builds, tmp_path):
    """Replacing the contents and putting the old mtime back changes the change time, so the key."""
    model = _model(tmp_path / "m")
    key = cache_key(model)
    weights = model / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_mtime_ns == stat.st_mtime_ns
    assert cache_key(model) != key


def test_no_cache_flag_and_environment_turn_it_off(builds, tmp_path, monkeypatch):
    model = _model(tmp_path / "m")
    out = tmp_path / "fp.safetensors"
    assert cli.main(["fingerprint", str(model), "-o", str(out), "--no-cache"]) == 0
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
    monkeypatch.setenv("PROVENANCE_NO_CACHE", "1")
    assert cli.main(["fingerprint", str(model), "-o", str(out)]) == 0
    assert len(builds) == 2 and not (tmp_path / "cache").exists()
    monkeypatch.delenv("PROVENANCE_NO_CACHE")
    assert cli.main(["fingerprint", str(model), "-o", str(out)]) == 0
    assert cli.main(["compare", str(model), str(model), "--json", "--no-progress"]) == 0
    assert len(builds) == 3  # compare found both in the cache written by `fingerprint`
    assert cli.main(["compare", str(model), str(out), "--json", "--no-cache"]) == 0
    assert len(builds) == 4


def test_damaged_entry_is_rebuilt_and_replaced(builds, tmp_path):
    model = _model(tmp_path / "m")
    load_module.fingerprint_for(model)
    entry = FingerprintCache().entry(cache_key(model))
    entry.write_bytes(b"not a fingerprint")
    again = load_module.fingerprint_for(model)
    assert len(builds) == 2 and again.tensors
    load_module.fingerprint_for(model)
    assert len(builds) == 2


def test_unwritable_cache_folder_is_not_an_error(builds, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("PROVENANCE_CACHE", str(blocker / "cache"))  # under a regular file: cannot be made
    model = _model(tmp_path / "m")
    assert load_module.fingerprint_for(model).tensors
    assert load_module.fingerprint_for(model).tensors
    assert len(builds) == 2


def test_default_folder_follows_the_platform_convention(monkeypatch, tmp_path):
    monkeypatch.delenv("PROVENANCE_CACHE", raising=False)
    monkeypatch.setattr(cache_module.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_directory() == tmp_path / "xdg" / "provenance" / "fingerprints"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_directory() == cache_module.Path.home() / ".cache" / "provenance" / "fingerprints"
    monkeypatch.setattr(cache_module.sys, "platform", "darwin")
    assert default_directory() == cache_module.Path.home() / "Library" / "Caches" / "provenance" / "fingerprints"
    monkeypatch.setenv("PROVENANCE_CACHE", str(tmp_path / "elsewhere"))
    assert default_directory() == tmp_path / "elsewhere"
