"""GPTQ checkpoints (AutoGPTQ, GPTQModel, optimum): `qweight`, `qzeros`, `scales`, `g_idx` read back as one weight.

Layout (AutoGPTQ's `QuantLinear`, kept by GPTQModel and every GPTQ kernel):
for a Linear of shape [out, in] quantized to b bits in groups of
`group_size` input rows,
- `qweight` int32 [in*b/32, out]: the codes of each output column packed
  along the input dimension (`packing.unpack_codes`, dimension 0);
- `qzeros` int32 [groups, out*b/32]: each group's zero points packed along
  the output dimension;
- `scales` float16 [groups, out];
- `g_idx` int32 [in] (optional): the group of each input row; with
  `desc_act` (act-order) it is a permutation, not row // group_size.
A weight is `scales[g] * (code - zero[g])` for the row's group g. The v1
checkpoint (`checkpoint_format` "gptq", every AutoGPTQ file) stores each zero
point minus one and readers add the one back; GPTQModel's "gptq_v2" stores it
as is. Symmetric quantization stores the constant zero 2^(b-1) the same way.
One group over the whole row (`group_size` -1) is the storage
`GPTQ_INT<b>_CHANNEL`, rounder than groups (`GPTQ_INT<b>`).
Bits come from the shapes (qzeros' width against scales', g_idx's length
against qweight's rows) when they tell, otherwise from `quantization_config`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..base import TensorInfo
from .packing import (FLOAT_DTYPES, by_module, group_index, group_size, grouped_rows, require_dtype, require_finite,
                      require_shape, unpack_codes)
from .scheme import QuantizedTensor

BITS = (2, 3, 4, 8)
PARTS = ("qweight", "qzeros", "scales", "g_idx")


def _words(count: int, bits: int) -> int:
    return -(-count * bits // 32)


class GptqScheme:
    """GPTQ's packed int32 layout (v1 and v2 zero points), 2, 3, 4 and 8 bits, with or without act-order."""

    name = "gptq"

    def find(self, infos: Sequence[TensorInfo], quantization_config: Mapping[str, Any] | None) -> list[QuantizedTensor]:
        config = quantization_config or {}
        if config.get("quant_method", "gptq") != "gptq":
            return []
        v2 = "gptq_v2" in (config.get("checkpoint_format"), config.get("format"))
        found = []
        for prefix, parts in by_module(infos, PARTS).items():
            qweight, scales = parts.get("qweight"), parts.get("scales")
            if qweight is None or scales is None or len(qweight.shape) != 2 or len(scales.shape) != 2:
                continue
            out = scales.shape[1]
            if qweight.shape[1] != out:
                continue  # packed along the output dimension: AWQ's layout, not this one
            bits = self._bits(parts, out, config)
            g_idx = parts.get("g_idx")
            rows = g_idx.shape[0] if g_idx is not None and len(g_idx.shape) == 1 else qweight.shape[0] * 32 // bits
            found.append(QuantizedTensor(
                name=f"{prefix}.weight", shape=(out, rows),
                storage=f"GPTQ_INT{bits}" + ("_CHANNEL" if scales.shape[0] == 1 else ""),
                parts={key: info.name for key, info in parts.items()},
                detail={"bits": bits, "group_size": group_size(rows, scales.shape[0], config),
                        "zero_offset": 0 if v2 else 1}))
        return found

    @staticmethod
    def _bits(parts: Mapping[str, TensorInfo], out: int, config: Mapping[str, Any]) -> int:
        """The bit width every stored shape agrees with; the configured one when several do (or none)."""
        qweight, qzeros, g_idx = parts["qweight"], parts.get("qzeros"), parts.get("g_idx")
        fitting = [b for b in BITS
                   if (qzeros is None or (len(qzeros.shape) == 2 and qzeros.shape[1] == _words(out, b)))
                   and (g_idx is None or (len(g_idx.shape) == 1 and qweight.shape[0] == _words(g_idx.shape[0], b)))]
        configured = config.get("bits")
        if configured in fitting or (configured in BITS and len(fitting) != 1):
            return int(configured)
        return fitting[0] if len(fitting) == 1 else 4

    def dequantize(self, tensor: QuantizedTensor, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        detail = tensor.detail or {}
        bits, offset = int(detail["bits"]), int(detail["zero_offset"])
        out, rows = tensor.shape
        scales = parts["scales"]
        require_dtype(scales, FLOAT_DTYPES, "GPTQ scales")
        require_finite(scales, "GPTQ scales")
        groups = scales.shape[0]
        require_shape(scales, (groups, out), "GPTQ scales")
        qweight = parts["qweight"]
        require_dtype(qweight, (torch.int32,), "GPTQ qweight")
        require_shape(qweight, (_words(rows, bits), out), "GPTQ qweight")
        if "qzeros" in parts:
            require_shape(parts["qzeros"], (groups, _words(out, bits)), "GPTQ qzeros")
            zeros = unpack_codes(parts["qzeros"], bits, out, dim=1) + offset
        else:  # symmetric without stored zero points: the midpoint
            zeros = torch.full((groups, out), 1 << (bits - 1), dtype=torch.int32)
        index = group_index(rows, int(detail["group_size"]), groups, parts.get("g_idx"))

        def codes_for(start: int, count: int) -> torch.Tensor:  # 32 rows fill `bits` words exactly
            return unpack_codes(qweight[start * bits // 32:_words(start + count, bits)], bits, count, dim=0)

        return grouped_rows(codes_for, rows, zeros, scales, index)


SCHEME = GptqScheme()
