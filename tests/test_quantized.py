"""Quantized checkpoints read back as floats: FP8 with scales and MXFP4, locally and over HTTP ranges.

The copies are written by `bench/zoo/quantized.py` from the published layouts
(DeepSeek-V3's block scales, gpt-oss's MXFP4 blocks) and read by
`provenance/formats/quantized/`. A quantized copy of a bf16 LLaMA must come
out `identical` (within the format's rounding), a fine-tune that moved the
weights by more than that rounding `derived`, and a malformed file a one-line
error naming the file and the tensor.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.zoo.quantized import (MXFP4_CONFIG, fp8_config, fp8_quantize, fp8_state, mxfp4_quantize, mxfp4_state,
                                 relative_rms)
from provenance.compare import compare_fingerprints
from provenance.compare.thresholds import storage_tolerance
from provenance.errors import CorruptFileError
from provenance.fingerprint.load import fingerprint_for
from provenance.formats import open_checkpoint_files
from provenance.formats.base import TensorInfo
from provenance.formats.quantized.dequantizing import DequantizingSource
from provenance.formats.quantized.mxfp4 import Mxfp4Scheme
from provenance.model import Checkpoint

from .builders import tiny_llama_state
from .builders import write_tiny_llama as _save
from .range_server import RangeServer

BLOCK = (16, 24)  # small blocks, so that the tiny model has several, and partial ones (32 and 48 are not multiples of 24)


def _tuned(state, storage, seed=7):
    """A fine-tune whose change is twice the rounding the storage is allowed (a smaller one is indistinguishable
    from that rounding, by design of the storage rule)."""
    fraction = 2 * storage_tolerance(storage)
    generator = torch.Generator().manual_seed(seed)
    return {k: (v.float() + fraction * v.float().std() * torch.randn(v.shape, generator=generator)).to(v.dtype)
            if v.dim() == 2 else v for k, v in state.items()}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The bf16 reference and its quantized copies and fine-tunes, in one served folder."""
    state = tiny_llama_state(3)
    bf16 = {k: v.to(torch.bfloat16) for k, v in state.items()}
    root = tmp_path_factory.mktemp("quantized")
    paths = {
        "reference": _save(root / "reference", bf16),
        "fp8": _save(root / "fp8", fp8_state(bf16, block=BLOCK), fp8_config(BLOCK)),
        "fp8-tuned": _save(root / "fp8-tuned", fp8_state(_tuned(bf16, "FP8_E4M3_BLOCK"), block=BLOCK), fp8_config(BLOCK)),
        "fp8-channel-e5m2": _save(root / "fp8-channel-e5m2", fp8_state(bf16, "e5m2", "channel")),
        "mxfp4": _save(root / "mxfp4", mxfp4_state(bf16), MXFP4_CONFIG),
        "mxfp4-tuned": _save(root / "mxfp4-tuned", mxfp4_state(_tuned(bf16, "MXFP4")), MXFP4_CONFIG),
    }
    return root, paths, bf16


@pytest.mark.parametrize("copy, storage", [("fp8", "FP8_E4M3_BLOCK"), ("fp8-channel-e5m2", "FP8_E5M2_CHANNEL"),
                                           ("mxfp4", "MXFP4")])
def test_quantized_copy_reads_as_the_weights_within_the_step_and_is_identical(models, copy, storage):
    _, paths, state = models
    with Checkpoint.open(paths[copy]) as checkpoint:
        source = checkpoint.files.source
        assert isinstance(source, DequantizingSource)
        infos = {info.name: info for info in checkpoint.infos}
        assert set(infos) == set(state), "each group is listed under the weight's own name, companions hidden"
        up = "model.layers.1.mlp.up_proj.weight"
        assert infos[up].dtype == storage and infos[up].shape == tuple(state[up].shape)
        assert infos["model.embed_tokens.weight"].dtype == "BF16", "tensors outside any group pass through"
        error = relative_rms(source.read_tensor(up), state[up])
        assert 0 < error < storage_tolerance(storage)
    result = compare_fingerprints(fingerprint_for(paths[copy]), fingerprint_for(paths["reference"]))
    assert result.verdict == "identical", result.summary


@pytest.mark.parametrize("tuned", ["fp8-tuned", "mxfp4-tuned"])
def test_quantized_fine_tune_is_derived(models, tuned):
    _, paths, _ = models
    result = compare_fingerprints(fingerprint_for(paths[tuned]), fingerprint_for(paths["reference"]))
    assert result.verdict == "derived", result.summary


def test_over_http_copies_are_identical_and_fine_tunes_derived_reading_rows_only(models):
    root, paths, _ = models
    reference = fingerprint_for(paths["reference"])
    with RangeServer(root) as server:
        for name, verdict in (("fp8", "identical"), ("fp8-tuned", "derived"), ("mxfp4", "identical"),
                              ("mxfp4-tuned", "derived")):
            remote = fingerprint_for(server.url(f"{name}/model.safetensors"))
            assert remote.meta["variant"] == "remote"
            # rows only: the row samples and the vectors are planned (whole tensors would plan every tensor byte);
            # what is fetched also holds the short gaps between near rows (one range request for both), which at
            # this width is most of the file (0.96 to 1.01 of it)
            assert remote.meta["remote"]["tensor_bytes_planned"] < 0.8 * (
                remote.meta["remote"]["checkpoint_bytes"] - remote.meta["remote"]["header_bytes"])
            result = compare_fingerprints(remote, reference)
            assert result.verdict == verdict, (name, result.summary)


@pytest.mark.parametrize("copy", ["fp8", "fp8-channel-e5m2", "mxfp4"])
def test_rows_read_apart_equal_the_rows_of_the_whole_tensor(models, copy):
    _, paths, _ = models
    rows = np.array([47, 3, 3, 20, 0, 31])
    with Checkpoint.open(paths[copy]) as checkpoint:
        source = checkpoint.files.source
        for name in ("model.layers.0.mlp.gate_proj.weight", "model.layers.0.self_attn.q_proj.weight"):
            wanted = rows[rows < source.read_tensor(name).shape[0]]
            assert torch.equal(source.read_rows(name, wanted), source.read_tensor(name)[torch.from_numpy(wanted)])


def test_deepseek_blocks_of_128_without_a_config_follow_weight_dequant(tmp_path):
    """DeepSeek-V3's inference/kernel.py: y[i, j] = x[i, j] * s[i // 128, j // 128], partial blocks at the edges."""
    weight = torch.randn(300, 200, generator=torch.Generator().manual_seed(1))
    codes, scale = fp8_quantize(weight)
    assert scale.shape == (3, 2)
    save_file({"layer.weight": codes, "layer.weight_scale_inv": scale}, str(tmp_path / "model.safetensors"))
    files = open_checkpoint_files(tmp_path / "model.safetensors")
    [info] = files.source.tensor_infos()
    assert (info.name, info.shape, info.dtype) == ("layer.weight", (300, 200), "FP8_E4M3_BLOCK")
    read = files.source.read_tensor("layer.weight")
    for i in range(3):
        for j in range(2):
            block = (slice(128 * i, 128 * (i + 1)), slice(128 * j, 128 * (j + 1)))
            assert torch.equal(read[block], codes[block].float() * scale[i, j])
    assert relative_rms(read, weight) < storage_tolerance("FP8_E4M3_BLOCK")


def test_ordinary_checkpoints_are_not_wrapped(models):
    _, paths, _ = models
    files = open_checkpoint_files(paths["reference"])
    assert not isinstance(files.source, DequantizingSource)


def test_mxfp4_unpacking_matches_transformers():
    mxfp4 = pytest.importorskip("transformers.integrations.mxfp4")
    generator = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, 256, (3, 5, 4, 16), generator=generator, dtype=torch.uint8)
    scales = torch.randint(118, 136, (3, 5, 4), generator=generator, dtype=torch.uint8)
    scheme = Mxfp4Scheme()
    infos = [_info("model.layers.0.mlp.experts.gate_up_proj_blocks", blocks, "U8"),
             _info("model.layers.0.mlp.experts.gate_up_proj_scales", scales, "U8")]
    [group] = scheme.find(infos, None)
    assert group.name == "model.layers.0.mlp.experts.gate_up_proj" and group.shape == (3, 128, 5)
    ours = scheme.dequantize(group, {"blocks": blocks, "scales": scales})
    assert torch.equal(ours, mxfp4.convert_moe_packed_tensors(blocks, scales, dtype=torch.float32))


def test_mxfp4_packer_and_reader_agree_on_exact_levels():
    """Values that are E2M1 levels times a power of two come back exactly (the OCP spec's encoding)."""
    levels = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    generator = torch.Generator().manual_seed(2)
    weight = levels[torch.randint(0, 8, (4, 64), generator=generator)] * torch.where(
        torch.rand(4, 64, generator=generator) < 0.5, -1.0, 1.0)
    weight[:, ::32] = 6.0  # every block's largest magnitude is 6, so its exponent is 0
    weight = weight * 2.0 ** torch.arange(-3, 1).reshape(4, 1)
    blocks, scales = mxfp4_quantize(weight)
    scheme = Mxfp4Scheme()
    [group] = scheme.find([_info("w.weight_blocks", blocks, "U8"), _info("w.weight_scales", scales, "U8")], None)
    assert torch.equal(scheme.dequantize(group, {"blocks": blocks, "scales": scales}), weight)


def _info(name, tensor, dtype):
    return TensorInfo(name, tuple(tensor.shape), dtype, tensor.numel() * tensor.element_size(), "memory")


@pytest.mark.parametrize("scale, problem", [
    (torch.ones(2, 2), "has shape [2, 2]"),
    (torch.zeros(1, 1), "zero, negative, NaN or infinite"),
    (torch.full((1, 1), math.nan), "zero, negative, NaN or infinite"),
    (torch.full((1, 1), math.inf), "zero, negative, NaN or infinite"),
])
def test_malformed_fp8_scales_are_one_line_errors_naming_file_and_tensor(tmp_path, scale, problem):
    codes = torch.randn(40, 24).to(torch.float8_e4m3fn)
    save_file({"layer.weight": codes, "layer.weight_scale_inv": scale}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CorruptFileError) as caught:
        files = open_checkpoint_files(tmp_path / "model.safetensors")
        files.source.read_tensor("layer.weight")
    message = str(caught.value)
    assert "model.safetensors" in message and "layer.weight" in message and problem in message
    assert "\n" not in message


def test_mxfp4_scales_of_the_wrong_shape_are_an_error(tmp_path):
    blocks, scales = mxfp4_quantize(torch.randn(8, 64))
    save_file({"w.weight_blocks": blocks, "w.weight_scales": scales[:, :1].contiguous()},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(CorruptFileError, match=r"model\.safetensors.*w\.weight_scales.*shape \[8, 1\]"):
        open_checkpoint_files(tmp_path / "model.safetensors")


def test_sharded_copy_with_scales_in_another_shard_reads_the_same_locally_and_remotely(models, tmp_path):
    _, paths, _ = models
    stored = load_file(str(paths["fp8"] / "model.safetensors"))
    names = sorted(stored)
    shards = {"model-00001-of-00002.safetensors": [n for n in names if not n.endswith("_scale_inv")],
              "model-00002-of-00002.safetensors": [n for n in names if n.endswith("_scale_inv")]}
    folder = tmp_path / "sharded"
    folder.mkdir()
    for shard, held in shards.items():
        save_file({n: stored[n] for n in held}, str(folder / shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: shard for shard, held in shards.items() for n in held}}))
    (folder / "config.json").write_text((paths["fp8"] / "config.json").read_text())
    name, rows = "model.layers.1.mlp.down_proj.weight", np.array([31, 0, 17, 17])
    with Checkpoint.open(paths["fp8"]) as single:
        expected = single.files.source.read_tensor(name)
    with RangeServer(tmp_path) as server:
        for where in (folder, server.url("sharded/model.safetensors.index.json")):
            with Checkpoint.open(where) as sharded:
                source = sharded.files.source
                assert isinstance(source, DequantizingSource)
                assert not any(info.name.endswith("_scale_inv") for info in sharded.infos)
                assert torch.equal(source.read_tensor(name), expected)
                assert torch.equal(source.read_rows(name, rows), expected[torch.from_numpy(rows)])


def test_gpt_oss_experts_read_in_their_float_layout(tmp_path):
    """gpt-oss stores experts [experts, out, in/32, 16]; they read as its float parameters [experts, in, out]."""
    experts = torch.randn(2, 64, 96, generator=torch.Generator().manual_seed(4))  # [experts, in, out]
    packed = [mxfp4_quantize(expert.T) for expert in experts]
    stored = {"model.layers.0.mlp.experts.down_proj_blocks": torch.stack([b for b, _ in packed]),
              "model.layers.0.mlp.experts.down_proj_scales": torch.stack([s for _, s in packed]),
              "model.layers.0.mlp.experts.down_proj_bias": torch.zeros(2, 96)}
    save_file(stored, str(tmp_path / "model.safetensors"))
    source = open_checkpoint_files(tmp_path / "model.safetensors").source
    infos = {info.name: info for info in source.tensor_infos()}
    assert set(infos) == {"model.layers.0.mlp.experts.down_proj", "model.layers.0.mlp.experts.down_proj_bias"}
    assert infos["model.layers.0.mlp.experts.down_proj"].shape == (2, 64, 96)
    values = source.read_tensor("model.layers.0.mlp.experts.down_proj")
    assert relative_rms(values, experts) < storage_tolerance("MXFP4")
    rows = np.array([127, 5, 64])
    assert torch.equal(source.read_rows("model.layers.0.mlp.experts.down_proj", rows),
                       values.reshape(-1, 96)[torch.from_numpy(rows)])


def test_fbgemm_channels_hide_the_activation_scale_and_empty_weights_read_empty(tmp_path):
    weight = torch.randn(40, 24, generator=torch.Generator().manual_seed(6))
    codes, scale = fp8_quantize(weight, granularity="channel")
    save_file({"fc.weight": codes, "fc.weight_scale": scale, "fc.input_scale": torch.ones(1),
               "empty.weight": torch.zeros(0, 24).to(torch.float8_e4m3fn), "empty.weight_scale": torch.ones(0, 1)},
              str(tmp_path / "model.safetensors"))
    source = open_checkpoint_files(tmp_path / "model.safetensors").source
    assert {(i.name, i.dtype) for i in source.tensor_infos()} == {("fc.weight", "FP8_E4M3_CHANNEL"),
                                                                   ("empty.weight", "FP8_E4M3_CHANNEL")}
    assert torch.equal(source.read_tensor("fc.weight"), codes.float() * scale)
    assert source.read_tensor("empty.weight").shape == (0, 24)


def _step(values: torch.Tensor, storage: str) -> torch.Tensor:
    """One quantization step at each value: E4M3's (3 mantissa bits) for FP8; a group of 16 inputs' range / 15 for
    int4."""
    if storage.startswith("FP8"):
        return torch.pow(2.0, torch.floor(torch.log2(values.abs().clamp_min(1e-30))) - 3)
    groups = values.reshape(values.shape[0], -1, 16)
    return ((groups.amax(-1, keepdim=True) - groups.amin(-1, keepdim=True)) / 15).expand(groups.shape).reshape(values.shape)


@pytest.mark.parametrize("storage", ["FP8_E4M3_BLOCK", "GPTQ_INT4"])
def test_a_sub_step_fine_tune_of_a_quantized_reference_is_derived_and_a_dequantized_copy_identical(tmp_path, storage):
    """The storage rule against a quantized reference (`thresholds.identity_tolerance`): a bf16 copy of its
    dequantized values is `identical`; a fine-tune by 0.2 of a step, nonzero everywhere, is `derived`, stored bf16
    or quantized again with the reference's scheme (whose own step had excused it)."""
    from bench.zoo.integer_quantized import gptq_config, gptq_module, quantized_state

    bf16 = {k: v.to(torch.bfloat16) for k, v in tiny_llama_state(3).items()}
    if storage == "GPTQ_INT4":
        def quantize(state):
            return quantized_state(state, gptq_module, bits=4, group_size=16)
        config = gptq_config(bits=4, group_size=16)
    else:
        def quantize(state):
            return fp8_state(state, block=BLOCK)
        config = fp8_config(BLOCK)
    reference = _save(tmp_path / "reference", quantize(bf16), config)
    with Checkpoint.open(reference) as checkpoint:
        source = checkpoint.files.source
        dtypes = {info.name: info.dtype for info in source.tensor_infos()}
        values = {name: source.read_tensor(name) for name in dtypes}
    generator = torch.Generator().manual_seed(5)
    tuned = {}
    for name, value in values.items():
        if dtypes[name] == storage:
            sign = torch.randint(0, 2, value.shape, generator=generator).float() * 2 - 1
            value = value + 0.2 * sign * _step(value, storage)
        tuned[name] = value.to(torch.bfloat16)
    copies = {"copy": _save(tmp_path / "copy", {k: v.to(torch.bfloat16) for k, v in values.items()}),
              "tuned": _save(tmp_path / "tuned", tuned),
              "tuned-requantized": _save(tmp_path / "tuned-requantized", quantize(tuned), config)}
    reference_fp = fingerprint_for(reference, cache=False)
    verdicts = {name: compare_fingerprints(fingerprint_for(path, cache=False), reference_fp).verdict
                for name, path in copies.items()}
    assert verdicts == {"copy": "identical", "tuned": "derived", "tuned-requantized": "derived"}
    assert compare_fingerprints(reference_fp, reference_fp).verdict == "identical"
