"""GPTQ, AWQ, compressed-tensors and bitsandbytes copies of a tiny LLaMA, opened and compared end to end.

The copies are written by `bench/zoo/integer_quantized.py` (the formats'
libraries, or their layout with a library's packer), saved with their
`quantization_config` in config.json, opened through `Checkpoint.open` (the
dequantizing wrapper and `formats/quantized/schemes.SCHEMES`) and compared
with the float32 model they were made from: a quantized copy is `identical`
(the difference is the storage's rounding), a copy of a fine-tune that moved
the weights by twice the storage's bar is `derived` (a smaller change cannot
be told from the rounding, by design of the storage rule).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.zoo.integer_quantized import (awq_config, awq_module, bnb_config, bnb_module, compressed_tensors_config,
                                         compressed_tensors_module, gptq_config, gptq_module, quantized_state)
from bench.zoo.quantized import relative_rms
from provenance.compare import compare_fingerprints
from provenance.compare.thresholds import storage_tolerance
from provenance.fingerprint.load import fingerprint_for
from provenance.model import Checkpoint

from .builders import tiny_llama_state, write_tiny_llama
from .range_server import RangeServer

PACK4 = dict(num_bits=4, strategy="group", group_size=16, symmetric=False)
INT8 = dict(num_bits=8, strategy="channel", symmetric=True)
FP8_BLOCK = dict(num_bits=8, type="float", strategy="block", block_structure=[16, 16], symmetric=True)
# name: (module writer, its options, quantization_config, the storage name of a layer weight)
COPIES = {
    "gptq-int4": (gptq_module, {"bits": 4}, gptq_config(4), "GPTQ_INT4"),
    "gptq-int8-act-order-v2": (gptq_module, {"bits": 8, "symmetric": False, "act_order": True, "v2": True},
                               gptq_config(8, symmetric=False, act_order=True, v2=True), "GPTQ_INT8"),
    "awq": (awq_module, {}, awq_config(), "AWQ_INT4"),
    "ct-pack-int4": (compressed_tensors_module, {"fmt": "pack-quantized", **PACK4},
                     compressed_tensors_config("pack-quantized", **PACK4), "INT4"),
    "ct-int8": (compressed_tensors_module, {"fmt": "int-quantized", **INT8},
                compressed_tensors_config("int-quantized", **INT8), "INT8_CHANNEL"),
    # blocks of 16 x 16 come from the config: the generic FP8 scheme (which would look for 128 x 128) never sees them
    "ct-fp8-block": (compressed_tensors_module, {"fmt": "float-quantized", **FP8_BLOCK},
                     compressed_tensors_config("float-quantized", **FP8_BLOCK), "F8_E4M3"),
    "bnb-nf4": (bnb_module, {"kind": "nf4"}, bnb_config("nf4"), "BNB_NF4"),
    "bnb-int8": (bnb_module, {"kind": "int8"}, bnb_config("int8"), "BNB_INT8"),
}
TUNED = ("gptq-int4", "ct-int8", "bnb-int8")  # (bitsandbytes quantizes NF4 slowly on a CPU: one NF4 copy)


def _tuned(state, storage, seed=8):
    """Every layer matrix moved by noise of twice the storage's bar (relative to its std)."""
    fraction = 2 * storage_tolerance(storage)
    generator = torch.Generator().manual_seed(seed)
    return {k: v + fraction * v.std() * torch.randn(v.shape, generator=generator) if v.dim() == 2 else v
            for k, v in state.items()}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    state = tiny_llama_state(4)
    root = tmp_path_factory.mktemp("hub-quantized")
    paths = {"reference": write_tiny_llama(root / "reference", state)}
    for name, (writer, options, config, storage) in COPIES.items():
        paths[name] = write_tiny_llama(root / name, quantized_state(state, writer, **options), config)
        if name in TUNED:
            paths[name + "-tuned"] = write_tiny_llama(root / (name + "-tuned"),
                                           quantized_state(_tuned(state, storage), writer, **options), config)
    return paths, state, root


@pytest.mark.parametrize("copy", list(COPIES))
def test_quantized_copy_reads_as_the_weights_and_is_identical(models, copy):
    paths, state, _ = models
    storage = COPIES[copy][3]
    with Checkpoint.open(paths[copy]) as checkpoint:
        infos = {info.name: info for info in checkpoint.infos}
        assert set(infos) == set(state), "each group listed under the weight's own name, its stored parts hidden"
        for name in ("model.layers.1.mlp.down_proj.weight", "model.layers.0.self_attn.k_proj.weight"):
            assert (infos[name].dtype, infos[name].shape) == (storage, tuple(state[name].shape))
            error = relative_rms(checkpoint.files.source.read_tensor(name), state[name])
            assert 0 < error < storage_tolerance(storage)
        assert infos["model.embed_tokens.weight"].dtype == "F32", "tensors outside any group pass through"
    result = compare_fingerprints(fingerprint_for(paths[copy]), fingerprint_for(paths["reference"]))
    assert result.verdict == "identical", result.summary


@pytest.mark.parametrize("copy", TUNED)
def test_quantized_fine_tune_is_derived(models, copy):
    paths, _, _ = models
    result = compare_fingerprints(fingerprint_for(paths[copy + "-tuned"]), fingerprint_for(paths["reference"]))
    assert result.verdict == "derived", result.summary


@pytest.mark.parametrize("copy", ["ct-pack-int4", "ct-int8", "ct-fp8-block", "bnb-int8", "gptq-int4", "bnb-nf4"])
def test_rows_read_apart_equal_the_rows_of_the_whole_tensor(models, copy):
    """compressed-tensors and LLM.int8 read rows of the codes and scales; GPTQ and NF4 read whole (rows of the
    weight are columns of qweight, or runs of a flat code stream) and pick the rows: the same values either way."""
    paths, _, _ = models
    rows = np.array([47, 3, 3, 20, 0, 31, 17])
    with Checkpoint.open(paths[copy]) as checkpoint:
        source = checkpoint.files.source
        for name in ("model.layers.0.mlp.gate_proj.weight", "model.layers.1.self_attn.k_proj.weight"):
            whole = source.read_tensor(name)
            wanted = rows[rows < whole.shape[0]]
            assert torch.equal(source.read_rows(name, wanted), whole[torch.from_numpy(wanted)])


def test_over_http_copies_read_by_rows_or_whole_are_identical(models):
    """Remote fingerprints sample rows: compressed-tensors fetches those rows of codes and scales, GPTQ whole tensors."""
    paths, _, root = models
    reference = fingerprint_for(paths["reference"])
    with RangeServer(root) as server:
        for copy in ("ct-pack-int4", "gptq-int4"):
            remote = fingerprint_for(server.url(f"{copy}/model.safetensors"))
            assert remote.meta["variant"] == "remote"
            if copy == "ct-pack-int4":
                assert remote.meta["remote"]["fraction_read"] < 1.0
            result = compare_fingerprints(remote, reference)
            assert result.verdict == "identical", (copy, result.summary)
