"""Checkpoint formats: every tensor read back equals what was written; hostile and broken files fail cleanly.

All checkpoints are generated in tmp_path from a seeded tiny LLaMA, so that
these tests need no download and no real model.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from provenance.architectures.roles import CanonicalKey
from provenance.errors import (
    CorruptFileError,
    MissingShardError,
    ProvenanceError,
    UnreadablePathError,
    UnsafeFileError,
    UnsupportedError,
)
from provenance.formats import open_checkpoint_files
from provenance.formats.pytorch_format import PytorchFile
from provenance.formats.safetensors_format import SafetensorsFile
from provenance.model import Checkpoint

from .builders import distinct_norms, llama_model
from .support.attack_corpus.pytorch_cases import payload_classes
from .support.attack_corpus.runner import run_batch

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PROVENANCE_DEBUG"}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


def run_cli_batch(runs: list[list[str]], cwd: Path | None = None) -> list[subprocess.CompletedProcess]:
    """`provenance ARGS` for each ARGS, in one fresh interpreter (the attack corpus's driver, without its memory
    cap); one CompletedProcess per run."""
    results = run_batch(runs, memory_limit=None, per_run_timeout=300, cwd=cwd, silent=True)
    return [subprocess.CompletedProcess(argv, r["code"], r["stdout"], r["stderr"]) for argv, r in zip(runs, results)]


def assert_one_line_error(result: subprocess.CompletedProcess, names: Path | str) -> str:
    """Exit 1, exactly one stderr line naming `names`, no traceback, nothing on stdout."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("provenance: error: "), lines[0]
    assert str(names) in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert "unexpected" not in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


def assert_same_tensors(source, expected: dict[str, torch.Tensor]) -> None:
    infos = source.tensor_infos()
    assert sorted(i.name for i in infos) == sorted(expected)
    for info in infos:
        value = source.read_tensor(info.name)
        want = expected[info.name]
        assert value.dtype == want.dtype, info.name
        assert tuple(value.shape) == tuple(want.shape) == info.shape, info.name
        assert torch.equal(value, want), info.name
        assert info.nbytes == want.numel() * want.element_size(), info.name


def write_safetensors_raw(path: Path, header: dict | bytes, data: bytes = b"", header_len: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(raw) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", length) + raw + data)
    return path


LLAMA_ROLES = {
    "embed": "model.embed_tokens.weight",
    "final_norm": "model.norm.weight",
    "lm_head": "lm_head.weight",
}
LLAMA_LAYER_ROLES = {
    "attn_norm": "input_layernorm", "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
    "attn.v": "self_attn.v_proj", "attn.o": "self_attn.o_proj", "mlp_norm": "post_attention_layernorm",
    "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj",
}


def assert_canonical_llama(path: Path, state: dict[str, torch.Tensor], layers: int = 2) -> None:
    """Every canonical role of the tiny LLaMA at `path` equals the source tensor."""
    with Checkpoint.open(path) as checkpoint:
        assert checkpoint.roles.family == "llama"
        assert checkpoint.architecture.num_layers == layers
        got = {a.key: t for a, t in checkpoint.iter_canonical()}
        for role, name in LLAMA_ROLES.items():
            assert torch.equal(got[CanonicalKey(role)], state[name]), role
        for layer in range(layers):
            for role, stem in LLAMA_LAYER_ROLES.items():
                assert torch.equal(got[CanonicalKey(role, layer)], state[f"model.layers.{layer}.{stem}.weight"]), (role, layer)
        assert len(got) == len(state)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A seeded tiny LLaMA: (model, state dict of independent tensors)."""
    model, _ = llama_model(0, vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2)
    distinct_norms(model)  # norms are initialised to ones; make them distinctive
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return model, state


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    """The tiny LLaMA saved by transformers as one model.safetensors (with config.json)."""
    model, _ = tiny
    path = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(path)
    assert (path / "model.safetensors").is_file()
    return path


@pytest.fixture()
def sentinel(tmp_path):
    path = tmp_path / "SENTINEL"
    yield path
    assert not path.exists(), "a pickle ran code"


# --------------------------------------------------------------------------- safetensors


def test_safetensors_single_file_reads_back_equal(tiny, tiny_dir):
    _, state = tiny
    files = open_checkpoint_files(tiny_dir)
    assert files.format == "safetensors"
    assert files.config is not None and files.config["model_type"] == "llama"
    assert_same_tensors(files.source, state)
    files.close()
    # The file on its own opens too.
    with SafetensorsFile(tiny_dir / "model.safetensors") as source:
        assert_same_tensors(source, state)
    assert_canonical_llama(tiny_dir, state)


def test_safetensors_sharded_by_transformers(tiny, tmp_path):
    model, state = tiny
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    files = open_checkpoint_files(tmp_path)
    assert files.format == "safetensors"
    assert sorted(p.name for p in files.source.files()[1:]) == [p.name for p in shards]
    assert files.source.files()[0].name == "model.safetensors.index.json"
    assert_same_tensors(files.source, state)
    files.close()
    assert_canonical_llama(tmp_path, state)


def test_safetensors_hand_written_index(tiny, tmp_path):
    from safetensors.torch import save_file

    _, state = tiny
    names = sorted(state)
    halves = {"a-00001-of-00002.safetensors": names[: len(names) // 2],
              "a-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, members in halves.items():
        save_file({n: state[n] for n in members}, str(tmp_path / shard))
        weight_map.update({n: shard for n in members})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    with open_checkpoint_files(tmp_path).source as source:
        assert_same_tensors(source, state)


def test_safetensors_dtype_edge_cases(tmp_path):
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(1)
    tensors = {
        "bf16": torch.randn(3, 5, generator=generator).bfloat16(),
        "f16": torch.randn(7, generator=generator).half(),
        "f64": torch.randn(2, 3, generator=generator).double(),
        "f32": torch.randn(4, 4, generator=generator),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "i16": torch.tensor([-3, 4], dtype=torch.int16),
        "i32": torch.arange(-5, 5, dtype=torch.int32),
        "i64": torch.tensor([2**40, -(2**40)], dtype=torch.int64),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "empty_mid": torch.zeros(3, 0, 2, dtype=torch.float16),
        "scalar": torch.tensor(3.25),
        "scalar_int": torch.tensor(-7, dtype=torch.int64),
    }
    path = tmp_path / "edge.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "note": "edge"})
    with SafetensorsFile(path) as source:
        assert_same_tensors(source, tensors)
        kinds = {i.name: i.dtype for i in source.tensor_infos()}
        assert kinds["bf16"] == "BF16" and kinds["f16"] == "F16" and kinds["f64"] == "F64"
        assert kinds["i32"] == "I32" and kinds["bool"] == "BOOL"
        assert {i.name: i.shape for i in source.tensor_infos()}["scalar"] == ()
        assert source.metadata() == {"format": "pt", "note": "edge"}
    # Bit patterns survive (NaN, -0.0, inf) in every float dtype.
    special = torch.tensor([float("nan"), -0.0, float("inf"), -float("inf"), 1e-8])
    specials = {f"s_{d}": special.to(d) for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)}
    save_file(specials, str(tmp_path / "special.safetensors"))
    with SafetensorsFile(tmp_path / "special.safetensors") as source:
        for name, want in specials.items():
            got = source.read_tensor(name)
            assert got.dtype == want.dtype
            assert torch.equal(got.view(torch.uint8), want.view(torch.uint8)), name


def test_safetensors_dtype_torch_cannot_hold_is_unsupported(tmp_path):
    """F6 is in the safetensors spec but has no PyTorch dtype: the header is fine, the read says unsupported."""
    header = {"a": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [0, 3]}}
    path = write_safetensors_raw(tmp_path / "f6.safetensors", header, b"\0" * 3)
    with SafetensorsFile(path) as source:
        assert source.tensor_infos()[0].dtype == "F6_E2M3" and source.tensor_infos()[0].nbytes == 3
        try:
            value = source.read_tensor("a")
        except UnsupportedError as exc:
            assert str(path) in str(exc) and "F6_E2M3" in str(exc)
        else:  # a future safetensors/PyTorch may read it
            assert value.numel() > 0


def test_safetensors_unknown_tensor_name_is_key_error(tiny_dir):
    with SafetensorsFile(tiny_dir / "model.safetensors") as source:
        with pytest.raises(KeyError):
            source.read_tensor("no.such.tensor")


# --------------------------------------------------------------------------- PyTorch


def test_pytorch_zip_bin(tiny, tmp_path):
    _, state = tiny
    torch.save(state, tmp_path / "pytorch_model.bin")
    source = PytorchFile(tmp_path / "pytorch_model.bin")
    assert source.is_zip and source.memory_note is None
    assert_same_tensors(source, state)
    files = open_checkpoint_files(tmp_path)
    assert files.format == "pytorch" and files.notes == []
    files.close()
    assert_canonical_llama(tmp_path, state)


def test_pytorch_nested_state_dict(tiny, tmp_path):
    _, state = tiny
    optimizer_state = {"state": {0: {"exp_avg": torch.ones(3), "step": torch.tensor(5.0)}}, "param_groups": [{"lr": 0.1}]}
    torch.save({"state_dict": state, "epoch": 3, "optimizer_states": [optimizer_state]}, tmp_path / "model.pt")
    source = PytorchFile(tmp_path / "model.pt")
    # The wrapped state dict is the model; optimizer tensors are not weights.
    assert_same_tensors(source, state)
    assert_canonical_llama(tmp_path / "model.pt", state)
    # Doubly wrapped and with a "module." prefix (DataParallel) still maps.
    torch.save({"model": {"state_dict": {f"module.{k}": v for k, v in state.items()}}}, tmp_path / "ddp.pt")
    with PytorchFile(tmp_path / "ddp.pt") as source:
        assert_same_tensors(source, {f"module.{k}": v for k, v in state.items()})
    assert_canonical_llama(tmp_path / "ddp.pt", state)


def test_pytorch_legacy_non_zip(tiny, tmp_path):
    _, state = tiny
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    source = PytorchFile(path)
    assert not source.is_zip
    assert "memory-mapped" in source.memory_note
    assert_same_tensors(source, state)
    files = open_checkpoint_files(tmp_path)
    assert files.notes and "legacy" in files.notes[0]
    files.close()
    assert_canonical_llama(tmp_path, state)


def test_pytorch_sharded_index(tiny, tmp_path):
    _, state = tiny
    names = list(state)
    shards = {"pytorch_model-00001-of-00003.bin": names[:7], "pytorch_model-00002-of-00003.bin": names[7:14],
              "pytorch_model-00003-of-00003.bin": names[14:]}
    weight_map = {}
    for shard, members in shards.items():
        torch.save({n: state[n] for n in members}, tmp_path / shard)
        weight_map.update({n: shard for n in members})
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    files = open_checkpoint_files(tmp_path)
    assert files.format == "pytorch"
    assert len(files.source.files()) == 4
    assert_same_tensors(files.source, state)
    files.close()
    assert_canonical_llama(tmp_path, state)


def test_pytorch_pickle_protocol_4_is_unsupported_not_corrupt(tiny, tmp_path):
    """PyTorch's weights-only unpickler cannot read protocol 4 (FRAME); say so in one clean line.

    (torch itself also prints a UserWarning about it to stderr; that must not leak.)
    """
    _, state = tiny
    runs = []
    for name, zipped in (("pytorch_model.bin", True), ("legacy4.bin", False)):
        torch.save(state, tmp_path / name, pickle_protocol=4, _use_new_zipfile_serialization=zipped)
        with pytest.raises(UnsupportedError, match="FRAME") as caught:
            PytorchFile(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value)
        runs.append(["inspect", str(tmp_path / name), "--no-hash"])
    for argv, result in zip(runs, run_cli_batch(runs)):
        assert "FRAME" in assert_one_line_error(result, argv[1])


def test_pytorch_bf16_and_int_tensors(tmp_path):
    tensors = {"a": torch.randn(3, 4).bfloat16(), "b": torch.arange(5, dtype=torch.int32), "c": torch.tensor(2.0),
               "d": torch.zeros(0, 3, dtype=torch.float16)}
    torch.save(tensors, tmp_path / "x.pt")
    with PytorchFile(tmp_path / "x.pt") as source:
        assert_same_tensors(source, tensors)
        assert {i.name: i.dtype for i in source.tensor_infos()} == {"a": "BF16", "b": "I32", "c": "F32", "d": "F16"}


# --------------------------------------------------------------------------- malicious pickles


def _malicious_files(directory: Path, sentinel: Path) -> list[tuple[Path, str]]:
    files = []
    for culprit, cls in payload_classes(sentinel).items():
        stem = culprit.replace(".", "_")
        plain = directory / f"plain_{stem}.bin"
        with open(plain, "wb") as handle:
            pickle.dump({"weight": cls()}, handle)
        files.append((plain, culprit))
        old = directory / f"proto2_{stem}.bin"
        with open(old, "wb") as handle:
            pickle.dump(cls(), handle, protocol=2)
        files.append((old, culprit))
        # Inside a real torch zip, next to a genuine tensor (saving only records the reduce; nothing runs).
        zipped = directory / f"zip_{stem}.bin"
        torch.save({"model.embed_tokens.weight": torch.zeros(4, 2), "payload": cls()}, zipped)
        files.append((zipped, culprit))
    return files


def test_malicious_pickles_are_refused_and_never_run(tmp_path, sentinel):
    for path, culprit in _malicious_files(tmp_path, sentinel):
        with pytest.raises((UnsafeFileError, CorruptFileError)) as caught:
            PytorchFile(path)
        assert isinstance(caught.value, UnsafeFileError), (path.name, caught.value)
        assert str(path) in str(caught.value)
        assert culprit in str(caught.value), str(caught.value)
        assert "nothing was executed" in str(caught.value)
        assert not sentinel.exists(), path.name
        # Through the directory too.
        directory = tmp_path / f"dir_{path.stem}"
        directory.mkdir()
        shutil.copy(path, directory / "pytorch_model.bin")
        with pytest.raises(UnsafeFileError):
            Checkpoint.open(directory)
        assert not sentinel.exists()


def test_truncated_malicious_pickle(tmp_path, sentinel):
    """A payload cut short after naming os.system: refused or corrupt, never run."""
    for path, _ in _malicious_files(tmp_path, sentinel)[:3]:
        data = path.read_bytes()
        for cut in (len(data) - 3, len(data) // 2):
            broken = tmp_path / f"cut{cut}_{path.name}"
            broken.write_bytes(data[:cut])
            with pytest.raises((UnsafeFileError, CorruptFileError)) as caught:
                PytorchFile(broken)
            assert str(broken) in str(caught.value)
            assert not sentinel.exists()


def test_malicious_pickle_via_cli(tmp_path, sentinel):
    work = tmp_path / "cwd"
    work.mkdir()
    payloads = {path.name: path for path, _ in _malicious_files(tmp_path, sentinel)}
    # One in a fresh process of its own, exactly as a user runs it ...
    result = run_cli("inspect", str(payloads["plain_os_system.bin"]), cwd=work)
    assert "os.system" in assert_one_line_error(result, payloads["plain_os_system.bin"])
    assert not sentinel.exists()
    # ... and every variant, also as a directory, batched in one interpreter.
    runs = []
    for name, path in payloads.items():
        directory = tmp_path / f"dir_{path.stem}"
        directory.mkdir()
        shutil.copy(path, directory / "pytorch_model.bin")
        runs += [["inspect", str(path)], ["inspect", str(directory), "--json"]]
    for argv, result in zip(runs, run_cli_batch(runs, cwd=work)):
        assert "refused" in assert_one_line_error(result, argv[1])
    assert not sentinel.exists()
    assert list(work.iterdir()) == []


def test_unrelated_global_is_refused_not_loaded(tmp_path):
    """A checkpoint holding a non-tensor object (argparse.Namespace) is refused, not half-loaded."""
    import argparse

    torch.save({"args": argparse.Namespace(lr=1), "w": torch.zeros(2)}, tmp_path / "args.pt")
    with pytest.raises(UnsafeFileError, match="argparse.Namespace"):
        PytorchFile(tmp_path / "args.pt")


# --------------------------------------------------------------------------- Hugging Face cache layout


def _hf_cache(tmp_path: Path, source_dir: Path, revision: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    repo = tmp_path / "hub" / "models--tiny-org--tiny-llama"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / revision
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for file in source_dir.iterdir():
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copy(file, blobs / digest)
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    return repo


def test_hugging_face_cache_layout(tiny, tiny_dir, tmp_path):
    _, state = tiny
    repo = _hf_cache(tmp_path, tiny_dir)
    snapshot = next((repo / "snapshots").iterdir())
    assert (snapshot / "model.safetensors").is_symlink()
    for path in (repo, snapshot):
        files = open_checkpoint_files(path)
        assert files.format == "safetensors"
        assert files.config is not None and files.config["model_type"] == "llama"
        assert_same_tensors(files.source, state)
        files.close()
        assert_canonical_llama(path, state)
    for result in run_cli_batch([["inspect", str(repo), "--json"], ["inspect", str(snapshot), "--json"]]):
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["family"]["name"] == "llama" and report["format"] == "safetensors"
        assert report["tensors"]["count"] == len(state)


def test_hugging_face_cache_without_refs_and_two_snapshots(tiny_dir, tmp_path):
    repo = _hf_cache(tmp_path, tiny_dir)
    (repo / "refs" / "main").unlink()
    files = open_checkpoint_files(repo)  # one snapshot: used even without refs/main
    assert files.format == "safetensors"
    files.close()
    shutil.copytree(next((repo / "snapshots").iterdir()), repo / "snapshots" / "other", symlinks=True)
    with pytest.raises(UnreadablePathError, match="2 snapshots"):
        open_checkpoint_files(repo)


# --------------------------------------------------------------------------- broken files


def _f32_entry(begin: int, count: int) -> dict:
    return {"dtype": "F32", "shape": [count], "data_offsets": [begin, begin + 4 * count]}


def _case_truncated(tmp: Path, model_dir: Path):
    path = tmp / "truncated.safetensors"
    data = (model_dir / "model.safetensors").read_bytes()
    path.write_bytes(data[: len(data) - 100])
    return path, path, CorruptFileError, "truncated"


def _case_header_2_63(tmp: Path, model_dir: Path):
    path = write_safetensors_raw(tmp / "huge.safetensors", {"a": _f32_entry(0, 1)}, b"\0" * 4, header_len=2**63)
    return path, path, CorruptFileError, str(2**63)


def _case_header_past_end(tmp: Path, model_dir: Path):
    path = write_safetensors_raw(tmp / "short.safetensors", {"a": _f32_entry(0, 1)}, b"\0" * 4, header_len=5000)
    return path, path, CorruptFileError, "past the end"


def _case_tiny_file(tmp: Path, model_dir: Path):
    path = tmp / "tiny.safetensors"
    path.write_bytes(b"\x01\x02")
    return path, path, CorruptFileError, "too short"


def _case_invalid_json(tmp: Path, model_dir: Path):
    path = write_safetensors_raw(tmp / "json.safetensors", b'{"a": {"dtype": "F32", ', b"\0" * 4)
    return path, path, CorruptFileError, "not valid JSON"


def _case_not_utf8(tmp: Path, model_dir: Path):
    path = write_safetensors_raw(tmp / "latin.safetensors", b'{"\xff": 1}', b"")
    return path, path, CorruptFileError, "UTF-8"


def _case_header_list(tmp: Path, model_dir: Path):
    path = write_safetensors_raw(tmp / "list.safetensors", b"[1, 2]", b"")
    return path, path, CorruptFileError, "expected an object"


def _case_deep_json(tmp: Path, model_dir: Path):
    path = write_safetensors_raw(tmp / "deep.safetensors", b"[" * 200_000 + b"]" * 200_000, b"")
    return path, path, CorruptFileError, "header"


def _case_overlap(tmp: Path, model_dir: Path):
    header = {"a": _f32_entry(0, 4), "b": _f32_entry(8, 4)}
    path = write_safetensors_raw(tmp / "overlap.safetensors", header, b"\0" * 24)
    return path, path, CorruptFileError, "overlaps"


def _case_hole(tmp: Path, model_dir: Path):
    header = {"a": _f32_entry(0, 4), "b": _f32_entry(20, 4)}
    path = write_safetensors_raw(tmp / "hole.safetensors", header, b"\0" * 36)
    return path, path, CorruptFileError, "hole"


def _case_trailing_bytes(tmp: Path, model_dir: Path):
    path = write_safetensors_raw(tmp / "trailing.safetensors", {"a": _f32_entry(0, 4)}, b"\0" * 20)
    return path, path, CorruptFileError, "data section is 20 bytes"


def _case_size_mismatch(tmp: Path, model_dir: Path):
    header = {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}
    path = write_safetensors_raw(tmp / "size.safetensors", header, b"\0" * 16)
    return path, path, CorruptFileError, "needs 12 bytes"


def _case_dtype_mismatch(tmp: Path, model_dir: Path):
    header = {"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 16]}}
    path = write_safetensors_raw(tmp / "dtype.safetensors", header, b"\0" * 16)
    return path, path, CorruptFileError, "F16 shape [4] needs 8 bytes"


def _case_offsets_past_end(tmp: Path, model_dir: Path):
    header = {"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}
    path = write_safetensors_raw(tmp / "past.safetensors", header, b"\0" * 16)
    return path, path, CorruptFileError, "past the 16-byte data section"


def _case_negative_offset(tmp: Path, model_dir: Path):
    header = {"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}
    path = write_safetensors_raw(tmp / "negative.safetensors", header, b"\0" * 4)
    return path, path, CorruptFileError, "data_offsets"


def _case_bad_shape(tmp: Path, model_dir: Path):
    header = {"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}
    path = write_safetensors_raw(tmp / "shape.safetensors", header, b"\0" * 4)
    return path, path, CorruptFileError, "shape"


def _case_duplicate_name(tmp: Path, model_dir: Path):
    entry = json.dumps(_f32_entry(0, 1))
    raw = ('{"w": ' + entry + ', "w": ' + entry + "}").encode()
    path = write_safetensors_raw(tmp / "dup.safetensors", raw, b"\0" * 4)
    return path, path, CorruptFileError, "'w' twice"


def _case_unknown_dtype(tmp: Path, model_dir: Path):
    header = {"a": {"dtype": "Q9_ZZ", "shape": [4], "data_offsets": [0, 4]}}
    path = write_safetensors_raw(tmp / "unknown.safetensors", header, b"\0" * 4)
    return path, path, UnsupportedError, "Q9_ZZ"


def _case_bad_metadata(tmp: Path, model_dir: Path):
    header = {"__metadata__": {"n": 3}, "a": _f32_entry(0, 1)}
    path = write_safetensors_raw(tmp / "meta.safetensors", header, b"\0" * 4)
    return path, path, CorruptFileError, "__metadata__"


def _sharded_copy(tmp: Path, model_dir: Path) -> Path:
    """The tiny model split by hand into two shards with an index."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_dir / "model.safetensors"))
    names = sorted(state)
    directory = tmp / "sharded"
    directory.mkdir()
    weight_map = {}
    for shard, members in (("model-00001-of-00002.safetensors", names[:10]),
                           ("model-00002-of-00002.safetensors", names[10:])):
        save_file({n: state[n] for n in members}, str(directory / shard))
        weight_map.update({n: shard for n in members})
    shutil.copy(model_dir / "config.json", directory / "config.json")
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


def _case_missing_shard(tmp: Path, model_dir: Path):
    directory = _sharded_copy(tmp, model_dir)
    (directory / "model-00002-of-00002.safetensors").unlink()
    index = directory / "model.safetensors.index.json"
    return directory, index, MissingShardError, "model-00002-of-00002.safetensors"


def _case_index_shard_outside(tmp: Path, model_dir: Path):
    directory = _sharded_copy(tmp, model_dir)
    index = directory / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    outside = tmp / "elsewhere"
    outside.mkdir()
    shutil.move(directory / "model-00002-of-00002.safetensors", outside / "model-00002-of-00002.safetensors")
    data["weight_map"] = {k: ("../elsewhere/" + v if v.startswith("model-00002") else v) for k, v in data["weight_map"].items()}
    index.write_text(json.dumps(data))
    return directory, "model-00002-of-00002.safetensors", UnreadablePathError, "outside"


def _case_index_disagrees(tmp: Path, model_dir: Path):
    directory = _sharded_copy(tmp, model_dir)
    index = directory / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["model.ghost.weight"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(data))
    return directory, index, CorruptFileError, "model.ghost.weight"


def _case_index_not_a_map(tmp: Path, model_dir: Path):
    directory = _sharded_copy(tmp, model_dir)
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": ["model-00001-of-00002.safetensors"]}))
    return directory, index, CorruptFileError, "weight_map"


def _case_symlink_outside(tmp: Path, model_dir: Path):
    outside = tmp / "outside"
    outside.mkdir()
    shutil.copy(model_dir / "model.safetensors", outside / "stolen.safetensors")
    directory = tmp / "linked"
    directory.mkdir()
    shutil.copy(model_dir / "config.json", directory / "config.json")
    (directory / "model.safetensors").symlink_to(outside / "stolen.safetensors")
    return directory, directory / "model.safetensors", UnreadablePathError, "outside the checkpoint directory"


def _case_config_symlink_outside(tmp: Path, model_dir: Path):
    directory = tmp / "linked_config"
    directory.mkdir()
    shutil.copy(model_dir / "model.safetensors", directory / "model.safetensors")
    (tmp / "secret.json").write_text("{}")
    (directory / "config.json").symlink_to(tmp / "secret.json")
    return directory, directory / "config.json", UnreadablePathError, "outside"


def _case_missing_path(tmp: Path, model_dir: Path):
    path = tmp / "does-not-exist"
    return path, path, UnreadablePathError, "no such file"


def _case_no_weights(tmp: Path, model_dir: Path):
    directory = tmp / "empty_model"
    directory.mkdir()
    shutil.copy(model_dir / "config.json", directory / "config.json")
    (directory / "training_args.bin").write_bytes(b"not weights")
    return directory, directory, UnreadablePathError, "no weights"


def _case_malformed_config(tmp: Path, model_dir: Path):
    directory = tmp / "bad_config"
    directory.mkdir()
    shutil.copy(model_dir / "model.safetensors", directory / "model.safetensors")
    (directory / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    return directory, directory / "config.json", CorruptFileError, "not valid JSON"


def _case_config_not_object(tmp: Path, model_dir: Path):
    directory = tmp / "list_config"
    directory.mkdir()
    shutil.copy(model_dir / "model.safetensors", directory / "model.safetensors")
    (directory / "config.json").write_text("[1, 2, 3]")
    return directory, directory / "config.json", CorruptFileError, "expected an object"


def _case_unknown_extension(tmp: Path, model_dir: Path):
    path = tmp / "weights.npz"
    path.write_bytes(b"PK\x03\x04")
    return path, path, UnreadablePathError, "not a known weights file"


def _case_garbage_bin(tmp: Path, model_dir: Path):
    path = tmp / "garbage.bin"
    path.write_bytes(bytes(range(256)) * 8)
    return path, path, CorruptFileError, "not a readable PyTorch"


def _case_truncated_zip_bin(tmp: Path, model_dir: Path):
    path = tmp / "cut.bin"
    torch.save({"w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, path, CorruptFileError, "not a readable PyTorch"


def _case_empty_bin(tmp: Path, model_dir: Path):
    path = tmp / "empty.pt"
    path.write_bytes(b"")
    return path, path, CorruptFileError, "not a readable PyTorch"


def _dangling_cache(tmp: Path, model_dir: Path, weights: str):
    """A cache snapshot whose weights blob is missing (an interrupted download)."""
    snapshot = tmp / "hub" / "models--org--broken" / "snapshots" / "abc123"
    (snapshot.parent.parent / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    shutil.copy(model_dir / "config.json", snapshot.parent.parent / "blobs" / "cfg")
    (snapshot / "config.json").symlink_to(Path("..") / ".." / "blobs" / "cfg")
    (snapshot / weights).symlink_to(Path("..") / ".." / "blobs" / ("0" * 64))
    return snapshot, snapshot / weights, UnreadablePathError, "cannot read"


def _case_dangling_safetensors_blob(tmp: Path, model_dir: Path):
    return _dangling_cache(tmp, model_dir, "model.safetensors")


def _case_dangling_bin_blob(tmp: Path, model_dir: Path):
    return _dangling_cache(tmp, model_dir, "pytorch_model.bin")


def _case_dangling_gguf_blob(tmp: Path, model_dir: Path):
    return _dangling_cache(tmp, model_dir, "model-q8_0.gguf")


def _case_dangling_shard(tmp: Path, model_dir: Path):
    directory = _sharded_copy(tmp, model_dir)
    shard = directory / "model-00001-of-00002.safetensors"
    shard.unlink()
    shard.symlink_to(tmp / "gone.safetensors")
    return directory, "model-00001-of-00002.safetensors", MissingShardError, "not there"


def _case_refs_main_escapes(tmp: Path, model_dir: Path):
    repo = tmp / "models--org--escape"
    (repo / "snapshots" / "a").mkdir(parents=True)
    (repo / "snapshots" / "b").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("..")
    shutil.copy(model_dir / "model.safetensors", repo / "model.safetensors")  # must not be picked up
    return repo, repo, UnreadablePathError, "2 snapshots"


ERROR_CASES = [
    _case_dangling_safetensors_blob, _case_dangling_bin_blob, _case_dangling_gguf_blob, _case_dangling_shard,
    _case_refs_main_escapes,
    _case_truncated, _case_header_2_63, _case_header_past_end, _case_tiny_file, _case_invalid_json, _case_not_utf8,
    _case_header_list, _case_deep_json, _case_overlap, _case_hole, _case_trailing_bytes, _case_size_mismatch,
    _case_dtype_mismatch, _case_offsets_past_end, _case_negative_offset, _case_bad_shape, _case_duplicate_name,
    _case_unknown_dtype, _case_bad_metadata, _case_missing_shard, _case_index_shard_outside, _case_index_disagrees,
    _case_index_not_a_map, _case_symlink_outside, _case_config_symlink_outside, _case_missing_path, _case_no_weights,
    _case_malformed_config, _case_config_not_object, _case_unknown_extension, _case_garbage_bin,
    _case_truncated_zip_bin, _case_empty_bin,
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.__name__.removeprefix("_case_"))
def test_broken_checkpoint_raises_named_error(case, tiny_dir, tmp_path):
    target, names, error, fragment = case(tmp_path, tiny_dir)
    with pytest.raises(ProvenanceError) as caught:
        Checkpoint.open(target)
    assert type(caught.value) is error, (type(caught.value).__name__, str(caught.value))
    message = str(caught.value)
    assert str(names) in message, message
    assert fragment in message, message
    assert "\n" not in message


def test_broken_checkpoints_via_cli(tiny_dir, tmp_path):
    """Every broken case through the command line: exit 1, one stderr line naming the file."""
    runs, expected = [], []
    for index, case in enumerate(ERROR_CASES):
        work = tmp_path / f"case{index}"
        work.mkdir()
        target, names, _, fragment = case(work, tiny_dir)
        runs.append(["inspect", str(target), "--no-hash"])
        expected.append((case.__name__, names, fragment))
    for (name, names, fragment), result in zip(expected, run_cli_batch(runs)):
        try:
            line = assert_one_line_error(result, names)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc
        assert fragment in line, (name, line)


def test_error_messages_are_one_line():
    error = CorruptFileError("/m/x.bin", "first line\n\n  second line\r\nthird")
    assert str(error) == "/m/x.bin: first line second line third"
    assert error.problem == "first line second line third" and error.path == "/m/x.bin"
    assert str(UnreadablePathError(None, "plain")) == "plain"


def test_pytorch_zip_tensors_are_read_at_their_file_offsets(tmp_path):
    """Contiguous tensors of a torch.save zip are read with plain reads at the offsets torch maps them from."""
    from provenance.formats.pytorch_format import PytorchFile, storage_offsets

    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    state = {"w": torch.randn(40, 30, generator=g).to(torch.bfloat16), "base": base, "row": base[2],
             "strided": torch.randn(8, 8, generator=g)[:, ::2], "empty": torch.zeros(0, 3),
             "ints": torch.arange(10, dtype=torch.int64)}
    path = tmp_path / "model.bin"
    torch.save(state, path)
    source = PytorchFile(path)
    mapped = torch.load(path, mmap=True, weights_only=True)
    offsets = storage_offsets(path, mapped)
    assert offsets is not None and {"w", "base", "row", "ints"} <= set(offsets)
    raw = path.read_bytes()
    assert raw[offsets["row"]:offsets["row"] + 20] == state["row"].contiguous().numpy().tobytes()
    buffer = None
    for name, want in state.items():
        got, buffer = source.read_tensor_into(name, buffer)
        assert got.dtype == want.dtype and torch.equal(got, want), name
