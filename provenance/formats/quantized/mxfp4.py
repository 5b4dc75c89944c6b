"""MXFP4 weights (OCP Microscaling, as gpt-oss ships its experts in safetensors), read back as float32.

Layout (gpt-oss; transformers `integrations/mxfp4.py`): `X_blocks`, U8
[..., rows, G, 16], holds 32 FP4 (E2M1) codes per block of a row, two to a
byte, low nibble first; `X_scales`, U8 (or F8_E8M0) [..., rows, G], one
E8M0 exponent per block: the value is fp4(code) x 2^(exponent - 127). The
E2M1 code is a sign bit, two exponent bits and one mantissa bit (OCP MX
spec v1.0, 5.3.3): magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6. The exponent 255 is
NaN in E8M0, an error here.

The weight's name is X (gpt-oss: `...mlp.experts.gate_up_proj`). A block
tensor of rank 4, [experts, rows, G, 16], is gpt-oss's stacked experts, whose
unquantized layout is [experts, G x 32, rows] (transformers'
`convert_moe_packed_tensors` ends with that transpose: the experts' float
parameters are stored [experts, in, out]). A block tensor of rank 3 is one
Linear weight [rows, G x 32], codes running along its input dimension.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..base import TensorInfo
from .scheme import QuantizedTensor

BLOCK = 32  # values per shared exponent (the MX block size)
CODE_BYTES = BLOCK // 2  # two E2M1 codes per byte
SCALE_DTYPES = ("U8", "F8_E8M0")
E8M0_BIAS = 127
E8M0_NAN = 255
CHUNK_VALUES = 1 << 22  # values decoded at a time, whatever the weight's size


def e2m1_values() -> torch.Tensor:
    """The 16 E2M1 code values, by code: bit 3 the sign, bits 2-1 the exponent (bias 1), bit 0 the mantissa."""
    values = []
    for code in range(16):
        exponent, mantissa = (code >> 1) & 3, code & 1
        magnitude = mantissa * 0.5 if exponent == 0 else 2.0 ** (exponent - 1) * (1 + mantissa / 2)
        values.append(-magnitude if code & 8 else magnitude)
    return torch.tensor(values, dtype=torch.float32)


E2M1 = e2m1_values()


class Mxfp4Scheme:
    """FP4 (E2M1) codes in blocks of 32 sharing a power-of-two scale."""

    name = "mxfp4"

    def find(self, infos: Sequence[TensorInfo], quantization_config: Mapping[str, Any] | None) -> list[QuantizedTensor]:
        by_name = {info.name: info for info in infos}
        found = []
        for info in infos:
            if not info.name.endswith("_blocks") or info.dtype != "U8" or len(info.shape) not in (3, 4) \
                    or info.shape[-1] != CODE_BYTES:
                continue
            name = info.name[: -len("_blocks")]
            scales = by_name.get(name + "_scales")
            if scales is None or scales.dtype not in SCALE_DTYPES:
                continue  # not an MXFP4 pair: read as stored
            if scales.shape != info.shape[:-1]:
                raise ValueError(f"scales {scales.name!r} have shape {list(scales.shape)}, but blocks {info.name!r} "
                                 f"of shape {list(info.shape)} need {list(info.shape[:-1])}")
            *experts, rows, groups, _ = info.shape
            columns = groups * BLOCK
            shape = (experts[0], columns, rows) if experts else (rows, columns)
            found.append(QuantizedTensor(name=name, shape=tuple(shape), storage="MXFP4",
                                         parts={"blocks": info.name, "scales": scales.name},
                                         detail={"transposed": bool(experts), "groups": groups}))
        return found

    def dequantize(self, tensor: QuantizedTensor, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        blocks, scales = parts["blocks"], parts["scales"]
        rows, groups = math.prod(scales.shape[:-1]), scales.shape[-1]
        values = decode(blocks.reshape(rows, groups * CODE_BYTES), scales.reshape(rows, groups), tensor.parts["scales"])
        if (tensor.detail or {}).get("transposed"):
            experts, columns, rows = tensor.shape
            return values.reshape(experts, rows, columns).transpose(1, 2).contiguous()
        return values.reshape(tensor.shape)

    def row_parts(self, tensor: QuantizedTensor, rows: np.ndarray) -> dict[str, np.ndarray | None] | None:
        if (tensor.detail or {}).get("transposed"):
            return None  # a row of the unquantized layout is a column of every stored row: read whole
        groups = tensor.detail["groups"]
        rows = np.asarray(rows, dtype=np.int64)
        block_rows = (rows[:, None] * groups + np.arange(groups)[None, :]).reshape(-1)  # blocks viewed (-1, 16)
        return {"blocks": block_rows, "scales": rows}

    def transposed_row_parts(self, tensor: QuantizedTensor, rows: np.ndarray) -> dict[str, np.ndarray | None] | None:
        """Rows of stacked experts in the stored order ([experts x out, in], the float layout transposed): a row is
        one stored row of blocks and scales, read by range as `row_parts` reads an unstacked tensor's."""
        if not (tensor.detail or {}).get("transposed"):
            return None
        groups = tensor.detail["groups"]
        rows = np.asarray(rows, dtype=np.int64)
        return {"blocks": (rows[:, None] * groups + np.arange(groups)[None, :]).reshape(-1), "scales": rows}

    def dequantize_rows(self, tensor: QuantizedTensor, rows: np.ndarray, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        groups = tensor.detail["groups"]
        return decode(parts["blocks"].reshape(len(rows), groups * CODE_BYTES), parts["scales"].reshape(len(rows), groups),
                      tensor.parts["scales"])


def decode(codes: torch.Tensor, exponents: torch.Tensor, scales_name: str) -> torch.Tensor:
    """Rows of packed codes [n, G x 16] (uint8) and their E8M0 exponents [n, G]: float32 [n, G x 32]."""
    if exponents.dtype != torch.uint8:  # F8_E8M0 read as its own dtype: the same byte
        exponents = exponents.view(torch.uint8)
    if bool((exponents == E8M0_NAN).any()):
        raise ValueError(f"scales {scales_name!r} hold the E8M0 NaN exponent (255)")
    rows, groups = exponents.shape
    values = torch.empty(rows, groups, BLOCK, dtype=torch.float32)
    step = max(1, CHUNK_VALUES // max(groups * BLOCK, 1))
    for start in range(0, rows, step):  # in chunks of rows: the code indices cost 8 bytes a value
        packed = codes[start:start + step].to(torch.uint8)
        nibbles = torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(packed.shape[0], groups, BLOCK)
        powers = (exponents[start:start + step].to(torch.int32) - E8M0_BIAS).unsqueeze(-1).to(torch.float32)
        torch.ldexp(E2M1[nibbles.long()], powers, out=values[start:start + step])  # low nibble first
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"scales {scales_name!r} hold exponents too large for float32")
    return values.reshape(rows, groups * BLOCK)
