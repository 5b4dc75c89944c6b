"""Family round trips: tiny checkpoints of every family, read back through the tables.

For each checkpoint built in `builders.py`: the right family is chosen; every
stored tensor gets its role from the table (nothing inferred, nothing
unmapped, nothing ignored but real buffers); every canonical tensor read back
equals what an independent oracle, written here from each family's modeling
code, says it should be; and the architecture descriptor agrees with the
config without disagreements.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from safetensors.torch import save_file

from provenance.architectures.roles import CanonicalKey
from provenance.model import Checkpoint

from .builders import BUILDERS, Built


# --- the oracle: stored name -> canonical tensors, written from each family's modeling code ---------

Splitter = Callable[[torch.Tensor, Built, str], list[tuple[str, torch.Tensor]]]


def _heads(built: Built) -> tuple[int, int, int]:
    return built.arch["num_heads"], built.arch["num_kv_heads"], built.arch["head_dim"]


def split_gpt2_c_attn(tensor, built, param):
    # Conv1D: y = x @ W + b with W (in, 3 * hidden); `c_attn(x).split(hidden, dim=2)` gives q, k, v.
    hidden = built.arch["hidden_size"]
    if param == "weight":
        return [(role, tensor[:, i * hidden:(i + 1) * hidden].t()) for i, role in enumerate(("attn.q", "attn.k", "attn.v"))]
    return [(role, tensor[i * hidden:(i + 1) * hidden]) for i, role in enumerate(("attn.q", "attn.k", "attn.v"))]


def conv1d(role: str) -> Splitter:
    # Conv1D stores (in, out); nn.Linear orientation is (out, in). Biases are as they are.
    return lambda tensor, built, param: [(role, tensor.t() if param == "weight" else tensor)]


def split_neox_qkv(tensor, built, param):
    # GPTNeoXAttention: qkv.view(..., heads, 3 * head_dim).chunk(3, dim=-1)
    heads, _, hd = _heads(built)
    rest = tuple(tensor.shape[1:])
    q, k, v = tensor.reshape(heads, 3 * hd, *rest).chunk(3, dim=1)
    return [(r, t.reshape(heads * hd, *rest)) for r, t in (("attn.q", q), ("attn.k", k), ("attn.v", v))]


def split_falcon_qkv(tensor, built, param):
    # FalconAttention._split_heads, on the output features of query_key_value.
    heads, kv, hd = _heads(built)
    rest = tuple(tensor.shape[1:])
    config = built.config
    if config.get("model_type") == "RefinedWeb":
        # the first Falcon-40B remote code (modeling_RW.py): always grouped, n_head_kv groups
        qkv = tensor.reshape(config["n_head_kv"], heads // config["n_head_kv"] + 2, hd, *rest)
        q, k, v = qkv[:, :-2], qkv[:, -2], qkv[:, -1]
    elif config.get("new_decoder_architecture"):
        qkv = tensor.reshape(-1, heads // config["num_kv_heads"] + 2, hd, *rest)
        q, k, v = qkv[:, :-2], qkv[:, -2], qkv[:, -1]
    elif not config.get("multi_query"):
        qkv = tensor.reshape(heads, 3, hd, *rest)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    else:
        qkv = tensor.reshape(heads + 2, hd, *rest)
        q, k, v = qkv[:-2], qkv[-2], qkv[-1]
    return [(r, t.reshape(-1, *rest)) for r, t in (("attn.q", q), ("attn.k", k), ("attn.v", v))]


def split_phi3_qkv(tensor, built, param):
    # Phi3Attention: query_pos = heads * head_dim; then kv_heads * head_dim for k, the rest for v.
    heads, kv, hd = _heads(built)
    q_end, k_end = heads * hd, heads * hd + kv * hd
    return [("attn.q", tensor[:q_end]), ("attn.k", tensor[q_end:k_end]), ("attn.v", tensor[k_end:])]


def split_gate_up_chunk(tensor, built, param):
    # Phi3MLP / GlmMLP: gate, up = gate_up_proj(x).chunk(2, dim=-1)
    gate, up = tensor.chunk(2, dim=0)
    return [("mlp.gate", gate), ("mlp.up", up)]


def stacked(*roles: str, param: str = "weight", transposed: bool = False, alternating: bool = False) -> Splitter:
    """Experts stacked on dim 0, each stored (in, out) when `transposed`; several roles split its
    output features in halves (Llama4TextExperts' chunk(2)) or in turn (GptOssExperts' [..., ::2], [..., 1::2])."""

    def split(tensor, built, _param):
        found = []
        for expert, value in enumerate(tensor):
            value = value.t() if transposed and value.dim() == 2 else value
            parts = ([value[i::len(roles)] for i in range(len(roles))] if alternating
                     else value.chunk(len(roles), dim=0))
            found += [(role, part, expert, param) for role, part in zip(roles, parts, strict=True)]
        return found

    return split


def named(role: str, param: str) -> Splitter:
    """A tensor whose stored name carries no .weight/.bias (the template ends with `$`)."""
    return lambda tensor, built, _param: [(role, tensor, None, param)]


@dataclass(frozen=True)
class FusedByBuilder:
    """Self-built layouts: the canonical parts are the separate tensors the builder fused, in order."""

    roles: tuple[str, ...]


def fused_by_builder(*roles: str) -> FusedByBuilder:
    return FusedByBuilder(roles)


LLAMA = {
    "model.embed_tokens": "embed",
    "model.layers.<L>.input_layernorm": "attn_norm",
    "model.layers.<L>.self_attn.q_proj": "attn.q",
    "model.layers.<L>.self_attn.k_proj": "attn.k",
    "model.layers.<L>.self_attn.v_proj": "attn.v",
    "model.layers.<L>.self_attn.o_proj": "attn.o",
    "model.layers.<L>.post_attention_layernorm": "mlp_norm",
    "model.layers.<L>.mlp.gate_proj": "mlp.gate",
    "model.layers.<L>.mlp.up_proj": "mlp.up",
    "model.layers.<L>.mlp.down_proj": "mlp.down",
    "model.norm": "final_norm",
    "lm_head": "lm_head",
}
QK_NORM = {"model.layers.<L>.self_attn.q_norm": "attn.q_norm", "model.layers.<L>.self_attn.k_norm": "attn.k_norm"}
LLAMA_ATTN = {k: v for k, v in LLAMA.items() if ".mlp." not in k}
MIXTRAL = {**LLAMA_ATTN,
           "model.layers.<L>.block_sparse_moe.gate": "moe.router",
           # MixtralBlockSparseTop2MLP: w2(silu(w1(x)) * w3(x))
           "model.layers.<L>.block_sparse_moe.experts.<E>.w1": "mlp.gate",
           "model.layers.<L>.block_sparse_moe.experts.<E>.w3": "mlp.up",
           "model.layers.<L>.block_sparse_moe.experts.<E>.w2": "mlp.down"}
QWEN2_MOE = {**LLAMA_ATTN,
             "model.layers.<L>.mlp.gate": "moe.router",
             "model.layers.<L>.mlp.experts.<E>.gate_proj": "mlp.gate",
             "model.layers.<L>.mlp.experts.<E>.up_proj": "mlp.up",
             "model.layers.<L>.mlp.experts.<E>.down_proj": "mlp.down",
             "model.layers.<L>.mlp.shared_expert.gate_proj": "shared_mlp.gate",
             "model.layers.<L>.mlp.shared_expert.up_proj": "shared_mlp.up",
             "model.layers.<L>.mlp.shared_expert.down_proj": "shared_mlp.down",
             "model.layers.<L>.mlp.shared_expert_gate": "moe.shared_gate"}
# Gemma2DecoderLayer: input_layernorm -> attn -> post_attention_layernorm (+ residual);
# pre_feedforward_layernorm -> mlp -> post_feedforward_layernorm (+ residual).
GEMMA2 = {**LLAMA, **QK_NORM,
          "model.layers.<L>.post_attention_layernorm": "post_attn_norm",
          "model.layers.<L>.pre_feedforward_layernorm": "mlp_norm",
          "model.layers.<L>.post_feedforward_layernorm": "post_mlp_norm"}
GPT2_BASE = {  # GPT2Model
    "wte": "embed",
    "wpe": "pos_embed",
    "h.<L>.ln_1": "attn_norm",
    "h.<L>.attn.c_attn": split_gpt2_c_attn,
    "h.<L>.attn.c_proj": conv1d("attn.o"),
    "h.<L>.ln_2": "mlp_norm",
    "h.<L>.mlp.c_fc": conv1d("mlp.up"),
    "h.<L>.mlp.c_proj": conv1d("mlp.down"),
    "ln_f": "final_norm",
}
GPT2 = {**{"transformer." + k: v for k, v in GPT2_BASE.items()}, "lm_head": "lm_head"}  # GPT2LMHeadModel
NEOX = {
    "gpt_neox.embed_in": "embed",
    "gpt_neox.layers.<L>.input_layernorm": "attn_norm",
    "gpt_neox.layers.<L>.attention.query_key_value": split_neox_qkv,
    "gpt_neox.layers.<L>.attention.dense": "attn.o",
    "gpt_neox.layers.<L>.post_attention_layernorm": "mlp_norm",
    "gpt_neox.layers.<L>.mlp.dense_h_to_4h": "mlp.up",
    "gpt_neox.layers.<L>.mlp.dense_4h_to_h": "mlp.down",
    "gpt_neox.final_layer_norm": "final_norm",
    "embed_out": "lm_head",
}
FALCON = {
    "transformer.word_embeddings": "embed",
    "transformer.h.<L>.input_layernorm": "attn_norm",
    "transformer.h.<L>.post_attention_layernorm": "mlp_norm",
    "transformer.h.<L>.ln_attn": "attn_norm",
    "transformer.h.<L>.ln_mlp": "mlp_norm",
    "transformer.h.<L>.self_attention.query_key_value": split_falcon_qkv,
    "transformer.h.<L>.self_attention.dense": "attn.o",
    "transformer.h.<L>.mlp.dense_h_to_4h": "mlp.up",
    "transformer.h.<L>.mlp.dense_4h_to_h": "mlp.down",
    "transformer.ln_f": "final_norm",
    "lm_head": "lm_head",
}
PHI = {
    "model.embed_tokens": "embed",
    "model.layers.<L>.input_layernorm": "attn_norm",
    "model.layers.<L>.self_attn.q_proj": "attn.q",
    "model.layers.<L>.self_attn.k_proj": "attn.k",
    "model.layers.<L>.self_attn.v_proj": "attn.v",
    "model.layers.<L>.self_attn.dense": "attn.o",
    "model.layers.<L>.mlp.fc1": "mlp.up",
    "model.layers.<L>.mlp.fc2": "mlp.down",
    "model.final_layernorm": "final_norm",
    "lm_head": "lm_head",
}
PHI3 = {**{k: v for k, v in LLAMA.items() if not re.search(r"(q|k|v|gate|up)_proj$", k)},
        "model.layers.<L>.self_attn.qkv_proj": split_phi3_qkv,
        "model.layers.<L>.mlp.gate_up_proj": split_gate_up_chunk}
GLM = {**{k: v for k, v in LLAMA.items() if not re.search(r"(gate|up)_proj$", k)},
       "model.layers.<L>.mlp.gate_up_proj": split_gate_up_chunk}
# Glm4DecoderLayer: input_layernorm -> attn -> post_self_attn_layernorm (+ residual);
# post_attention_layernorm -> mlp -> post_mlp_layernorm (+ residual).
GLM4 = {**GLM, "model.layers.<L>.post_self_attn_layernorm": "post_attn_norm",
        "model.layers.<L>.post_mlp_layernorm": "post_mlp_norm"}
BERT = {
    "embeddings.word_embeddings": "embed",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.token_type_embeddings": "type_embed",
    "embeddings.LayerNorm": "embed_norm",
    "encoder.layer.<L>.attention.self.query": "attn.q",
    "encoder.layer.<L>.attention.self.key": "attn.k",
    "encoder.layer.<L>.attention.self.value": "attn.v",
    "encoder.layer.<L>.attention.output.dense": "attn.o",
    "encoder.layer.<L>.attention.output.LayerNorm": "post_attn_norm",
    "encoder.layer.<L>.intermediate.dense": "mlp.up",
    "encoder.layer.<L>.output.dense": "mlp.down",
    "encoder.layer.<L>.output.LayerNorm": "post_mlp_norm",
    "pooler.dense": "pooler",
}
YI = {**{k: v for k, v in LLAMA.items() if "layernorm" not in k},
      "model.layers.<L>.ln1": "attn_norm", "model.layers.<L>.ln2": "mlp_norm"}
BAICHUAN = {**{k: v for k, v in LLAMA.items() if not re.search(r"(q|k|v)_proj$", k)},
            "model.layers.<L>.self_attn.W_pack": fused_by_builder("attn.q", "attn.k", "attn.v")}
CHATGLM2 = {
    "transformer.embedding.word_embeddings": "embed",
    "transformer.encoder.layers.<L>.input_layernorm": "attn_norm",
    "transformer.encoder.layers.<L>.self_attention.query_key_value": fused_by_builder("attn.q", "attn.k", "attn.v"),
    "transformer.encoder.layers.<L>.self_attention.dense": "attn.o",
    "transformer.encoder.layers.<L>.post_attention_layernorm": "mlp_norm",
    "transformer.encoder.layers.<L>.mlp.dense_h_to_4h": fused_by_builder("mlp.gate", "mlp.up"),
    "transformer.encoder.layers.<L>.mlp.dense_4h_to_h": "mlp.down",
    "transformer.encoder.final_layernorm": "final_norm",
    "transformer.output_layer": "lm_head",
}
CHATGLM1 = {
    "transformer.word_embeddings": "embed",
    "transformer.layers.<L>.input_layernorm": "attn_norm",
    "transformer.layers.<L>.attention.query_key_value": fused_by_builder("attn.q", "attn.k", "attn.v"),
    "transformer.layers.<L>.attention.dense": "attn.o",
    "transformer.layers.<L>.post_attention_layernorm": "mlp_norm",
    "transformer.layers.<L>.mlp.dense_h_to_4h": "mlp.up",
    "transformer.layers.<L>.mlp.dense_4h_to_h": "mlp.down",
    "transformer.final_layernorm": "final_norm",
    "lm_head": "lm_head",
}
QWEN1 = {
    "transformer.wte": "embed",
    "transformer.h.<L>.ln_1": "attn_norm",
    "transformer.h.<L>.attn.c_attn": fused_by_builder("attn.q", "attn.k", "attn.v"),
    "transformer.h.<L>.attn.c_proj": "attn.o",
    "transformer.h.<L>.ln_2": "mlp_norm",
    "transformer.h.<L>.mlp.w1": "mlp.up",  # QWenMLP: c_proj(w1(x) * silu(w2(x)))
    "transformer.h.<L>.mlp.w2": "mlp.gate",
    "transformer.h.<L>.mlp.c_proj": "mlp.down",
    "transformer.ln_f": "final_norm",
    "lm_head": "lm_head",
}

# Olmo2DecoderLayer: h = x + post_attention_layernorm(attn(x)); out = h + post_feedforward_layernorm(mlp(h)).
OLMO2 = {**{k: v for k, v in LLAMA.items() if "layernorm" not in k}, **QK_NORM,
         "model.layers.<L>.post_attention_layernorm": "post_attn_norm",
         "model.layers.<L>.post_feedforward_layernorm": "post_mlp_norm"}
INTERNLM2 = {
    "model.tok_embeddings": "embed",
    "model.layers.<L>.attention_norm": "attn_norm",
    "model.layers.<L>.attention.wqkv": fused_by_builder("attn.q", "attn.k", "attn.v"),
    "model.layers.<L>.attention.wo": "attn.o",
    "model.layers.<L>.ffn_norm": "mlp_norm",
    "model.layers.<L>.feed_forward.w1": "mlp.gate",  # InternLM2MLP: w2(silu(w1(x)) * w3(x))
    "model.layers.<L>.feed_forward.w3": "mlp.up",
    "model.layers.<L>.feed_forward.w2": "mlp.down",
    "model.norm": "final_norm",
    "output": "lm_head",
}
# DeepseekV3Attention (multi-head latent attention) and DeepseekV3MoE.
MLA = {**{k: v for k, v in LLAMA.items() if not re.search(r"(q|k|v)_proj$", k)},
       "model.layers.<L>.self_attn.q_a_proj": "attn.q_a",
       "model.layers.<L>.self_attn.q_a_layernorm": "attn.q_a_norm",
       "model.layers.<L>.self_attn.q_b_proj": "attn.q_b",
       "model.layers.<L>.self_attn.kv_a_proj_with_mqa": "attn.kv_a",
       "model.layers.<L>.self_attn.kv_a_layernorm": "attn.kv_a_norm",
       "model.layers.<L>.self_attn.kv_b_proj": "attn.kv_b"}
SHARED_EXPERTS = {"model.layers.<L>.mlp.gate": "moe.router",
                  "model.layers.<L>.mlp.gate.e_score_correction_bias$": named("moe.score_correction", "bias"),
                  "model.layers.<L>.mlp.experts.<E>.gate_proj": "mlp.gate",
                  "model.layers.<L>.mlp.experts.<E>.up_proj": "mlp.up",
                  "model.layers.<L>.mlp.experts.<E>.down_proj": "mlp.down",
                  "model.layers.<L>.mlp.shared_experts.gate_proj": "shared_mlp.gate",
                  "model.layers.<L>.mlp.shared_experts.up_proj": "shared_mlp.up",
                  "model.layers.<L>.mlp.shared_experts.down_proj": "shared_mlp.down"}
GPT_OSS = {**LLAMA_ATTN,
           "model.layers.<L>.self_attn.sinks$": named("attn.sinks", "weight"),
           "model.layers.<L>.mlp.router": "moe.router",
           "model.layers.<L>.mlp.experts.gate_up_proj$": stacked("mlp.gate", "mlp.up", transposed=True, alternating=True),
           "model.layers.<L>.mlp.experts.gate_up_proj_bias$": stacked("mlp.gate", "mlp.up", param="bias",
                                                                     alternating=True),
           "model.layers.<L>.mlp.experts.down_proj$": stacked("mlp.down", transposed=True),
           "model.layers.<L>.mlp.experts.down_proj_bias$": stacked("mlp.down", param="bias")}
LLAMA4 = {**LLAMA_ATTN,
          "model.layers.<L>.feed_forward.gate_proj": "mlp.gate",
          "model.layers.<L>.feed_forward.up_proj": "mlp.up",
          "model.layers.<L>.feed_forward.down_proj": "mlp.down",
          "model.layers.<L>.feed_forward.router": "moe.router",
          "model.layers.<L>.feed_forward.experts.gate_up_proj$": stacked("mlp.gate", "mlp.up", transposed=True),
          "model.layers.<L>.feed_forward.experts.down_proj$": stacked("mlp.down", transposed=True),
          "model.layers.<L>.feed_forward.shared_expert.gate_proj": "shared_mlp.gate",
          "model.layers.<L>.feed_forward.shared_expert.up_proj": "shared_mlp.up",
          "model.layers.<L>.feed_forward.shared_expert.down_proj": "shared_mlp.down"}

ORACLES = {
    "llama": LLAMA, "mistral": LLAMA, "qwen2": LLAMA, "qwen3": {**LLAMA, **QK_NORM}, "gemma": LLAMA,
    "gemma2": GEMMA2, "mixtral": MIXTRAL, "qwen2_moe": QWEN2_MOE,
    "qwen2_moe_mixed": {**QWEN2_MOE, **LLAMA}, "qwen3_moe": {**QWEN2_MOE, **QK_NORM}, "gemma3": GEMMA2,
    "gpt2": GPT2, "gpt2_base": GPT2_BASE, "falcon_rw7b": FALCON, "cerebras_gpt": GPT2,
    "gpt_neox": NEOX, "falcon": FALCON, "falcon_rw": FALCON, "falcon_mq": FALCON, "falcon_new": FALCON,
    "falcon_rw40b": FALCON, "phi": PHI, "phi3": PHI3, "glm": GLM, "glm4": GLM4, "bert": BERT, "xlm_roberta": BERT, "yi": YI, "baichuan": BAICHUAN,
    "chatglm2": CHATGLM2, "chatglm_6b": CHATGLM1, "qwen": QWEN1,
    "olmo2": OLMO2, "olmo": LLAMA, "smollm3": LLAMA, "internlm3": LLAMA, "internlm2": INTERNLM2,
    "deepseek_v3": {**MLA, **SHARED_EXPERTS}, "minicpm3": MLA, "glm4_moe": {**LLAMA, **QK_NORM, **SHARED_EXPERTS},
    "gpt_oss": GPT_OSS, "llama4": LLAMA4,
}
assert set(ORACLES) == set(BUILDERS)


def _regex(template: str) -> re.Pattern[str]:
    """`<L>`, `<E>`: layer and expert; the stored name adds .weight or .bias unless the template ends with `$`."""
    exact = template.endswith("$")
    body = re.escape(template.removesuffix("$"))
    body = body.replace(re.escape("<L>"), r"(?P<layer>\d+)").replace(re.escape("<E>"), r"(?P<expert>\d+)")
    return re.compile(body + ("$" if exact else r"\.(?P<param>weight|bias)$"))


def expected_canonical(built: Built) -> dict[CanonicalKey, tuple[str, torch.Tensor]]:
    """Canonical key -> (stored name, values), from the oracle alone."""
    patterns = [(_regex(t), spec) for t, spec in ORACLES[built.name].items()]
    expected: dict[CanonicalKey, tuple[str, torch.Tensor]] = {}
    for name, tensor in built.state.items():
        if name in built.buffers:
            continue
        found = [(m, spec) for rx, spec in patterns if (m := rx.match(name))]
        assert len(found) == 1, f"oracle for {built.name} has {len(found)} entries for {name}"
        match, spec = found[0]
        layer = int(match["layer"]) if match.groupdict().get("layer") else None
        expert = int(match["expert"]) if match.groupdict().get("expert") else None
        param = match.groupdict().get("param") or "weight"
        if isinstance(spec, str):
            parts = [(spec, tensor)]
        elif isinstance(spec, FusedByBuilder):
            parts = list(zip(spec.roles, built.fused[name], strict=True))
        else:
            parts = spec(tensor, built, param)
        for part in parts:
            # (role, values), or (role, values, expert, param) from a stacked or suffix-less tensor
            role, value, part_expert, part_param = part if len(part) == 4 else (*part, expert, param)
            key = CanonicalKey(role, layer, part_expert, part_param)
            assert key not in expected, f"oracle gives {key.name} twice"
            expected[key] = (name, value)
    return expected


# Which norm each family's modeling code uses (RMSNorm, Gemma's RMSNorm scaling by 1 + weight, LayerNorm).
NORM_TYPE = {
    **dict.fromkeys(["llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "phi3", "glm", "glm4", "yi",
                     "baichuan", "chatglm2", "qwen"], "rmsnorm"),
    **dict.fromkeys(["qwen2_moe_mixed", "qwen3_moe"], "rmsnorm"),
    **dict.fromkeys(["olmo2", "smollm3", "internlm3", "internlm2", "deepseek_v3", "minicpm3", "glm4_moe", "gpt_oss",
                     "llama4"], "rmsnorm"),
    "olmo": "layernorm",
    **dict.fromkeys(["gemma", "gemma2", "gemma3"], "rmsnorm_plus_one"),
    **dict.fromkeys(["gpt2_base", "falcon_rw7b"], "layernorm"),
    **dict.fromkeys(["gpt2", "cerebras_gpt", "gpt_neox", "falcon", "falcon_rw", "falcon_mq", "falcon_new",
                     "falcon_rw40b", "phi", "bert", "xlm_roberta", "chatglm_6b"], "layernorm"),
}
assert set(NORM_TYPE) == set(BUILDERS)


# --- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(params=sorted(BUILDERS))
def built(request, built_model) -> Built:
    return built_model(request.param)  # built once per test run (tests/conftest.py)


# --- tests -------------------------------------------------------------------------------------------

def test_family_is_chosen(built):
    with Checkpoint.open(built.path) as checkpoint:
        assert checkpoint.roles.family == built.family, checkpoint.roles.family_reason
        assert checkpoint.architecture.family == built.family
        assert "config.json" in checkpoint.roles.family_reason


def test_every_stored_tensor_has_a_table_role(built):
    with Checkpoint.open(built.path) as checkpoint:
        roles = checkpoint.roles
        assert roles.unmapped == []
        assert roles.inferred == []
        assert sorted(roles.ignored) == sorted(built.buffers)
        sources = {a.source for a in roles.assignments}
        assert sources == set(built.state) - built.buffers
        expected_how = {name: ("alias" if name in built.renamed else "table") for name in sources}
        for a in roles.assignments:
            assert a.how == expected_how[a.source], (a.source, a.how)
            assert a.confidence == 1.0
        keys = [a.key for a in roles.assignments]
        assert len(keys) == len(set(keys)), "a canonical key is assigned twice"


def test_canonical_tensors_round_trip(built):
    expected = expected_canonical(built)
    with Checkpoint.open(built.path) as checkpoint:
        got: dict[CanonicalKey, torch.Tensor] = {}
        for assignment, tensor in checkpoint.iter_canonical():
            assert assignment.key not in got, f"{assignment.key.name} yielded twice"
            assert tuple(tensor.shape) == assignment.shape, assignment.key.name
            got[assignment.key] = tensor
            assert assignment.key in expected, f"{built.name}: unexpected {assignment.key.name} from {assignment.source}"
            assert assignment.source == expected[assignment.key][0], assignment.key.name
        assert sorted(k.name for k in got) == sorted(k.name for k in expected)
        for key, (source, value) in expected.items():
            assert got[key].dtype == value.dtype, key.name
            assert torch.equal(got[key], value), f"{built.name}: {key.name} from {source} differs"
        # `read` gives the same values as the streaming pass.
        for key in list(expected)[:: max(1, len(expected) // 7)]:
            assert torch.equal(checkpoint.read(key), expected[key][1]), key.name


def test_architecture_matches_config(built):
    with Checkpoint.open(built.path) as checkpoint:
        arch = checkpoint.architecture
        assert arch.source == "config.json"
        assert arch.disagreements == (), arch.disagreements
        for name, value in built.arch.items():
            assert getattr(arch, name) == value, f"{built.name}: {name} is {getattr(arch, name)}, expected {value}"
        has_lm_head = any(k.startswith(("lm_head.", "embed_out.", "transformer.output_layer.", "output.")) for k in built.state)
        assert arch.tied_embeddings is (not has_lm_head)
        expected = expected_canonical(built)
        assert arch.attention_bias is any(k.role == "attn.q" and k.param == "bias" for k in expected)
        assert arch.gated_mlp is any(k.role == "mlp.gate" for k in expected)
        assert arch.norm_type == NORM_TYPE[built.name]


def test_yi_renamed_norms_are_listed_with_standard_names(tmp_path):
    built = BUILDERS["yi"](tmp_path / "yi")
    with Checkpoint.open(built.path) as checkpoint:
        renamed = {r.stored: r for r in checkpoint.roles.renamed}
        assert {k: r.standard for k, r in renamed.items()} == built.renamed
        assert len(renamed) == 2 * built.arch["num_layers"]
        for stored, r in renamed.items():
            assert r.role == ("attn_norm" if ".ln1." in stored else "mlp_norm")
            assert r.used_by and "Yi" in r.used_by


def test_config_and_tensor_disagreement_is_reported(tmp_path):
    built = BUILDERS["llama"](tmp_path / "llama")
    config = dict(built.config, num_hidden_layers=3, num_key_value_heads=4)
    (built.path / "config.json").write_text(json.dumps(config))
    with Checkpoint.open(built.path) as checkpoint:
        arch = checkpoint.architecture
        text = " | ".join(arch.disagreements)
        assert any(d.startswith("num_layers:") and "3" in d and "2" in d for d in arch.disagreements), text
        assert any("KV heads" in d for d in arch.disagreements), text
        assert len(arch.disagreements) == 2, text
        # the declaration is kept, the disagreement is reported, not silently replaced
        assert arch.num_layers == 3


@pytest.mark.parametrize("name", ["falcon_new", "yi"])
def test_cli_inspect_json(name, built_model):
    from .inprocess import run_cli

    built = built_model(name)
    result = run_cli("inspect", str(built.path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["family"]["name"] == built.family
    assert report["architecture"]["disagreements"] == []
    assert report["architecture"]["num_layers"] == built.arch["num_layers"]
    assert report["unmapped_tensors"] == [] and report["inferred_count"] == 0
    assert {r["tensor"] for r in report["roles"]} == set(built.state) - built.buffers
    assert {r["tensor"]: r["standard"] for r in report["renamed_tensors"]} == built.renamed


def test_canonical_key_names_parse_back():
    from provenance.architectures.roles import ALL_ROLES, EXPERT_ROLES, GLOBAL_ROLES

    keys = [CanonicalKey(role) for role in GLOBAL_ROLES]
    keys += [CanonicalKey(role, layer, None, param) for role in ALL_ROLES if role not in GLOBAL_ROLES
             for layer in (0, 17) for param in ("weight", "bias")]
    keys += [CanonicalKey(role, 3, expert) for role in EXPERT_ROLES for expert in (0, 12)]
    assert all(CanonicalKey.parse(key.name) == key for key in keys)
    # Not canonical names: a stored name, an unknown role, a generic fingerprint's key, no parameter kind.
    for name in ("model.layers.0.self_attn.q_proj.weight", "layers.0.attn.qq.weight", "layers.x.attn.q.weight",
                 "layers.0.attn_norm.weight@down_blocks.0.resnets.0.norm1.bias", "layers.0.attn.q", ""):
        assert CanonicalKey.parse(name) is None, name


def test_norm_scale_applies_the_family_offset_once():
    import numpy as np

    from provenance.architectures.roles import norm_scale

    stored = np.array([0.0, 0.5, -1.0], dtype=np.float32)
    assert norm_scale(stored, "rmsnorm") is stored and norm_scale(stored, None) is stored
    plus_one = norm_scale(stored, "rmsnorm_plus_one")  # Gemma: x * (1 + w)
    assert plus_one.dtype == np.float32 and plus_one.tolist() == [1.0, 1.5, 0.0]


def test_gemma3_multimodal_checkpoint_reads_its_language_model(built_model, tmp_path):
    """Gemma 3 4B-27B: the text model's tensors under `language_model.`, its shapes under text_config."""
    built = built_model("gemma3")
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
        "text_config": {**built.config, "model_type": "gemma3_text"}}))
    save_file({"language_model." + name: tensor for name, tensor in built.state.items()}, str(tmp_path / "model.safetensors"))
    with Checkpoint.open(tmp_path) as checkpoint:
        assert checkpoint.roles.family == "gemma3"
        assert checkpoint.roles.unmapped == [] and checkpoint.roles.inferred == []
        arch = checkpoint.architecture
        assert arch.disagreements == ()
        for name, value in built.arch.items():
            assert getattr(arch, name) == value, name
        text = {a.key: a.source for a in checkpoint.roles.assignments}
        assert text[CanonicalKey("attn.q_norm", 1)] == "language_model.model.layers.1.self_attn.q_norm.weight"
