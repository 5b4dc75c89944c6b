"""Compare on a real model: SmolLM2-135M (GGUF from PyPI) against re-layouts and derivatives of itself."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from provenance.compare import compare_fingerprints
from provenance.fingerprint.load import fingerprint_for
from provenance.model import Checkpoint

pytestmark = pytest.mark.real

HF_NAMES = {"embed": "model.embed_tokens", "final_norm": "model.norm", "lm_head": "lm_head",
            "attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm",
            "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj",
            "attn.o": "self_attn.o_proj", "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj",
            "mlp.down": "mlp.down_proj"}


def _smollm2():
    from provenance.errors import UnreadablePathError
    from provenance.real_models import real_model_path

    try:
        return real_model_path("smollm2")
    except UnreadablePathError as exc:
        pytest.skip(str(exc))


def _export(gguf_path, out, transform):
    """Write the GGUF's canonical tensors as a Hugging Face LLaMA checkpoint, transformed."""
    tensors = {}
    with Checkpoint.open(gguf_path) as checkpoint:
        arch = checkpoint.architecture
        for assignment, tensor in checkpoint.iter_canonical():
            key = assignment.key
            name = HF_NAMES[key.role] if key.layer is None else f"model.layers.{key.layer}.{HF_NAMES[key.role]}"
            tensors[f"{name}.{key.param}"] = transform(tensor.float()).contiguous()
    out.mkdir()
    save_file(tensors, str(out / "model.safetensors"))
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": arch.hidden_size,
              "intermediate_size": arch.intermediate_size, "num_hidden_layers": arch.num_layers,
              "num_attention_heads": arch.num_heads, "num_key_value_heads": arch.num_kv_heads,
              "vocab_size": arch.vocab_size, "rms_norm_eps": arch.norm_eps, "rope_theta": arch.rope_theta,
              "tie_word_embeddings": True}
    (out / "config.json").write_text(json.dumps(config))
    return out


def _int8_per_channel(tensor):
    if tensor.dim() < 2:
        return tensor
    scale = tensor.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
    return (tensor / scale).round().clamp(-127, 127) * scale


@pytest.fixture(scope="module")
def gguf_fingerprint():
    path = _smollm2()
    return path, fingerprint_for(path)


def test_gguf_and_its_safetensors_relayout_are_identical(gguf_fingerprint, tmp_path):
    path, reference = gguf_fingerprint
    exported = _export(path, tmp_path / "f32", lambda t: t)
    result = compare_fingerprints(fingerprint_for(exported), reference)
    assert result.verdict == "identical", result.summary


def test_bf16_cast_is_identical(gguf_fingerprint, tmp_path):
    path, reference = gguf_fingerprint
    exported = _export(path, tmp_path / "bf16", lambda t: t.to(torch.bfloat16))
    result = compare_fingerprints(fingerprint_for(exported), reference)
    assert result.verdict == "identical", result.summary


@pytest.mark.slow
def test_int8_quantized_copy_is_derived(gguf_fingerprint, tmp_path):
    path, reference = gguf_fingerprint
    exported = _export(path, tmp_path / "int8", _int8_per_channel)
    result = compare_fingerprints(fingerprint_for(exported), reference)
    assert result.verdict == "derived", result.summary
    assert all(row.reference_layer == row.candidate_layer for row in result.layers)
