"""GPTQ and AWQ weights read back by `formats/quantized/gptq.py` and `awq.py`.

The test files are written by `bench/zoo/integer_quantized.py` (packed with
compressed-tensors' own int32 packer: the little-endian bit stream GPTQ
stores along the input dimension and AWQ along the output dimension, which
AWQ interleaves) and read back two ways: by the scheme, and by a library
(compressed-tensors' unpacker and `dequantize` for GPTQ, its AutoAWQ
converter followed by its own pack-quantized decompressor for AWQ). The scheme must agree with the library to
float32 rounding and with the original matrix within one quantization step.
"""

from __future__ import annotations

import pytest
import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
from compressed_tensors.entrypoints.convert.converters.autoawq import AutoAWQConverter
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.lifecycle.forward import dequantize

from bench.zoo.integer_quantized import awq_module, gptq_config, gptq_module
from provenance.formats.base import TensorInfo
from provenance.formats.pytorch_format import torch_dtype_name
from provenance.formats.quantized.awq import SCHEME as AWQ
from provenance.formats.quantized import packing
from provenance.formats.quantized.gptq import SCHEME as GPTQ


def infos(tensors: dict[str, torch.Tensor]) -> list[TensorInfo]:
    return [TensorInfo(name, tuple(t.shape), torch_dtype_name(t.dtype), t.numel() * t.element_size(), "model.safetensors")
            for name, t in tensors.items()]


def read(scheme, tensors, config):
    """Every group the scheme finds, dequantized: {logical name: (QuantizedTensor, float32 values)}."""
    found = scheme.find(infos(tensors), config)
    return {q.name: (q, scheme.dequantize(q, {key: tensors[stored] for key, stored in q.parts.items()})) for q in found}


def gptq_by_the_library(module, bits, v2):
    """compressed-tensors unpacks qweight and qzeros (its packing is GPTQ's bit stream) and dequantizes the
    columns sorted into their groups (its dequantizer knows only contiguous groups), put back in place."""
    rows, out = module["g_idx"].shape[0], module["scales"].shape[1]
    codes = unpack_from_int32(module["qweight"], bits, torch.Size([rows, out]), packed_dim=0).T
    groups = module["scales"].shape[0]
    zeros = unpack_from_int32(module["qzeros"], bits, torch.Size([groups, out]), packed_dim=1).T + (0 if v2 else 1)
    order = torch.argsort(module["g_idx"], stable=True)
    args = QuantizationArgs(num_bits=bits, strategy="group", group_size=rows // groups, symmetric=False)
    in_order = dequantize(codes[:, order].float(), module["scales"].T.float(), zeros.float(), args=args)
    reference = torch.empty_like(in_order)
    reference[:, order] = in_order
    return reference


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
    module = gptq_module(original, bits, group_size, symmetric, act_order, v2)
    tensors = {**{f"m.{key}": value for key, value in module.items()}, "m.bias": torch.zeros(32)}
    found = read(GPTQ, tensors, gptq_config(bits, group_size, symmetric, act_order, v2))
    assert list(found) == ["m.weight"]
    quantized, values = found["m.weight"]
    assert quantized.shape == (32, 128)
    assert quantized.storage == f"GPTQ_INT{bits}" + ("_CHANNEL" if group_size == 128 else "")  # one group a row
    assert set(quantized.parts) == {"qweight", "qzeros", "scales", "g_idx"}  # the bias is no part of the group
    assert values.dtype == torch.float32
    torch.testing.assert_close(values, gptq_by_the_library(module, bits, v2), rtol=1e-6, atol=1e-7)
    step = float(module["scales"].float().max())
    assert float((values - original).abs().max()) <= step  # within one quantization step of the source


def test_gptq_bits_come_from_the_shapes_without_a_config():
    module = gptq_module(weight(), 8, 32, symmetric=False)
    tensors = {f"m.{key}": value for key, value in module.items() if key != "g_idx"}
    found = read(GPTQ, tensors, None)
    assert found["m.weight"][0].storage == "GPTQ_INT8"
    torch.testing.assert_close(found["m.weight"][1], gptq_by_the_library(module, 8, False), rtol=1e-6, atol=1e-7)


def test_gptq_v1_and_v2_zero_points_differ_by_one_step():
    module = gptq_module(weight(), 4, 32, symmetric=False)
    tensors = {f"m.{key}": value for key, value in module.items()}
    v1 = read(GPTQ, tensors, {"quant_method": "gptq", "bits": 4})["m.weight"][1]
    v2 = read(GPTQ, tensors, {"quant_method": "gptq", "bits": 4, "checkpoint_format": "gptq_v2"})["m.weight"][1]
    torch.testing.assert_close(v1, gptq_by_the_library(module, 4, False), rtol=1e-6, atol=1e-7)
    shift = (v2 - v1) / module["scales"].float().T.repeat_interleave(32, dim=1)
    torch.testing.assert_close(shift, torch.ones_like(shift))  # read as v2, every weight one step higher


def awq_checkpoint(original, group_size, zero_point=True):
    return {f"m.{key}": value for key, value in awq_module(original, group_size, zero_point).items()}


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


def test_chunks_of_input_rows_give_the_whole_weight(monkeypatch):
    """Large weights are dequantized 32 input rows at a time at the least (bounded intermediates): the same values."""
    gptq = {f"m.{key}": value for key, value in gptq_module(weight(), 3, 32, False, act_order=True).items()}
    awq = awq_checkpoint(weight(out=64, rows=96), 32)
    whole = [read(GPTQ, gptq, {"bits": 3})["m.weight"][1], read(AWQ, awq, None)["m.weight"][1]]
    monkeypatch.setattr(packing, "CHUNK_VALUES", 64)  # one word-aligned chunk of 32 input rows per step
    chunked = [read(GPTQ, gptq, {"bits": 3})["m.weight"][1], read(AWQ, awq, None)["m.weight"][1]]
    assert all(torch.equal(a, b) for a, b in zip(whole, chunked))


def test_gptq_and_awq_each_claim_only_their_own_layout():
    gptq = {f"m.{key}": value for key, value in gptq_module(weight(), 4, 32).items()}
    awq = awq_checkpoint(weight(out=64, rows=64), 32)
    assert read(AWQ, gptq, None) == {} and read(GPTQ, awq, None) == {}
    assert read(GPTQ, gptq, {"quant_method": "awq"}) == {} and read(AWQ, awq, {"quant_method": "gptq"}) == {}
    assert list(read(GPTQ, gptq, None)) == ["m.weight"] and list(read(AWQ, awq, None)) == ["m.weight"]


def test_malformed_parts_are_refused_with_a_sentence():
    tensors = {f"m.{key}": value for key, value in gptq_module(weight(), 4, 32).items()}
    quantized = GPTQ.find(infos(tensors), {"bits": 4})[0]
    parts = {key: tensors[stored] for key, stored in quantized.parts.items()}
    bad_cases = [
        ({**parts, "qweight": parts["qweight"][:-1]}, "GPTQ qweight has shape"),
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
