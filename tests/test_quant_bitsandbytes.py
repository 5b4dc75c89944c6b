"""bitsandbytes NF4 / FP4 / LLM.int8 weights read back by `formats/quantized/bitsandbytes.py`.

bitsandbytes quantizes on the CPU: the test files hold what it produces
(`bench/zoo/integer_quantized.py`: `quantize_4bit` and its
`QuantState.as_dict(packed=True)`, as transformers saves them;
`Linear8bitLt`'s state dict), read back by bitsandbytes' own
`QuantState.from_dict`, and the scheme's values must equal
bitsandbytes' own `dequantize_4bit` / `int8_vectorwise_dequant` exactly.
"""

from __future__ import annotations

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")
import bitsandbytes.functional as F  # noqa: E402  (after the skip: the module needs bitsandbytes)

from bench.zoo.integer_quantized import bnb_module  # noqa: E402
from provenance.formats.quantized import packing  # noqa: E402
from provenance.formats.quantized.bitsandbytes import SCHEME  # noqa: E402

from .test_quant_gptq_awq import infos, read, relative  # noqa: E402

HIDDEN = 32
# Rows of the weights compared value for value with bitsandbytes' own `dequantize_4bit`: a multiple of its
# block size (64), as in every real model. Its native CPU kernel (0.50.2, AVX-512 machines) assumes that and, for
# rows narrower than a block, scales every block by the first block's absmax; its portable torch path and the
# reader here scale each flat block by its own absmax.
WIDE = 128


def four_bit(weight, module, quant_type, nested, dtype=torch.float32):
    """`weight` quantized by bitsandbytes and stored under `module` as transformers saves it, and its dequantization."""
    stored = bnb_module(weight.to(dtype), quant_type, nested)
    state = F.QuantState.from_dict({k.removeprefix("weight."): v for k, v in stored.items() if k != "weight"}, "cpu")
    return ({f"{module}.{key}": value for key, value in stored.items()},
            F.dequantize_4bit(stored["weight"], state).float())


def with_norm(tensors, hidden=HIDDEN):
    return {**tensors, "model.layers.0.input_layernorm.weight": torch.ones(hidden),
            "model.norm.weight": torch.ones(hidden)}


def original(out, rows, seed=5):
    return torch.randn(out, rows, generator=torch.Generator().manual_seed(seed)) * 0.02


@pytest.mark.parametrize("quant_type,nested,dtype", [
    ("nf4", False, torch.float32), ("nf4", True, torch.bfloat16), ("fp4", False, torch.float16), ("fp4", True, torch.float32),
])
def test_four_bit_reads_as_bitsandbytes_dequantizes(quant_type, nested, dtype):
    source = original(64, WIDE)
    tensors, reference = four_bit(source, "model.layers.0.mlp.up_proj", quant_type, nested, dtype)
    found = read(SCHEME, with_norm(tensors, WIDE), {"quant_method": "bitsandbytes", "load_in_4bit": True})
    quantized, values = found["model.layers.0.mlp.up_proj.weight"]
    assert quantized.shape == (64, WIDE) and quantized.storage == f"BNB_{quant_type.upper()}"
    assert len(found) == 1 and "model.norm.weight" not in quantized.parts.values()
    assert torch.equal(values, reference)
    assert relative(values, source) < (0.15 if quant_type == "nf4" else 0.25)


def test_four_bit_in_chunks_of_blocks_gives_the_whole_weight(monkeypatch):
    tensors, reference = four_bit(original(64, WIDE), "model.layers.0.mlp.up_proj", "fp4", True, torch.bfloat16)
    monkeypatch.setattr(packing, "CHUNK_VALUES", 128)  # one block of 64 and the next a chunk
    found = read(SCHEME, with_norm(tensors, WIDE), None)
    assert torch.equal(found["model.layers.0.mlp.up_proj.weight"][1], reference)


def test_four_bit_orientation_comes_from_the_bias_or_the_hidden_size():
    down, _ = four_bit(original(HIDDEN, 96), "model.layers.0.mlp.down_proj", "nf4", True)
    biased, _ = four_bit(original(48, 64), "encoder.fc", "nf4", False)
    biased["encoder.fc.bias"] = torch.zeros(48)
    found = read(SCHEME, with_norm({**down, **biased}), None)
    assert found["model.layers.0.mlp.down_proj.weight"][0].shape == (HIDDEN, 96)
    assert found["encoder.fc.weight"][0].shape == (48, 64)


def test_a_wrong_shape_guess_is_an_error_not_misplaced_values():
    tensors, _ = four_bit(original(HIDDEN, 96), "model.layers.0.mlp.mystery", "nf4", False)  # writes the hidden state
    quantized = SCHEME.find(infos(with_norm(tensors)), None)[0]
    assert quantized.shape == (96, HIDDEN)  # guessed as reading the hidden state
    with pytest.raises(ValueError, match=r"quant_state gives shape \[32, 96\]"):
        SCHEME.dequantize(quantized, {key: tensors[stored] for key, stored in quantized.parts.items()})


def int8_layer(out=48, rows=64):
    source = original(out, rows)
    return {f"model.layers.0.self_attn.q_proj.{k}": v for k, v in bnb_module(source, "int8").items()}, source


def test_int8_reads_as_bitsandbytes_dequantizes():
    tensors, source = int8_layer()
    found = read(SCHEME, tensors, {"quant_method": "bitsandbytes", "load_in_8bit": True})
    quantized, values = found["model.layers.0.self_attn.q_proj.weight"]
    assert quantized.storage == "BNB_INT8" and quantized.shape == (48, 64)
    assert set(quantized.parts) == {"weight", "SCB", "weight_format"}
    prefix = "model.layers.0.self_attn.q_proj."
    assert torch.equal(values, F.int8_vectorwise_dequant(tensors[prefix + "weight"], tensors[prefix + "SCB"]))
    assert relative(values, source) < 0.02


def test_malformed_parts_are_refused_with_a_sentence():
    tensors, _ = four_bit(original(64, HIDDEN), "m.up_proj", "nf4", True)
    quantized = SCHEME.find(infos(with_norm(tensors)), None)[0]
    parts = {key: tensors[stored] for key, stored in quantized.parts.items()}
    state = quantized.detail["state"]
    for bad, words in [
        ({**parts, state: torch.tensor(list(b"not json"), dtype=torch.uint8)}, "not JSON"),
        ({**parts, state: torch.tensor(list(b'{"shape": [64, 32], "blocksize": 0}'), dtype=torch.uint8)}, "blocksize"),
        ({**parts, "weight": parts["weight"][:-1]}, "bytes"),
        ({**parts, "absmax": parts["absmax"][:-1]}, "absmax"),
        ({**parts, "nested_absmax": torch.full_like(parts["nested_absmax"], float("inf"))}, "not finite"),
    ]:
        with pytest.raises(ValueError, match=words):
            SCHEME.dequantize(quantized, bad)
    int8, _ = int8_layer()
    quantized = SCHEME.find(infos(int8), None)[0]
    parts = {key: int8[stored] for key, stored in quantized.parts.items()}
    with pytest.raises(ValueError, match="tile layout"):
        SCHEME.dequantize(quantized, {**parts, "weight_format": torch.tensor(1, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="SCB"):
        SCHEME.dequantize(quantized, {**parts, "SCB": parts["SCB"][:-1]})
