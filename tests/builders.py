"""Tiny, seeded checkpoints of every family the tables know, written into a test directory.

Each builder takes a directory, writes a Hugging Face style checkpoint there
(`config.json` plus `model.safetensors`) and returns a `Built` describing what
it wrote: the stored tensors, the architecture the test should find, and for
the layouts built here by hand (Yi, Baichuan, ChatGLM, Qwen v1) the separate
tensors that were fused into each stored one.

Models that transformers implements are generated with `from_config` and
saved with `save_pretrained`. The others are made from a generated LLaMA by
renaming and fusing its tensors exactly as those models' own code lays them
out, with a hand-written config.json in their own spelling.

Some builders rewrite a transformers checkpoint into an older published
form: bare GPT2Model names with causal-mask buffers (openai-community/gpt2),
Pythia's attention/rotary buffers, and Falcon's first RefinedWeb configs.

Every model is tiny (hidden 32, 2 layers, vocabulary 64), seeded, and has
every parameter filled with distinct random values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

VOCAB, HIDDEN, LAYERS, HEADS, KV, INTER = 64, 32, 2, 4, 2, 48
HEAD_DIM = HIDDEN // HEADS
SEED = 1234


@dataclass
class Built:
    name: str  # builder name (one per test case)
    path: Path
    family: str  # the family `Checkpoint.open` should choose
    config: dict  # config.json as written
    state: dict[str, torch.Tensor]  # every stored tensor, as stored
    arch: dict[str, int | None]  # architecture fields the descriptor must report
    # Self-built layouts: stored fused tensor name -> the separate tensors fused into it, in order.
    fused: dict[str, tuple[torch.Tensor, ...]] = field(default_factory=dict)
    buffers: set[str] = field(default_factory=set)  # stored names that are buffers, not weights
    renamed: dict[str, str] = field(default_factory=dict)  # stored name -> the standard spelling's name


def _arch(layers=LAYERS, hidden=HIDDEN, heads=HEADS, kv=KV, head_dim=HEAD_DIM, inter=INTER, vocab=VOCAB,
          experts=None) -> dict[str, int | None]:
    return {"num_layers": layers, "hidden_size": hidden, "num_heads": heads, "num_kv_heads": kv,
            "head_dim": head_dim, "intermediate_size": inter, "vocab_size": vocab, "num_experts": experts}


def _randomize(model) -> None:
    """Give every parameter distinct seeded values (initialisers leave norms at 1 and biases at 0,
    which would hide a norm or bias read from the wrong tensor)."""
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
            parameter.copy_(torch.randn(parameter.shape, generator=generator))


def _save_transformers(path: Path, model) -> tuple[dict, dict[str, torch.Tensor]]:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    config = json.loads((path / "config.json").read_text())
    state = load_file(str(path / "model.safetensors"))
    return config, state


def _add_buffers(built: "Built", buffers: dict[str, torch.Tensor]) -> "Built":
    """Re-save a checkpoint with the buffers older exports carried (causal masks, rotary tables)."""
    built.state.update(buffers)
    built.buffers |= set(buffers)
    save_file(built.state, str(built.path / "model.safetensors"), metadata={"format": "pt"})
    return built


def _hf(name: str, family: str, make_config: Callable[[], object], arch: dict, model_class: str | None = None):
    """A builder for a model transformers implements."""

    def build(path: Path) -> Built:
        import transformers as T

        torch.manual_seed(SEED)
        config = make_config()
        if model_class:
            model = getattr(T, model_class)(config)
        else:
            model = T.AutoModelForCausalLM.from_config(config)
        _randomize(model)
        written, state = _save_transformers(path, model)
        return Built(name, path, family, written, state, arch)

    build.__name__ = f"build_{name}"
    return build


def _T():
    import transformers as T

    return T


# --- families transformers implements -------------------------------------------------------------

build_llama = _hf("llama", "llama", lambda: _T().LlamaConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, tie_word_embeddings=False), _arch())

build_mistral = _hf("mistral", "mistral", lambda: _T().MistralConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, sliding_window=16), _arch())

build_mixtral = _hf("mixtral", "mixtral", lambda: _T().MixtralConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, num_local_experts=3, num_experts_per_tok=2),
    {**_arch(experts=3), "expert_intermediate_size": INTER})

build_qwen2 = _hf("qwen2", "qwen2", lambda: _T().Qwen2Config(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, tie_word_embeddings=False), _arch())

# Qwen3: head_dim set apart from hidden / heads, as in the released models.
build_qwen3 = _hf("qwen3", "qwen2", lambda: _T().Qwen3Config(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=16, tie_word_embeddings=False),
    _arch(head_dim=16))

# Qwen2-MoE: the dense intermediate_size (unused when every layer is sparse) differs from the experts'.
build_qwen2_moe = _hf("qwen2_moe", "qwen2_moe", lambda: _T().Qwen2MoeConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, moe_intermediate_size=24,
    shared_expert_intermediate_size=40, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
    num_key_value_heads=KV, num_experts=3, num_experts_per_tok=2, tie_word_embeddings=False),
    {**_arch(experts=3), "expert_intermediate_size": 24})

# Qwen2-MoE with a dense layer (mlp_only_layers): intermediate_size is that layer's width.
build_qwen2_moe_mixed = _hf("qwen2_moe_mixed", "qwen2_moe", lambda: _T().Qwen2MoeConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, moe_intermediate_size=24,
    shared_expert_intermediate_size=40, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
    num_key_value_heads=KV, num_experts=3, num_experts_per_tok=2, mlp_only_layers=[0], tie_word_embeddings=False),
    {**_arch(experts=3), "expert_intermediate_size": 24})

# Qwen3-MoE: no shared expert, per-head q/k norms.
build_qwen3_moe = _hf("qwen3_moe", "qwen2_moe", lambda: _T().Qwen3MoeConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, moe_intermediate_size=24,
    num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=HEAD_DIM,
    num_experts=3, num_experts_per_tok=2, tie_word_embeddings=False),
    {**_arch(experts=3), "expert_intermediate_size": 24})

build_gpt2 = _hf("gpt2", "gpt2", lambda: _T().GPT2Config(
    vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=64, bos_token_id=0, eos_token_id=0),
    _arch(kv=HEADS, inter=4 * HIDDEN))

def build_gpt2_base(path: Path) -> Built:
    """openai-community/gpt2 as published: bare GPT2Model names (`wte`, `h.0.attn.c_attn`, no
    `transformer.` prefix) with the causal-mask buffers `h.N.attn.bias` and `h.N.attn.masked_bias`."""
    base = _hf("gpt2_base", "gpt2", lambda: _T().GPT2Config(
        vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=16, bos_token_id=0,
        eos_token_id=0), _arch(kv=HEADS, inter=4 * HIDDEN), model_class="GPT2Model")
    built = base(path)
    assert not any(name.startswith("transformer.") for name in built.state)
    mask = torch.tril(torch.ones(16, 16, dtype=torch.uint8)).view(1, 1, 16, 16)
    buffers = {}
    for layer in range(LAYERS):
        buffers[f"h.{layer}.attn.bias"] = mask.clone()
        buffers[f"h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    return _add_buffers(built, buffers)


# Cerebras-GPT: GPT-2 layout with n_inner spelled out and an untied output head.
build_cerebras_gpt = _hf("cerebras_gpt", "gpt2", lambda: _T().GPT2Config(
    vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=64, n_inner=INTER,
    tie_word_embeddings=False, bos_token_id=0, eos_token_id=0), _arch(kv=HEADS))

_build_gpt_neox = _hf("gpt_neox", "gpt_neox", lambda: _T().GPTNeoXConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, max_position_embeddings=16), _arch(kv=HEADS))


def build_gpt_neox(path: Path) -> Built:
    """Pythia as published: with the attention-mask and rotary buffers of older exports."""
    built = _build_gpt_neox(path)
    buffers = {}
    for layer in range(LAYERS):
        buffers[f"gpt_neox.layers.{layer}.attention.bias"] = torch.tril(torch.ones(16, 16, dtype=torch.bool)).view(1, 1, 16, 16)
        buffers[f"gpt_neox.layers.{layer}.attention.masked_bias"] = torch.tensor(-1e9)
        buffers[f"gpt_neox.layers.{layer}.attention.rotary_emb.inv_freq"] = _inv_freq()
    return _add_buffers(built, buffers)

# Falcon: per-head [q, k, v] (multi_query=False), 7B-style multi-query, and the new decoder architecture.
build_falcon = _hf("falcon", "falcon", lambda: _T().FalconConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
    multi_query=False, new_decoder_architecture=False), _arch(kv=HEADS, inter=4 * HIDDEN))

# Falcon-RW style: per head, sequential (post_attention_layernorm), biases everywhere, ALiBi.
build_falcon_rw = _hf("falcon_rw", "falcon", lambda: _T().FalconConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
    multi_query=False, new_decoder_architecture=False, parallel_attn=False, bias=True, alibi=True),
    _arch(kv=HEADS, inter=4 * HIDDEN))

build_falcon_mq = _hf("falcon_mq", "falcon", lambda: _T().FalconConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
    multi_query=True, new_decoder_architecture=False), _arch(kv=1, inter=4 * HIDDEN))

build_falcon_new = _hf("falcon_new", "falcon", lambda: _T().FalconConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
    new_decoder_architecture=True, num_kv_heads=2), _arch(kv=2, inter=4 * HIDDEN))


def build_falcon_rw7b(path: Path) -> Built:
    """Falcon-7B as first released (model_type "RefinedWebModel", n_head / n_layer, multi_query)."""
    built = build_falcon_mq(path)
    config = {"architectures": ["RWForCausalLM"], "model_type": "RefinedWebModel", "alibi": False,
              "apply_residual_connection_post_layernorm": False, "bias": False, "bos_token_id": 11,
              "eos_token_id": 11, "hidden_size": HIDDEN, "layer_norm_epsilon": 1e-5, "multi_query": True,
              "n_head": HEADS, "n_layer": LAYERS, "parallel_attn": True, "use_cache": True, "vocab_size": VOCAB}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return Built("falcon_rw7b", path, "falcon", config, built.state, built.arch)


def build_falcon_rw40b(path: Path) -> Built:
    """Falcon-40B as first released (remote code, model_type "RefinedWeb"): the grouped layout of
    the new decoder architecture, declared only by `n_head_kv` in its config."""
    built = build_falcon_new(path)
    config = {"architectures": ["RWForCausalLM"], "model_type": "RefinedWeb", "alibi": False,
              "apply_residual_connection_post_layernorm": False, "bias": False, "bos_token_id": 11,
              "eos_token_id": 11, "hidden_size": HIDDEN, "layer_norm_epsilon": 1e-5, "n_head": HEADS,
              "n_head_kv": 2, "n_layer": LAYERS, "parallel_attn": True, "use_cache": True, "vocab_size": VOCAB}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return Built("falcon_rw40b", path, "falcon", config, built.state, built.arch)

# Gemma: multi-query, head_dim apart from hidden / heads (as Gemma-7B's 256 vs 3072 / 16).
build_gemma = _hf("gemma", "gemma", lambda: _T().GemmaConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=1, head_dim=16), _arch(kv=1, head_dim=16))

build_gemma2 = _hf("gemma2", "gemma2", lambda: _T().Gemma2Config(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=HEAD_DIM), _arch())

# Gemma 3 text (model_type "gemma3_text"): Gemma 2 norms plus per-head q/k norms.
build_gemma3 = _hf("gemma3", "gemma3", lambda: _T().Gemma3TextConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=16), _arch(head_dim=16), model_class="Gemma3ForCausalLM")

# --- families of 2025 ---------------------------------------------------------------------------------

# OLMo 2: no norm before attention or MLP, norms after each; q/k norms over all heads.
build_olmo2 = _hf("olmo2", "olmo2", lambda: _T().Olmo2Config(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, pad_token_id=0, bos_token_id=0, eos_token_id=0), _arch())

# OLMo (first generation, -hf): LayerNorms without parameters, so no norm tensor at all.
build_olmo = _hf("olmo", "olmo", lambda: _T().OlmoConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, pad_token_id=0, bos_token_id=0, eos_token_id=0), _arch())

build_smollm3 = _hf("smollm3", "smollm3", lambda: _T().SmolLM3Config(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, pad_token_id=0, bos_token_id=0, eos_token_id=0,
    tie_word_embeddings=False), _arch())

build_internlm3 = _hf("internlm3", "internlm3", lambda: _T().InternLM3Config(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=HEAD_DIM, tie_word_embeddings=False), _arch())

# Multi-head latent attention: no q/k/v projection of the residual stream, so no head split to observe.
MLA = dict(q_lora_rank=24, kv_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=8, v_head_dim=8)
MLA_ARCH = {"num_layers": LAYERS, "hidden_size": HIDDEN, "num_heads": HEADS, "intermediate_size": INTER,
            "vocab_size": VOCAB}

# DeepSeek-V3: layer 0 dense (first_k_dense_replace), layer 1 routed experts plus a shared expert.
build_deepseek_v3 = _hf("deepseek_v3", "deepseek_v3", lambda: _T().DeepseekV3Config(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, moe_intermediate_size=16,
    num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS, n_routed_experts=3,
    n_shared_experts=1, num_experts_per_tok=2, first_k_dense_replace=1, n_group=1, topk_group=1,
    tie_word_embeddings=False, **MLA), {**MLA_ARCH, "num_experts": 3, "expert_intermediate_size": 16})

build_minicpm3 = _hf("minicpm3", "minicpm3", lambda: _T().MiniCPM3Config(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=HEADS, **MLA), MLA_ARCH)

# GLM-4.5: QKV biases, q/k norms (use_qk_norm), layer 0 dense, layer 1 routed plus shared experts.
build_glm4_moe = _hf("glm4_moe", "glm4_moe", lambda: _T().Glm4MoeConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, moe_intermediate_size=16,
    num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV, n_routed_experts=3,
    n_shared_experts=1, num_experts_per_tok=2, first_k_dense_replace=1, n_group=1, topk_group=1,
    use_qk_norm=True, attention_bias=True, tie_word_embeddings=False),
    {**_arch(experts=3), "expert_intermediate_size": 16})

# gpt-oss: every layer MoE, experts stacked, attention sinks, biases everywhere but the norms.
build_gpt_oss = _hf("gpt_oss", "gpt_oss", lambda: _T().GptOssConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=16, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=HEAD_DIM, num_local_experts=3,
    num_experts_per_tok=2, layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=False),
    {**_arch(experts=3, inter=16), "expert_intermediate_size": 16})

# Llama 4 text: layer 0 dense (intermediate_size_mlp), layer 1 MoE (interleave_moe_layer_step 2).
build_llama4 = _hf("llama4", "llama4", lambda: _T().Llama4TextConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=16, intermediate_size_mlp=INTER,
    num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=HEAD_DIM,
    num_local_experts=3, num_experts_per_tok=1, interleave_moe_layer_step=2, pad_token_id=0, bos_token_id=0,
    eos_token_id=0, tie_word_embeddings=False),
    {**_arch(experts=3), "expert_intermediate_size": 16})

build_phi = _hf("phi", "phi", lambda: _T().PhiConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, bos_token_id=0, eos_token_id=0), _arch(kv=HEADS))

build_phi3 = _hf("phi3", "phi3", lambda: _T().Phi3Config(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, pad_token_id=0, bos_token_id=0, eos_token_id=0), _arch())

build_bert = _hf("bert", "bert", lambda: _T().BertConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, max_position_embeddings=64), _arch(kv=HEADS), model_class="BertModel")

build_xlm_roberta = _hf("xlm_roberta", "bert", lambda: _T().XLMRobertaConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, max_position_embeddings=64), _arch(kv=HEADS), model_class="XLMRobertaModel")

# GLM-4 in transformers (model_type "glm", THUDM/glm-4-9b-hf): LLaMA names, q/k/v biases, fused gate_up_proj.
build_glm = _hf("glm", "glm", lambda: _T().GlmConfig(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=HEAD_DIM, pad_token_id=0,
    eos_token_id=0, bos_token_id=0, tie_word_embeddings=False), _arch())

# GLM-4-0414 (model_type "glm4"): GLM plus norms after attention and after the MLP.
build_glm4 = _hf("glm4", "glm4", lambda: _T().Glm4Config(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=HEAD_DIM, pad_token_id=0,
    eos_token_id=0, bos_token_id=0, tie_word_embeddings=False), _arch())


# --- the tiny LLaMA every test builds on ---------------------------------------------------------------

def llama_model(seed: int = 0, **config):
    """A seeded transformers LlamaForCausalLM of this module's shapes (untied head) unless `config` overrides
    them: (model, its LlamaConfig). The seed is set just before the model is made, so equal arguments give
    equal weights, and the global generator then stands where a test that made the model itself left it."""
    T = _T()
    settings = {"vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
                "num_attention_heads": HEADS, "num_key_value_heads": KV, "tie_word_embeddings": False, **config}
    torch.manual_seed(seed)
    llama_config = T.LlamaConfig(**settings)
    return T.LlamaForCausalLM(llama_config), llama_config


def distinct_norms(model, spread: float = 0.1) -> None:
    """Norm weights 1 + spread * N(0, 1) (from the global generator) instead of the initial ones."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + spread * torch.randn_like(param))


def tiny_llama_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded tiny LLaMA state dict (Hugging Face names, this module's shapes) made by hand, without
    transformers: the attack corpus's base model, quick to make."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    state = {"model.embed_tokens.weight": randn(VOCAB, HIDDEN), "model.norm.weight": 1 + 0.1 * randn(HIDDEN),
             "lm_head.weight": randn(VOCAB, HIDDEN)}
    for layer in range(LAYERS):
        p = f"model.layers.{layer}."
        state.update({
            p + "input_layernorm.weight": 1 + 0.1 * randn(HIDDEN),
            p + "post_attention_layernorm.weight": 1 + 0.1 * randn(HIDDEN),
            p + "self_attn.q_proj.weight": randn(HIDDEN, HIDDEN),
            p + "self_attn.k_proj.weight": randn(KV * HEAD_DIM, HIDDEN),
            p + "self_attn.v_proj.weight": randn(KV * HEAD_DIM, HIDDEN),
            p + "self_attn.o_proj.weight": randn(HIDDEN, HIDDEN),
            p + "mlp.gate_proj.weight": randn(INTER, HIDDEN),
            p + "mlp.up_proj.weight": randn(INTER, HIDDEN),
            p + "mlp.down_proj.weight": randn(HIDDEN, INTER),
        })
    return state


def tiny_llama_config() -> dict:
    """config.json of `tiny_llama_state`."""
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": VOCAB, "hidden_size": HIDDEN,
            "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "num_key_value_heads": KV, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}


# --- layouts transformers does not have: renamed and fused from a generated LLaMA -------------------

def _llama_state(kv: int, attention_bias: bool = False, mlp_bias: bool = False) -> dict[str, torch.Tensor]:
    model, _ = llama_model(SEED, num_key_value_heads=kv, attention_bias=attention_bias, mlp_bias=mlp_bias)
    _randomize(model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _inv_freq() -> torch.Tensor:
    return 1.0 / (10000 ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM))


def _write(path: Path, state: dict[str, torch.Tensor], config: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config, indent=2))


def write_tiny_llama(path: Path, state: dict[str, torch.Tensor], quantization_config: dict | None = None) -> Path:
    """`state` saved as a `tiny_llama_config` checkpoint in `path`, with config.json's quantization_config if given."""
    config = dict(tiny_llama_config(), **({"quantization_config": quantization_config} if quantization_config else {}))
    _write(path, state, config)
    return path


def build_yi(path: Path) -> Built:
    """Yi-6B/34B first release: LLaMA with the two norms spelled `ln1` and `ln2`."""
    llama = _llama_state(KV)
    state, renamed = {}, {}
    for name, tensor in llama.items():
        new = name.replace(".input_layernorm.", ".ln1.").replace(".post_attention_layernorm.", ".ln2.")
        state[new] = tensor
        if new != name:
            renamed[new] = name
    config = {"architectures": ["YiForCausalLM"], "model_type": "Yi", "hidden_act": "silu", "hidden_size": HIDDEN,
              "intermediate_size": INTER, "max_position_embeddings": 4096, "num_attention_heads": HEADS,
              "num_hidden_layers": LAYERS, "num_key_value_heads": KV, "pad_token_id": 0, "rms_norm_eps": 1e-5,
              "rope_theta": 5000000.0, "tie_word_embeddings": False, "vocab_size": VOCAB}
    buffers = {f"model.layers.{layer}.self_attn.rotary_emb.inv_freq" for layer in range(LAYERS)}
    state.update({name: _inv_freq() for name in buffers})
    _write(path, state, config)
    return Built("yi", path, "yi", config, state, _arch(), renamed=renamed, buffers=buffers)


INTERNLM2_NAMES = {"model.embed_tokens.": "model.tok_embeddings.", ".input_layernorm.": ".attention_norm.",
                   ".self_attn.o_proj.": ".attention.wo.", ".post_attention_layernorm.": ".ffn_norm.",
                   ".mlp.gate_proj.": ".feed_forward.w1.", ".mlp.up_proj.": ".feed_forward.w3.",
                   ".mlp.down_proj.": ".feed_forward.w2.", "lm_head.": "output."}


def build_internlm2(path: Path) -> Built:
    """InternLM2/2.5 (remote code): q, k, v fused in `attention.wqkv`, rows grouped per key/value head as
    (kv_heads, heads / kv_heads + 2, head_dim): the group's query heads, its key head, its value head."""
    llama = _llama_state(KV)
    state, fused = {}, {}
    for name, tensor in llama.items():
        if ".self_attn.q_proj." in name:
            q, k, v = tensor, llama[name.replace("q_proj", "k_proj")], llama[name.replace("q_proj", "v_proj")]
            groups = [torch.cat([q.reshape(KV, HEADS // KV, HEAD_DIM, HIDDEN)[g].reshape(-1, HIDDEN),
                                 k.reshape(KV, HEAD_DIM, HIDDEN)[g], v.reshape(KV, HEAD_DIM, HIDDEN)[g]])
                      for g in range(KV)]
            packed = name.replace("self_attn.q_proj", "attention.wqkv")
            state[packed] = torch.cat(groups)
            fused[packed] = (q, k, v)
        elif ".self_attn.k_proj." in name or ".self_attn.v_proj." in name:
            continue
        else:
            for old, new in INTERNLM2_NAMES.items():
                name = name.replace(old, new)
            state[name] = tensor
    config = {"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2", "hidden_act": "silu",
              "hidden_size": HIDDEN, "intermediate_size": INTER, "num_attention_heads": HEADS,
              "num_key_value_heads": KV, "num_hidden_layers": LAYERS, "vocab_size": VOCAB, "rms_norm_eps": 1e-5,
              "rope_theta": 1000000, "tie_word_embeddings": False, "bias": False}
    _write(path, state, config)
    return Built("internlm2", path, "internlm2", config, state, _arch(), fused=fused)


def build_baichuan(path: Path) -> Built:
    """Baichuan/Baichuan2-7B: LLaMA with q, k, v packed as rows of `self_attn.W_pack`."""
    llama = _llama_state(HEADS)
    state, fused, buffers = {}, {}, set()
    for name, tensor in llama.items():
        if ".self_attn.q_proj." in name:
            q, k, v = tensor, llama[name.replace("q_proj", "k_proj")], llama[name.replace("q_proj", "v_proj")]
            packed = name.replace("q_proj", "W_pack")
            state[packed] = torch.cat([q, k, v], dim=0)
            fused[packed] = (q, k, v)
        elif ".self_attn.k_proj." in name or ".self_attn.v_proj." in name:
            continue
        else:
            state[name] = tensor
    for layer in range(LAYERS):
        buffer = f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"
        state[buffer] = _inv_freq()
        buffers.add(buffer)
    config = {"architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", "hidden_act": "silu",
              "hidden_size": HIDDEN, "intermediate_size": INTER, "num_attention_heads": HEADS,
              "num_hidden_layers": LAYERS, "vocab_size": VOCAB, "rms_norm_eps": 1e-6, "model_max_length": 4096,
              "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    _write(path, state, config)
    return Built("baichuan", path, "baichuan", config, state, _arch(kv=HEADS), fused=fused, buffers=buffers)


def build_chatglm2(path: Path) -> Built:
    """ChatGLM2/3-6B: fused query_key_value = [q (heads*hd); k (groups*hd); v] with biases, gate/up halves."""
    llama = _llama_state(KV, attention_bias=True)
    state, fused = {}, {}
    for name, tensor in llama.items():
        if name.endswith("self_attn.o_proj.bias"):
            continue  # add_bias_linear = false: only q, k, v have biases
        if name == "model.embed_tokens.weight":
            state["transformer.embedding.word_embeddings.weight"] = tensor
        elif name == "model.norm.weight":
            state["transformer.encoder.final_layernorm.weight"] = tensor
        elif name == "lm_head.weight":
            state["transformer.output_layer.weight"] = tensor
        else:
            layer = name.split(".")[2]
            prefix = f"transformer.encoder.layers.{layer}."
            param = name.rsplit(".", 1)[1]
            if ".self_attn.q_proj." in name:
                parts = (tensor, llama[name.replace("q_proj", "k_proj")], llama[name.replace("q_proj", "v_proj")])
                stored = prefix + f"self_attention.query_key_value.{param}"
                state[stored] = torch.cat(parts, dim=0)
                fused[stored] = parts
            elif ".self_attn.k_proj." in name or ".self_attn.v_proj." in name:
                continue
            elif ".mlp.gate_proj." in name:
                parts = (tensor, llama[name.replace("gate_proj", "up_proj")])
                stored = prefix + f"mlp.dense_h_to_4h.{param}"
                state[stored] = torch.cat(parts, dim=0)
                fused[stored] = parts
            elif ".mlp.up_proj." in name:
                continue
            else:
                renames = {"input_layernorm": "input_layernorm", "post_attention_layernorm": "post_attention_layernorm",
                           "self_attn.o_proj": "self_attention.dense", "mlp.down_proj": "mlp.dense_4h_to_h"}
                module = name[len(f"model.layers.{layer}."):-len(param) - 1]
                state[prefix + renames[module] + "." + param] = tensor
    state["transformer.rotary_pos_emb.inv_freq"] = _inv_freq()
    config = {"architectures": ["ChatGLMModel"], "model_type": "chatglm", "add_bias_linear": False,
              "add_qkv_bias": True, "num_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": HEADS,
              "multi_query_attention": True, "multi_query_group_num": KV, "kv_channels": HEAD_DIM,
              "ffn_hidden_size": INTER, "padded_vocab_size": VOCAB, "layernorm_epsilon": 1e-5, "rmsnorm": True,
              "seq_length": 8192, "tie_word_embeddings": False}
    _write(path, state, config)
    return Built("chatglm2", path, "chatglm", config, state, _arch(), fused=fused,
                 buffers={"transformer.rotary_pos_emb.inv_freq"})


def build_chatglm_6b(path: Path) -> Built:
    """ChatGLM-6B (first generation): query_key_value interleaved per head [q_h; k_h; v_h], LayerNorm, GELU MLP."""
    llama = _llama_state(HEADS, attention_bias=True, mlp_bias=True)
    generator = torch.Generator().manual_seed(SEED + 1)
    state, fused, buffers = {}, {}, set()

    def interleave(q, k, v):
        rest = tuple(q.shape[1:])
        per_head = [t.reshape(HEADS, HEAD_DIM, *rest) for t in (q, k, v)]
        return torch.stack(per_head, dim=1).reshape(3 * HEADS * HEAD_DIM, *rest)

    def norm(stored: str, weight: torch.Tensor) -> None:
        state[stored + ".weight"] = weight
        state[stored + ".bias"] = torch.randn(weight.shape, generator=generator)

    state["transformer.word_embeddings.weight"] = llama["model.embed_tokens.weight"]
    for layer in range(LAYERS):
        src, dst = f"model.layers.{layer}.", f"transformer.layers.{layer}."
        norm(dst + "input_layernorm", llama[src + "input_layernorm.weight"])
        norm(dst + "post_attention_layernorm", llama[src + "post_attention_layernorm.weight"])
        for param in ("weight", "bias"):
            parts = tuple(llama[f"{src}self_attn.{p}_proj.{param}"] for p in "qkv")
            stored = f"{dst}attention.query_key_value.{param}"
            state[stored] = interleave(*parts)
            fused[stored] = parts
            state[f"{dst}attention.dense.{param}"] = llama[f"{src}self_attn.o_proj.{param}"]
            state[f"{dst}mlp.dense_h_to_4h.{param}"] = llama[f"{src}mlp.up_proj.{param}"]
            state[f"{dst}mlp.dense_4h_to_h.{param}"] = llama[f"{src}mlp.down_proj.{param}"]
        buffer = f"{dst}attention.rotary_emb.inv_freq"
        state[buffer] = _inv_freq()
        buffers.add(buffer)
    norm("transformer.final_layernorm", llama["model.norm.weight"])
    state["lm_head.weight"] = llama["lm_head.weight"]
    config = {"architectures": ["ChatGLMModel"], "model_type": "chatglm", "hidden_size": HIDDEN,
              "inner_hidden_size": INTER, "num_attention_heads": HEADS, "num_layers": LAYERS, "vocab_size": VOCAB,
              "layernorm_epsilon": 1e-5, "max_sequence_length": 2048, "position_encoding_2d": True,
              "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}
    _write(path, state, config)
    return Built("chatglm_6b", path, "chatglm_6b", config, state, _arch(kv=HEADS), fused=fused, buffers=buffers)


def build_qwen(path: Path) -> Built:
    """Qwen (first generation): c_attn = [q; k; v] rows with bias; w2 is the gate, w1 the up projection.

    Its config.json counts `intermediate_size` as twice the width of w1 and w2
    (the modeling code uses `intermediate_size // 2`).
    """
    llama = _llama_state(HEADS, attention_bias=True)
    state, fused = {}, {}
    state["transformer.wte.weight"] = llama["model.embed_tokens.weight"]
    for layer in range(LAYERS):
        src, dst = f"model.layers.{layer}.", f"transformer.h.{layer}."
        state[dst + "ln_1.weight"] = llama[src + "input_layernorm.weight"]
        for param in ("weight", "bias"):
            parts = tuple(llama[f"{src}self_attn.{p}_proj.{param}"] for p in "qkv")
            stored = f"{dst}attn.c_attn.{param}"
            state[stored] = torch.cat(parts, dim=0)
            fused[stored] = parts
        state[dst + "attn.c_proj.weight"] = llama[src + "self_attn.o_proj.weight"]
        state[dst + "ln_2.weight"] = llama[src + "post_attention_layernorm.weight"]
        state[dst + "mlp.w1.weight"] = llama[src + "mlp.up_proj.weight"]
        state[dst + "mlp.w2.weight"] = llama[src + "mlp.gate_proj.weight"]
        state[dst + "mlp.c_proj.weight"] = llama[src + "mlp.down_proj.weight"]
    state["transformer.ln_f.weight"] = llama["model.norm.weight"]
    state["lm_head.weight"] = llama["lm_head.weight"]
    config = {"architectures": ["QWenLMHeadModel"], "model_type": "qwen", "hidden_size": HIDDEN,
              "intermediate_size": 2 * INTER, "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
              "kv_channels": HEAD_DIM, "vocab_size": VOCAB, "layer_norm_epsilon": 1e-6, "rotary_emb_base": 10000,
              "seq_length": 2048, "max_position_embeddings": 2048, "no_bias": True, "tie_word_embeddings": False}
    _write(path, state, config)
    return Built("qwen", path, "qwen", config, state, _arch(kv=HEADS), fused=fused)


BUILDERS: dict[str, Callable[[Path], Built]] = {
    "llama": build_llama,
    "mistral": build_mistral,
    "mixtral": build_mixtral,
    "qwen2": build_qwen2,
    "qwen3": build_qwen3,
    "qwen2_moe": build_qwen2_moe,
    "qwen2_moe_mixed": build_qwen2_moe_mixed,
    "qwen3_moe": build_qwen3_moe,
    "gpt2": build_gpt2,
    "gpt2_base": build_gpt2_base,
    "cerebras_gpt": build_cerebras_gpt,
    "gpt_neox": build_gpt_neox,
    "falcon": build_falcon,
    "falcon_rw": build_falcon_rw,
    "falcon_mq": build_falcon_mq,
    "falcon_new": build_falcon_new,
    "falcon_rw7b": build_falcon_rw7b,
    "falcon_rw40b": build_falcon_rw40b,
    "gemma": build_gemma,
    "gemma2": build_gemma2,
    "gemma3": build_gemma3,
    "phi": build_phi,
    "phi3": build_phi3,
    "bert": build_bert,
    "xlm_roberta": build_xlm_roberta,
    "glm": build_glm,
    "glm4": build_glm4,
    "yi": build_yi,
    "baichuan": build_baichuan,
    "chatglm2": build_chatglm2,
    "chatglm_6b": build_chatglm_6b,
    "qwen": build_qwen,
    "olmo2": build_olmo2,
    "internlm2": build_internlm2,
    "olmo": build_olmo,
    "smollm3": build_smollm3,
    "internlm3": build_internlm3,
    "deepseek_v3": build_deepseek_v3,
    "minicpm3": build_minicpm3,
    "glm4_moe": build_glm4_moe,
    "gpt_oss": build_gpt_oss,
    "llama4": build_llama4,
}
