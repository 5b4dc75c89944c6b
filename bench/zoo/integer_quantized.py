"""Hub-style quantized copies written the way their producers store them: GPTQ, AWQ, compressed-tensors, bitsandbytes.

The writers the readers of `provenance/formats/quantized/` (gptq.py, awq.py,
compressed_tensors.py, bitsandbytes.py) are checked against, made with the
formats' own libraries where they run on a CPU, otherwise from the published
layout with a library's packer:

- GPTQ (AutoGPTQ's `QuantLinear`): round-to-nearest codes per group of input
  rows (GPTQ's error feedback needs calibration data and changes nothing of
  the layout); `qweight` [in*b/32, out] and `qzeros` [groups, out*b/32] packed
  by compressed-tensors' `pack_to_int32` (the same little-endian bit stream),
  zero points stored minus one (v1) or as is (`gptq_v2`), `scales` float16
  [groups, out], `g_idx` [in] (a permutation of groups with act-order);
- AWQ (AutoAWQ's GEMM layout): `qweight` [in, out/8], `qzeros` [groups, out/8]
  packed along the output dimension with AWQ's nibble order
  [0, 2, 4, 6, 1, 3, 5, 7], `scales` float16 [groups, out];
- compressed-tensors: its own compressors (`pack-quantized`, `int-quantized`,
  `naive-quantized`, `float-quantized`) with scales from its `calculate_qparams`;
- bitsandbytes: its `quantize_4bit` (NF4 / FP4, optionally double-quantized
  scales) saved as transformers saves `Params4bit`, and `Linear8bitLt`'s
  state dict (LLM.int8).

As in `quantized.py`, only the 2-D weights of the transformer layers are
quantized; embeddings, the head and norms stay as they were.
"""

from __future__ import annotations

import bitsandbytes as bnb
import torch
from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.utils import calculate_qparams

from .quantized import quantized_layer_weight

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # nibble j of an AWQ word holds output column 8c + AWQ_ORDER[j]


def rtn(weight: torch.Tensor, bits: int, group_of_column: torch.Tensor, groups: int, symmetric: bool):
    """Round-to-nearest codes [out, in] (unsigned), float16 scales and integer zero points [out, groups]."""
    top = (1 << bits) - 1
    index = group_of_column.long().expand_as(weight)
    lo = torch.zeros(weight.shape[0], groups).scatter_reduce(1, index, weight, "amin")  # zero included, as
    hi = torch.zeros(weight.shape[0], groups).scatter_reduce(1, index, weight, "amax")  # every producer does
    if symmetric:
        scale = (torch.maximum(hi, -lo) * 2 / top).clamp(min=1e-8).half().float()
        zero = torch.full_like(scale, 1 << (bits - 1), dtype=torch.int32)
    else:
        scale = ((hi - lo) / top).clamp(min=1e-8).half().float()
        zero = torch.round(-lo / scale).to(torch.int32).clamp(0, top)
    codes = torch.clamp(torch.round(weight / scale[:, group_of_column]) + zero[:, group_of_column], 0, top)
    return codes.to(torch.int32), scale.half(), zero


def _pack(codes: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Unsigned codes packed into int32 words along `dim` by compressed-tensors' packer (it takes them centred on 0)."""
    return pack_to_int32((codes - (1 << (bits - 1))).to(torch.int8), bits, packed_dim=dim)


def gptq_module(weight: torch.Tensor, bits: int = 4, group_size: int = 16, symmetric: bool = True,
                act_order: bool = False, v2: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """`weight` [out, in] as GPTQ's qweight / qzeros / scales / g_idx."""
    out, rows = weight.shape
    groups = -(-rows // group_size)
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed)) if act_order else torch.arange(rows)
    g_idx = torch.empty(rows, dtype=torch.int32)  # act-order quantizes columns in `order`, in contiguous groups
    g_idx[order] = (torch.arange(rows) // group_size).to(torch.int32)
    codes, scale, zero = rtn(weight, bits, g_idx.long(), groups, symmetric)
    stored_zero = zero if v2 else (zero - 1).clamp(min=0)  # v1 keeps clamp(zero - 1) (AutoGPTQ), v2 the zero itself
    return {"qweight": _pack(codes.T.contiguous(), bits, 0), "qzeros": _pack(stored_zero.T.contiguous(), bits, 1),
            "scales": scale.T.contiguous(), "g_idx": g_idx}


def awq_module(weight: torch.Tensor, group_size: int = 16, zero_point: bool = True) -> dict[str, torch.Tensor]:
    """`weight` [out, in] as AutoAWQ's GEMM qweight / qzeros / scales (4 bits)."""
    out, rows = weight.shape
    codes, scale, zero = rtn(weight, 4, torch.arange(rows) // group_size, -(-rows // group_size), not zero_point)

    def pack(values):  # [rows, out] -> [rows, out/8] words in AWQ's nibble order
        return _pack(values.view(values.shape[0], -1, 8)[:, :, AWQ_ORDER].reshape(values.shape), 4, 1)

    module = {"qweight": pack(codes.T.contiguous()), "scales": scale.T.contiguous()}
    if zero_point:
        module["qzeros"] = pack(zero.T.contiguous())
    return module


def compressed_tensors_module(weight: torch.Tensor, fmt: str, **weights) -> dict[str, torch.Tensor]:
    """`weight` [out, in] compressed by compressed-tensors' compressor for `fmt` under QuantizationArgs(**weights)."""
    args = QuantizationArgs(**weights)
    out, rows = weight.shape
    if args.strategy == "tensor":
        view = weight.reshape(1, 1, -1)
    elif args.strategy == "channel":
        view = weight.reshape(out, 1, rows)
    elif args.strategy == "group":
        view = weight.reshape(out, rows // args.group_size, args.group_size)
    else:  # block
        high, wide = args.block_structure
        view = weight.reshape(out // high, high, rows // wide, wide).transpose(1, 2).reshape(out // high, rows // wide, -1)
    scale, zero = calculate_qparams(view.amin(-1), view.amax(-1), args)
    if args.strategy == "tensor":
        scale, zero = scale.reshape(1), zero.reshape(1)
    state = {"weight": weight, "weight_scale": scale, "weight_zero_point": zero.to(args.zp_dtype or torch.int8)}
    scheme = QuantizationScheme(targets=["Linear"], weights=args, format=fmt)
    return BaseCompressor.get_value_from_registry(fmt).compress(state, scheme)


def compressed_tensors_config(fmt: str, **weights) -> dict:
    """config.json's quantization_config as llm-compressor writes it (one group for every Linear but the head)."""
    return {"quant_method": "compressed-tensors", "format": fmt, "ignore": ["lm_head"],
            "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], "format": fmt,
                                          "weights": QuantizationArgs(**weights).model_dump(mode="json")}}}


def bnb_module(weight: torch.Tensor, kind: str = "nf4", nested: bool = True, blocksize: int = 64) -> dict[str, torch.Tensor]:
    """`weight` [out, in] quantized by bitsandbytes as transformers saves it: `kind` "nf4", "fp4" or "int8"
    (keys relative to the module: "weight", "weight.absmax", ..., or "weight", "SCB", "weight_format")."""
    if kind == "int8":
        layer = bnb.nn.Linear8bitLt(weight.shape[1], weight.shape[0], bias=False, has_fp16_weights=False)
        layer.load_state_dict({"weight": weight})
        return dict(layer.to("cpu").state_dict())  # bitsandbytes quantizes when the layer moves to its device
    codes, state = bnb.functional.quantize_4bit(weight, quant_type=kind, blocksize=blocksize, compress_statistics=nested)
    return {"weight": codes, **{f"weight.{key}": value for key, value in state.as_dict(packed=True).items()}}


def quantized_state(state: dict[str, torch.Tensor], module_writer, **options) -> dict[str, torch.Tensor]:
    """`state` with each layer weight `X.weight` replaced by `module_writer(weight, **options)`'s tensors under `X.`."""
    stored = {}
    for key, value in state.items():
        if quantized_layer_weight(key, value):
            module = key.removesuffix(".weight")
            stored.update({f"{module}.{part}": tensor for part, tensor in module_writer(value.float(), **options).items()})
        else:
            stored[key] = value
    return stored


def gptq_config(bits: int = 4, group_size: int = 16, symmetric: bool = True, act_order: bool = False,
                v2: bool = False) -> dict:
    return {"quant_method": "gptq", "bits": bits, "group_size": group_size, "sym": symmetric, "desc_act": act_order,
            "checkpoint_format": "gptq_v2" if v2 else "gptq"}


def awq_config(group_size: int = 16, zero_point: bool = True) -> dict:
    return {"quant_method": "awq", "bits": 4, "group_size": group_size, "zero_point": zero_point, "version": "gemm"}


def bnb_config(kind: str = "nf4", nested: bool = True) -> dict:
    if kind == "int8":
        return {"quant_method": "bitsandbytes", "load_in_8bit": True}
    return {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": kind,
            "bnb_4bit_use_double_quant": nested}


# The zoo's Hub-style copies of a LLaMA base (`bench/zoo/build.py`, full slice): label -> (module writer, its
# options, quantization_config, note). Groups of 64 leave a partial last group on the MLP's 344 inputs, as GPTQ
# and AWQ allow; compressed-tensors' group strategy does not, so its copy is per channel.
ZOO_COPIES = {
    "quant-gptq4": (gptq_module, {"bits": 4, "group_size": 64}, gptq_config(4, 64),
                    "GPTQ 4-bit, symmetric, groups of 64, v1 zero points (qweight/qzeros/scales/g_idx)"),
    "quant-gptq8-act-order": (gptq_module, {"bits": 8, "group_size": 64, "symmetric": False, "act_order": True},
                              gptq_config(8, 64, symmetric=False, act_order=True),
                              "GPTQ 8-bit, asymmetric, act-order g_idx, groups of 64"),
    "quant-awq": (awq_module, {"group_size": 64}, awq_config(64), "AWQ 4-bit GEMM, zero points, groups of 64"),
    "quant-ct-w8a8": (compressed_tensors_module, {"fmt": "int-quantized", "num_bits": 8, "strategy": "channel"},
                      compressed_tensors_config("int-quantized", num_bits=8, strategy="channel"),
                      "compressed-tensors int-quantized, int8 per channel (llm-compressor W8A8)"),
    "quant-bnb-nf4": (bnb_module, {"kind": "nf4"}, bnb_config("nf4"), "bitsandbytes NF4, double-quantized scales"),
    "quant-bnb-int8": (bnb_module, {"kind": "int8"}, bnb_config("int8"), "bitsandbytes LLM.int8 (weight + SCB)"),
}
