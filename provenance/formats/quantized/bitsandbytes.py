"""bitsandbytes checkpoints as transformers saves them: NF4 / FP4 (`load_in_4bit`) and LLM.int8 (`load_in_8bit`).

4-bit (bitsandbytes' `Params4bit` / `QuantState.as_dict(packed=True)`), for
a weight `X.weight` of n values:
- `X.weight` uint8 [ceil(n/2), 1] (or the same bytes viewed as another
  `quant_storage` dtype): two 4-bit codes a byte, the first value in the
  high nibble, over the row-major flattened weight;
- `X.weight.absmax` float32 [n/blocksize]: each block's scale; with nested
  ("double") quantization it is uint8 codes themselves, decoded as
  `nested_quant_map[code] * nested_absmax[i // nested_blocksize] + nested_offset`;
- `X.weight.quant_map` float32 [16]: the code book (NF4's normal quantiles or FP4's values);
- `X.weight.quant_state.bitsandbytes__nf4` (or `__fp4`): a JSON object in
  uint8 bytes with `quant_type`, `blocksize`, `dtype`, `shape` and the
  nested fields (`nested_blocksize`, `nested_dtype`, `nested_offset`).
A value is `quant_map[code] * absmax[block]`, then rounded to `dtype`, as
bitsandbytes' `dequantize_4bit` does.

8-bit (`Linear8bitLt`): `X.weight` int8 [out, in] and `X.SCB` float32 [out]
(some writers spell it `X.weight.SCB`), beside a one-byte `X.weight_format`
(0: row-major; the other, GPU tile layouts are refused); a value is
`code * SCB[row] / 127` (bitsandbytes' `int8_vectorwise_dequant`).

The 4-bit weight's shape is only in the JSON, which `find` cannot read (it
sees names and shapes, no data). So `find` infers it: [len(bias), n/len]
when the module has a bias, else from the hidden size (the commonest length
of the norm weights) with the hidden size as the input dimension, except for
the projections that write back into the hidden state (`OUTPUT_PROJECTIONS`).
The read checks the inference against the JSON's shape and refuses a
mismatch, so a wrong guess is an error, never misplaced values.
bitsandbytes itself is not used to read (its CPU kernels are optional and its
import is heavy); the tests check these functions against it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..base import TensorInfo
from . import packing
from .packing import by_module, require_dtype, require_finite, require_shape
from .scheme import QuantizedTensor

STATE_KEYS = {"quant_state.bitsandbytes__nf4": "NF4", "quant_state.bitsandbytes__fp4": "FP4"}
FOUR_BIT_PARTS = ("absmax", "quant_map", "nested_absmax", "nested_quant_map", *STATE_KEYS)
# Last name component of the projections whose output is the hidden state (attention output, MLP down):
# only the first guess of a 4-bit weight's orientation, checked against the stored shape on read.
OUTPUT_PROJECTIONS = ("o_proj", "down_proj", "out_proj", "dense_4h_to_h", "fc2", "w2", "wo", "c_proj")
OUTPUT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MAX_STATE_BYTES = 4096  # the JSON is about 170 bytes; anything far larger is not a quant state
RECIPROCAL_127 = torch.tensor(1 / 127, dtype=torch.float32)  # bitsandbytes multiplies by float32(1/127)


def hidden_size(infos: Sequence[TensorInfo]) -> int | None:
    """The commonest length of the 1-D norm weights (the width of the hidden state), None without norms."""
    lengths = Counter(info.shape[0] for info in infos if len(info.shape) == 1 and "norm" in info.name.lower())
    return lengths.most_common(1)[0][0] if lengths else None


def guess_shape(module: str, values: int, infos_by_name: Mapping[str, TensorInfo], hidden: int | None) -> tuple[int, int]:
    bias = infos_by_name.get(module.removesuffix(".weight") + ".bias")
    if bias is not None and len(bias.shape) == 1 and bias.shape[0] and values % bias.shape[0] == 0:
        return bias.shape[0], values // bias.shape[0]
    if hidden and values % hidden == 0:
        other = values // hidden
        writes_hidden = module.removesuffix(".weight").rpartition(".")[2] in OUTPUT_PROJECTIONS
        return (hidden, other) if writes_hidden else (other, hidden)
    return values, 1


def quant_state(blob: torch.Tensor) -> dict[str, Any]:
    """The JSON object of a `quant_state.bitsandbytes__*` tensor."""
    if blob.dtype != torch.uint8 or blob.dim() != 1 or blob.numel() > MAX_STATE_BYTES:
        raise ValueError("the 4-bit quant_state is not a short uint8 vector of JSON text")
    try:
        state = json.loads(bytes(blob.tolist()).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the 4-bit quant_state is not JSON ({exc})") from None
    if not isinstance(state, dict):
        raise ValueError("the 4-bit quant_state is not a JSON object")
    return state


def _positive_int(state: Mapping[str, Any], key: str) -> int:
    value = state.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"the 4-bit quant_state's {key} is {value!r}, not a positive integer")
    return value


class BitsAndBytesScheme:
    """bitsandbytes NF4 and FP4 (plain or double-quantized scales) and LLM.int8 row-wise int8."""

    name = "bitsandbytes"

    def find(self, infos: Sequence[TensorInfo], quantization_config: Mapping[str, Any] | None) -> list[QuantizedTensor]:
        config = quantization_config or {}
        if config.get("quant_method", "bitsandbytes") != "bitsandbytes":
            return []
        by_name = {info.name: info for info in infos}
        hidden = hidden_size(infos)
        found = []
        for module, parts in by_module(infos, FOUR_BIT_PARTS).items():
            states = [key for key in STATE_KEYS if key in parts]
            weight = by_name.get(module)
            if weight is None or len(states) != 1 or "absmax" not in parts:
                continue
            stored = {"weight": module, **{key: info.name for key, info in parts.items()}}
            shape = guess_shape(module, weight.nbytes * 2, by_name, hidden)
            found.append(QuantizedTensor(name=module, shape=shape, storage=f"BNB_{STATE_KEYS[states[0]]}",
                                         parts=stored, detail={"state": states[0]}))
        for info in infos:
            if not info.name.endswith(".weight") or info.dtype != "I8" or len(info.shape) != 2:
                continue
            prefix = info.name.removesuffix(".weight")
            scb = by_name.get(prefix + ".SCB") or by_name.get(info.name + ".SCB")
            if scb is None:
                continue
            stored = {"weight": info.name, "SCB": scb.name}
            if prefix + ".weight_format" in by_name:
                stored["weight_format"] = prefix + ".weight_format"
            found.append(QuantizedTensor(name=info.name, shape=tuple(info.shape), storage="BNB_INT8", parts=stored))
        return found

    def dequantize(self, tensor: QuantizedTensor, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if tensor.storage == "BNB_INT8":
            return self._int8(tensor, parts)
        return self._four_bit(tensor, parts)

    def row_parts(self, tensor: QuantizedTensor, rows: np.ndarray) -> dict[str, np.ndarray | None] | None:
        """LLM.int8: the weight's rows (the row scales are read whole); 4-bit codes are flat, so read whole."""
        if tensor.storage != "BNB_INT8":
            return None
        return {key: np.asarray(rows, dtype=np.int64) if key == "weight" else None for key in tensor.parts}

    def dequantize_rows(self, tensor: QuantizedTensor, rows: np.ndarray, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._int8(tensor, parts, np.asarray(rows, dtype=np.int64))

    @staticmethod
    def _int8(tensor: QuantizedTensor, parts: Mapping[str, torch.Tensor], rows: np.ndarray | None = None) -> torch.Tensor:
        weight, scb = parts["weight"], parts["SCB"]
        require_dtype(weight, (torch.int8,), "the int8 weight")
        require_shape(weight, (tensor.shape[0] if rows is None else len(rows), tensor.shape[1]), "the int8 weight")
        require_dtype(scb, (torch.float32, torch.float16, torch.bfloat16), "the row scales (SCB)")
        require_shape(scb, (tensor.shape[0],), "the row scales (SCB)")
        require_finite(scb, "the row scales (SCB)")
        layout = parts.get("weight_format")
        if layout is not None and (layout.numel() != 1 or int(layout.flatten()[0]) != 0):
            raise ValueError("the int8 weight is in a GPU tile layout (weight_format not 0), not row-major")
        scb = scb if rows is None else scb[torch.from_numpy(rows)]
        return weight.to(torch.float32) * scb.to(torch.float32).view(-1, 1) * RECIPROCAL_127

    @staticmethod
    def _four_bit(tensor: QuantizedTensor, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        state = quant_state(parts[tensor.detail["state"]])
        stated = state.get("shape")
        if not isinstance(stated, list) or list(tensor.shape) != stated:
            raise ValueError(f"the quant_state gives shape {stated}, but the checkpoint's other tensors imply "
                             f"{list(tensor.shape)} (a 4-bit weight's shape is read from its bias or the hidden size)")
        values = math.prod(stated)
        blocksize = _positive_int(state, "blocksize")
        dtype = OUTPUT_DTYPES.get(state.get("dtype", "float32"))
        if dtype is None:
            raise ValueError(f"the quant_state's dtype {state.get('dtype')!r} is not a float type")
        packed = parts["weight"].contiguous().view(torch.uint8).flatten()
        if packed.numel() != -(-values // 2):
            raise ValueError(f"{values} 4-bit values need {-(-values // 2)} bytes, the weight holds {packed.numel()}")
        code_book = parts.get("quant_map")
        if code_book is None:
            raise ValueError("the 4-bit weight has no quant_map")
        require_dtype(code_book, (torch.float32,), "the quant_map")
        require_shape(code_book, (16,), "the quant_map")
        absmax = BitsAndBytesScheme._absmax(state, parts, -(-values // blocksize))
        result = torch.empty(values, dtype=torch.float32)
        step = max(1, packing.CHUNK_VALUES // (2 * blocksize)) * 2 * blocksize  # whole blocks and whole bytes
        for start in range(0, values, step):  # a chunk of blocks at a time: bounded intermediates
            end = min(values, start + step)
            chunk = packed[start // 2:-(-end // 2)]
            codes = torch.stack([chunk >> 4, chunk & 0xF], dim=1).flatten()[:end - start].long()
            scale = absmax[start // blocksize:-(-end // blocksize)].repeat_interleave(blocksize)[:end - start]
            result[start:end] = (code_book[codes] * scale).to(dtype)
        return result.reshape(stated)

    @staticmethod
    def _absmax(state: Mapping[str, Any], parts: Mapping[str, torch.Tensor], blocks: int) -> torch.Tensor:
        """Each block's scale, decoding the double quantization (8-bit codes of the scales) where there is one."""
        absmax = parts["absmax"]
        require_shape(absmax, (blocks,), "the 4-bit block scales (absmax)")
        if "nested_absmax" not in parts:
            require_dtype(absmax, (torch.float32,), "the 4-bit block scales (absmax)")
            require_finite(absmax, "the 4-bit block scales (absmax)")
            return absmax
        require_dtype(absmax, (torch.uint8,), "the double-quantized block scales (absmax)")
        nested, book = parts["nested_absmax"], parts.get("nested_quant_map")
        if book is None:
            raise ValueError("the double-quantized block scales have no nested_quant_map")
        require_dtype(book, (torch.float32,), "the nested_quant_map")
        require_shape(book, (256,), "the nested_quant_map")
        size = _positive_int(state, "nested_blocksize")
        require_shape(nested, (-(-blocks // size),), "the nested block scales (nested_absmax)")
        require_finite(nested, "the nested block scales (nested_absmax)")
        offset = state.get("nested_offset", 0.0)
        if not isinstance(offset, (int, float)) or not math.isfinite(offset):
            raise ValueError(f"the quant_state's nested_offset {offset!r} is not a finite number")
        return book[absmax.long()] * nested.to(torch.float32).repeat_interleave(size)[:blocks] + offset


SCHEME = BitsAndBytesScheme()
