"""AWQ checkpoints (AutoAWQ's GEMM layout, as transformers and vLLM read them): `qweight`, `qzeros`, `scales`.

Layout, for a Linear of shape [out, in] quantized to 4 bits in groups of
`group_size` input rows:
- `qweight` int32 [in, out/8]: each input row's codes packed along the
  output dimension, eight to a word, in AWQ's interleaved order: the nibble
  at bits 4j..4j+3 of word c holds output column 8c + ORDER[j] with
  ORDER = [0, 2, 4, 6, 1, 3, 5, 7] (AutoAWQ's pack order; compressed-tensors'
  AutoAWQ converter undoes it with the inverse [0, 4, 1, 5, 2, 6, 3, 7]);
- `qzeros` int32 [in/group_size, out/8]: zero points, packed the same way;
- `scales` float16 [in/group_size, out].
A weight is `scales[g] * (code - zero[g])` with g = row // group_size; the
zero point is stored as is (no GPTQ-style offset). Without `qzeros`
(`zero_point: false`) the codes are symmetric around 8. GEMV and the other
kernels' repacked layouts are refused with a sentence, not misread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..base import TensorInfo
from .packing import (FLOAT_DTYPES, by_module, group_index, group_size, grouped_rows, require_dtype, require_finite,
                      require_shape, unpack_codes)
from .scheme import QuantizedTensor

BITS = 4
PER_WORD = 32 // BITS
# Position within a word (nibble j) of output column 8c + p is INVERSE_ORDER[p].
INVERSE_ORDER = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])
# Kernel names whose checkpoints are the GEMM layout (the other kernels repack it on load).
GEMM_VERSIONS = ("gemm", "exllama", "ipex")


class AwqScheme:
    """AutoAWQ's GEMM packing, 4 bits, with or without zero points."""

    name = "awq"

    def find(self, infos: Sequence[TensorInfo], quantization_config: Mapping[str, Any] | None) -> list[QuantizedTensor]:
        config = quantization_config or {}
        if config.get("quant_method", "awq") != "awq":
            return []
        version = str(config.get("version", "gemm")).lower()
        found = []
        for prefix, parts in by_module(infos, ("qweight", "qzeros", "scales")).items():
            qweight, scales = parts.get("qweight"), parts.get("scales")
            if qweight is None or scales is None or len(qweight.shape) != 2 or len(scales.shape) != 2:
                continue
            if scales.shape[1] != qweight.shape[1] * PER_WORD or qweight.shape[1] == 0:
                continue  # not packed along the output dimension: GPTQ's layout, not this one
            rows, out = qweight.shape[0], scales.shape[1]
            found.append(QuantizedTensor(
                name=f"{prefix}.weight", shape=(out, rows), storage="AWQ_INT4",
                parts={key: info.name for key, info in parts.items()},
                detail={"group_size": group_size(rows, scales.shape[0], config), "version": version}))
        return found

    def dequantize(self, tensor: QuantizedTensor, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        detail = tensor.detail or {}
        if detail.get("version", "gemm") not in GEMM_VERSIONS:
            raise ValueError(f"AWQ version {detail.get('version')!r} packs weights in a layout this reader does not "
                             f"know (it reads {', '.join(GEMM_VERSIONS)})")
        out, rows = tensor.shape
        scales = parts["scales"]
        require_dtype(scales, FLOAT_DTYPES, "AWQ scales")
        require_finite(scales, "AWQ scales")
        groups = scales.shape[0]
        qweight = parts["qweight"]
        require_shape(qweight, (rows, out // PER_WORD), "AWQ qweight")
        if "qzeros" in parts:
            zeros = self._unpack(parts["qzeros"], groups, out, "AWQ qzeros")
        else:  # zero_point: false, symmetric codes
            zeros = torch.full((groups, out), 1 << (BITS - 1), dtype=torch.int32)
        index = group_index(rows, int(detail["group_size"]), groups, None)
        return grouped_rows(lambda start, count: self._unpack(qweight[start:start + count], count, out, "AWQ qweight"),
                            rows, zeros, scales, index)

    @staticmethod
    def _unpack(words: torch.Tensor, rows: int, out: int, what: str) -> torch.Tensor:
        """[rows, out] codes in column order from [rows, out/8] words in AWQ's nibble order."""
        require_shape(words, (rows, out // PER_WORD), what)
        codes = unpack_codes(words, BITS, out, dim=1)
        return codes.view(rows, out // PER_WORD, PER_WORD)[:, :, INVERSE_ORDER].reshape(rows, out)


SCHEME = AwqScheme()
