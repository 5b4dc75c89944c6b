"""How a stored tensor becomes canonical tensors: transposes, fused splits, re-layouts.

A `Transform` says what to do with one stored tensor to obtain one canonical
tensor, in this order: take one expert of a stacked expert tensor, transpose
(GPT-2's Conv1D stores (in, out)), take one part of a fused tensor, undo
llama.cpp's RoPE row permutation, remove a folded norm offset.

Fused layouts (the sizes come from the architecture's head counts):
- `concat`: [q; k; v] stacked on rows (Baichuan W_pack, ChatGLM2, Qwen c_attn,
  Phi-3 qkv_proj, GPT-2 c_attn after transposing, Falcon multi-query);
- `halves`: [gate; up] stacked on rows (ChatGLM2 dense_h_to_4h, Phi-3 gate_up_proj, Llama 4 experts);
- `alternating`: rows taken in turn, gate, up, gate, up, ... (gpt-oss experts' gate_up_proj);
- `interleaved_heads`: rows grouped per head as [q_h, k_h, v_h] (GPT-NeoX,
  ChatGLM-6B, Falcon without multi-query);
- `grouped_heads`: rows grouped per KV head as [q.., k, v] (Falcon 40B/180B).

The same functions run on PyTorch "meta" tensors to give canonical shapes
without reading any data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ArchitectureError


@dataclass(frozen=True)
class HeadLayout:
    """What fused splits and RoPE re-layouts need to know about attention."""

    num_heads: int | None
    num_kv_heads: int | None
    head_dim: int | None


@dataclass(frozen=True)
class Transform:
    expert: int | None = None  # index into a stacked expert tensor
    transposed: bool = False
    layout: str | None = None
    part: int = 0
    parts: tuple[str, ...] = ()
    rope_unpermute: str | None = None  # "q" or "k"
    norm_offset: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self == Transform()

    def describe(self) -> str:
        steps = []
        if self.expert is not None:
            steps.append(f"expert {self.expert} of a stacked tensor")
        if self.transposed:
            steps.append("transposed (Conv1D)")
        if self.layout:
            steps.append(f"part {self.part + 1}/{len(self.parts)} ({self.parts[self.part]}) of a fused tensor, layout {self.layout}")
        if self.rope_unpermute:
            steps.append("llama.cpp RoPE row permutation undone")
        if self.norm_offset:
            steps.append(f"norm offset {self.norm_offset:+g}")
        return "; ".join(steps) or "as stored"


def _part_sizes(parts: tuple[str, ...], rows: int, heads: HeadLayout, source: str) -> list[int]:
    if len(parts) == 3 and heads.num_heads and heads.head_dim:
        kv = heads.num_kv_heads or heads.num_heads
        sizes = [heads.num_heads * heads.head_dim, kv * heads.head_dim, kv * heads.head_dim]
        if sum(sizes) == rows:
            return sizes
    if rows % len(parts) == 0 and (len(parts) == 2 or not heads.num_heads):
        return [rows // len(parts)] * len(parts)
    raise ArchitectureError(source, f"cannot split fused tensor of {rows} rows into {', '.join(parts)} "
                                    f"with heads={heads.num_heads}, kv_heads={heads.num_kv_heads}, head_dim={heads.head_dim}")


def _split(tensor: torch.Tensor, transform: Transform, heads: HeadLayout, source: str) -> torch.Tensor:
    rows, rest = tensor.shape[0], tuple(tensor.shape[1:])
    layout, part = transform.layout, transform.part
    if layout in ("concat", "halves"):
        sizes = _part_sizes(transform.parts, rows, heads, source)
        start = sum(sizes[:part])
        return tensor[start:start + sizes[part]]
    if layout == "alternating":
        if rows % len(transform.parts):
            raise ArchitectureError(source, f"cannot split {rows} alternating rows into {', '.join(transform.parts)}")
        return tensor[part::len(transform.parts)]
    if layout == "interleaved_heads":
        h = heads.num_heads
        if not h or rows % (3 * h):
            raise ArchitectureError(source, f"cannot split per-head fused QKV of {rows} rows: head count {h} unknown or inconsistent")
        return tensor.reshape(h, 3, rows // (3 * h), *rest)[:, part].reshape(-1, *rest)
    if layout == "grouped_heads":
        h, kv = heads.num_heads, heads.num_kv_heads
        if not h or not kv or h % kv or rows % (h + 2 * kv):
            raise ArchitectureError(source, f"cannot split grouped fused QKV of {rows} rows with heads={h}, kv_heads={kv}")
        grouped = tensor.reshape(kv, h // kv + 2, rows // (h + 2 * kv), *rest)
        chosen = [grouped[:, :-2], grouped[:, -2], grouped[:, -1]][part]
        return chosen.reshape(-1, *rest)
    raise ArchitectureError(source, f"unknown fused layout {layout!r}")


def _rope_unpermute(tensor: torch.Tensor, which: str, heads: HeadLayout, source: str) -> torch.Tensor:
    """Invert llama.cpp's `permute(w, n_head)`: rows (n, 2, d/2) were stored as (n, d/2, 2)."""
    n = heads.num_heads if which == "q" else (heads.num_kv_heads or heads.num_heads)
    rows, rest = tensor.shape[0], tuple(tensor.shape[1:])
    if not n or rows % (2 * n):
        raise ArchitectureError(source, f"cannot undo GGUF RoPE permutation of {rows} rows with {n} heads")
    return tensor.reshape(n, rows // n // 2, 2, *rest).transpose(1, 2).reshape(rows, *rest)


def apply_transform(tensor: torch.Tensor, transform: Transform, heads: HeadLayout, source: str) -> torch.Tensor:
    """The canonical tensor `transform` describes, taken from stored `tensor`."""
    if transform.expert is not None:
        tensor = tensor[transform.expert]
    if transform.transposed and tensor.dim() == 2:
        tensor = tensor.t()
    if transform.layout:
        tensor = _split(tensor, transform, heads, source)
    if transform.rope_unpermute:
        tensor = _rope_unpermute(tensor, transform.rope_unpermute, heads, source)
    if transform.norm_offset:
        tensor = tensor + transform.norm_offset
    if tensor.device.type != "meta":
        tensor = tensor.contiguous()
    return tensor


def canonical_shape(shape: tuple[int, ...], transform: Transform, heads: HeadLayout, source: str) -> tuple[int, ...]:
    meta = torch.empty(shape, device="meta")
    return tuple(apply_transform(meta, transform, heads, source).shape)
