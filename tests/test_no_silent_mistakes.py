"""Mistakes that used to exit 0 with a wrong answer: each now gives a clear line, or the right answer.

Fingerprint files given to inspect/fingerprint, reference databases that do not
exist, `--refs` and `--name` anywhere on the `refs` command line, `--fail-on`
saying what tripped it, tokenizer-only folders, free-text lineage claims,
zero-sized roles, a database with the wrong columns, and `scan --timeout`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from provenance import batch as scan
from provenance.cli import main
from provenance.fingerprint.load import fingerprint_for
from provenance.registry import Registry

from .builders import build_llama, build_qwen2


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("silent")
    llama = build_llama(root / "llama").path
    (llama / "README.md").write_text(
        "---\nlicense: mit\n---\n# Tiny\n\nTiny-7B is a foundation model trained from scratch on 3T tokens. "
        "It is fast.\n\n本模型基于自研架构。\n")
    qwen = build_qwen2(root / "qwen2").path
    fp = fingerprint_for(llama).save(root / "llama.fp.safetensors")
    db = root / "refs.sqlite"
    with Registry(db) as registry:
        registry.add("llama", fingerprint_for(fp))
        registry.add("qwen2", fingerprint_for(qwen))
    return {"root": root, "llama": llama, "qwen": qwen, "fp": fp, "db": db}


# --- fingerprint files given to inspect and fingerprint ----------------------------------------------

def test_inspect_describes_a_fingerprint_file(world, capsys):
    code, out, err = _cli(capsys, "inspect", str(world["fp"]), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["kind"] == "fingerprint" and report["format"] == "provenance-fingerprint"
    assert report["source"]["path"] == str(world["llama"])
    assert report["architecture"]["num_layers"] == 2 and report["architecture"]["vocab_size"] == 64
    code, out, err = _cli(capsys, "inspect", str(world["fp"]))
    assert code == 0, err
    assert "provenance fingerprint" in out and f"made from: {world['llama']}" in out
    assert "512" not in out  # not read as a model of its anchor-token arrays


def test_fingerprint_of_a_fingerprint_is_refused(world, tmp_path, capsys):
    out = tmp_path / "again.fp.safetensors"
    code, _, err = _cli(capsys, "fingerprint", str(world["fp"]), "-o", str(out))
    assert code == 1
    _one_line(err, str(world["fp"]), "already a provenance fingerprint")
    assert not out.exists()


# --- reference databases: reads never create ----------------------------------------------------------

def test_missing_database_is_an_error_for_every_read(world, tmp_path, capsys, monkeypatch):
    missing = tmp_path / "refz.sqlite"
    for args in (["audit", str(world["fp"]), "--refs", str(missing)],
                 ["refs", "--refs", str(missing), "list"],
                 ["refs", "list", "--refs", str(missing), "--json"],
                 ["refs", "--refs", str(missing), "remove", "x"],
                 ["refs", "--refs", str(missing), "export", str(tmp_path / "o.zip")],
                 ["scan", str(world["fp"]), "-o", str(tmp_path / "o.jsonl"), "--refs", str(missing), "--workers", "0"]):
        code, out, err = _cli(capsys, *args)
        assert code == 1, args
        _one_line(err, str(missing), "no reference database")
        assert out == ""
        assert not missing.exists()
    assert not (tmp_path / "o.jsonl").exists()
    monkeypatch.setenv("PROVENANCE_REFS", str(missing))
    code, _, err = _cli(capsys, "audit", str(world["fp"]))
    assert code == 1
    _one_line(err, str(missing))
    assert not missing.exists()


def test_only_writers_create_and_only_in_an_existing_folder(world, tmp_path, capsys):
    nested = tmp_path / "no" / "such" / "refs.sqlite"
    code, _, err = _cli(capsys, "refs", "--refs", str(nested), "add", str(world["fp"]), "--name", "a")
    assert code == 1
    _one_line(err, "does not exist", "--create")
    assert not nested.parent.exists()
    code, _, err = _cli(capsys, "refs", "add", str(world["fp"]), "--name", "a", "--refs", str(nested), "--create")
    assert code == 0, err
    assert nested.is_file()
    fresh = tmp_path / "fresh.sqlite"  # an existing folder: created without --create
    code, _, err = _cli(capsys, "refs", "import", str(_bundle(world, tmp_path, capsys)), "--refs", str(fresh))
    assert code == 0, err
    with Registry(fresh, create=False) as registry:
        assert registry.names() == ["llama"]


def _bundle(world, tmp_path, capsys) -> Path:
    out = tmp_path / "one.zip"
    code, _, err = _cli(capsys, "refs", "export", "--name", "llama", str(out), "--refs", str(world["db"]))
    assert code == 0, err
    return out


# --- the refs command line ------------------------------------------------------------------------

def test_refs_option_anywhere_and_export_names_not_greedy(world, tmp_path, capsys):
    code, out, _ = _cli(capsys, "refs", "list", "--json", "--refs", str(world["db"]))
    assert code == 0 and [r["name"] for r in json.loads(out)["references"]] == ["llama", "qwen2"]
    code, out, _ = _cli(capsys, "refs", "--refs", str(world["db"]), "list", "--json")
    assert code == 0 and json.loads(out)["path"] == str(world["db"])
    import zipfile

    for args in (["export", str(tmp_path / "a.zip"), "--name", "qwen2", "--name", "llama"],
                 ["export", "--name", "qwen2", "--name", "llama", str(tmp_path / "a.zip")]):
        code, _, err = _cli(capsys, "refs", *args, "--refs", str(world["db"]))
        assert code == 0, err
        with zipfile.ZipFile(tmp_path / "a.zip") as archive:
            names = [r["name"] for r in json.loads(archive.read("manifest.json"))["references"]]
        assert names == ["qwen2", "llama"]


def test_duplicate_add_points_at_replace(world, tmp_path, capsys):
    db = tmp_path / "d.sqlite"
    shutil.copy(world["db"], db)
    code, _, err = _cli(capsys, "refs", "add", str(world["fp"]), "--name", "llama", "--refs", str(db))
    assert code == 1
    _one_line(err, "'llama' already exists", "--replace")
    code, _, err = _cli(capsys, "refs", "add", str(world["fp"]), "--name", "llama", "--refs", str(db), "--replace")
    assert code == 0, err


def test_wrong_columns_database_is_one_line(world, tmp_path, capsys):
    db = tmp_path / "other.sqlite"
    connection = sqlite3.connect(str(db))
    connection.execute("CREATE TABLE refs (id INTEGER, payload TEXT)")
    connection.commit()
    connection.close()
    for args in (["refs", "list", "--refs", str(db)], ["audit", str(world["fp"]), "--refs", str(db)]):
        code, _, err = _cli(capsys, *args)
        assert code == 1
        _one_line(err, str(db), "table 'refs' has columns (id, payload)")


# --- --fail-on ------------------------------------------------------------------------------------

def test_audit_fail_on_says_what_tripped_it(world, capsys):
    code, out, err = _cli(capsys, "audit", str(world["fp"]), "--refs", str(world["db"]), "--no-builtin",
                          "--fail-on", "identical,derived")
    assert code == 3
    assert "verdict: IDENTICAL of llama" in out
    line = [l for l in err.splitlines() if "--fail-on" in l]
    assert line == ["provenance: --fail-on: identical vs llama (exit 3)"]
    code, _, err = _cli(capsys, "audit", str(world["fp"]), "--refs", str(world["db"]), "--no-builtin",
                        "--fail-on", "assembled")
    assert code == 0 and "--fail-on" not in err


def test_compare_fail_on(world, capsys):
    code, out, err = _cli(capsys, "compare", str(world["fp"]), str(world["llama"]), "--json", "--fail-on", "identical")
    assert code == 3 and json.loads(out)["verdict"] == "identical"
    assert f"provenance: --fail-on: identical vs {world['llama']} (exit 3)" in err
    code, out, err = _cli(capsys, "compare", str(world["fp"]), str(world["qwen"]), "--fail-on", "identical,derived")
    assert code == 0, err
    code, _, err = _cli(capsys, "compare", str(world["fp"]), str(world["llama"]), "--fail-on", "copied")
    assert code == 2 and "unknown verdict" in err


# --- tokenizer-only folders -----------------------------------------------------------------------

def _tokenizer_folder(path: Path, tokens: list[str]) -> Path:
    path.mkdir(parents=True)
    vocab = {t: i for i, t in enumerate(tokens)}
    (path / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece", "vocab": vocab}}))
    (path / "tokenizer_config.json").write_text("{}")
    return path


@pytest.mark.parametrize("cand, ref, relation", [
    (["a", "b", "c"], ["a", "b", "c"], "identical"),
    (["a", "b", "c", "d"], ["a", "b", "c"], "extended"),
    (["a", "c"], ["a", "b", "c"], "pruned"),
    (["a", "x", "y", "z"], ["a", "b", "c", "d"], "overlapping"),
    (["c", "a", "b"], ["a", "b", "c"], "reordered"),
    (["x", "y"], ["a", "b"], "disjoint"),
])
def test_tokenizer_only_folders_are_compared_as_tokenizers(cand, ref, relation, tmp_path, capsys):
    a = _tokenizer_folder(tmp_path / "a", cand)
    b = _tokenizer_folder(tmp_path / "b", ref)
    code, out, err = _cli(capsys, "compare", str(a), str(b), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["schema"] == "provenance.tokenizer-compare/1"
    assert report["relation"] == relation
    shared = len(set(cand) & set(ref))
    assert report["shared_tokens"] == shared
    assert report["share_of_candidate"] == pytest.approx(shared / len(cand))
    code, out, _ = _cli(capsys, "compare", str(a), str(b))
    assert code == 0 and out.startswith(f"tokenizers: {relation.upper()}")


def test_tokenizer_folder_against_a_checkpoint_is_one_line(world, tmp_path, capsys):
    a = _tokenizer_folder(tmp_path / "tok", ["a", "b"])
    code, _, err = _cli(capsys, "compare", str(world["llama"]), str(a))
    assert code == 1
    _one_line(err, str(world["llama"]), "not a folder of tokenizer files only")


# --- free-text lineage claims ---------------------------------------------------------------------

def test_model_card_prose_claims_are_quoted(world, capsys):
    code, out, err = _cli(capsys, "inspect", str(world["llama"]), "--json", "--no-hash")
    assert code == 0, err
    text = [c["value"] for c in json.loads(out)["lineage_claims"] if c["where"] == "model card text"]
    assert text == ["Tiny-7B is a foundation model trained from scratch on 3T tokens.", "本模型基于自研架构"]
    code, out, _ = _cli(capsys, "inspect", str(world["llama"]), "--no-hash")
    assert "model card text: Tiny-7B is a foundation model trained from scratch on 3T tokens." in out
    # Recorded in the fingerprint, so the report shows them too.
    claims = fingerprint_for(world["fp"]).meta["lineage_claims"]
    assert {"where": "model card text", "value": "本模型基于自研架构"} in claims
    report = world["root"] / "claims.html"
    code, _, err = _cli(capsys, "audit", str(world["fp"]), "--refs", str(world["db"]), "--no-builtin",
                        "--report", str(report))
    assert code == 0, err
    lineage = report.read_text(encoding="utf-8").split('<section id="lineage">')[1].split("</section>")[0]
    assert "Tiny-7B is a foundation model trained from scratch on 3T tokens." in lineage
    assert "model card text" in lineage


# --- a zero-sized role is never identical -----------------------------------------------------------

def test_zero_sized_role_is_not_identical(world, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    cand = tmp_path / "emptied"
    cand.mkdir()
    shutil.copy(world["llama"] / "config.json", cand / "config.json")
    state = load_file(str(world["llama"] / "model.safetensors"))
    name = "model.layers.1.mlp.down_proj.weight"
    state[name] = torch.zeros((0, state[name].shape[1]))
    save_file(state, str(cand / "model.safetensors"))
    code, out, err = _cli(capsys, "compare", str(cand), str(world["llama"]), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["verdict"] == "derived"
    assert any("layers.1.mlp.down.weight" in note and "zero-sized" in note for note in report["notes"])
    code, out, _ = _cli(capsys, "audit", str(cand), "--refs", str(world["db"]), "--no-builtin", "--json")
    assert json.loads(out)["references"][0]["verdict"] != "identical"


# --- scan --timeout -------------------------------------------------------------------------------

@pytest.fixture
def hung_candidate(world):
    """A model at a URL whose server takes ten minutes to answer each request: only `--timeout` ends its audit.
    (A named pipe no longer hangs a candidate: a weights file that is not a regular file is refused at once,
    `test_a_named_pipe_is_refused_not_waited_on`.)"""
    from .range_server import RangeServer

    with RangeServer(world["llama"].parent, latency=600) as server:
        yield server.url(f"{world['llama'].name}/model.safetensors")


def test_a_named_pipe_is_refused_not_waited_on(world, tmp_path, capsys):
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs named pipes")
    folder = tmp_path / "piped"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    (folder / "model.safetensors").symlink_to("pipe")
    shutil.copy(world["llama"] / "config.json", folder / "config.json")
    started = time.monotonic()
    code, _, err = _cli(capsys, "inspect", str(folder))
    assert time.monotonic() - started < 60  # opening a pipe nobody writes would block forever
    assert code == 1 and "not a regular file" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("workers", ["0", "2"])
def test_scan_timeout_turns_a_hung_candidate_into_an_error_line(workers, world, hung_candidate, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    code, _, err = _cli(capsys, "scan", str(hung_candidate), str(world["fp"]), "-o", str(out), "--workers", workers,
                        "--timeout", "2", "--no-builtin", "--refs", str(world["db"]), "--fail-on", "error")
    assert time.monotonic() - started < 60
    assert code == 3, err
    records = {r["candidate"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records[str(hung_candidate)]["status"] == "error"
    assert "--timeout of 2 s" in records[str(hung_candidate)]["error"]
    assert records[str(world["fp"])]["status"] == "ok"
    assert f"first: {hung_candidate} (error)" in err


def test_scan_fail_on_names_verdict_and_reference(world, tmp_path, capsys):
    code, _, err = _cli(capsys, "scan", str(world["fp"]), "-o", str(tmp_path / "o.jsonl"), "--workers", "0",
                        "--no-builtin", "--refs", str(world["db"]), "--fail-on", "identical")
    assert code == 3
    assert f"first: {world['fp']} (identical vs llama)" in err


def _stuck_in_native_code(candidate: str, settings) -> dict:
    """A task whose work ignores SIGALRM (as a long native call would): only the watchdog can end it."""
    with scan.time_limit(settings.timeout, settings.timeout_grace):
        if candidate == "stuck":
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(120)
    return {"candidate": candidate, "status": "ok", "audit": {"verdict": "unrelated", "references": []}}


def test_scan_timeout_watchdog_ends_a_worker_stuck_in_native_code(tmp_path):
    out = tmp_path / "out.jsonl"
    settings = scan.AuditSettings(timeout=1.0, timeout_grace=1.0)
    started = time.monotonic()
    summary = scan.scan(["a", "stuck", "b", "c"], out, scan.executor(2, settings=settings, task=_stuck_in_native_code))
    assert time.monotonic() - started < 60
    records = {r["candidate"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(records) == ["a", "b", "c", "stuck"]
    assert records["stuck"]["status"] == "error" and "--timeout of 1 s" in records["stuck"]["error"]
    assert all(records[c]["status"] == "ok" for c in "abc")
    assert summary.errors == 1


def test_scan_timeout_must_be_positive(world, tmp_path, capsys):
    code, _, err = _cli(capsys, "scan", str(world["fp"]), "-o", str(tmp_path / "o.jsonl"), "--timeout", "0")
    assert code == 2 and "--timeout" in err
