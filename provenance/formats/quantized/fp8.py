"""FP8 weights with their scales, read back as float32: DeepSeek-V3/R1 and Kimi K2 blocks, channels, tensors.

Layout: `X.weight` stored as F8_E4M3 or F8_E5M2, and beside it
`X.weight_scale_inv` (DeepSeek-V3, transformers' "fp8" quant_method) or
`X.weight_scale` (compressed-tensors, FBGEMM): the float value is code x
scale. The scale is multiplied in both spellings ("_inv" is the inverse of the
factor that quantized): DeepSeek-V3's `inference/kernel.py` `weight_dequant`
computes y = x * s with s[i // 128, j // 128], and transformers'
`finegrained_fp8` does the same. The scale tensor is one of:

- one number (shape [], [1], [1, 1]): per tensor (any rank of weight);
- [out] or [out, 1]: per output channel (row) of an [out, in] weight;
- [ceil(out/bo), ceil(in/bi)]: per block of bo x bi, bo x bi from
  `quantization_config.weight_block_size`, else 128 x 128; a shape not
  divisible by the block ends in partial blocks;
- [out, in/g] (no block size configured): per group of g inputs of a row.

A scale that is zero, negative, NaN or infinite, or of a shape that fits none
of these, is an error, as is a code that decodes to NaN or infinity. The
activation scales beside a weight (`X.input_scale`, `X.input_scale_inv`) are
hidden: nothing about the weights is in them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..base import TensorInfo
from .scheme import QuantizedTensor

FORMATS = {"F8_E4M3": "E4M3", "F8_E5M2": "E5M2"}  # stored dtype -> the FP8 format in storage names
SCALE_SUFFIXES = ("_scale_inv", "_scale")  # appended to the weight's name, in the order looked for
ACTIVATION_SCALES = ("input_scale", "input_scale_inv")  # replace the weight's last name part "weight"
DEFAULT_BLOCK = (128, 128)  # DeepSeek-V3's and transformers' default weight_block_size
CHUNK_VALUES = 1 << 22  # values dequantized at a time (16 MiB of float32), whatever the weight's size


def configured_block(quantization_config: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """`weight_block_size` of the config as (rows, columns), None when it names none."""
    block = (quantization_config or {}).get("weight_block_size")
    if block is None:
        return None
    if (not isinstance(block, (list, tuple)) or len(block) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block)):
        raise ValueError(f"quantization_config weight_block_size {block!r} is not two positive integers")
    return int(block[0]), int(block[1])


def scale_layout(weight: TensorInfo, scale: TensorInfo, block: tuple[int, int] | None) -> tuple[str, int, int]:
    """(granularity, weight rows per scale row, weight columns per scale column) of `scale` on `weight`."""
    if math.prod(scale.shape) == 1:
        return "TENSOR", max(math.prod(weight.shape[:-1]), 1), weight.shape[-1] if weight.shape else 1
    if len(weight.shape) == 2:
        out, inputs = weight.shape
        if scale.shape in ((out,), (out, 1)):
            return "CHANNEL", 1, inputs
        rows, columns = block or DEFAULT_BLOCK
        if scale.shape == (-(-out // rows), -(-inputs // columns)):
            return "BLOCK", rows, columns
        if block is None and len(scale.shape) == 2 and scale.shape[0] == out and inputs % scale.shape[1] == 0:
            return "BLOCK", 1, inputs // scale.shape[1]
        expected = f"[{-(-out // rows)}, {-(-inputs // columns)}] for {rows}x{columns} blocks"
    else:
        expected = "one number (the only scale a weight that is not 2-D can have)"
    raise ValueError(f"scale {scale.name!r} has shape {list(scale.shape)}, which fits weight {weight.name!r} of "
                     f"shape {list(weight.shape)} neither per tensor, per output row nor per block ({expected})")


class Fp8Scheme:
    """FP8 codes times a scale per tensor, output channel or block."""

    name = "fp8"

    def find(self, infos: Sequence[TensorInfo], quantization_config: Mapping[str, Any] | None) -> list[QuantizedTensor]:
        by_name = {info.name: info for info in infos}
        if not any(info.dtype in FORMATS for info in infos):
            return []
        block = configured_block(quantization_config)
        found = []
        for info in infos:
            if info.dtype not in FORMATS:
                continue
            scale = next((by_name[info.name + s] for s in SCALE_SUFFIXES if info.name + s in by_name), None)
            if scale is None:
                continue  # FP8 without a scale: read as it is stored
            granularity, rows, columns = scale_layout(info, scale, block)
            stem = info.name[: -len("weight")] if info.name.endswith("weight") else None
            hidden = tuple(stem + a for a in ACTIVATION_SCALES if stem is not None and stem + a in by_name)
            found.append(QuantizedTensor(
                name=info.name, shape=info.shape, storage=f"FP8_{FORMATS[info.dtype]}_{granularity}",
                parts={"weight": info.name, "scale": scale.name},
                detail={"granularity": granularity, "rows_per_scale": rows, "columns_per_scale": columns,
                        "scale_shape": scale.shape, "hidden": hidden}))
        return found

    def dequantize(self, tensor: QuantizedTensor, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        rows = np.arange(max(math.prod(tensor.shape[:-1]), 1) if tensor.shape else 1)
        row_parts = self.row_parts(tensor, rows)
        scale = parts["scale"]
        if row_parts["scale"] is not None:  # the scale rows of every weight row
            scale = scale.reshape(-1, scale.shape[-1])[torch.from_numpy(row_parts["scale"])]
        values = self.dequantize_rows(tensor, rows, {"weight": parts["weight"], "scale": scale})
        return values.reshape(tensor.shape)

    def row_parts(self, tensor: QuantizedTensor, rows: np.ndarray) -> dict[str, np.ndarray | None]:
        detail = tensor.detail or {}
        rows = np.asarray(rows, dtype=np.int64)
        if detail["granularity"] == "TENSOR" or len(detail["scale_shape"]) < 2:
            return {"weight": rows, "scale": None}  # a scalar or an [out] vector: read whole (small)
        return {"weight": rows, "scale": rows // detail["rows_per_scale"]}

    def dequantize_rows(self, tensor: QuantizedTensor, rows: np.ndarray, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        detail = tensor.detail or {}
        codes = parts["weight"]
        codes = codes.reshape(-1, codes.shape[-1] if codes.dim() else 1)
        scale = checked_scale(parts["scale"], tensor.parts["scale"])
        if detail["granularity"] == "TENSOR":
            scale = scale.reshape(1, 1)
        elif len(detail["scale_shape"]) < 2:  # [out]: one scale per row, read whole
            scale = scale[torch.from_numpy(np.asarray(rows, dtype=np.int64))].unsqueeze(1)
        values = torch.empty(codes.shape, dtype=torch.float32)
        step = max(1, CHUNK_VALUES // max(codes.shape[1], 1))
        for start in range(0, codes.shape[0], step):  # in chunks of rows: a block scale expanded costs a float each
            chunk = scale[start:start + step] if scale.shape[0] > 1 else scale
            if chunk.shape[1] > 1:
                chunk = chunk.repeat_interleave(detail["columns_per_scale"], dim=1)[:, :codes.shape[1]]
            torch.mul(codes[start:start + step].to(torch.float32), chunk, out=values[start:start + step])
        bad = int((~torch.isfinite(values)).sum())
        if bad:
            raise ValueError(f"{bad} codes of {tensor.parts['weight']!r} decode to NaN or infinity")
        return values


def checked_scale(scale: torch.Tensor, name: str) -> torch.Tensor:
    """`scale` as float32, refused unless every value is finite and above zero."""
    if not scale.is_floating_point():
        raise ValueError(f"scale {name!r} is stored as {str(scale.dtype).replace('torch.', '')}, not a float type")
    scale = scale.to(torch.float32)
    bad = int((~(torch.isfinite(scale) & (scale > 0))).sum())
    if bad:
        raise ValueError(f"scale {name!r} holds {bad} values that are zero, negative, NaN or infinite")
    return scale
