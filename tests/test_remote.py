"""Remote checkpoints over HTTP ranges: plain URLs, sharded indexes, hf:// on a fake hub, errors, retries, bytes.

Everything is served by `tests/range_server.py` on 127.0.0.1 from generated
LLaMA-layout checkpoints (bf16, 2 layers, hidden 256, vocabulary 4096, with a
byte-level BPE tokenizer.json); nothing touches the internet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from provenance.cli import main
from provenance.compare import compare_fingerprints
from provenance.fingerprint import Part, array_name, load_fingerprint
from provenance.fingerprint.load import fingerprint_for
from provenance.fingerprint.store import ROW_READ_PARTS, WHOLE_TENSOR_PARTS
from provenance.remote import http as remote_http
from provenance.remote.http import RemoteAccessError

from .range_server import RangeServer

LAYERS, HIDDEN, INTER, VOCAB, HEADS, KV = 2, 256, 688, 4096, 8, 4
ROOT = Path(__file__).resolve().parents[1]


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def matrix(rows: int, cols: int) -> torch.Tensor:
        return 0.02 * torch.randn(rows, cols, generator=g)

    def norm() -> torch.Tensor:
        return 1.0 + 0.3 * torch.randn(HIDDEN, generator=g)

    head_dim = HIDDEN // HEADS
    state = {"model.embed_tokens.weight": matrix(VOCAB, HIDDEN), "model.norm.weight": norm(),
             "lm_head.weight": matrix(VOCAB, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        state.update({
            p + "input_layernorm.weight": norm(), p + "post_attention_layernorm.weight": norm(),
            p + "self_attn.q_proj.weight": matrix(HIDDEN, HIDDEN), p + "self_attn.k_proj.weight": matrix(KV * head_dim, HIDDEN),
            p + "self_attn.v_proj.weight": matrix(KV * head_dim, HIDDEN), p + "self_attn.o_proj.weight": matrix(HIDDEN, HIDDEN),
            p + "mlp.gate_proj.weight": matrix(INTER, HIDDEN), p + "mlp.up_proj.weight": matrix(INTER, HIDDEN),
            p + "mlp.down_proj.weight": matrix(HIDDEN, INTER),
        })
    return state


CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
          "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
          "num_key_value_heads": KV, "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
          "torch_dtype": "bfloat16"}


def _tokenizer() -> dict:
    import random

    rng = random.Random(0)
    words: set[str] = set()
    while len(words) < VOCAB:
        words.add("Ġ" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))))
    vocab = {token: index for index, token in enumerate(sorted(words))}
    return {"version": "1.0", "added_tokens": [], "pre_tokenizer": {"type": "ByteLevel"},
            "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": vocab, "merges": []}}


def _write(folder: Path, state: dict[str, torch.Tensor], shards: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stored = {k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}
    if shards == 1:
        save_file(stored, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        names = sorted(stored)
        weight_map = {}
        for s in range(shards):
            part = names[s::shards]
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            save_file({n: stored[n] for n in part}, str(folder / file), metadata={"format": "pt"})
            weight_map.update({n: file for n in part})
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "tokenizer.json").write_text(json.dumps(_tokenizer()))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    base = _state(0)
    g = torch.Generator().manual_seed(1)
    tuned = {k: v + 0.3 * v.std() * torch.randn(v.shape, generator=g) if v.dim() == 2 else v for k, v in base.items()}
    _write(root / "base", base)
    _write(root / "tuned", tuned)
    _write(root / "other", _state(2))
    _write(root / "sharded", base, shards=3)
    permuted = dict(base)
    for i in range(LAYERS):
        order = torch.randperm(INTER, generator=g)
        p = f"model.layers.{i}.mlp."
        permuted[p + "gate_proj.weight"] = base[p + "gate_proj.weight"][order]
        permuted[p + "up_proj.weight"] = base[p + "up_proj.weight"][order]
        permuted[p + "down_proj.weight"] = base[p + "down_proj.weight"][:, order]
    _write(root / "permuted", permuted)
    return root


@pytest.fixture(scope="module")
def local(models):
    return {"base": fingerprint_for(models / "base")}


@pytest.fixture
def server(models, monkeypatch):
    monkeypatch.setattr(remote_http, "BACKOFF_BASE", 0.01)
    with RangeServer(models) as running:
        yield running


@pytest.mark.slow
def test_remote_vs_local_verdicts_and_bytes(server, models, local):
    remote_base = fingerprint_for(server.url("base/model.safetensors"))
    assert remote_base.meta["variant"] == "remote"
    served = server.served("base/model.safetensors")
    size = (models / "base" / "model.safetensors").stat().st_size
    assert served < 0.2 * size, (served, size)
    assert remote_base.meta["remote"]["bytes_read"] <= served
    assert remote_base.meta["vocabulary"]["size"] == VOCAB  # tokenizer.json found beside the weights
    # row samples and anchor rows are exactly what the local pass takes from the whole tensors
    for name, values in remote_base.arrays.items():
        if name.startswith(("rows/", "anchors/", "sketch/")):
            assert np.array_equal(values, local["base"].arrays[name]), name

    same = compare_fingerprints(remote_base, local["base"])
    assert same.verdict == "identical", same.summary
    assert any("remote comparison" in note for note in same.notes)
    assert compare_fingerprints(local["base"], remote_base).verdict == "identical"

    tuned = compare_fingerprints(fingerprint_for(server.url("tuned/model.safetensors")), local["base"])
    assert tuned.verdict == "derived", tuned.summary
    assert [r.reference_layer for r in tuned.layers] == list(range(LAYERS))

    other = compare_fingerprints(fingerprint_for(server.url("other/model.safetensors")), local["base"])
    assert other.verdict in ("same-architecture", "unrelated"), other.summary
    assert not any(r.reference_layer is not None for r in other.layers)


def test_permuted_mlp_units_found_from_sampled_rows(server, local):
    result = compare_fingerprints(fingerprint_for(server.url("permuted/model.safetensors")), local["base"])
    assert result.verdict == "identical", (result.summary, result.layers)
    assert all("MLP units matched" in r.via for r in result.layers)


def test_sharded_index_url(server, models, local):
    fp = fingerprint_for(server.url("sharded/model.safetensors.index.json"))
    assert len(fp.meta["source"]["files"]) == 4  # the index and three shards
    assert compare_fingerprints(fp, local["base"]).verdict == "identical"
    assert server.served("sharded/") < 0.2 * sum(p.stat().st_size for p in (models / "sharded").glob("*.safetensors"))


@pytest.mark.slow
def test_saved_remote_fingerprint_and_cli_compare(server, local, tmp_path, capsys):
    out = tmp_path / "remote.fp.safetensors"
    assert main(["fingerprint", server.url("base/model.safetensors"), "-o", str(out)]) == 0
    assert load_fingerprint(out).meta["variant"] == "remote"
    local_fp = tmp_path / "local.fp.safetensors"
    local["base"].save(local_fp)
    capsys.readouterr()
    assert main(["compare", str(out), str(local_fp), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "identical"
    assert main(["compare", server.url("tuned/model.safetensors"), str(local_fp), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "derived"
    assert main(["inspect", server.url("base/model.safetensors")]) == 1
    assert "local files only" in capsys.readouterr().err


@pytest.mark.parametrize("status", [404, 403])
def test_http_errors_are_one_line_naming_the_url(server, status, capsys):
    url = server.url("base/model.safetensors")
    if status == 404:
        url = server.url("missing/model.safetensors")
    else:
        server.state.fail["base/model.safetensors"] = 403
    with pytest.raises(RemoteAccessError, match=f"HTTP {status}"):
        fingerprint_for(url)
    assert main(["audit", url, "--no-builtin"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and url in err and f"HTTP {status}" in err, err


def test_dropped_connection_is_retried(server, local):
    server.state.drop_once.update({"base/model.safetensors", "base/config.json"})
    before = remote_http.TRANSFERS.snapshot()[2]
    fp = fingerprint_for(server.url("base/model.safetensors"))
    assert remote_http.TRANSFERS.snapshot()[2] - before >= 2
    assert not server.state.drop_once  # both drops happened
    assert compare_fingerprints(fp, local["base"]).verdict == "identical"


def test_server_ignoring_ranges_is_refused(server):
    server.state.ignore_range.add("base/model.safetensors")
    before = remote_http.TRANSFERS.snapshot()[0]
    with pytest.raises(RemoteAccessError, match="ignored the Range"):
        fingerprint_for(server.url("base/model.safetensors"))
    assert remote_http.TRANSFERS.snapshot()[0] == before  # refused on the status line: no body byte read


def test_old_fingerprint_without_row_samples_still_compares(server, local):
    from provenance.fingerprint.store import Fingerprint, Part

    def without(fp, part, prefix):
        parts = sorted(p.value for p in fp.parts - {part})
        return Fingerprint(meta={**fp.meta, "parts": parts},
                           arrays={k: v for k, v in fp.arrays.items() if not k.startswith(prefix)})

    old = without(local["base"], Part.ROW_SAMPLES, "rows/")
    remote = fingerprint_for(server.url("base/model.safetensors"))
    result = compare_fingerprints(remote, old)
    assert any("no row samples" in note for note in result.notes)
    # no row samples to correlate: layers are found only through the sampled MLP units' signatures
    assert [r.reference_layer for r in result.layers] == list(range(LAYERS))
    assert all(r.via.startswith("matched MLP units") for r in result.layers)
    stripped = without(old, Part.UNIT_SIGNATURES, "units/")
    assert all(r.reference_layer is None for r in compare_fingerprints(remote, stripped).layers)


def test_sources_declare_what_they_read_cheaply(server, models):
    from provenance.formats.base import Reads
    from provenance.model import Checkpoint

    name, rows = "model.embed_tokens.weight", np.array([5, 1, 5, VOCAB - 1])
    with Checkpoint.open(models / "base") as here, Checkpoint.open(server.url("base/model.safetensors")) as there:
        local_source, remote_source = here.files.source, there.files.source
        assert local_source.reads is Reads.WHOLE_TENSORS and local_source.transfers() is None
        assert remote_source.reads is Reads.ROW_BLOCKS and remote_source.concurrency > 1
        assert local_source.file_entries() is None and remote_source.file_entries()[0]["url"].endswith("model.safetensors")
        before = remote_source.transfers()
        picked = remote_source.read_rows(name, rows)
        assert remote_source.transfer_report(before)["tensor_requests"] >= 1
        # the default (whole tensor, rows picked) and the range reads agree
        assert torch.equal(local_source.read_rows(name, rows), picked)
        assert torch.equal(picked, local_source.read_tensor(name)[torch.from_numpy(rows)])


def _parts_held(fp) -> set:
    """The parts a fingerprint's arrays and records show it holds (`generic/` arrays are not a part)."""
    by_prefix = {array_name(part): part for part in Part
                 if part not in (Part.VECTORS, Part.SKETCHES, Part.TENSOR_HASHES, Part.STATISTICS)}
    held = set()
    for name in fp.arrays:
        prefix, _, key = name.partition("/")
        if prefix == array_name(Part.SKETCHES):
            held.add(Part.VECTORS if len(fp.tensors[key]["shape"]) <= 1 else Part.SKETCHES)
        elif prefix != "generic":
            held.add(by_prefix[prefix])
    if all(record["sha256"] for record in fp.tensors.values()):
        held.add(Part.TENSOR_HASHES)
    if all("stats" in record for record in fp.tensors.values()):
        held.add(Part.STATISTICS)
    return held


def test_recorded_parts_are_what_the_fingerprint_holds(server, local, tmp_path):
    """`meta["parts"]` names exactly the parts made, for a source of whole tensors and one of row blocks."""
    from .builders import build_gpt2

    remote = fingerprint_for(server.url("base/model.safetensors"))
    build_gpt2(tmp_path / "gpt2")  # no tokenizer: no anchor rows; Conv1D: transposed, read whole over HTTP
    with RangeServer(tmp_path) as plain:
        gpt2_remote = fingerprint_for(plain.url("gpt2/model.safetensors"))
    gpt2_local = fingerprint_for(tmp_path / "gpt2", cache=False)
    for fp in (local["base"], remote, gpt2_local, gpt2_remote):
        held = _parts_held(fp)
        assert fp.meta["parts"] == sorted(part.value for part in held), fp.meta["source"]["path"]
        assert fp.parts == held and fp.holds(*held)
    assert local["base"].parts == WHOLE_TENSOR_PARTS
    assert remote.parts == ROW_READ_PARTS and remote.meta["variant"] == "remote"
    assert gpt2_local.parts == WHOLE_TENSOR_PARTS - {Part.ANCHORS, Part.ANCHOR_RESPONSES}  # no anchors to probe with
    assert gpt2_remote.parts == ROW_READ_PARTS - {Part.ANCHORS}
    # the transposed tensors read whole are noted, counted as stored tensors (c_attn holds q, k and v: one)
    transposed = [n for n in gpt2_local.meta["stored_tensors"] if n.endswith(("c_attn.weight", "c_proj.weight",
                                                                               "c_fc.weight"))]
    assert gpt2_remote.meta["remote"]["notes"] == [
        f"{len(transposed)} transposed tensors were read whole (their rows are stored as columns)"]


@pytest.fixture
def hub(server, models, tmp_path, monkeypatch):
    from huggingface_hub import constants

    server.add_repo("org/base", models / "base", commit="a" * 40)
    server.add_repo("org/private", models / "tuned", commit="b" * 40, token="secret-token")
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return server


def test_hf_repo_identical_and_side_files_read_by_capped_ranges(hub, local, tmp_path):
    fp = fingerprint_for("hf://org/base@main")
    assert compare_fingerprints(fp, local["base"]).verdict == "identical"
    assert fp.meta["source"]["files"][0]["url"].startswith(f"{hub.endpoint}/org/base/resolve/{'a' * 40}/")
    assert not list((tmp_path / "hub-cache").rglob("config.json"))  # not hf_hub_download: no uncapped stream
    assert hub.served("org/base/config.json") == (hub.state.root / "base" / "config.json").stat().st_size
    assert hub.served("org/base/model.safetensors") < 0.2 * (hub.state.root / "base" / "model.safetensors").stat().st_size


def test_hf_private_repo_needs_token(hub, local, monkeypatch):
    with pytest.raises(RemoteAccessError, match=r"hf://org/private.*HTTP 401.*HF_TOKEN"):
        fingerprint_for("hf://org/private")
    with pytest.raises(RemoteAccessError, match="HTTP 404"):
        fingerprint_for("hf://org/nothing-here")
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    assert compare_fingerprints(fingerprint_for("hf://org/private"), local["base"]).verdict == "derived"


def test_hf_endpoint_and_home_from_the_environment(hub, tmp_path):
    """A fresh process: HF_ENDPOINT and HF_HOME are read where huggingface_hub reads them, at start-up."""
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_CACHE", None)
    out = tmp_path / "hub.fp.safetensors"
    done = subprocess.run([sys.executable, "-m", "provenance.cli", "fingerprint", "hf://org/base", "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert load_fingerprint(out).meta["variant"] == "remote"


def test_row_sample_null_is_uniform():
    """Independent row samples sharing column and row magnitude structure (and norms folded in) give uniform p."""
    from provenance.compare.signals.layers import layer_similarity
    from provenance.compare.views import row_clusters, row_layer_view
    from provenance.fingerprint.sketch import row_sample_columns, row_sample_rows
    from provenance.fingerprint.store import Fingerprint

    rng = np.random.default_rng(3)
    shapes = {"attn.q": (512, 384), "mlp.up": (1024, 384)}
    norms = {"attn.q": "attn_norm", "mlp.up": "mlp_norm"}
    column_scale = np.exp(rng.standard_normal(384))  # outlier dimensions shared by both "models"
    p_values = []
    for _ in range(200):
        fps = []
        for _side in range(2):
            tensors, arrays = {}, {}
            for role, shape in shapes.items():
                rows = len(row_sample_rows(shape))
                columns = row_sample_columns(shape)
                row_scale = np.exp(0.5 * rng.standard_normal((rows, 1)))
                key = f"layers.0.{role}.weight"
                tensors[key] = {"shape": list(shape)}
                arrays[f"rows/{key}"] = (row_scale * column_scale[columns] * rng.standard_normal((rows, len(columns)))
                                         ).astype(np.float16)
                norm_key = f"layers.0.{norms[role]}.weight"
                tensors[norm_key] = {"shape": [384]}
                arrays[f"sketch/{norm_key}"] = (1 + 0.3 * rng.standard_normal(384)).astype(np.float32)
            fps.append(Fingerprint({"architecture": {}, "tensors": tensors}, arrays))
        similarity = layer_similarity(row_layer_view(fps[0]), row_layer_view(fps[1]), clusters=row_clusters)
        p_values.append(10 ** similarity.log10p[0, 0])
    p_values = np.asarray(p_values)
    assert 0.02 < np.mean(p_values < 0.05) < 0.09
    assert 0.38 < np.mean(p_values < 0.5) < 0.62
