"""GGUF files written like llama.cpp's converter: canonical tensors equal the Hugging Face ones.

A tiny LLaMA (hidden 256 so that K-quant rows hold whole 256-element blocks)
is written with `gguf.GGUFWriter` under llama.cpp's names and metadata keys,
with Q and K rows permuted exactly as `convert_hf_to_gguf.py`'s
`LlamaModel.permute` does. Reading it back must give, per canonical role:

- F32: the Hugging Face tensor, bit for bit;
- types `gguf.quants.quantize` produces (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
  Q5_1, ...): `dequantize(quantize(x))` of the Hugging Face tensor, i.e. only
  quantization error, in Hugging Face row order (blocks never straddle rows,
  so quantizing commutes with the row permutation);
- types gguf can dequantize but not quantize (Q2_K..Q6_K, IQ*, TQ*): random
  valid blocks are generated in Hugging Face row order, stored permuted, and
  must read back as `dequantize(blocks)` in Hugging Face row order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as Q  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

from provenance.architectures.roles import CanonicalKey  # noqa: E402
from provenance.errors import CorruptFileError, ProvenanceError, UnsupportedError  # noqa: E402
from provenance.formats import open_checkpoint_files  # noqa: E402
from provenance.formats.gguf_format import GgufFile  # noqa: E402
from provenance.model import Checkpoint  # noqa: E402

from .builders import distinct_norms, llama_model  # noqa: E402
from .test_formats import assert_one_line_error, run_cli_batch  # noqa: E402

HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, LAYERS, VOCAB = 256, 512, 4, 2, 2, 64

# Hugging Face name (per layer) -> llama.cpp name and canonical role.
GLOBAL_NAMES = {
    "model.embed_tokens.weight": ("token_embd.weight", "embed"),
    "model.norm.weight": ("output_norm.weight", "final_norm"),
    "lm_head.weight": ("output.weight", "lm_head"),
}
LAYER_NAMES = {
    "input_layernorm": ("attn_norm", "attn_norm"),
    "self_attn.q_proj": ("attn_q", "attn.q"),
    "self_attn.k_proj": ("attn_k", "attn.k"),
    "self_attn.v_proj": ("attn_v", "attn.v"),
    "self_attn.o_proj": ("attn_output", "attn.o"),
    "post_attention_layernorm": ("ffn_norm", "mlp_norm"),
    "mlp.gate_proj": ("ffn_gate", "mlp.gate"),
    "mlp.up_proj": ("ffn_up", "mlp.up"),
    "mlp.down_proj": ("ffn_down", "mlp.down"),
}


def _quantize_works(qtype: Q) -> bool:
    try:
        quantize(np.zeros((1, 256), dtype=np.float32), qtype)
        return True
    except NotImplementedError:
        return False


def _dequantize_works(qtype: Q) -> bool:
    block, size = GGML_QUANT_SIZES[qtype]
    if block == 1 and qtype not in (Q.F32, Q.F16, Q.BF16):
        return False  # plain F64/I* types: covered by test_plain_types
    if 256 % block:
        return False
    try:
        dequantize(np.zeros((1, 256 // block * size), dtype=np.uint8), qtype)
        return True
    except NotImplementedError:
        return False


QUANTIZABLE = [t for t in Q if _quantize_works(t) and _dequantize_works(t)]
DEQUANTIZE_ONLY = [t for t in Q if _dequantize_works(t) and not _quantize_works(t)]


def llama_cpp_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """`convert_hf_to_gguf.py` LlamaModel.permute: rows (n, 2, d/2) stored as (n, d/2, 2); works on byte rows too."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def gguf_name(hf_name: str) -> tuple[str, CanonicalKey]:
    if hf_name in GLOBAL_NAMES:
        name, role = GLOBAL_NAMES[hf_name]
        return name, CanonicalKey(role)
    _, _, layer, rest = hf_name.split(".", 3)
    stem = rest.removesuffix(".weight")
    name, role = LAYER_NAMES[stem]
    return f"blk.{layer}.{name}.weight", CanonicalKey(role, int(layer))


def permute_heads(hf_name: str) -> int | None:
    """How many heads llama.cpp permutes this tensor's rows by (None: not permuted)."""
    if hf_name.endswith("q_proj.weight"):
        return HEADS
    if hf_name.endswith("k_proj.weight"):
        return KV_HEADS  # permute(k, n_head, n_head_kv) uses n_head_kv
    return None


def random_blocks(rows: int, cols: int, qtype: Q, seed: int) -> np.ndarray:
    """Random but valid quantized rows: every byte has bit 6 clear, so every f16/f32 scale is finite."""
    block, size = GGML_QUANT_SIZES[qtype]
    raw = np.random.default_rng(seed).integers(0, 256, size=(rows, cols // block * size), dtype=np.uint8)
    return raw & np.uint8(0xBF)


@pytest.fixture(scope="module")
def hf_state():
    model, _ = llama_model(0, vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                           num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                           rope_theta=50000.0, rms_norm_eps=1e-6)
    distinct_norms(model)
    return {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}


def write_llama_gguf(path: Path, tensors: dict[str, tuple[np.ndarray, Q]], arch: str = "llama",
                     head_count: int = HEADS) -> Path:
    """A GGUF with llama.cpp's metadata keys; `tensors` maps GGUF name -> (stored array, type)."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny-test-llama")
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(INTERMEDIATE)
    writer.add_head_count(head_count)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(50000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(VOCAB)
    writer.add_file_type(1)
    for name, (array, qtype) in tensors.items():
        if qtype in (Q.F32, Q.F16) or array.dtype != np.uint8:
            writer.add_tensor(name, array)
        else:
            writer.add_tensor(name, array, raw_shape=array.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def build_case(hf_state: dict[str, torch.Tensor], qtype: Q, tied: bool = False, permute: bool = True):
    """(GGUF tensors to write, expected canonical tensors) for one storage type of the 2-D weights."""
    stored: dict[str, tuple[np.ndarray, Q]] = {}
    expected: dict[CanonicalKey, torch.Tensor] = {}
    for seed, (hf_name, tensor) in enumerate(sorted(hf_state.items())):
        if tied and hf_name == "lm_head.weight":
            continue
        name, key = gguf_name(hf_name)
        x = tensor.numpy()
        heads = permute_heads(hf_name) if permute else None
        if x.ndim == 1 or qtype == Q.F32:  # llama.cpp keeps norms in F32
            stored[name] = (llama_cpp_permute(x, heads) if heads else x.copy(), Q.F32)
            expected[key] = tensor.clone()
            continue
        if qtype in QUANTIZABLE:
            blocks = quantize(x, qtype)  # in Hugging Face row order
        else:
            blocks = random_blocks(x.shape[0], x.shape[1], qtype, seed)
        want = dequantize(blocks, qtype).reshape(x.shape)
        stored[name] = (llama_cpp_permute(blocks, heads) if heads else blocks, qtype)
        expected[key] = torch.from_numpy(np.ascontiguousarray(want, dtype=np.float32))
    return stored, expected


def read_canonical(path: Path) -> tuple[Checkpoint, dict[CanonicalKey, torch.Tensor]]:
    checkpoint = Checkpoint.open(path)
    return checkpoint, {a.key: t for a, t in checkpoint.iter_canonical()}


def assert_architecture(checkpoint: Checkpoint, tied: bool) -> None:
    arch = checkpoint.architecture
    assert checkpoint.format == "gguf"
    assert checkpoint.roles.family == "llama"
    assert (arch.num_layers, arch.hidden_size, arch.num_heads, arch.num_kv_heads) == (LAYERS, HIDDEN, HEADS, KV_HEADS)
    assert (arch.intermediate_size, arch.vocab_size, arch.head_dim) == (INTERMEDIATE, VOCAB, HIDDEN // HEADS)
    assert arch.rope_theta == pytest.approx(50000.0)
    assert arch.tied_embeddings is tied


# --------------------------------------------------------------------------- round trips


def test_f32_reads_back_exactly(hf_state, tmp_path):
    stored, _ = build_case(hf_state, Q.F32)
    path = write_llama_gguf(tmp_path / "tiny-f32.gguf", stored)
    checkpoint, got = read_canonical(path)
    with checkpoint:
        assert_architecture(checkpoint, tied=False)
        assert len(got) == len(hf_state)
        for hf_name, tensor in hf_state.items():
            _, key = gguf_name(hf_name)
            assert got[key].dtype == torch.float32
            assert torch.equal(got[key], tensor), key.name
        # Shapes are reported in PyTorch order, as in the Hugging Face checkpoint.
        infos = {i.name: i for i in checkpoint.infos}
        assert infos["blk.0.attn_q.weight"].shape == (HIDDEN, HIDDEN)
        assert infos["blk.0.attn_k.weight"].shape == (KV_HEADS * HIDDEN // HEADS, HIDDEN)
        assert infos["blk.0.ffn_down.weight"].shape == (HIDDEN, INTERMEDIATE)
        assert infos["token_embd.weight"].shape == (VOCAB, HIDDEN)
        assert infos["blk.0.attn_q.weight"].dtype == "F32"
        transforms = {a.key: a.transform.describe() for a in checkpoint.roles.assignments}
        assert "RoPE" in transforms[CanonicalKey("attn.q", 1)] and "RoPE" in transforms[CanonicalKey("attn.k", 1)]
        assert transforms[CanonicalKey("attn.v", 1)] == "as stored"
        # `read` gives the same as the streaming pass.
        assert torch.equal(checkpoint.read(CanonicalKey("attn.k", 1)), hf_state["model.layers.1.self_attn.k_proj.weight"])


def test_stored_rows_really_are_permuted(hf_state, tmp_path):
    """Guard against a vacuous test: the raw stored Q differs from the HF Q, the canonical one does not."""
    stored, _ = build_case(hf_state, Q.F32)
    path = write_llama_gguf(tmp_path / "tiny-f32.gguf", stored)
    with GgufFile(path) as source:
        raw_q = source.read_tensor("blk.0.attn_q.weight")
        raw_k = source.read_tensor("blk.0.attn_k.weight")
    assert not torch.equal(raw_q, hf_state["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(raw_q, torch.from_numpy(llama_cpp_permute(hf_state["model.layers.0.self_attn.q_proj.weight"].numpy(), HEADS)))
    assert torch.equal(raw_k, torch.from_numpy(llama_cpp_permute(hf_state["model.layers.0.self_attn.k_proj.weight"].numpy(), KV_HEADS)))


@pytest.mark.parametrize("qtype", [t for t in QUANTIZABLE if t != Q.F32], ids=lambda t: t.name)
def test_quantized_types_read_back_with_only_quantization_error(hf_state, tmp_path, qtype):
    stored, expected = build_case(hf_state, qtype)
    path = write_llama_gguf(tmp_path / f"tiny-{qtype.name}.gguf", stored)
    checkpoint, got = read_canonical(path)
    with checkpoint:
        assert_architecture(checkpoint, tied=False)
        assert set(got) == set(expected)
        stored_types = {i.name: i.dtype for i in checkpoint.infos}
        assert stored_types["blk.1.attn_q.weight"] == qtype.name
        assert stored_types["blk.1.attn_norm.weight"] == "F32"
        for key, want in expected.items():
            assert got[key].shape == want.shape, key.name
            assert torch.equal(got[key], want), key.name
        # Quantization error only: close to the original, in the right row order.
        q = got[CanonicalKey("attn.q", 0)]
        original = hf_state["model.layers.0.self_attn.q_proj.weight"]
        error = (q - original).abs().max().item()
        wrong_order = (q - torch.from_numpy(llama_cpp_permute(original.numpy(), HEADS))).abs().max().item()
        assert error < wrong_order


@pytest.mark.parametrize("qtype", DEQUANTIZE_ONLY, ids=lambda t: t.name)
def test_dequantize_only_types_keep_row_order(hf_state, tmp_path, qtype):
    stored, expected = build_case(hf_state, qtype)
    path = write_llama_gguf(tmp_path / f"tiny-{qtype.name}.gguf", stored)
    checkpoint, got = read_canonical(path)
    with checkpoint:
        assert {i.name: i.dtype for i in checkpoint.infos}["blk.0.ffn_up.weight"] == qtype.name
        assert checkpoint.architecture.num_layers == LAYERS
        for key, want in expected.items():
            assert got[key].shape == want.shape, key.name
            assert torch.equal(got[key], want), key.name


def test_required_types_are_covered():
    names = {t.name for t in QUANTIZABLE + DEQUANTIZE_ONLY}
    assert {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"} <= names


def test_tied_embeddings_without_output_tensor(hf_state, tmp_path):
    stored, expected = build_case(hf_state, Q.Q8_0, tied=True)
    assert "output.weight" not in stored
    path = write_llama_gguf(tmp_path / "tied.gguf", stored)
    checkpoint, got = read_canonical(path)
    with checkpoint:
        assert_architecture(checkpoint, tied=True)
        assert CanonicalKey("lm_head") not in got
        assert torch.equal(got[CanonicalKey("embed")], expected[CanonicalKey("embed")])


def test_non_llama_architecture_is_not_unpermuted(hf_state, tmp_path):
    """llama.cpp permutes Q/K only for llama-style converters; a qwen2 GGUF stores HF row order."""
    stored, expected = build_case(hf_state, Q.F32, permute=False)
    path = write_llama_gguf(tmp_path / "qwen.gguf", stored, arch="qwen2")
    checkpoint, got = read_canonical(path)
    with checkpoint:
        assert checkpoint.roles.family == "qwen2"
        for key, want in expected.items():
            assert torch.equal(got[key], want), key.name


def test_plain_types_and_shapes(tmp_path):
    """F64 and integer GGUF tensors are read as float32 (F16 as stored), any rank, shapes in PyTorch order."""
    rng = np.random.default_rng(3)
    arrays = {
        "f64": rng.standard_normal((3, 5)),
        "i8": rng.integers(-128, 127, size=(4,), dtype=np.int8),
        "i16": rng.integers(-1000, 1000, size=(2, 3), dtype=np.int16),
        "i32": rng.integers(-10**6, 10**6, size=(2, 2, 2), dtype=np.int32),
        "i64": rng.integers(-10**6, 10**6, size=(5,), dtype=np.int64),
        "f32_3d": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "f16": rng.standard_normal((6, 2)).astype(np.float16),
    }
    writer = gguf.GGUFWriter(str(tmp_path / "plain.gguf"), "llama")
    for name, array in arrays.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with GgufFile(tmp_path / "plain.gguf") as source:
        infos = {i.name: i for i in source.tensor_infos()}
        for name, array in arrays.items():
            assert infos[name].shape == array.shape, name
            value = source.read_tensor(name)
            expected = torch.float16 if name == "f16" else torch.float32
            assert value.dtype == expected and tuple(value.shape) == array.shape
            assert torch.equal(value.to(torch.float32), torch.from_numpy(array.astype(np.float32))), name
        assert infos["i32"].dtype == "I32" and infos["f64"].dtype == "F64"
        assert source.metadata()["general.architecture"] == "llama"


@pytest.mark.parametrize("arch, meaning", [("gemma3", "post_attn_norm"), ("olmo2", "post_attn_norm"),
                                           ("gpt-oss", "mlp_norm"), ("glm4moe", "mlp_norm")])
def test_post_attention_norm_means_what_the_architecture_says(tmp_path, arch, meaning):
    """llama.cpp names the norm after attention `post_attention_norm` (Gemma 3, OLMo 2), and also, in
    architectures without `ffn_norm` (gpt-oss, GLM-4.5), the pre-MLP norm: the role follows the architecture."""
    rng = np.random.default_rng(5)
    writer = gguf.GGUFWriter(str(tmp_path / "norms.gguf"), arch)
    writer.add_block_count(1)
    for name, shape in (("token_embd.weight", (16, 8)), ("blk.0.attn_norm.weight", (8,)),
                        ("blk.0.post_attention_norm.weight", (8,)), ("blk.0.attn_sinks.weight", (2,)),
                        ("output_norm.weight", (8,))):
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with Checkpoint.open(tmp_path / "norms.gguf") as checkpoint:
        roles = {a.source: a.key.role for a in checkpoint.roles.assignments}
        assert roles["blk.0.post_attention_norm.weight"] == meaning
        assert roles["blk.0.attn_norm.weight"] == "attn_norm" and roles["blk.0.attn_sinks.weight"] == "attn.sinks"
        assert checkpoint.roles.inferred == [] and checkpoint.roles.unmapped == []


# --------------------------------------------------------------------------- broken GGUF files


@pytest.fixture()
def small_gguf(hf_state, tmp_path) -> Path:
    stored, _ = build_case(hf_state, Q.Q8_0)
    return write_llama_gguf(tmp_path / "good.gguf", stored)


def _broken(tmp_path: Path, small_gguf: Path) -> dict[str, tuple[Path, type]]:
    data = small_gguf.read_bytes()
    cases = {}
    cases["bad_magic"] = tmp_path / "magic.gguf"
    cases["bad_magic"].write_bytes(b"GGUX" + data[4:])
    cases["header_only"] = tmp_path / "header.gguf"
    cases["header_only"].write_bytes(data[:200])
    cases["truncated_data"] = tmp_path / "cut.gguf"
    cases["truncated_data"].write_bytes(data[: len(data) - 1000])
    cases["empty"] = tmp_path / "empty.gguf"
    cases["empty"].write_bytes(b"")
    cases["bad_version"] = tmp_path / "version.gguf"
    cases["bad_version"].write_bytes(data[:4] + (99).to_bytes(4, "little") + data[8:])
    cases["huge_counts"] = tmp_path / "counts.gguf"
    cases["huge_counts"].write_bytes(data[:8] + (2**62).to_bytes(8, "little") + (2**62).to_bytes(8, "little") + data[24:])
    # A well-formed file of a version this reader does not know is unsupported, not corrupt.
    return {name: (path, UnsupportedError if name == "bad_version" else CorruptFileError) for name, path in cases.items()}


def test_broken_gguf_files_raise_named_errors(small_gguf, tmp_path):
    for name, (path, error) in _broken(tmp_path, small_gguf).items():
        with pytest.raises(ProvenanceError) as caught:
            source = GgufFile(path)
            for info in source.tensor_infos():
                source.read_tensor(info.name)
        assert isinstance(caught.value, error), (name, caught.value)
        assert str(path) in str(caught.value), (name, caught.value)
        assert "\n" not in str(caught.value)


def test_broken_gguf_files_via_cli(small_gguf, tmp_path):
    cases = _broken(tmp_path, small_gguf)
    runs = [["inspect", str(path)] for path, _ in cases.values()]
    for (name, (path, _)), result in zip(cases.items(), run_cli_batch(runs)):
        try:
            assert_one_line_error(result, path)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def test_type_gguf_cannot_dequantize_is_unsupported(tmp_path):
    qtype = next((t for t in (Q.Q8_1, Q.Q8_K) if not _dequantize_works(t)), None)
    if qtype is None:
        pytest.skip("this gguf version dequantizes every type we would try")
    block, size = GGML_QUANT_SIZES[qtype]
    raw = np.zeros((2, 256 // block * size), dtype=np.uint8)
    writer = gguf.GGUFWriter(str(tmp_path / "odd.gguf"), "llama")
    writer.add_tensor("blk.0.attn_v.weight", raw, raw_shape=raw.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with GgufFile(tmp_path / "odd.gguf") as source:
        assert source.tensor_infos()[0].dtype == qtype.name
        assert source.tensor_infos()[0].shape == (2, 256)
        with pytest.raises(UnsupportedError, match=qtype.name) as caught:
            source.read_tensor("blk.0.attn_v.weight")
        assert str(tmp_path / "odd.gguf") in str(caught.value)


def test_gguf_directory_and_cli_json(small_gguf, tmp_path):
    files = open_checkpoint_files(small_gguf.parent)
    assert files.format == "gguf" and files.config is None
    files.close()
    (result,) = run_cli_batch([["inspect", str(small_gguf), "--json"]])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["family"]["name"] == "llama"
    assert report["architecture"]["num_layers"] == LAYERS
    assert report["tensors"]["dtypes"] == {"Q8_0": 2 + 7 * LAYERS, "F32": 1 + 2 * LAYERS}
    assert any(c["value"] == "tiny-test-llama" for c in report["lineage_claims"])


def _library_view(path: Path) -> tuple[dict, list]:
    """Metadata and tensors as gguf's own reader gives them: the independent reading ours must equal."""
    reader = gguf.GGUFReader(str(path), "r")
    metadata = {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}
    tensors = [(t.name, tuple(int(d) for d in reversed(t.shape.tolist())), t.tensor_type.name, int(t.n_bytes),
                int(t.data_offset)) for t in reader.tensors]
    return metadata, tensors


def test_header_parse_equals_gguf_reader(small_gguf):
    """The project's header parse gives what gguf.GGUFReader gives: every key's value, every tensor's layout."""
    metadata, tensors = _library_view(small_gguf)
    with GgufFile(small_gguf) as source:
        assert source.metadata() == metadata
        ours = [(i.name, i.shape, i.dtype, i.nbytes, source.data_layout(i.name)[0]) for i in source.tensor_infos()]
    assert ours == tensors


def test_real_gguf_header_parse_equals_gguf_reader():
    """The same on the real SmolLM2 GGUF (49,152 tokens and merges in its metadata), when it is installed."""
    from provenance.errors import UnreadablePathError
    from provenance.real_models import real_model_path

    try:
        path = real_model_path("smollm2")
    except UnreadablePathError as exc:
        pytest.skip(f"SmolLM2 is not installed ({exc})")
    metadata, tensors = _library_view(path)
    with GgufFile(path) as source:
        assert source.metadata() == metadata
        ours = [(i.name, i.shape, i.dtype, i.nbytes, source.data_layout(i.name)[0]) for i in source.tensor_infos()]
    assert ours == tensors
