"""Hostile servers, changing files and files that pretend (issue 23): each attack, and the one line it must end in.

Servers are `http.server` subclasses on 127.0.0.1 (drip, one byte per
answer, a file re-saved between requests, a redirect to file://, a hub that
lies about a side file's size or sends an escape-laden commit); models are
the tiny LLaMA of `tests/builders.py`. Deadlines, grace period and minimum
rate are set through their environment variables so that each stall ends
in about a second; every attack runs in a thread that must end in time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from provenance import api
from provenance.cli import main
from provenance.errors import CorruptFileError, ProvenanceError, UnreadablePathError
from provenance.fingerprint.load import fingerprint_for
from provenance.fingerprint.store import is_fingerprint_file
from provenance.model import Checkpoint
from provenance.remote import http as remote_http

from .builders import tiny_llama_config, tiny_llama_state
from .range_server import RangeServer

ENDS_WITHIN = 15.0  # seconds: every attack must end well before this (today's code never ends)


def _save(folder: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"), metadata=metadata)
    (folder / "config.json").write_text(json.dumps(tiny_llama_config()))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    base = tiny_llama_state(0)
    g = torch.Generator().manual_seed(5)
    tuned = {k: v + 0.05 * v.std() * torch.randn(v.shape, generator=g) if v.dim() == 2 else v for k, v in base.items()}
    _save(root / "base", base)
    _save(root / "tuned", tuned)
    _save(root / "other", tiny_llama_state(1))
    _save(root / "base-resaved", base, metadata={"note": "x" * 64})  # the same tensors, data shifted by 64+ bytes
    return root


@pytest.fixture
def quick(monkeypatch):
    """Stalls end in about a second: short grace, a minimum rate a drip cannot reach, fast retries."""
    monkeypatch.setenv("PROVENANCE_REMOTE_GRACE", "0.25")
    monkeypatch.setenv("PROVENANCE_REMOTE_MIN_RATE", "2000")
    monkeypatch.setattr(remote_http, "BACKOFF_BASE", 0.01)


def _ends(call, within: float = ENDS_WITHIN) -> BaseException | None:
    """Run `call` in a thread; fail unless it ends within `within` seconds; return what it raised."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # the error is what the test looks at
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(within)
    assert not worker.is_alive(), f"still running after {within} s"
    return outcome.get("error")


# --------------------------------------------------------------------------- hostile plain-URL servers

class FileServer(BaseHTTPRequestHandler):
    """Serves `versions[n]` for the n-th request onwards (the last one after that) with honest 206 answers.

    Subclasses change how the body is sent (`send_body`) or what the headers say.
    """

    protocol_version = "HTTP/1.1"
    versions: list[tuple[int, bytes, str | None]] = []  # (from request number, body, ETag)
    seen: list[dict[str, str]] = []  # request headers, in order
    honour_if_match = False

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        if self.path != "/model.safetensors":  # side files: config.json honestly, nothing else
            config = json.dumps(tiny_llama_config()).encode()
            return self._reply(404, {}, b"") if self.path != "/config.json" else self._send(config, None)
        with LOCK:
            number = len(self.seen)
            self.seen.append(dict(self.headers))
        body, etag = next((b, e) for start, b, e in reversed(self.versions) if number >= start)
        self._send(body, etag)

    def _send(self, body: bytes, etag: str | None) -> None:
        if self.honour_if_match and self.headers.get("If-Match") not in (None, etag):
            return self._reply(412, {}, b"")
        first, _, last = self.headers.get("Range", "bytes=0-").removeprefix("bytes=").partition("-")
        start, end = int(first), min(len(body), int(last) + 1 if last else len(body))
        headers = {"Content-Range": f"bytes {start}-{end - 1}/{len(body)}", "Accept-Ranges": "bytes"}
        if etag:
            headers["ETag"] = etag
        self.send_response(206)
        for name, value in {**headers, "Content-Length": str(end - start)}.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.send_body(body[start:end])
        except OSError:  # the client gave up: what a hostile server wants to see least
            pass

    def send_body(self, data: bytes) -> None:
        self.wfile.write(data)

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


LOCK = threading.Lock()


class Drip(FileServer):
    """One byte every 20 ms: each read is alive, the file never arrives."""

    def send_body(self, data: bytes) -> None:
        for i in range(len(data)):
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            time.sleep(0.02)


class OneByte(FileServer):
    """Every 206 promises the range, sends one byte, and closes."""

    def send_body(self, data: bytes) -> None:
        self.wfile.write(data[:1])
        self.wfile.flush()
        self.close_connection = True


class RedirectToFile(FileServer):
    def do_GET(self):
        with LOCK:
            self.seen.append(dict(self.headers))
        self._reply(301, {"Location": "file:///etc/passwd"}, b"")


@contextmanager
def serving(handler: type, **attributes):
    cls = type(handler.__name__, (handler,), {"seen": [], **attributes})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), cls)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/model.safetensors", cls
    finally:
        httpd.shutdown()
        httpd.server_close()


def _weights(models: Path, name: str) -> bytes:
    return (models / name / "model.safetensors").read_bytes()


def test_drip_server_ends_with_one_line_naming_host_and_rate(models, quick):
    with serving(Drip, versions=[(0, _weights(models, "base"), None)]) as (url, _):
        error = _ends(lambda: fingerprint_for(url))
    assert isinstance(error, remote_http.RemoteAccessError), error
    assert "127.0.0.1" in str(error) and "bytes/s" in str(error) and "\n" not in str(error)


def test_command_deadline_holds_against_a_drip_fast_enough_for_the_rate(models, quick, monkeypatch):
    monkeypatch.setenv("PROVENANCE_REMOTE_MIN_RATE", "1")
    monkeypatch.setenv("PROVENANCE_REMOTE_DEADLINE", "0.5")
    with serving(Drip, versions=[(0, _weights(models, "base"), None)]) as (url, _):
        started = time.monotonic()
        error = _ends(lambda: fingerprint_for(url))
    assert isinstance(error, remote_http.RemoteAccessError) and "0.5-second deadline" in str(error), error
    assert time.monotonic() - started < 5


def test_one_byte_answers_are_not_progress(models, quick, monkeypatch):
    monkeypatch.setenv("PROVENANCE_REMOTE_MIN_RATE", "1")  # the retry rule alone must stop it
    with serving(OneByte, versions=[(0, _weights(models, "base"), None)]) as (url, handler):
        error = _ends(lambda: fingerprint_for(url))
    assert isinstance(error, remote_http.RemoteAccessError) and "gave up after" in str(error), error
    assert "127.0.0.1" in str(error) and "bytes/s" in str(error)
    assert len(handler.seen) <= remote_http.MAX_RETRIES + 2


def test_file_resaved_between_requests_is_an_error_not_a_verdict(models, quick):
    """The issue's case: served twice, then re-saved with longer metadata (the data shifted)."""
    versions = [(0, _weights(models, "base"), None), (2, _weights(models, "base-resaved"), None)]
    with serving(FileServer, versions=versions) as (url, _):
        error = _ends(lambda: fingerprint_for(url))
    assert isinstance(error, remote_http.RemoteAccessError) and "changed while it was read" in str(error), error
    assert "run again" in str(error)


def test_changed_etag_is_caught_by_if_match(models, quick):
    base = _weights(models, "base")
    other = bytearray(base)
    other[-64:] = bytes(64)  # same size, other values
    versions = [(0, base, '"v1"'), (2, bytes(other), '"v2"')]
    with serving(FileServer, versions=versions, honour_if_match=True) as (url, handler):
        error = _ends(lambda: fingerprint_for(url))
    assert isinstance(error, remote_http.RemoteAccessError) and "changed while it was read" in str(error), error
    assert handler.seen[1].get("If-Match") == '"v1"'  # every range after the first names the version pinned


def test_permanent_redirect_to_file_is_not_retried(quick):
    with serving(RedirectToFile) as (url, handler):
        error = _ends(lambda: fingerprint_for(url))
    assert isinstance(error, remote_http.RemoteAccessError), error
    assert len(handler.seen) == 1


def test_offline_mode_leaves_plain_urls_readable(models, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with RangeServer(models) as server:
        head = remote_http.RemoteFile(server.url("base/model.safetensors")).read(0, 64)
    assert head == _weights(models, "base")[:64]


# --------------------------------------------------------------------------- a hub that lies

@pytest.fixture
def hub(models, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(remote_http, "BACKOFF_BASE", 0.01)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    big = tmp_path / "big"
    _save(big, tiny_llama_state(0))
    (big / "config.json").write_text(json.dumps({**tiny_llama_config(), "padding": "x" * 1_000_000}))
    with RangeServer(models) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        server.add_repo("org/big-config", big, commit="c" * 40)
        server.add_repo("org/base", models / "base", commit="a" * 40)
        server.add_repo("org/evil", models / "base", commit="\x1b]0;owned\x07\x1b[2J" + "a" * 100_000)
        yield server


def _lying_listing(server: RangeServer, file: str, size: int) -> None:
    """model_info lists `file` with `size` bytes, whatever the file really holds."""
    base = server.httpd.RequestHandlerClass

    def _model_info(self, repo_id, revision):
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        siblings = [{"rfilename": p.name, "size": size if p.name == file else p.stat().st_size}
                    for p in sorted(repo.folder.iterdir()) if p.is_file()]
        body = json.dumps({"id": repo_id, "sha": repo.commit, "siblings": siblings}).encode()
        self._status(200, {"Content-Type": "application/json"}, body)

    server.httpd.RequestHandlerClass = type("Lying", (base,), {"_model_info": _model_info})


def test_hub_side_file_is_capped_at_its_listed_size(hub):
    _lying_listing(hub, "config.json", 284)
    error = _ends(lambda: fingerprint_for("hf://org/big-config"))
    assert isinstance(error, CorruptFileError) and "listed as 284 bytes" in str(error), error
    assert hub.served("org/big-config/config.json") <= 285


def test_hub_commit_with_escapes_is_refused_in_one_short_visible_line(hub, tmp_path, capsys):
    error = _ends(lambda: fingerprint_for("hf://org/evil"))
    assert isinstance(error, remote_http.RemoteAccessError) and "not a commit hash" in str(error), error
    assert main(["fingerprint", "hf://org/evil", "-o", str(tmp_path / "x.fp.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and len(err.splitlines()) == 1 and len(err) < 1000, err[:300]


def test_failing_side_file_ends_in_one_line_without_library_retry_logs(hub, tmp_path, capsys):
    hub.state.fail["org/base/config.json"] = 503
    code = _ends(lambda: main(["fingerprint", "hf://org/base", "-o", str(tmp_path / "x.fp.safetensors")]))
    assert code is None
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "config.json" in err and "HTTP 503" in err, err


def test_refs_sync_gives_up_on_one_stalled_model_and_syncs_the_rest(hub, models, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROVENANCE_REMOTE_MIN_RATE", "1")  # fast enough for the rate: only the deadline stops it
    base = hub.httpd.RequestHandlerClass

    def _resolve(self, repo_id, revision, name, head):
        if repo_id != "org/slow" or name != "model.safetensors" or head:
            return base._resolve(self, repo_id, revision, name, head)
        self.send_response(206)
        self.send_header("Content-Range", "bytes 0-7/1000000")
        self.send_header("Content-Length", "8")
        self.end_headers()
        try:
            for _ in range(8):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.4)
        except OSError:
            pass

    hub.httpd.RequestHandlerClass = type("Slow", (base,), {"_resolve": _resolve})
    hub.add_repo("org/slow", models / "other", commit="d" * 40)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"schema": "provenance.catalog/1", "models": [
        {"name": n, "repo": r, "revision": "main", "params": 1000, "bytes": 2000, "family": "llama"}
        for n, r in (("Slow", "org/slow"), ("Base", "org/base"))]}))
    code = _ends(lambda: main(["refs", "--refs", str(tmp_path / "refs.sqlite"), "sync", "--catalog", str(catalog),
                               "--deadline", "1.5", "--create"]))
    assert isinstance(code, SystemExit) or code is None
    lines = capsys.readouterr().err.splitlines()
    err = "\n".join(lines)
    assert any("Slow" in line and "failed" in line and "1.5-second deadline" in line for line in lines), err
    assert any("Base" in line and "fingerprinted" in line for line in lines), err


# --------------------------------------------------------------------------- a fingerprint is not a model

@pytest.fixture(scope="module")
def disguised(models, tmp_path_factory):
    """The fine-tuned copy saved together with an unrelated model's fingerprint arrays and metadata."""
    root = tmp_path_factory.mktemp("disguised")
    other = fingerprint_for(models / "other", cache=False)
    tuned = {k: v for k, v in _load(models / "tuned").items()}
    arrays = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in other.arrays.items()}
    _save(root / "mixed", {**tuned, **arrays}, metadata={"provenance": json.dumps(other.meta)})
    other.save(root / "other.fp.safetensors")
    folder = root / "fingerprint-in-a-folder"
    folder.mkdir()
    other.save(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(tiny_llama_config()))
    return root


def _load(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_weights_with_fingerprint_metadata_are_refused_as_file_and_as_folder(disguised, models):
    mixed = disguised / "mixed"
    assert not is_fingerprint_file(mixed / "model.safetensors")
    assert is_fingerprint_file(disguised / "other.fp.safetensors")
    for named in (mixed / "model.safetensors", mixed):
        with pytest.raises(CorruptFileError, match="fingerprint metadata and arrays that are not a fingerprint's"):
            fingerprint_for(named, cache=False)
    with pytest.raises(ProvenanceError, match="model.safetensors"):
        api.compare_models(str(mixed), str(models / "base"))


def test_fingerprint_given_where_weights_are_expected_is_named(disguised):
    with pytest.raises(UnreadablePathError, match="is a provenance fingerprint, not model weights"):
        fingerprint_for(disguised / "fingerprint-in-a-folder", cache=False)
    with RangeServer(disguised) as server:  # at a URL too, dressed up or not
        with pytest.raises(CorruptFileError, match="not a fingerprint's"):
            fingerprint_for(server.url("mixed/model.safetensors"))
        with pytest.raises(UnreadablePathError, match="is a provenance fingerprint"):
            fingerprint_for(server.url("fingerprint-in-a-folder/model.safetensors"))


# --------------------------------------------------------------------------- text, arguments, temporary folders

def test_error_messages_are_one_visible_bounded_line():
    error = CorruptFileError("model\x1b[2J.safetensors", "bad value " + "\x1b]0;title\x07" * 10 + "y" * 100_000)
    text = str(error)
    assert "\x1b" not in text and "\x07" not in text and "\\x1b" in text and len(text) < 3000


def test_api_wrong_types_and_empty_path_raise_the_documented_error(tmp_path, capsys):
    for bad in (123, None, b"model.safetensors"):
        with pytest.raises(ProvenanceError, match="expected a path"):
            api.fingerprint_model(bad)
    with pytest.raises(UnreadablePathError, match="empty"):
        api.fingerprint_model("")
    assert main(["fingerprint", "", "-o", str(tmp_path / "x.fp.safetensors")]) == 1
    assert "empty" in capsys.readouterr().err


def test_orphaned_side_folders_are_swept(tmp_path, monkeypatch):
    from provenance.remote import scratch  # here, not at the top: a module this change adds

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead, mine = f"{scratch.PREFIX}{finished.pid}-old", f"{scratch.PREFIX}{os.getpid()}-old"
    fresh = f"{scratch.PREFIX}{finished.pid}-fresh"
    for name in (dead, mine, fresh):
        (tmp_path / name).mkdir()
    old = time.time() - 2 * scratch.ORPHAN_AGE
    os.utime(tmp_path / dead, (old, old))
    os.utime(tmp_path / mine, (old, old))
    made = scratch.side_folder()
    assert not (tmp_path / dead).exists() and (tmp_path / mine).exists() and (tmp_path / fresh).exists()
    assert made.parent == tmp_path and made.name.startswith(f"{scratch.PREFIX}{os.getpid()}-")


def test_sigterm_removes_the_side_folder(models):
    from provenance.remote import scratch  # here, not at the top: a module this change adds

    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        scratch.exit_on_sigterm()
        with RangeServer(models) as server:
            with pytest.raises(SystemExit):
                with Checkpoint.open(server.url("base/model.safetensors")) as checkpoint:
                    folder = checkpoint.files.config_path.parent
                    assert folder.is_dir()
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(5)
        assert not folder.exists()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_catalog_names_with_escapes_are_refused_in_one_visible_line(tmp_path, capsys):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"schema": "provenance.catalog/1", "models": [
        {"name": "Evil\x1b]0;owned\x07" + "n" * 100_000, "repo": "org/evil", "revision": "main", "params": 1,
         "bytes": 2}]}))
    assert main(["refs", "--refs", str(tmp_path / "refs.sqlite"), "sync", "--catalog", str(catalog), "--list"]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and len(err.splitlines()) == 1 and len(err) < 1000, err[:300]
