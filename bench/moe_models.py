"""Generated mixture-of-experts checkpoints at tiny width, shaped like the largest open MoEs.

`write_moe` writes a Hugging Face directory (config.json, safetensors shards
and their index) with Qwen2-MoE tensor names (`model.layers.L.mlp.experts.E.
{gate,up,down}_proj`, a shared expert when asked): the family table
`qwen2_moe` maps them, as it would a real Qwen3-MoE or Qwen1.5-MoE
checkpoint. Only the counts are frontier-sized (layers, experts, tensors);
widths are tiny (hidden 64, expert width 32 by default) so that a
90,000-tensor checkpoint is a few hundred megabytes and is written in seconds.

`MoeSpec.scales` adds one small float32 tensor per matrix (`<name>_scale_inv`,
shape (1, 1)), as DeepSeek-V3's FP8 files carry one block-scale tensor per
weight: it doubles the tensor count as the real file does, and no role maps it.

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
    scales: bool = False  # one (1, 1) float32 block-scale tensor per matrix (DeepSeek-V3's FP8 layout)
    shards: int = 4

    def tensor_count(self) -> int:
        per_layer = 4 + 2 + 1 + 3 * self.experts + (4 if self.shared_dim else 0)
        matrices = 4 + 1 + 3 * self.experts + (4 if self.shared_dim else 0)
        total = 3 + self.layers * per_layer
        return total + (self.layers * matrices if self.scales else 0)


@dataclass(frozen=True)
class MoeEdit:
    """How a copy differs from the model its spec makes (applied in this order)."""

    keep: tuple[int, ...] | None = None  # experts kept, in this order (a permutation when all are kept)
    noise: float = 0.0  # relative Gaussian noise added to every tensor (fine-tuning)
    noise_seed: int = 1


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


def _global_tensors(spec: MoeSpec) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(spec.seed * 1_000_003 - 1)
    return {"model.embed_tokens.weight": torch.randn(spec.vocab, spec.hidden, generator=generator),
            "lm_head.weight": torch.randn(spec.vocab, spec.hidden, generator=generator) / math.sqrt(spec.hidden),
            "model.norm.weight": 1 + 0.1 * torch.randn(spec.hidden, generator=generator)}


def _edit_layer(tensors: dict[str, torch.Tensor], spec: MoeSpec, layer: int, edit: MoeEdit) -> dict[str, torch.Tensor]:
    if edit.keep is None:
        return tensors
    prefix = f"model.layers.{layer}."
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


def config(spec: MoeSpec, experts: int | None = None) -> dict:
    experts = spec.experts if experts is None else experts
    return {"model_type": "qwen2_moe" if spec.shared_dim else "qwen3_moe",
            "architectures": ["Qwen2MoeForCausalLM" if spec.shared_dim else "Qwen3MoeForCausalLM"],
            "hidden_size": spec.hidden, "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
            "num_key_value_heads": spec.kv_heads, "head_dim": spec.hidden // spec.heads,
            "intermediate_size": spec.expert_dim * 4, "moe_intermediate_size": spec.expert_dim,
            "shared_expert_intermediate_size": spec.shared_dim, "num_experts": experts,
            "num_experts_per_tok": min(8, experts), "vocab_size": spec.vocab, "tie_word_embeddings": False,
            "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16"}


def write_moe(path: Path, spec: MoeSpec, edit: MoeEdit = MoeEdit(), dtype: torch.dtype = torch.bfloat16,
              layer_override=None) -> Path:
    """Write the checkpoint `spec` makes, edited by `edit`, into the directory `path` (sharded by layer).

    `layer_override(layer, tensors)` may replace a layer's tensors (dict of stored names) before the edit.
    """
    path.mkdir(parents=True, exist_ok=True)
    shards = max(1, min(spec.shards, spec.layers))
    bounds = np.linspace(0, spec.layers, shards + 1).round().astype(int)
    index: dict[str, str] = {}
    for shard in range(shards):
        name = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        tensors: dict[str, torch.Tensor] = _global_tensors(spec) if shard == 0 else {}
        for layer in range(bounds[shard], bounds[shard + 1]):
            layer_tensors = _layer_tensors(spec, layer)
            if layer_override is not None:
                layer_tensors = layer_override(layer, layer_tensors)
            tensors.update(_edit_layer(layer_tensors, spec, layer, edit))
        tensors = _noisy(tensors, edit, shard)
        if spec.scales:
            tensors.update({k + "_scale_inv": torch.ones(1, 1) for k, v in list(tensors.items()) if v.dim() == 2})
        stored = {k: v.to(dtype if not k.endswith("_scale_inv") else torch.float32).contiguous()
                  for k, v in tensors.items()}
        save_file(stored, str(path / name), metadata={"format": "pt"})
        index.update({k: name for k in stored})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    experts = len(edit.keep) if edit.keep is not None else spec.experts
    (path / "config.json").write_text(json.dumps(config(spec, experts)))
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
    # DeepSeek-V3/R1: 61 layers, 1 shared + 256 routed experts; FP8 block scales double the tensor count.
    "deepseek-v3": MoeSpec(layers=61, experts=256, shared_dim=32, scales=True, shards=8),
    # Kimi K2: 61 layers, 1 shared + 384 routed experts.
    "kimi-k2": MoeSpec(layers=61, experts=384, shared_dim=32, shards=8),
    # Qwen3-235B-A22B: 94 layers, 128 experts, no shared expert.
    "qwen3-235b-a22b": MoeSpec(layers=94, experts=128, shards=8),
    # gpt-oss-120b: 36 layers, 128 experts (MXFP4 in the real files: bf16 here).
    "gpt-oss-120b": MoeSpec(layers=36, experts=128, shards=4),
    # The checkpoint: 48 layers x 200 experts, Qwen3-MoE names (29,138 tensors).
    "issue-29k": MoeSpec(layers=48, experts=200, shards=4),
}
