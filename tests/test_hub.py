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

import pytest

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
    missing = locate("org/base@v2")
    assert missing.location == "hf://org/base@v2"
    assert "no snapshot for revision 'v2'" in missing.note and "main" in missing.note and "v1" in missing.note


def test_side_files_only_and_absent_repos_go_to_the_hub(cache):
    found = locate("org/configonly")
    assert found.location == "hf://org/configonly"
    assert "holds no weights file" in found.note
    absent = locate("org/absent")
    assert absent.location == "hf://org/absent" and str(cache) in absent.note


def test_existing_local_path_wins_over_a_repo_id(cache, served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(served / "other", tmp_path / "org" / "base")
    found = locate("org/base")
    assert found.location == "org/base" and "existing local path" in found.note
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
    assert main(["fingerprint", "org/base", "--revision", "v9", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no snapshot for revision 'v9'" in err and "reading hf://org/base@v9" in err and "HTTP 404" in err
    shutil.rmtree(cache / "models--org--base")
    assert main(["fingerprint", "org/base", "-o", str(out)]) == 0
    assert "it is not in the Hugging Face cache folder" in capsys.readouterr().err
    fp = load_fingerprint(out)
    assert fp.meta["variant"] == "remote"
    assert compare_fingerprints(fp, local_base).verdict == "identical"
    assert main(["inspect", "org/absent"]) == 1
    assert "reads local files only" in capsys.readouterr().err
