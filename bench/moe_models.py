"""Generated mixture-of-experts checkpoints at tiny width, shaped like the largest open MoEs.

`write_moe` writes a Hugging Face directory (config.json, safetensors shards
and their index), by default with Qwen2-MoE tensor names
(`model.layers.L.mlp.experts.E.{gate,up,down}_proj`, a shared expert when
asked): the family table `qwen2_moe` maps them, as it would a real Qwen3-MoE
or Qwen1.5-MoE checkpoint (the DeepSeek-V3 and Kimi K2 shapes use them too:
their multi-head latent attention is not generated). Only the counts are frontier-sized (layers, experts, tensors);
widths are tiny (hidden 64, expert width 32 by default) so that a
90,000-tensor checkpoint is a few hundred megabytes and is written in seconds.

Formats as released (`MoeSpec.quant`): "fp8" stores every attention and
expert matrix of the layers as F8_E4M3 codes with a float32
`weight_scale_inv` per block of `fp8_block` (DeepSeek-V3 and Kimi K2:
128 x 128 in the real files; the router, norms, embeddings and head stay bf16)
and declares the block in config.json's `quantization_config`; `layout
"gpt-oss"` writes gpt-oss's names (attention with biases and sinks, a biased
`mlp.router`, every layer's experts stacked as `mlp.experts.gate_up_proj`
[experts, hidden, 2 x width] with gate and up interleaved, and `down_proj`),
and "mxfp4" stores those two stacked tensors as gpt-oss does, `*_blocks` U8
[experts, out, in/32, 16] and `*_scales` U8 [experts, out, in/32]. The
writers are `bench/zoo/quantized.py`'s, made from the published layouts.
A copy with `MoeEdit(stored="float")` starts from the released values (FP8 or
MXFP4 dequantized, as a fine-tune of the release does) and is stored in bf16.

Edits (`MoeEdit`) make the derived copies the bench and tests audit: experts
permuted, a subset of experts kept, noise added, a dense MLP split into
experts (upcycling). Every value comes from `seed`; two specs with different
seeds are independent models.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from bench.zoo.quantized import fp8_config, fp8_dequantize, fp8_quantize, mxfp4_dequantize, mxfp4_quantize


@dataclass(frozen=True)
class MoeSpec:
    layers: int
    experts: int
    hidden: int = 64
    expert_dim: int = 32
    shared_dim: int = 0  # width of the shared expert (0: none)
    heads: int = 4
    kv_heads: int = 2
    vocab: int = 256
    seed: int = 0
    shards: int = 4
    layout: str = "qwen"  # tensor names: "qwen" (Qwen2/Qwen3-MoE, experts one by one) or "gpt-oss" (experts stacked)
    quant: str | None = None  # the released format of the layers' matrices: None (bf16), "fp8" or "mxfp4"
    fp8_block: tuple[int, int] = (128, 128)  # rows x columns per FP8 scale (quantization_config.weight_block_size)

    def __post_init__(self):
        if (self.layout, self.quant) not in {("qwen", None), ("qwen", "fp8"), ("gpt-oss", None), ("gpt-oss", "mxfp4")}:
            raise ValueError(f"no writer for layout {self.layout!r} stored as {self.quant!r}")

    def tensor_count(self) -> int:
        """Stored tensors of the checkpoint as released (scales counted)."""
        if self.layout == "gpt-oss":
            return 3 + self.layers * (19 if self.quant else 17)
        per_layer = 4 + 2 + 1 + 3 * self.experts + (4 if self.shared_dim else 0)
        scaled = 4 + 3 * self.experts + (3 if self.shared_dim else 0)  # the FP8 matrices, one scale each
        return 3 + self.layers * (per_layer + (scaled if self.quant else 0))


@dataclass(frozen=True)
class MoeEdit:
    """How a copy differs from the model its spec makes (applied in this order)."""

    keep: tuple[int, ...] | None = None  # experts kept, in this order (a permutation when all are kept)
    noise: float = 0.0  # relative Gaussian noise added to every tensor (fine-tuning)
    noise_seed: int = 1
    stored: str = "release"  # "release": the spec's format; "float": bf16 from the released (dequantized) values


def dense_mlp(spec: MoeSpec, layer: int, width: int) -> dict[str, torch.Tensor]:
    """A dense SwiGLU MLP of `width` units for `layer` (the model an upcycled MoE was split from)."""
    generator = torch.Generator().manual_seed(spec.seed * 7919 + layer * 104729 + width)
    scale = 1 / math.sqrt(spec.hidden)
    return {"gate": torch.randn(width, spec.hidden, generator=generator) * scale,
            "up": torch.randn(width, spec.hidden, generator=generator) * scale,
            "down": torch.randn(spec.hidden, width, generator=generator) * scale}


def _layer_tensors(spec: MoeSpec, layer: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(spec.seed * 1_000_003 + layer)
    h, d = spec.hidden, spec.hidden // spec.heads
    scale = 1 / math.sqrt(h)
    prefix = f"model.layers.{layer}."

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    out = {prefix + "input_layernorm.weight": 1 + 0.1 * torch.randn(h, generator=generator),
           prefix + "post_attention_layernorm.weight": 1 + 0.1 * torch.randn(h, generator=generator),
           prefix + "self_attn.q_proj.weight": randn(spec.heads * d, h),
           prefix + "self_attn.k_proj.weight": randn(spec.kv_heads * d, h),
           prefix + "self_attn.v_proj.weight": randn(spec.kv_heads * d, h),
           prefix + "self_attn.o_proj.weight": randn(h, spec.heads * d),
           prefix + "mlp.gate.weight": randn(spec.experts, h)}
    # Experts as slices of one stacked draw: one generator call per layer, not three per expert.
    gate_up = randn(spec.experts, 2, spec.expert_dim, h)
    down = randn(spec.experts, h, spec.expert_dim)
    for expert in range(spec.experts):
        name = f"{prefix}mlp.experts.{expert}."
        out[name + "gate_proj.weight"] = gate_up[expert, 0]
        out[name + "up_proj.weight"] = gate_up[expert, 1]
        out[name + "down_proj.weight"] = down[expert]
    if spec.shared_dim:
        out[prefix + "mlp.shared_expert.gate_proj.weight"] = randn(spec.shared_dim, h)
        out[prefix + "mlp.shared_expert.up_proj.weight"] = randn(spec.shared_dim, h)
        out[prefix + "mlp.shared_expert.down_proj.weight"] = randn(h, spec.shared_dim)
        out[prefix + "mlp.shared_expert_gate.weight"] = randn(1, h)
    return out


def _gpt_oss_layer(spec: MoeSpec, layer: int) -> dict[str, torch.Tensor]:
    """gpt-oss's tensors of one layer, in their float layout (experts stacked, [experts, in, out])."""
    generator = torch.Generator().manual_seed(spec.seed * 1_000_003 + layer)
    h, d, e, w = spec.hidden, spec.hidden // spec.heads, spec.experts, spec.expert_dim
    scale = 1 / math.sqrt(h)

    def randn(*shape: int, std: float = scale) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std

    prefix = f"model.layers.{layer}."
    out = {prefix + "input_layernorm.weight": 1 + 0.1 * torch.randn(h, generator=generator),
           prefix + "post_attention_layernorm.weight": 1 + 0.1 * torch.randn(h, generator=generator),
           prefix + "self_attn.sinks": randn(spec.heads, std=1.0)}
    for name, rows, columns in (("q_proj", spec.heads * d, h), ("k_proj", spec.kv_heads * d, h),
                                ("v_proj", spec.kv_heads * d, h), ("o_proj", h, spec.heads * d)):
        out[f"{prefix}self_attn.{name}.weight"] = randn(rows, columns)
        out[f"{prefix}self_attn.{name}.bias"] = randn(rows, std=0.02)
    out[prefix + "mlp.router.weight"] = randn(e, h)
    out[prefix + "mlp.router.bias"] = randn(e, std=0.02)
    out[prefix + "mlp.experts.gate_up_proj"] = randn(e, h, 2 * w)  # columns: gate, up, gate, up, ...
    out[prefix + "mlp.experts.gate_up_proj_bias"] = randn(e, 2 * w, std=0.02)
    out[prefix + "mlp.experts.down_proj"] = randn(e, w, h)
    out[prefix + "mlp.experts.down_proj_bias"] = randn(e, h, std=0.02)
    return out


def _global_tensors(spec: MoeSpec) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(spec.seed * 1_000_003 - 1)
    return {"model.embed_tokens.weight": torch.randn(spec.vocab, spec.hidden, generator=generator),
            "lm_head.weight": torch.randn(spec.vocab, spec.hidden, generator=generator) / math.sqrt(spec.hidden),
            "model.norm.weight": 1 + 0.1 * torch.randn(spec.hidden, generator=generator)}


def _edit_layer(tensors: dict[str, torch.Tensor], spec: MoeSpec, layer: int, edit: MoeEdit) -> dict[str, torch.Tensor]:
    if edit.keep is None:
        return tensors
    prefix = f"model.layers.{layer}."
    if spec.layout == "gpt-oss":  # experts (and the router's rows) are the first dimension of stacked tensors
        kept = list(edit.keep)
        return {k: v[kept] if ".mlp.experts." in k or ".mlp.router." in k else v for k, v in tensors.items()}
    out = {k: v for k, v in tensors.items() if ".mlp.experts." not in k}
    for new, old in enumerate(edit.keep):
        for part in ("gate_proj", "up_proj", "down_proj"):
            out[f"{prefix}mlp.experts.{new}.{part}.weight"] = tensors[f"{prefix}mlp.experts.{old}.{part}.weight"]
    out[prefix + "mlp.gate.weight"] = tensors[prefix + "mlp.gate.weight"][list(edit.keep)]
    return out


def _noisy(tensors: dict[str, torch.Tensor], edit: MoeEdit, salt: int) -> dict[str, torch.Tensor]:
    if not edit.noise:
        return tensors
    generator = torch.Generator().manual_seed(edit.noise_seed * 65537 + salt)
    return {k: v + edit.noise * v.std() * torch.randn(v.shape, generator=generator) for k, v in tensors.items()}


def float_layer(spec: MoeSpec, layer: int) -> dict[str, torch.Tensor]:
    """The float tensors of one layer, before any storage format, in the spec's layout."""
    return _gpt_oss_layer(spec, layer) if spec.layout == "gpt-oss" else _layer_tensors(spec, layer)


def _fp8_matrix(name: str, value: torch.Tensor) -> bool:
    """A matrix DeepSeek-V3's release stores as FP8: the layers' linear weights but the router (and Qwen2-MoE's
    one-row shared-expert gate)."""
    return (value.dim() == 2 and ".layers." in name and name.endswith(".weight")
            and not name.endswith(("mlp.gate.weight", "shared_expert_gate.weight")))


def _mxfp4_matrix(name: str) -> bool:
    """A tensor gpt-oss's release stores as MXFP4: the stacked expert matrices."""
    return name.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj"))


def _stacked_mxfp4(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gpt-oss's (blocks [e, out, in/32, 16], scales [e, out, in/32]) of stacked experts [e, in, out]."""
    experts, inputs, outputs = value.shape
    blocks, scales = mxfp4_quantize(value.transpose(1, 2).reshape(experts * outputs, inputs))
    return blocks.reshape(experts, outputs, *blocks.shape[1:]), scales.reshape(experts, outputs, -1)


def released(tensors: dict[str, torch.Tensor], spec: MoeSpec) -> dict[str, torch.Tensor]:
    """`tensors` as the release stores them: FP8 codes plus `weight_scale_inv`, or MXFP4 blocks plus scales."""
    if spec.quant == "fp8":
        out = {}
        for name, value in tensors.items():
            if _fp8_matrix(name, value):
                out[name], out[name + "_scale_inv"] = fp8_quantize(value, block=spec.fp8_block)
            else:
                out[name] = value
        return out
    if spec.quant == "mxfp4":
        out = {}
        for name, value in tensors.items():
            if _mxfp4_matrix(name):
                out[name + "_blocks"], out[name + "_scales"] = _stacked_mxfp4(value)
            else:
                out[name] = value
        return out
    return tensors


def released_values(tensors: dict[str, torch.Tensor], spec: MoeSpec) -> dict[str, torch.Tensor]:
    """The float values the release stands for (quantized and dequantized again by `bench/zoo/quantized.py`),
    which a fine-tune of the release starts from."""
    if spec.quant == "fp8":
        return {k: fp8_dequantize(*fp8_quantize(v, block=spec.fp8_block)) if _fp8_matrix(k, v) else v
                for k, v in tensors.items()}
    if spec.quant == "mxfp4":
        out = dict(tensors)
        for name, value in tensors.items():
            if _mxfp4_matrix(name):
                experts, inputs, outputs = value.shape
                blocks, scales = _stacked_mxfp4(value)
                flat = mxfp4_dequantize(blocks.reshape(-1, *blocks.shape[2:]), scales.reshape(-1, scales.shape[-1]))
                out[name] = flat.reshape(experts, outputs, inputs).transpose(1, 2)
        return out
    return tensors


def config(spec: MoeSpec, experts: int | None = None, quantized: bool = False) -> dict:
    """config.json of the checkpoint (`quantized`: with the release's `quantization_config`)."""
    experts = spec.experts if experts is None else experts
    if spec.layout == "gpt-oss":
        out = {"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "hidden_size": spec.hidden,
               "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
               "num_key_value_heads": spec.kv_heads, "head_dim": spec.hidden // spec.heads,
               "intermediate_size": spec.expert_dim, "num_local_experts": experts,
               "num_experts_per_tok": min(4, experts), "vocab_size": spec.vocab, "tie_word_embeddings": False,
               "rms_norm_eps": 1e-5, "sliding_window": 128, "torch_dtype": "bfloat16",
               "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(spec.layers)]}
        if quantized:
            out["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
                "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
        return out
    out = {"model_type": "qwen2_moe" if spec.shared_dim else "qwen3_moe",
            "architectures": ["Qwen2MoeForCausalLM" if spec.shared_dim else "Qwen3MoeForCausalLM"],
            "hidden_size": spec.hidden, "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
            "num_key_value_heads": spec.kv_heads, "head_dim": spec.hidden // spec.heads,
            "intermediate_size": spec.expert_dim * 4, "moe_intermediate_size": spec.expert_dim,
            "shared_expert_intermediate_size": spec.shared_dim, "num_experts": experts,
            "num_experts_per_tok": min(8, experts), "vocab_size": spec.vocab, "tie_word_embeddings": False,
            "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16"}
    if quantized and spec.quant == "fp8":
        out["quantization_config"] = fp8_config(spec.fp8_block)
    return out


def write_moe(path: Path, spec: MoeSpec, edit: MoeEdit = MoeEdit(), dtype: torch.dtype = torch.bfloat16,
              layer_override=None) -> Path:
    """Write the checkpoint `spec` makes, edited by `edit`, into the directory `path` (sharded by layer).

    `layer_override(layer, tensors)` may replace a layer's tensors (dict of stored names) before the edit.
    Stored as released (`spec.quant`) unless `edit.stored` is "float": then in `dtype`, from the released values.
    """
    if edit.stored not in ("release", "float"):
        raise ValueError(f"MoeEdit.stored is 'release' or 'float', not {edit.stored!r}")
    quantized = spec.quant is not None and edit.stored == "release"
    path.mkdir(parents=True, exist_ok=True)
    shards = max(1, min(spec.shards, spec.layers))
    bounds = np.linspace(0, spec.layers, shards + 1).round().astype(int)
    index: dict[str, str] = {}
    for shard in range(shards):
        name = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        tensors: dict[str, torch.Tensor] = _global_tensors(spec) if shard == 0 else {}
        for layer in range(bounds[shard], bounds[shard + 1]):
            layer_tensors = float_layer(spec, layer)
            if layer_override is not None:
                layer_tensors = layer_override(layer, layer_tensors)
            if not quantized:  # a fine-tune of a quantized release starts from its values
                layer_tensors = released_values(layer_tensors, spec)
            tensors.update(_edit_layer(layer_tensors, spec, layer, edit))
        tensors = _noisy(tensors, edit, shard)
        if quantized:
            tensors = released(tensors, spec)
        stored = {k: (v if v.dtype in (torch.float8_e4m3fn, torch.uint8) or k.endswith("_scale_inv")
                      else v.to(dtype)).contiguous() for k, v in tensors.items()}
        save_file(stored, str(path / name), metadata={"format": "pt"})
        index.update({k: name for k in stored})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    experts = len(edit.keep) if edit.keep is not None else spec.experts
    (path / "config.json").write_text(json.dumps(config(spec, experts, quantized)))
    return path


def dense_layer(spec: MoeSpec, width: int):
    """A `layer_override` for `write_moe` and `write_dense`: the layer's experts and router replaced by one
    dense MLP of `width` units (Qwen2 names)."""
    def override(layer: int, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prefix = f"model.layers.{layer}."
        out = {k: v for k, v in tensors.items() if ".mlp." not in k}
        for part, values in dense_mlp(spec, layer, width).items():
            out[f"{prefix}mlp.{part}_proj.weight"] = values
        return out
    return override


def upcycled_layer(spec: MoeSpec, width: int, noise: float = 0.0, shuffle: bool = False):
    """A `layer_override` for `write_moe`: the experts split from the dense MLP of `dense_layer(spec, width)`
    (expert e takes units e*w..(e+1)*w-1 of it, w = width / experts; `shuffle`: a random partition instead),
    each changed by relative `noise`; the router is new."""
    def override(layer: int, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dense = dense_mlp(spec, layer, width)
        generator = torch.Generator().manual_seed(layer + 17)
        order = torch.randperm(width, generator=generator) if shuffle else torch.arange(width)
        prefix = f"model.layers.{layer}.mlp.experts."
        out = dict(tensors)
        for expert, units in enumerate(order.reshape(spec.experts, -1)):
            parts = {"gate_proj": dense["gate"][units], "up_proj": dense["up"][units], "down_proj": dense["down"][:, units]}
            for part, values in parts.items():
                out[f"{prefix}{expert}.{part}.weight"] = values + noise * values.std() * torch.randn(
                    values.shape, generator=generator)
        return out
    return override


def write_dense(path: Path, spec: MoeSpec, width: int, dtype: torch.dtype = torch.bfloat16) -> Path:
    """The dense model `spec`'s attention and embeddings with one MLP of `width` units per layer (Qwen2 names)."""
    write_moe(path, spec, dtype=dtype, layer_override=dense_layer(spec, width))
    (path / "config.json").write_text(json.dumps({
        **{k: v for k, v in config(spec).items() if "expert" not in k},
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "intermediate_size": width}))
    return path


def spec_named(name: str, **changes) -> MoeSpec:
    """The reduced-width specs of the bench (`FRONTIER`), with changes (e.g. fewer layers)."""
    return replace(FRONTIER[name], **changes)


# Frontier MoEs at tiny width: layer and expert counts of the real models.
FRONTIER = {
    # DeepSeek-V3/R1: 61 layers, 1 shared + 256 routed experts, FP8 (E4M3) with block scales, which double the
    # tensor count. Blocks of 32 x 32: at hidden 64 a 128 x 128 block would cover a whole matrix (one scale, which
    # the reader takes for a per-tensor scale); 32 x 32 keeps several blocks a matrix, as at full width.
    "deepseek-v3": MoeSpec(layers=61, experts=256, shared_dim=32, quant="fp8", fp8_block=(32, 32), shards=8),
    # Kimi K2: 61 layers, 1 shared + 384 routed experts, FP8 block-scaled as DeepSeek-V3.
    "kimi-k2": MoeSpec(layers=61, experts=384, shared_dim=32, quant="fp8", fp8_block=(32, 32), shards=8),
    # Qwen3-235B-A22B: 94 layers, 128 experts, no shared expert.
    "qwen3-235b-a22b": MoeSpec(layers=94, experts=128, shards=8),
    # gpt-oss-120b: 36 layers, 128 experts stacked per layer, stored MXFP4 (gpt-oss's names and layout).
    "gpt-oss-120b": MoeSpec(layers=36, experts=128, layout="gpt-oss", quant="mxfp4", shards=4),
    # The checkpoint: 48 layers x 200 experts, Qwen3-MoE names (29,138 tensors).
    "issue-29k": MoeSpec(layers=48, experts=200, shards=4),
}
