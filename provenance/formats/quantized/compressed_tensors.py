"""compressed-tensors checkpoints (vLLM's llm-compressor): `pack-quantized`, `int-quantized`, `naive-quantized`, `float-quantized`.

config.json's `quantization_config` (`quant_method: compressed-tensors`)
names a `format` for the whole checkpoint (or `mixed-precision`, with a
`format` per group), `config_groups` whose `targets` (module names, `re:`
regular expressions matched from the start of the name, or class names such
as "Linear") say which modules each group's `weights` arguments apply to
(`num_bits`, `type` int or float, `symmetric`, `strategy` tensor / channel /
group / block, `group_size`, `block_structure`), and `ignore`: modules left
unquantized. A quantized module stores, beside its bias:
- `pack-quantized` (int, 1 to 8 bits): `weight_packed` int32 [out, in*b/32]
  (codes offset by 2^(b-1), packed densely along the input dimension),
  `weight_shape` int [2], `weight_scale`, and for asymmetric group or
  channel quantization `weight_zero_point` packed the same way along the
  output dimension [out*b/32, groups]; legacy act-order files add
  `weight_g_idx` [in];
- `int-quantized` / `naive-quantized`: `weight` int8 [out, in] (signed
  codes), `weight_scale`, `weight_zero_point` (int8, unpacked) when asymmetric;
- `float-quantized`: `weight` float8 [out, in] and `weight_scale`.
A weight is `(code - zero point) * scale` with the scale (and zero point)
spread over the strategy's tensor / row / group of columns / block. The
layout is compressed-tensors' (`compressors/pack_quantized`,
`compressors/naive_quantized`, `quantization/lifecycle/forward.py`); the
package itself is not a runtime dependency (it imports transformers whole
and its decompressor no longer reads `weight_g_idx`), so the arithmetic is
written here and the tests check it against the package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..base import TensorInfo
from . import packing
from .packing import FLOAT_DTYPES, by_module, group_index, require_dtype, require_finite, require_shape, unpack_codes
from .scheme import QuantizedTensor

PARTS = ("weight_packed", "weight", "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx")
FORMATS = ("pack-quantized", "int-quantized", "naive-quantized", "float-quantized")
FLOAT8_STORAGE = {"F8_E4M3": "F8_E4M3", "F8_E5M2": "F8_E5M2"}
FLOAT8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
PACKED_ZERO_STRATEGIES = ("group", "channel")  # pack-quantized packs these zero points along the output rows
# Storage names of integer codes by strategy: a scale per row or per tensor rounds coarser than per group or block.
GRANULARITY = {"channel": "_CHANNEL", "tensor": "_TENSOR"}


def _valid_block(block: Any) -> bool:
    return isinstance(block, Sequence) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)


def _is_class(target: str) -> bool:
    return target[:1].isupper() and "." not in target and not target.startswith("re:")


def _matches(module: str, target: str) -> bool:
    """compressed-tensors' `match_name` for a module known only by name: a `re:` pattern matches from the start
    of the name, any other target the whole name; a class name ("Linear") matches every module here, since
    every weight this scheme finds belongs to a quantized (so quantizable) module."""
    if target.startswith("re:"):
        return re.match(target[3:], module) is not None
    return _is_class(target) or module == target


def _by_name(module: str, target: str) -> bool:
    return not _is_class(target) and _matches(module, target)


class CompressedTensorsScheme:
    """The integer and float8 formats of compressed-tensors (not its sparse, NVFP4 or MX formats)."""

    name = "compressed-tensors"

    def find(self, infos: Sequence[TensorInfo], quantization_config: Mapping[str, Any] | None) -> list[QuantizedTensor]:
        config = quantization_config or {}
        if config.get("quant_method") != "compressed-tensors":
            return []
        groups = [g for g in (config.get("config_groups") or {}).values() if isinstance(g, Mapping)]
        ignore = [str(t) for t in config.get("ignore") or []]
        found = []
        for module, parts in by_module(infos, PARTS).items():
            stored = parts.get("weight_packed") or parts.get("weight")
            if stored is None or "weight_scale" not in parts or any(_by_name(module, t) for t in ignore):
                continue
            group = self._group_of(module, groups)
            weights = (group or {}).get("weights")
            fmt = (group or {}).get("format") or config.get("format")
            if not isinstance(weights, Mapping) or fmt not in FORMATS:
                continue
            if (fmt == "pack-quantized") != ("weight_packed" in parts):
                continue
            args = {"num_bits": int(weights.get("num_bits") or 8), "type": weights.get("type", "int"),
                    "strategy": weights.get("strategy") or "tensor", "group_size": weights.get("group_size"),
                    "block_structure": weights.get("block_structure"), "format": fmt,
                    "part_rows": {key: info.shape[0] for key, info in parts.items() if len(info.shape) == 2}}
            shape = self._shape(parts, args)
            if args["type"] == "float":
                storage = FLOAT8_STORAGE.get(stored.dtype, "F8_E4M3")
            else:
                storage = f"INT{args['num_bits']}" + GRANULARITY.get(args["strategy"], "")
            found.append(QuantizedTensor(name=f"{module}.weight", shape=shape, storage=storage,
                                         parts={key: info.name for key, info in parts.items()}, detail=args))
        return found

    @staticmethod
    def _group_of(module: str, groups: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
        """The config group whose targets name this module, before a group that targets its class."""
        by_name = [g for g in groups if any(_by_name(module, str(t)) for t in g.get("targets") or [])]
        by_class = [g for g in groups if any(_matches(module, str(t)) for t in g.get("targets") or [])]
        return (by_name or by_class or [None])[0]

    @staticmethod
    def _shape(parts: Mapping[str, TensorInfo], args: Mapping[str, Any]) -> tuple[int, ...]:
        """[out, in]: the stored weight's shape, or for packed codes what the packing and groups imply."""
        if "weight_packed" not in parts:
            return tuple(parts["weight"].shape)
        packed, bits = parts["weight_packed"], args["num_bits"]
        if len(packed.shape) != 2:
            return tuple(packed.shape)
        if "weight_g_idx" in parts and len(parts["weight_g_idx"].shape) == 1:
            return packed.shape[0], parts["weight_g_idx"].shape[0]
        scale, size = parts["weight_scale"], args.get("group_size")
        if args["strategy"] == "group" and isinstance(size, int) and len(scale.shape) == 2:
            rows = scale.shape[1] * size
            if -(-rows * bits // 32) == packed.shape[1]:
                return packed.shape[0], rows
        return packed.shape[0], packed.shape[1] * 32 // bits

    def dequantize(self, tensor: QuantizedTensor, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The weight, a chunk of rows at a time when its parts can be cut by rows (bounded intermediates)."""
        out, columns = tensor.shape
        step = max(1, packing.CHUNK_VALUES // max(columns, 1))
        chunks = [np.arange(start, min(out, start + step)) for start in range(0, out, step)]
        plans = [self.row_parts(tensor, rows) for rows in chunks] if len(chunks) > 1 else [None]
        if any(plan is None for plan in plans):
            return self._dequantized(tensor, parts, None)
        result = torch.empty(out, columns, dtype=torch.float32)
        for rows, plan in zip(chunks, plans):
            cut = {key: value if plan.get(key) is None else value.reshape(-1, value.shape[-1])[torch.from_numpy(plan[key])]
                   for key, value in parts.items()}
            result[int(rows[0]):int(rows[-1]) + 1] = self._dequantized(tensor, cut, rows)
        return result

    def row_parts(self, tensor: QuantizedTensor, rows: np.ndarray) -> dict[str, np.ndarray | None] | None:
        """The rows of the codes and of 2-D per-row, per-group or per-block scales (and unpacked zero points);
        a per-tensor scale, zero points packed along the rows, weight_shape and g_idx are read whole."""
        args = tensor.detail or {}
        rows = np.asarray(rows, dtype=np.int64)
        if args["strategy"] == "tensor":
            per_row = None
        elif args["strategy"] == "block":
            block = args.get("block_structure")
            if not _valid_block(block):
                return None  # read whole: `dequantize` says what is wrong
            per_row = rows // block[0]
        else:
            per_row = rows
        packed_zero = args["format"] == "pack-quantized" and args["strategy"] in PACKED_ZERO_STRATEGIES
        plan: dict[str, np.ndarray | None] = {}
        for key in tensor.parts:
            if key in ("weight", "weight_packed"):
                plan[key] = rows
            elif key == "weight_scale" or (key == "weight_zero_point" and not packed_zero):
                plan[key] = per_row
            else:
                plan[key] = None
        part_rows = args.get("part_rows", {})
        if any(wanted is not None and (key not in part_rows or (len(wanted) and int(wanted.max()) >= part_rows[key]))
               for key, wanted in plan.items()):
            return None  # a part that is not 2-D or has too few rows: read whole, and `dequantize` says what is wrong
        return plan

    def dequantize_rows(self, tensor: QuantizedTensor, rows: np.ndarray, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._dequantized(tensor, parts, np.asarray(rows, dtype=np.int64))

    def _dequantized(self, tensor: QuantizedTensor, parts: Mapping[str, torch.Tensor],
                     rows: np.ndarray | None) -> torch.Tensor:
        """The weight, or the given `rows` of it from the parts `row_parts` planned."""
        args = tensor.detail or {}
        out, columns = tensor.shape
        selected = out if rows is None else len(rows)
        bits = int(args["num_bits"])
        scale = parts["weight_scale"]
        require_dtype(scale, FLOAT_DTYPES, "the weight scale")
        require_finite(scale, "the weight scale")
        zero = parts.get("weight_zero_point")
        if args["format"] == "pack-quantized":
            if "weight_shape" in parts:
                stated = [int(v) for v in parts["weight_shape"].flatten().tolist()]
                if stated != [out, columns]:
                    raise ValueError(f"weight_shape says {stated}, but the packed codes and scales hold [{out}, {columns}]")
            codes = unpack_codes(parts["weight_packed"], bits, columns, dim=1) - (1 << (bits - 1))
            if zero is not None and args["strategy"] in PACKED_ZERO_STRATEGIES:
                require_shape(zero, (-(-out * bits // 32), scale.shape[-1]), "the packed weight zero point")
                zero = unpack_codes(zero, bits, out, dim=0) - (1 << (bits - 1))
                zero = zero if rows is None else zero[torch.from_numpy(rows)]
        else:
            codes = parts["weight"]
            require_shape(codes, (selected, columns), "the quantized weight")
            require_dtype(codes, FLOAT8_DTYPES if args["type"] == "float" else (torch.int8,), "the quantized weight")
        if rows is not None and args["strategy"] == "block":  # a row's block scales: groups of block-width columns
            args = {**args, "strategy": "group", "group_size": args["block_structure"][1]}
        values = codes.to(torch.float32)
        spread = self._spreader(selected, columns, args, parts.get("weight_g_idx"))
        if zero is not None:
            values = values - spread(zero.to(torch.float32), "the weight zero point")
        return values * spread(scale.to(torch.float32), "the weight scale")

    @staticmethod
    def _spreader(out: int, rows: int, args: Mapping[str, Any], g_idx: torch.Tensor | None):
        """A function taking a per-tensor / per-row / per-group / per-block parameter to the weight's shape [out, in]."""
        strategy = args["strategy"]

        def spread(parameter: torch.Tensor, what: str) -> torch.Tensor:
            if strategy == "tensor":
                if parameter.numel() != 1:
                    raise ValueError(f"{what} has {parameter.numel()} values, expected one for the whole tensor")
                return parameter.reshape(1, 1)
            if strategy == "channel":
                if parameter.numel() != out:
                    raise ValueError(f"{what} has {parameter.numel()} values, expected one per output row ({out})")
                return parameter.reshape(out, 1)
            if strategy == "group":
                size = args.get("group_size")
                if not isinstance(size, int) or size <= 0:
                    raise ValueError(f"group quantization with group_size {size!r}")
                groups = parameter.shape[-1] if parameter.dim() == 2 else 0
                require_shape(parameter, (out, groups), what)
                return parameter[:, group_index(rows, size, groups, g_idx)]
            if strategy == "block":
                block = args.get("block_structure")
                if not _valid_block(block):
                    raise ValueError(f"block quantization with block_structure {block!r}")
                high, wide = block
                require_shape(parameter, (-(-out // high), -(-rows // wide)), what)
                return parameter.repeat_interleave(high, 0)[:out].repeat_interleave(wide, 1)[:, :rows]
            raise ValueError(f"the weight strategy {strategy!r} is not one this reader knows")

        return spread


SCHEME = CompressedTensorsScheme()
