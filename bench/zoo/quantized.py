"""Quantized copies written the way their producers store them: FP8 with scales, MXFP4 blocks (zoo and tests).

These are the writers the readers of `provenance/formats/quantized/` are
checked against, made from the published layouts, not from the readers:

- FP8 (DeepSeek-V3's `inference/fp8_cast_bf16.py` reads what its training
  wrote; transformers' `finegrained_fp8` quantizes the same way): per block of
  128 x 128 (or per output row, or per tensor) scale = amax / (the format's
  largest finite value), codes = weight / scale cast by torch to
  float8_e4m3fn or float8_e5m2 (round to nearest even), the scale stored in
  float32 as `X.weight_scale_inv` (blocks, DeepSeek-V3) or `X.weight_scale`.
- MXFP4 (OCP Microscaling spec v1.0, 6.3): per block of 32 values along a
  row, shared exponent floor(log2(amax)) - 2 (2 is E2M1's largest exponent),
  stored E8M0 (+127) as U8; each value divided by 2^exponent, rounded to the
  nearest E2M1 value (ties to the even code) and clamped at 6; codes packed
  two to a byte, low nibble first, as gpt-oss's `X_blocks` [rows, G, 16] and
  `X_scales` [rows, G].

Only the 2-D weights of the transformer layers are quantized (their names
hold ".layers."); embeddings, the head and norms stay as they were, as in
DeepSeek-V3 and gpt-oss. MXFP4 leaves a weight whose input size is not a
multiple of 32 unquantized (the layout has no partial block).
"""

from __future__ import annotations

import math

import torch

from provenance.formats import open_checkpoint_files

FP8_DTYPES = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
MX_BLOCK = 32
# E2M1 magnitudes by the low three bits of the code (OCP MX spec v1.0, table 5.3.3)
E2M1_MAGNITUDES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def quantized_layer_weight(key: str, value: torch.Tensor) -> bool:
    return value.dim() == 2 and ".layers." in key and key.endswith(".weight")


def fp8_quantize(weight: torch.Tensor, fmt: str = "e4m3", granularity: str = "block",
                 block: tuple[int, int] = (128, 128)) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, scale) of a 2-D weight: scale [ceil(out/bo), ceil(in/bi)], [out, 1] or [1]."""
    dtype = FP8_DTYPES[fmt]
    largest = torch.finfo(dtype).max
    w = weight.float()
    out, inputs = w.shape
    if granularity == "tensor":
        scale = (w.abs().amax().clamp_min(1e-12) / largest).reshape(1)
        return (w / scale).to(dtype), scale
    if granularity == "channel":
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / largest
        return (w / scale).to(dtype), scale
    rows, columns = block
    padded = torch.nn.functional.pad(w, (0, -inputs % columns, 0, -out % rows))
    tiles = padded.reshape(padded.shape[0] // rows, rows, padded.shape[1] // columns, columns)
    scale = tiles.abs().amax(dim=(1, 3)).clamp_min(1e-12) / largest
    expanded = scale.repeat_interleave(rows, 0).repeat_interleave(columns, 1)[:out, :inputs]
    return (w / expanded).to(dtype), scale


def mxfp4_quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(blocks U8 [rows, G, 16], scales U8 [rows, G]) of a 2-D weight whose columns are a multiple of 32."""
    w = weight.float()
    rows, columns = w.shape
    groups = columns // MX_BLOCK
    blocks = w.reshape(rows, groups, MX_BLOCK)
    amax = blocks.abs().amax(dim=2)
    exponent = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp_min(2.0 ** -127))) - 2,
                           torch.full_like(amax, -127.0)).clamp(-127, 127)
    scaled = blocks / torch.pow(2.0, exponent).unsqueeze(-1)
    distance = (scaled.abs().clamp(max=6.0).unsqueeze(-1) - E2M1_MAGNITUDES).abs()
    nearest = distance.min(dim=-1, keepdim=True).values
    tied = distance == nearest  # a tie goes to the even code (mantissa bit 0), as round-to-nearest-even does
    even = tied & (torch.arange(8) % 2 == 0)
    magnitude = torch.where(even.any(-1), even.float().argmax(-1), tied.float().argmax(-1))
    codes = (magnitude + 8 * (scaled < 0).long()).to(torch.uint8).reshape(rows, groups, MX_BLOCK)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)  # low nibble first
    return packed.contiguous(), (exponent + 127).to(torch.uint8)


def fp8_dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 values `fp8_quantize`'s (codes, scale) stand for: code x the scale of its block, row or tensor
    (DeepSeek-V3's `weight_dequant`), the block size read off the two shapes."""
    out, inputs = codes.shape
    scale = scale.float().reshape(1, 1) if scale.numel() == 1 else scale.float().reshape(scale.shape[0], -1)
    rows, columns = -(-out // scale.shape[0]), -(-inputs // scale.shape[1])
    expanded = scale.repeat_interleave(rows, 0).repeat_interleave(columns, 1)[:out, :inputs]
    return codes.float() * expanded


def mxfp4_dequantize(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The float32 values [rows, G x 32] of `mxfp4_quantize`'s (blocks, scales): low nibble first, bit 3 the sign,
    the low three bits an E2M1 magnitude, times 2^(scale - 127)."""
    rows, groups, _ = blocks.shape
    codes = torch.stack((blocks & 0x0F, blocks >> 4), dim=-1).reshape(rows, groups, MX_BLOCK).long()
    values = E2M1_MAGNITUDES[codes & 7] * torch.where(codes >= 8, -1.0, 1.0)
    return (values * torch.pow(2.0, scales.float() - 127).unsqueeze(-1)).reshape(rows, groups * MX_BLOCK)


def fp8_state(state: dict[str, torch.Tensor], fmt: str = "e4m3", granularity: str = "block",
              block: tuple[int, int] = (128, 128)) -> dict[str, torch.Tensor]:
    """`state` with each layer weight stored as FP8 codes plus its scale (`weight_scale_inv` for blocks)."""
    suffix = "_scale_inv" if granularity == "block" else "_scale"
    stored = {}
    for key, value in state.items():
        if quantized_layer_weight(key, value):
            stored[key], stored[key + suffix] = fp8_quantize(value, fmt, granularity, block)
        else:
            stored[key] = value
    return stored


def mxfp4_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with each layer weight whose input size is a multiple of 32 stored as MXFP4 blocks and scales."""
    stored = {}
    for key, value in state.items():
        if quantized_layer_weight(key, value) and value.shape[1] % MX_BLOCK == 0:
            stored[key + "_blocks"], stored[key + "_scales"] = mxfp4_quantize(value)
        else:
            stored[key] = value
    return stored


def fp8_config(block: tuple[int, int] | None = (128, 128), fmt: str = "e4m3") -> dict:
    """config.json's quantization_config as transformers' FineGrainedFP8Config writes it."""
    config = {"quant_method": "fp8", "fmt": fmt, "activation_scheme": "dynamic"}
    if block is not None:
        config["weight_block_size"] = list(block)
    return config


MXFP4_CONFIG = {"quant_method": "mxfp4", "modules_to_not_convert": ["model.embed_tokens", "lm_head"]}


def relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return math.sqrt(float((a.float() - b.float()).pow(2).sum()) / max(float(b.float().pow(2).sum()), 1e-30))


def read_back(directory) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint as the tool reads it (quantized groups dequantized), for relative changes."""
    files = open_checkpoint_files(directory)
    try:
        return {info.name: files.source.read_tensor(info.name) for info in files.source.tensor_infos()}
    finally:
        files.close()
