"""Integer codes packed into int32 words, and the checks every integer scheme makes on its parts.

GPTQ, AWQ and compressed-tensors' `pack-quantized` store b-bit codes as a
little-endian bit stream in int32 words along one dimension: code k of a run
occupies bits [k*b, k*b + b) of the run's words, so with b dividing 32 word
j holds codes 32/b*j .. 32/b*(j+1)-1, lowest bits first, and with b = 3 (or
5, 6, 7) a code may straddle two words (AutoGPTQ's 3-bit layout and
compressed-tensors' dense packing both are this stream). No installed
library exposes an unpacker along an arbitrary dimension that leaves codes
unsigned and validates nothing it is given, so this one is written here.

Also here: the module prefix grouping (`by_module`) and the plain checks of a
part's dtype and shape, each failing with a `ValueError` sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from ..base import TensorInfo


def unpack_codes(words: torch.Tensor, bits: int, count: int, dim: int) -> torch.Tensor:
    """The `count` unsigned `bits`-bit codes packed along `dim` of the int32 `words` (as int32, other dims kept)."""
    if words.dtype != torch.int32:
        raise ValueError(f"packed codes are stored as {dtype_name(words.dtype)}, expected int32")
    if not 1 <= bits <= 8:
        raise ValueError(f"{bits}-bit codes are not a packing this reader knows (1 to 8 bits)")
    needed = -(-count * bits // 32)
    if words.shape[dim] != needed:
        raise ValueError(f"{count} {bits}-bit codes need {needed} int32 words along dimension {dim}, "
                         f"found {words.shape[dim]}")
    moved = words.movedim(dim, -1)
    mask = (1 << bits) - 1
    if 32 % bits == 0:
        shifts = torch.arange(0, 32, bits, dtype=torch.int32)
        codes = (moved.unsqueeze(-1) >> shifts) & mask  # arithmetic shift: the mask drops the sign bits
        codes = codes.flatten(-2)[..., :count]
    else:
        start = torch.arange(count, dtype=torch.int64) * bits
        word, offset = start // 32, start % 32
        wide = moved.to(torch.int64) & 0xFFFFFFFF
        wide = torch.cat([wide, torch.zeros_like(wide[..., :1])], dim=-1)  # the word after the last, for straddles
        pairs = wide[..., word] | (wide[..., word + 1] << 32)
        codes = ((pairs >> offset) & mask).to(torch.int32)
    return codes.movedim(-1, dim).contiguous()


def by_module(infos: Iterable[TensorInfo], suffixes: Sequence[str]) -> dict[str, dict[str, TensorInfo]]:
    """Stored tensors named `<module>.<suffix>` for one of `suffixes`, grouped by module prefix."""
    modules: dict[str, dict[str, TensorInfo]] = {}
    for info in infos:
        for suffix in suffixes:
            if info.name.endswith("." + suffix):
                modules.setdefault(info.name[:-len(suffix) - 1], {})[suffix] = info
                break
    return modules


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def require_dtype(tensor: torch.Tensor, allowed: Sequence[torch.dtype], what: str) -> None:
    if tensor.dtype not in allowed:
        names = " or ".join(dtype_name(d) for d in allowed)
        raise ValueError(f"{what} is stored as {dtype_name(tensor.dtype)}, expected {names}")


def require_shape(tensor: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {list(tensor.shape)}, expected {list(shape)}")


def require_finite(tensor: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{what} holds a value that is not finite")


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Values dequantized per step: the intermediates (codes, zero points and scales spread over the values) stay
# near 16 MiB each whatever the weight's size, beside the float32 result.
CHUNK_VALUES = 1 << 22


def grouped_rows(codes_for: Callable[[int, int], torch.Tensor], rows: int, zeros: torch.Tensor,
                 scales: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The weight [out, rows] whose transpose is `(codes - zeros[g]) * scales[g]`, g = `index` of each input row,
    from `codes_for(start, count)` ([count, out] codes of input rows start..start+count, start a multiple of 32),
    a chunk of input rows at a time (GPTQ and AWQ store codes by input row)."""
    out = scales.shape[1]
    result = torch.empty(out, rows, dtype=torch.float32)
    scales = scales.to(torch.float32)
    step = max(32, CHUNK_VALUES // max(out, 1) // 32 * 32)
    for start in range(0, rows, step):
        count = min(step, rows - start)
        group = index[start:start + count]
        result[:, start:start + count] = ((codes_for(start, count) - zeros[group]).to(torch.float32) * scales[group]).T
    return result


def group_index(rows: int, group_size: int, groups: int, g_idx: torch.Tensor | None) -> torch.Tensor:
    """The quantization group of each of `rows` input rows: `g_idx` when stored (act-order), else row // group_size."""
    if g_idx is None:
        index = torch.arange(rows, dtype=torch.int64) // group_size
    else:
        require_dtype(g_idx, (torch.int32, torch.int64), "the group index (g_idx)")
        require_shape(g_idx, (rows,), "the group index (g_idx)")
        index = g_idx.to(torch.int64)
    if rows and (int(index.min()) < 0 or int(index.max()) >= groups):
        raise ValueError(f"the group index names a group outside 0..{groups - 1}")
    return index


def group_size(rows: int, groups: int, config: Mapping[str, Any]) -> int:
    """Input rows per group: the configured size when it makes `groups` groups of `rows`, else rows / groups rounded up."""
    configured = config.get("group_size") or config.get("q_group_size")
    if isinstance(configured, int) and configured > 0 and -(-rows // configured) == groups:
        return configured
    return -(-rows // max(groups, 1))
