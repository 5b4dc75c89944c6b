"""GPTQ and AWQ weights read back by `formats/quantized/gptq.py` and `awq.py`.

The test files are packed with compressed-tensors' own int32 packer
(`pack_to_int32`: the little-endian bit stream GPTQ stores along the input
dimension and AWQ along the output dimension, which AWQ interleaves), and
read back two ways: by the scheme, and by a library (compressed-tensors'
`dequantize`, and for AWQ its AutoAWQ converter followed by its own
pack-quantized decompressor). The scheme must agree with the library to
float32 rounding and with the original matrix within one quantization step.
"""

from __future__ import annotations

import pytest
import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from compressed_tensors.entrypoints.convert.converters.autoawq import AutoAWQConverter
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.lifecycle.forward import dequantize

from provenance.formats.base import TensorInfo
from provenance.formats.pytorch_format import torch_dtype_name
from provenance.formats.quantized.awq import SCHEME as AWQ
from provenance.formats.quantized.gptq import SCHEME as GPTQ

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # AutoAWQ's nibble order: nibble j of a word holds column 8c + AWQ_ORDER[j]


def infos(tensors: dict[str, torch.Tensor]) -> list[TensorInfo]:
    return [TensorInfo(name, tuple(t.shape), torch_dtype_name(t.dtype), t.numel() * t.element_size(), "model.safetensors")
            for name, t in tensors.items()]


def read(scheme, tensors, config):
    """Every group the scheme finds, dequantized: {logical name: (QuantizedTensor, float32 values)}."""
    found = scheme.find(infos(tensors), config)
    return {q.name: (q, scheme.dequantize(q, {key: tensors[stored] for key, stored in q.parts.items()})) for q in found}


def rtn(weight: torch.Tensor, bits: int, group_of_column: torch.Tensor, groups: int, symmetric: bool):
    """Round-to-nearest codes [out, in] (unsigned), scales and zero points [out, groups] (float16, int)."""
    top = (1 << bits) - 1
    lo = torch.stack([weight[:, group_of_column == g].min(1).values for g in range(groups)], 1).clamp(max=0)
    hi = torch.stack([weight[:, group_of_column == g].max(1).values for g in range(groups)], 1).clamp(min=0)
    if symmetric:
        scale = (torch.maximum(hi, -lo) * 2 / top).half().float()
        zero = torch.full_like(scale, 1 << (bits - 1), dtype=torch.int32)
    else:
        scale = ((hi - lo) / top).half().float()
        zero = torch.round(-lo / scale).to(torch.int32).clamp(0, top)
    codes = torch.clamp(torch.round(weight / scale[:, group_of_column]) + zero[:, group_of_column], 0, top)
    return codes.to(torch.int32), scale.half(), zero


def signed(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """compressed-tensors' packer takes codes as int8 centred on 0."""
    return (codes - (1 << (bits - 1))).to(torch.int8)


def library_dequantize(codes, scale, zero, group_size):
    """compressed-tensors' dequantization of contiguous groups along the input dimension ([out, in] codes)."""
    args = QuantizationArgs(num_bits=8, strategy="group", group_size=group_size, symmetric=False)
    return dequantize(codes.to(torch.float32), scale.float(), zero.float(), args=args)


def gptq_checkpoint(weight, bits, group_size, symmetric=True, act_order=False, v2=False, seed=0):
    """A GPTQ module `m` packed from `weight` [out, in], and the library's dequantization of the same codes."""
    out, rows = weight.shape
    groups = rows // group_size
    perm = torch.randperm(rows, generator=torch.Generator().manual_seed(seed)) if act_order else torch.arange(rows)
    # act-order quantizes columns in `perm` order in contiguous groups; g_idx says each column's group
    g_idx = torch.empty(rows, dtype=torch.int32)
    g_idx[perm] = (torch.arange(rows) // group_size).to(torch.int32)
    codes, scale, zero = rtn(weight, bits, g_idx.long(), groups, symmetric)
    reference = torch.empty(out, rows)
    reference[:, perm] = library_dequantize(codes[:, perm], scale, zero, group_size)
    stored_zero = zero if v2 else zero - 1  # v1 keeps zero - 1
    tensors = {
        "m.qweight": pack_to_int32(signed(codes.T.contiguous(), bits), bits, packed_dim=0),
        "m.qzeros": pack_to_int32(signed(stored_zero.T.contiguous(), bits), bits, packed_dim=1),
        "m.scales": scale.T.contiguous(),
        "m.g_idx": g_idx,
        "m.bias": torch.zeros(out),
    }
    return tensors, reference


def weight(out=32, rows=128, seed=1):
    return torch.randn(out, rows, generator=torch.Generator().manual_seed(seed)) * 0.02


def relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("bits,group_size,symmetric,act_order,v2", [
    (4, 32, True, False, False),   # the common Hub GPTQ: 4-bit, symmetric, v1
    (4, 32, False, True, False),   # asymmetric with act-order (desc_act): g_idx a permutation of groups
    (8, 64, False, False, True),   # 8-bit, GPTQModel's v2 zero points
    (3, 128, False, True, False),  # 3-bit codes straddle int32 words; one group (group_size -1)
    (2, 32, False, False, True),
])
def test_gptq_reads_the_library_values(bits, group_size, symmetric, act_order, v2):
    original = weight()
    tensors, reference = gptq_checkpoint(original, bits, group_size, symmetric, act_order, v2)
    config = {"quant_method": "gptq", "bits": bits, "group_size": group_size, "desc_act": act_order,
              "sym": symmetric, "checkpoint_format": "gptq_v2" if v2 else "gptq"}
    found = read(GPTQ, tensors, config)
    assert list(found) == ["m.weight"]
    quantized, values = found["m.weight"]
    assert quantized.shape == (32, 128)
    assert quantized.storage == f"GPTQ_INT{bits}" + ("_CHANNEL" if group_size == 128 else "")  # one group a row
    assert set(quantized.parts) == {"qweight", "qzeros", "scales", "g_idx"}  # the bias is no part of the group
    assert values.dtype == torch.float32
    torch.testing.assert_close(values, reference, rtol=1e-6, atol=1e-7)
    step = float(tensors["m.scales"].float().max())
    assert float((values - original).abs().max()) <= step  # within one quantization step of the source


def test_gptq_bits_come_from_the_shapes_without_a_config():
    tensors, reference = gptq_checkpoint(weight(), 8, 32, symmetric=False)
    del tensors["m.g_idx"]
    found = read(GPTQ, tensors, None)
    assert found["m.weight"][0].storage == "GPTQ_INT8"
    torch.testing.assert_close(found["m.weight"][1], reference, rtol=1e-6, atol=1e-7)


def test_gptq_v1_and_v2_zero_points_differ_by_one_step():
    tensors, reference = gptq_checkpoint(weight(), 4, 32, symmetric=False)
    v1 = read(GPTQ, tensors, {"quant_method": "gptq", "bits": 4})["m.weight"][1]
    v2 = read(GPTQ, tensors, {"quant_method": "gptq", "bits": 4, "checkpoint_format": "gptq_v2"})["m.weight"][1]
    torch.testing.assert_close(v1, reference, rtol=1e-6, atol=1e-7)
    shift = (v2 - v1) / tensors["m.scales"].float().T.repeat_interleave(32, dim=1)
    torch.testing.assert_close(shift, torch.ones_like(shift))  # read as v2, every weight moves one step up


def awq_checkpoint(original, group_size, zero_point=True):
    """An AutoAWQ GEMM module `m` packed from `original` [out, in] with AWQ's interleaved nibble order."""
    out, rows = original.shape
    groups = rows // group_size
    codes, scale, zero = rtn(original, 4, torch.arange(rows) // group_size, groups, symmetric=not zero_point)

    def pack(values):  # [rows, out] codes -> [rows, out/8] words, nibble j of word c holding column 8c + AWQ_ORDER[j]
        interleaved = values.view(values.shape[0], -1, 8)[:, :, AWQ_ORDER].reshape(values.shape)
        return pack_to_int32(signed(interleaved, 4), 4, packed_dim=1)

    tensors = {"m.qweight": pack(codes.T.contiguous()), "m.scales": scale.T.contiguous()}
    if zero_point:
        tensors["m.qzeros"] = pack(zero.T.contiguous())
    return tensors


def awq_by_the_library(tensors, group_size, zero_point=True):
    """compressed-tensors' AutoAWQ converter, then its pack-quantized decompressor."""
    converted = AutoAWQConverter(bits=4, group_size=group_size, zero_point=zero_point).process(dict(tensors))
    module = {key.removeprefix("m."): value for key, value in converted.items()}
    module["weight_scale"] = module["weight_scale"].float()
    args = QuantizationArgs(num_bits=4, strategy="group", group_size=group_size, symmetric=not zero_point)
    return PackedQuantizationCompressor.decompress(module, QuantizationScheme(targets=["Linear"], weights=args))["weight"]


@pytest.mark.parametrize("zero_point", [True, False])
def test_awq_reads_the_interleaved_nibbles_as_the_library_does(zero_point):
    original = weight(out=64, rows=64, seed=2)
    tensors = awq_checkpoint(original, 32, zero_point)
    config = {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": zero_point, "version": "gemm"}
    found = read(AWQ, tensors, config)
    quantized, values = found["m.weight"]
    assert quantized.shape == (64, 64) and quantized.storage == "AWQ_INT4"
    torch.testing.assert_close(values, awq_by_the_library(tensors, 32, zero_point), rtol=1e-6, atol=1e-7)
    assert float((values - original).abs().max()) <= float(tensors["m.scales"].float().max())


def test_gptq_and_awq_each_claim_only_their_own_layout():
    gptq, _ = gptq_checkpoint(weight(), 4, 32)
    awq = awq_checkpoint(weight(out=64, rows=64), 32)
    assert read(AWQ, gptq, None) == {} and read(GPTQ, awq, None) == {}
    assert read(GPTQ, gptq, {"quant_method": "awq"}) == {} and read(AWQ, awq, {"quant_method": "gptq"}) == {}
    assert list(read(GPTQ, gptq, None)) == ["m.weight"] and list(read(AWQ, awq, None)) == ["m.weight"]


def test_malformed_parts_are_refused_with_a_sentence():
    tensors, _ = gptq_checkpoint(weight(), 4, 32)
    quantized = GPTQ.find(infos(tensors), {"bits": 4})[0]
    parts = {key: tensors[stored] for key, stored in quantized.parts.items()}
    bad_cases = [
        ({**parts, "qweight": parts["qweight"][:-1]}, "int32 words"),
        ({**parts, "qweight": parts["qweight"].float()}, "int32"),
        ({**parts, "scales": parts["scales"][:, :-1]}, "shape"),
        ({**parts, "scales": torch.full_like(parts["scales"], float("nan"))}, "not finite"),
        ({**parts, "g_idx": torch.full_like(parts["g_idx"], 9)}, "outside"),
    ]
    for bad, words in bad_cases:
        with pytest.raises(ValueError, match=words):
            GPTQ.dequantize(quantized, bad)
    awq = awq_checkpoint(weight(out=64, rows=64), 32)
    gemv = AWQ.find(infos(awq), {"quant_method": "awq", "version": "gemv"})[0]
    with pytest.raises(ValueError, match="gemv"):
        AWQ.dequantize(gemv, {key: awq[stored] for key, stored in gemv.parts.items()})
