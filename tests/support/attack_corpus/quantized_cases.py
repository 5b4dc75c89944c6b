"""Hub-quantized checkpoints whose parts lie: group indices, JSON quant states, stated shapes, unknown packings."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.zoo.integer_quantized import (awq_config, awq_module, bnb_config, bnb_module, compressed_tensors_config,
                                         compressed_tensors_module, gptq_config, gptq_module, quantized_state)

from .corpus import Corpus, tiny_config, tiny_state, write_model_dir

LAYER = "model.layers.0.mlp.up_proj"
PACK4 = dict(num_bits=4, strategy="group", group_size=16, symmetric=True)


def _model(c: Corpus, name: str, state: dict[str, torch.Tensor], quantization_config: dict) -> Path:
    directory = write_model_dir(c.directory(f"quantized/{name}"), state)
    (directory / "config.json").write_text(json.dumps({**tiny_config(), "quantization_config": quantization_config}))
    return directory


def add_cases(c: Corpus) -> None:
    base = tiny_state(5)

    state = quantized_state(base, gptq_module, bits=4)
    state[f"{LAYER}.g_idx"] = torch.full_like(state[f"{LAYER}.g_idx"], 1000)
    p = _model(c, "gptq_g_idx", state, gptq_config(4))
    c.checkpoint("quantized/gptq_g_idx_out_of_range", "GPTQ g_idx naming group 1000 of 2", p, p / "model.safetensors",
                 "outside", inspect_ok=True)

    state = quantized_state(base, bnb_module, kind="nf4")
    blob = f"{LAYER}.weight.quant_state.bitsandbytes__nf4"
    state[blob] = torch.tensor(list(b"{'shape': not json"), dtype=torch.uint8)
    p = _model(c, "bnb_state_not_json", state, bnb_config("nf4"))
    c.checkpoint("quantized/bnb_quant_state_not_json", "bitsandbytes NF4 quant_state that is not JSON", p,
                 p / "model.safetensors", "not JSON", inspect_ok=True)

    state = quantized_state(base, compressed_tensors_module, fmt="pack-quantized", **PACK4)
    state[f"{LAYER}.weight_shape"] = torch.tensor([48, 4096])
    p = _model(c, "ct_weight_shape", state, compressed_tensors_config("pack-quantized", **PACK4))
    c.checkpoint("quantized/ct_weight_shape_lies", "compressed-tensors weight_shape [48, 4096] for [48, 32] codes", p,
                 p / "model.safetensors", "weight_shape says", inspect_ok=True)

    p = _model(c, "awq_gemv", quantized_state(base, awq_module), {**awq_config(), "version": "gemv"})
    c.checkpoint("quantized/awq_gemv_packing", "AWQ declared as GEMV (a packing not read)", p, p / "model.safetensors",
                 "gemv", inspect_ok=True)
