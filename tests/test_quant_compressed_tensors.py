"""compressed-tensors weights read back by `formats/quantized/compressed_tensors.py`.

Each test file is written by compressed-tensors' own compressors
(`bench/zoo/integer_quantized.py`: scales and zero points from its
`calculate_qparams`, codes and packing from the compressor of the format
under test) with a `quantization_config` as llm-compressor writes it; the scheme's values must equal the package's own
decompression to float32 rounding, and the original within a step.
"""

from __future__ import annotations

import pytest
import torch
from compressed_tensors.compressors.naive_quantized.base import (FloatQuantizationCompressor,
                                                                 IntQuantizationCompressor,
                                                                 NaiveQuantizationCompressor)
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.lifecycle.forward import quantize

from bench.zoo.integer_quantized import compressed_tensors_config, compressed_tensors_module
from provenance.formats.quantized import packing
from provenance.formats.quantized.compressed_tensors import SCHEME

from .test_quant_gptq_awq import infos, read, relative

COMPRESSORS = {"pack-quantized": PackedQuantizationCompressor, "int-quantized": IntQuantizationCompressor,
               "naive-quantized": NaiveQuantizationCompressor, "float-quantized": FloatQuantizationCompressor}
MODULE = "model.layers.0.mlp.up_proj"


def checkpoint(weight, fmt, **weights):
    """`weight` compressed as module MODULE by the format's compressor, with its config, and the package's own
    decompression."""
    compressed = compressed_tensors_module(weight, fmt, **weights)
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(**weights), format=fmt)
    reference = COMPRESSORS[fmt].decompress(compressed, scheme)["weight"].float()
    tensors = {f"{MODULE}.{key}": value for key, value in compressed.items()}
    tensors[f"{MODULE}.bias"] = torch.zeros(weight.shape[0])
    return tensors, compressed_tensors_config(fmt, **weights), reference


def original(out=32, rows=64, seed=3):
    return torch.randn(out, rows, generator=torch.Generator().manual_seed(seed)) * 0.02


@pytest.mark.parametrize("fmt,weights,bar", [
    ("pack-quantized", dict(num_bits=4, strategy="group", group_size=32, symmetric=True), 0.2),
    ("pack-quantized", dict(num_bits=4, strategy="group", group_size=16, symmetric=False), 0.2),
    ("pack-quantized", dict(num_bits=8, strategy="channel", symmetric=False), 0.02),
    ("pack-quantized", dict(num_bits=3, strategy="group", group_size=32, symmetric=False), 0.4),  # codes straddle words
    ("int-quantized", dict(num_bits=8, strategy="channel", symmetric=True), 0.02),
    ("naive-quantized", dict(num_bits=8, strategy="tensor", symmetric=False), 0.03),
    ("float-quantized", dict(num_bits=8, type="float", strategy="channel", symmetric=True), 0.06),
    ("float-quantized", dict(num_bits=8, type="float", strategy="block", block_structure=[16, 32], symmetric=True), 0.06),
])
def test_the_package_compressors_read_back(fmt, weights, bar):
    source = original()
    tensors, config, reference = checkpoint(source, fmt, **weights)
    found = read(SCHEME, tensors, config)
    assert list(found) == ["model.layers.0.mlp.up_proj.weight"]
    quantized, values = found["model.layers.0.mlp.up_proj.weight"]
    assert quantized.shape == (32, 64)
    granularity = {"channel": "_CHANNEL", "tensor": "_TENSOR"}.get(weights["strategy"], "")
    assert quantized.storage == ("F8_E4M3" if weights.get("type") == "float" else f"INT{weights['num_bits']}{granularity}")
    assert not any(stored.endswith("bias") for stored in quantized.parts.values())
    torch.testing.assert_close(values, reference, rtol=1e-6, atol=1e-8)
    assert relative(values, source) < bar  # the quantization's rounding, nothing more


@pytest.mark.parametrize("fmt,weights", [
    ("pack-quantized", dict(num_bits=4, strategy="group", group_size=16, symmetric=False)),
    ("naive-quantized", dict(num_bits=8, strategy="tensor", symmetric=False)),
    ("float-quantized", dict(num_bits=8, type="float", strategy="block", block_structure=[16, 32], symmetric=True)),
])
def test_chunks_of_rows_give_the_whole_weight(monkeypatch, fmt, weights):
    tensors, config, reference = checkpoint(original(), fmt, **weights)
    monkeypatch.setattr(packing, "CHUNK_VALUES", 3 * 64)  # three rows a chunk: blocks and packed zero points cut
    values = read(SCHEME, tensors, config)[f"{MODULE}.weight"][1]
    torch.testing.assert_close(values, reference, rtol=1e-6, atol=1e-8)


def test_legacy_act_order_group_index():
    """Older llm-compressor files (actorder "group") keep columns in place and say each one's group in
    `weight_g_idx`; the package no longer reads it, so the reference is its decompression of the columns
    sorted into their groups, put back in place."""
    source = original()
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(4))
    tensors, config, sorted_reference = checkpoint(source[:, perm], "pack-quantized", num_bits=4, strategy="group",
                                                   group_size=16, symmetric=True)
    module = MODULE
    args = QuantizationArgs(num_bits=4, strategy="group", group_size=16, symmetric=True)
    scale = tensors[f"{module}.weight_scale"]
    codes = quantize(source[:, perm], scale, torch.zeros_like(scale), args, dtype=torch.int8)
    in_place = torch.empty_like(codes)
    in_place[:, perm] = codes
    g_idx = torch.empty(64, dtype=torch.int32)
    g_idx[perm] = (torch.arange(64) // 16).to(torch.int32)
    tensors[f"{module}.weight_packed"] = pack_to_int32(in_place, 4)
    tensors[f"{module}.weight_g_idx"] = g_idx
    reference = torch.empty_like(sorted_reference)
    reference[:, perm] = sorted_reference
    values = read(SCHEME, tensors, config)[f"{module}.weight"][1]
    torch.testing.assert_close(values, reference, rtol=1e-6, atol=1e-8)


def test_config_decides_which_modules_and_how():
    tensors, config, _ = checkpoint(original(), "pack-quantized", num_bits=4, strategy="group", group_size=32,
                                    symmetric=True)
    assert SCHEME.find(infos(tensors), None) == [] and SCHEME.find(infos(tensors), {"quant_method": "gptq"}) == []
    ignored = {**config, "ignore": ["model.layers.0.mlp.up_proj"]}
    assert SCHEME.find(infos(tensors), ignored) == []
    # a group naming the module by regular expression wins over the class-wide group
    eight_bit = {"targets": ["re:.*mlp\\.up_proj$"], "weights": {"num_bits": 8, "strategy": "channel"}}
    mixed = {**config, "config_groups": {"all": config["config_groups"]["group_0"], "up": eight_bit}}
    assert SCHEME.find(infos(tensors), mixed)[0].storage == "INT8_CHANNEL"


def test_malformed_parts_are_refused_with_a_sentence():
    tensors, config, _ = checkpoint(original(), "pack-quantized", num_bits=4, strategy="group", group_size=16,
                                    symmetric=False)
    quantized = SCHEME.find(infos(tensors), config)[0]
    parts = {key: tensors[stored] for key, stored in quantized.parts.items()}
    for bad, words in [
        ({**parts, "weight_shape": torch.tensor([32, 48])}, "weight_shape says"),
        ({**parts, "weight_packed": parts["weight_packed"][:, :-1]}, "int32 words"),
        ({**parts, "weight_scale": parts["weight_scale"][:, :-1]}, "shape"),
        ({**parts, "weight_zero_point": parts["weight_zero_point"][:1]}, "zero point"),
        ({**parts, "weight_scale": parts["weight_scale"].to(torch.int32)}, "expected"),
    ]:
        with pytest.raises(ValueError, match=words):
            SCHEME.dequantize(quantized, bad)
