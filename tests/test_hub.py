"""The Hub side of the command line: bare repo ids, the local Hugging Face cache, remote GGUF, the reference catalog.

Caches are generated folders laid out as huggingface_hub lays them out
(`models--ORG--NAME/{blobs,refs,snapshots}`, snapshot files symlinked into
blobs/); the hub is `tests/range_server.py` on 127.0.0.1. Nothing here
touches the internet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from provenance.cli import main
from provenance.compare import compare_fingerprints
from provenance.fingerprint import load_fingerprint
from provenance.fingerprint.load import fingerprint_for
from provenance.remote import http as remote_http
from provenance.remote.locate import RevisionError, locate

from .range_server import RangeServer
from .test_remote import _state
from .test_remote import _write as write_model

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "c0ffee" + "0" * 34
OTHER_COMMIT = "beef" + "1" * 36


def cache_repo(cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...] = ("main",),
               only: tuple[str, ...] | None = None) -> Path:
    """Lay `folder`'s files out as huggingface_hub's cache does; returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(folder.iterdir()):
        if only is not None and file.name not in only:
            continue
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-served")
    write_model(root / "base", _state(0))
    write_model(root / "other", _state(2))
    return root


@pytest.fixture(scope="module")
def local_base(served):
    return fingerprint_for(served / "base")


@pytest.fixture
def cache(served, tmp_path, monkeypatch):
    from huggingface_hub import constants

    folder = tmp_path / "hf-cache"
    cache_repo(folder, "org/base", served / "base", COMMIT, refs=("main", "v1"))
    cache_repo(folder, "org/configonly", served / "base", OTHER_COMMIT, only=("config.json", "tokenizer.json"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    return folder


@pytest.fixture
def hub(served, monkeypatch):
    monkeypatch.setattr(remote_http, "BACKOFF_BASE", 0.01)
    with RangeServer(served) as server:
        server.add_repo("org/base", served / "base", commit=COMMIT)
        server.add_repo("org/configonly", served / "other", commit=OTHER_COMMIT)
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server


# -- repo ids ------------------------------------------------------------------------------------------------


def test_repo_id_resolves_to_the_cache_snapshot(cache):
    snapshot = cache / "models--org--base" / "snapshots" / COMMIT
    for text, revision in [("org/base", None), ("org/base@main", None), ("org/base@v1", None),
                           ("org/base", COMMIT[:8]), ("org/base@" + COMMIT, COMMIT)]:
        found = locate(text, revision)
        assert Path(found.location) == snapshot, text
        assert "cache folder" in found.note
    missing = locate("org/base@v2", hub=True)
    assert missing.location == "hf://org/base@v2"
    assert "no snapshot for revision 'v2'" in missing.note and "main" in missing.note and "v1" in missing.note


def test_side_files_only_and_absent_repos_go_to_the_hub(cache):
    found = locate("org/configonly", hub=True)
    assert found.location == "hf://org/configonly"
    assert "holds no weights file" in found.note
    absent = locate("org/absent", hub=True)
    assert absent.location == "hf://org/absent" and str(cache) in absent.note


def test_existing_local_path_wins_over_a_repo_id(cache, served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(served / "other", tmp_path / "org" / "base")
    found = locate("org/base")
    assert found.location == "org/base" and "existing local path" in found.note
    shutil.copytree(served / "other", tmp_path / "models" / "mine")
    assert locate("models/mine").note is None  # a plain local folder: nothing to say
    with pytest.raises(RevisionError, match="local path"):
        locate("org/base", "v1")


def test_revision_conflicts_and_file_names(cache):
    with pytest.raises(RevisionError, match="'v1'.*'main'"):
        locate("org/base@v1", "main")
    with pytest.raises(RevisionError, match="not to URLs"):
        locate("https://example.invalid/model.safetensors", "main")
    assert locate("hf://org/base", "v1").location == "hf://org/base@v1"
    with pytest.raises(Exception, match="no such file or directory"):
        locate("org/model.safetensors")  # a missing file, not a repository


def test_a_cache_written_by_huggingface_hub_itself_is_found(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants, snapshot_download

    folder = tmp_path / "downloaded"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    path = snapshot_download("org/base", cache_dir=str(folder), endpoint=hub.endpoint)  # `hf download org/base`
    found = locate("org/base")
    assert Path(found.location) == Path(path) and Path(path).name == COMMIT


def test_cli_audits_a_repo_id_from_a_cache_folder_in_a_fresh_process(served, local_base, tmp_path):
    """HF_HUB_CACHE is read where huggingface_hub reads it, at start-up."""
    folder = tmp_path / "cache"
    snapshot = cache_repo(folder, "org/base", served / "base", COMMIT)
    env = {**os.environ, "HF_HUB_CACHE": str(folder), "HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "cached.fp.safetensors"
    done = subprocess.run([sys.executable, "-m", "provenance.cli", "fingerprint", "org/base", "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"local Hugging Face cache folder {snapshot}" in done.stderr
    fp = load_fingerprint(out)
    assert fp.meta.get("variant") != "remote"  # read whole from the local files
    assert compare_fingerprints(fp, local_base).verdict == "identical"


def test_cli_repo_id_not_cached_is_read_from_the_hub(cache, hub, local_base, tmp_path, capsys):
    out = tmp_path / "hub.fp.safetensors"
    assert main(["fingerprint", "org/base", "--hub", "--revision", "v9", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no snapshot for revision 'v9'" in err and "reading hf://org/base@v9" in err and "HTTP 404" in err
    shutil.rmtree(cache / "models--org--base")
    assert main(["fingerprint", "org/base", "--hub", "-o", str(out)]) == 0
    assert "it is not in the Hugging Face cache folder" in capsys.readouterr().err
    fp = load_fingerprint(out)
    assert fp.meta["variant"] == "remote"
    assert compare_fingerprints(fp, local_base).verdict == "identical"
    assert main(["inspect", "org/absent"]) == 1
    assert "reads local files only" in capsys.readouterr().err


# -- remote GGUF -----------------------------------------------------------------------------------------------

from gguf import GGMLQuantizationType as Q  # noqa: E402

from provenance.errors import UnreadablePathError  # noqa: E402
from provenance.fingerprint.sketch import row_sample, row_sample_rows  # noqa: E402
from provenance.model import Checkpoint  # noqa: E402
from provenance.real_models import real_model_path  # noqa: E402

from .test_gguf import build_case, hf_state, write_llama_gguf  # noqa: E402,F401  (hf_state is a fixture)


@pytest.fixture(scope="module")
def gguf_folder(hf_state, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf-served")
    for qtype in (Q.Q8_0, Q.Q4_K):  # a 32-element and a 256-element block type; Q and K rows permuted for RoPE
        stored, _ = build_case(hf_state, qtype)
        write_llama_gguf(folder / f"tiny-{qtype.name.lower()}.gguf", stored)
    return folder


@pytest.mark.parametrize("name", ["tiny-q8_0.gguf", "tiny-q4_k.gguf"])
def test_remote_gguf_reads_the_same_rows_as_the_local_reader(gguf_folder, name):
    local = fingerprint_for(gguf_folder / name)
    with RangeServer(gguf_folder) as server:
        remote = fingerprint_for(server.url(name))
        served = server.served(name)
    assert remote.meta["variant"] == "remote" and remote.meta["source"]["format"] == "gguf"
    assert remote.meta["remote"]["bytes_read"] == served
    compared = [k for k in remote.arrays if k.startswith(("rows/", "sketch/"))]
    assert any(k.startswith("rows/layers.0.attn.q") for k in compared), compared
    for key in compared:
        assert np.array_equal(remote.arrays[key], local.arrays[key]), key
    assert compare_fingerprints(remote, local).verdict == "identical"


def test_hf_gguf_repository_names_its_file(gguf_folder, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with RangeServer(gguf_folder) as server:
        server.add_repo("org/tiny-gguf", gguf_folder, commit="d" * 40)
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        with pytest.raises(UnreadablePathError, match=r"2 GGUF files.*hf://ORG/NAME\[@REV\]/FILE.gguf.*tiny-q4_k.gguf"):
            fingerprint_for("hf://org/tiny-gguf")
        fp = fingerprint_for("hf://org/tiny-gguf@main/tiny-q8_0.gguf")
        assert fp.meta["source"]["path"] == "hf://org/tiny-gguf@main/tiny-q8_0.gguf"
        assert fp.meta["source"]["files"][0]["url"].endswith(f"/resolve/{'d' * 40}/tiny-q8_0.gguf")
        with pytest.raises(UnreadablePathError, match="no file 'absent.gguf'"):
            fingerprint_for("hf://org/tiny-gguf/absent.gguf")


@pytest.mark.real
def test_real_smollm2_gguf_by_range_requests():
    """SmolLM2-135M Q4_1 (98 MB, LLaMA layout, 49,152-token vocabulary in its metadata), served locally."""
    try:
        path = real_model_path("smollm2")
    except UnreadablePathError as exc:
        pytest.skip(str(exc))
    with RangeServer(path.parent) as server:
        remote = fingerprint_for(server.url(path.name))
    assert remote.meta["vocabulary"]["size"] == 49152
    assert remote.meta["remote"]["fraction_read"] < 0.1
    with Checkpoint.open(path) as checkpoint:  # the local reader, on a few tensors (RoPE-permuted ones included)
        for assignment in checkpoint.roles.assignments:
            if assignment.key.layer == 3 and assignment.key.role in ("attn.q", "attn.k", "mlp.down"):
                values = checkpoint.read(assignment.key).to(torch.float32)
                expected = row_sample(values[torch.from_numpy(row_sample_rows(tuple(values.shape)))], tuple(values.shape))
                assert np.array_equal(remote.arrays[f"rows/{assignment.key.name}"], expected), assignment.key.name


def test_remote_gguf_header_past_the_first_read_and_truncated_files(hf_state, gguf_folder, tmp_path):
    import gguf

    stored, _ = build_case(hf_state, Q.Q8_0)
    writer = gguf.GGUFWriter(str(tmp_path / "padded.gguf"), "llama")
    source = gguf.GGUFReader(str(gguf_folder / "tiny-q8_0.gguf"))
    for key, field in source.fields.items():  # the same metadata, plus a 5 MB string before the tensor infos
        if key.startswith("llama.") or key == "general.name":
            value = field.contents()
            writer.add_key_value(key, value, gguf.GGUFValueType(field.types[0]))
    writer.add_string("test.padding", "x" * 5_000_000)
    for name, (array, qtype) in stored.items():
        writer.add_tensor(name, array, raw_shape=array.shape if array.dtype == np.uint8 else None,
                          raw_dtype=qtype if array.dtype == np.uint8 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = (gguf_folder / "tiny-q8_0.gguf").read_bytes()
    (tmp_path / "truncated.gguf").write_bytes(data[: len(data) // 2])
    with RangeServer(tmp_path) as server:
        padded = fingerprint_for(server.url("padded.gguf"))
        assert 5_000_000 < padded.meta["remote"]["header_bytes"] < 2 * 5_000_000 + (2 << 20)
        assert compare_fingerprints(padded, fingerprint_for(gguf_folder / "tiny-q8_0.gguf")).verdict == "identical"
        url = server.url("truncated.gguf")
        with pytest.raises(Exception, match=rf"^{url}: tensor .* runs past the end .* \(truncated\?\)"):
            fingerprint_for(url)


# -- reference catalog and refs sync -----------------------------------------------------------------------------

from provenance.registry.catalog import DEFAULT_MAX_PARAMS, load_catalog, parse_size  # noqa: E402
from provenance.registry import Registry  # noqa: E402


def test_shipped_catalog_is_valid_and_covers_the_issue():
    models = load_catalog()
    repos = {m.repo for m in models}
    for repo in ("huggyllama/llama-7b", "meta-llama/Llama-2-7b-hf", "meta-llama/Meta-Llama-3-8B", "mistralai/Mistral-7B-v0.1",
                 "mistralai/Mixtral-8x7B-v0.1", "Qwen/Qwen1.5-7B", "Qwen/Qwen2-7B", "Qwen/Qwen2.5-7B", "01-ai/Yi-6B",
                 "baichuan-inc/Baichuan2-7B-Base", "THUDM/chatglm3-6b-base", "THUDM/glm-4-9b", "google/gemma-7b",
                 "google/gemma-2-9b", "google/gemma-3-1b-pt", "microsoft/phi-2", "microsoft/Phi-3-mini-4k-instruct",
                 "tiiuae/falcon-7b", "EleutherAI/pythia-6.9b", "allenai/OLMo-7B-hf", "deepseek-ai/deepseek-llm-7b-base",
                 "internlm/internlm2-7b", "HuggingFaceTB/SmolLM2-135M"):
        assert repo in repos, repo
    # nothing claims a pinned commit that was not verified: every revision is a branch, said so
    assert all(m.revision_kind == "branch" and m.revision == "main" for m in models)
    assert any(m.params > DEFAULT_MAX_PARAMS for m in models) and sum(m.params <= DEFAULT_MAX_PARAMS for m in models) > 40
    assert (parse_size("14B").unit, parse_size("30GB").value) == ("params", 30e9)


@pytest.fixture
def catalog_hub(served, gguf_folder, tmp_path, monkeypatch):
    from huggingface_hub import constants

    gguf_repo = tmp_path / "gguf-repo"
    gguf_repo.mkdir()
    shutil.copy(gguf_folder / "tiny-q8_0.gguf", gguf_repo / "model.Q8_0.gguf")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(remote_http, "BACKOFF_BASE", 0.01)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    models = [("Base", "test/base", 2e7, "llama"), ("Other", "test/other", 2e7, "llama"),
              ("Tiny-GGUF", "test/tiny-gguf", 1e6, "llama"), ("Huge", "test/huge", 7e10, "llama")]
    catalog = {"schema": "provenance.catalog/1", "models": [
        {"name": n, "repo": r, "revision": "main", "revision_kind": "branch", "params": int(p), "bytes": int(2 * p),
         "family": f} for n, r, p, f in models]}
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    with RangeServer(served) as server:
        server.add_repo("test/base", served / "base", commit="1" * 40)
        server.add_repo("test/other", served / "other", commit="2" * 40)
        server.add_repo("test/tiny-gguf", gguf_repo, commit="3" * 40)
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        yield server, tmp_path / "catalog.json", tmp_path / "refs.sqlite"


def _sync(db: Path, catalog: Path, *extra: str) -> int:
    return main(["refs", "--refs", str(db), "sync", "--catalog", str(catalog), *extra])


@pytest.mark.slow
def test_refs_sync_end_to_end_on_a_local_hub(catalog_hub, local_base, capsys):
    server, catalog, db = catalog_hub
    assert _sync(db, catalog) == 0
    err = capsys.readouterr().err
    assert "Huge: left out (larger than 15B parameters" in err
    assert "[1/3] Base (test/base@main): 111111111111 fingerprinted" in err and "[3/3] Tiny-GGUF" in err
    assert "refs sync: 3 fingerprinted, 0 already at the resolved commit, 0 skipped, 0 failed" in err
    with Registry(db) as registry:
        assert registry.names() == ["Base", "Other", "Tiny-GGUF"]
        hub = registry.entry("Base").source["hub"]
        assert hub == {"repo": "test/base", "revision": "main", "commit": "1" * 40, "catalog": "Base"}
        assert registry.entry("Tiny-GGUF").source["format"] == "gguf"
        assert compare_fingerprints(local_base, registry.fingerprint("Base")).verdict == "identical"
        assert compare_fingerprints(local_base, registry.fingerprint("Other")).verdict != "identical"
        revision = registry.revision
    weights = server.served("test/base/model.safetensors")
    assert 0 < weights < 0.2 * (server.state.root / "base" / "model.safetensors").stat().st_size

    # a second run reads nothing but the commits and changes nothing
    server.reset_counts()
    assert _sync(db, catalog) == 0
    assert "0 fingerprinted, 3 already at the resolved commit" in capsys.readouterr().err
    assert server.served("test/base/model.safetensors") == 0
    with Registry(db) as registry:
        assert registry.revision == revision

    # the branch moves: only that model is fingerprinted again, and the new commit is recorded
    server.state.repos["test/other"].commit = "4" * 40
    assert _sync(db, catalog, "--only", "Other", "test/base") == 0
    err = capsys.readouterr().err
    assert "Other (test/other@main): 444444444444 fingerprinted" in err and "Base (test/base@main): already at" in err
    with Registry(db) as registry:
        assert registry.entry("Other").source["hub"]["commit"] == "4" * 40


@pytest.mark.slow
def test_refs_sync_failures_resume_and_name_clashes(catalog_hub, capsys):
    server, catalog, db = catalog_hub
    server.state.fail["test/other/model.safetensors"] = 503  # retried, then reported; the others are stored
    assert _sync(db, catalog) == 1
    err = capsys.readouterr().err
    assert "[2/3] Other (test/other@main): failed: " in err and "HTTP 503" in err
    assert "2 fingerprinted, 0 already at the resolved commit, 0 skipped, 1 failed" in err
    del server.state.fail["test/other/model.safetensors"]
    assert _sync(db, catalog) == 0  # resumes: only the missing one is read
    assert "1 fingerprinted, 2 already at the resolved commit" in capsys.readouterr().err

    assert _sync(db, catalog, "--all") == 1  # the huge one is taken, and is not on this hub
    assert "Huge (test/huge@main): failed: hf://test/huge@main: HTTP 404" in capsys.readouterr().err
    assert _sync(db, catalog, "--max-size", "100KB") == 0  # bytes: nothing fits
    assert "0 fingerprinted" in capsys.readouterr().err
    assert _sync(db, catalog, "--only", "nope") == 1
    assert "not in the catalog: nope" in capsys.readouterr().err

    with Registry(db) as registry:  # a reference the user added under a catalog name is left alone
        registry.remove("Base")
        registry.add("Base", registry.fingerprint("Other"))
    assert _sync(db, catalog, "--only", "Base") == 0
    assert "Base (test/base@main): skipped: a reference of that name exists" in capsys.readouterr().err
