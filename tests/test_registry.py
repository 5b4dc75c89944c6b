"""The reference database: bundles (export/import), concurrent and killed writers, damaged files, progress bars.

Checkpoints are tiny generated models (tests/builders.py). Concurrency and kill
tests run the real command line in subprocesses; the deterministic ones run it
through tests/support/paused_writer.py, which holds a writer inside its
transaction, after the INSERT and before the COMMIT.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from provenance.registry import bundles as bundle_module
from provenance.cli import main
from provenance.compare import compare_fingerprints
from provenance.fingerprint.load import fingerprint_for
from provenance.audit.shortlist import add_reference
from provenance.registry import Registry

from .support.paused_writer import PAUSE_MARKER

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(ROOT / "cli.py")]
PAUSED_CLI = [sys.executable, "-m", "tests.support.paused_writer"]  # SECONDS [RESUME_FILE] -- ARGS


@pytest.fixture(scope="module")
def models(built_model) -> dict[str, Path]:
    """Three unrelated tiny checkpoints: llama, qwen2, gpt2 (built once per test run)."""
    return {name: built_model(name).path for name in ("llama", "qwen2", "gpt2")}


@pytest.fixture(scope="module")
def prints(models, tmp_path_factory) -> dict[str, Path]:
    """Saved fingerprint files of the three models."""
    base = tmp_path_factory.mktemp("prints")
    out = {}
    for name, path in models.items():
        out[name] = fingerprint_for(path).save(base / f"{name}.fp.safetensors")
    return out


def _db_with(path: Path, prints: dict[str, Path], names: list[str]) -> Path:
    with Registry(path) as registry:
        for name in names:
            add_reference(registry, name, fingerprint_for(prints[name]))
    return path


def _same_fingerprint(a, b) -> bool:
    if set(a.arrays) != set(b.arrays) or a.meta["tensors"] != b.meta["tensors"]:
        return False
    return all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)


def _integrity(path: Path) -> str:
    connection = sqlite3.connect(str(path))
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --- bundles ---------------------------------------------------------------------------------------

def test_export_import_round_trip(prints, tmp_path, capsys):
    source = _db_with(tmp_path / "a.sqlite", prints, ["llama", "qwen2", "gpt2"])
    out = tmp_path / "shared" / "team.zip"
    code, _, err = _cli(capsys, "refs", "--refs", str(source), "export", str(out), "--name", "qwen2", "--name", "llama")
    assert code == 0, err
    assert "exported 2 references" in err and "revision 3" in err
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert sorted(archive.namelist()) == ["fingerprints/0000.safetensors", "fingerprints/0001.safetensors",
                                              "manifest.json"]
        for ref in manifest["references"]:
            assert hashlib.sha256(archive.read(ref["file"])).hexdigest() == ref["sha256"]
    assert manifest["schema"] == "provenance.refs-bundle/1"
    assert manifest["database"]["revision"] == 3
    assert [r["name"] for r in manifest["references"]] == ["qwen2", "llama"]
    assert not [p for p in out.parent.iterdir() if p.name != "team.zip"]  # no temporary left behind

    target = tmp_path / "b.sqlite"
    code, _, err = _cli(capsys, "refs", "--refs", str(target), "import", str(out))
    assert code == 0, err
    with Registry(target) as registry, Registry(source) as original:
        assert registry.names() == ["llama", "qwen2"]
        assert registry.revision == 1  # one transaction, one revision
        for name in ("llama", "qwen2"):
            assert _same_fingerprint(registry.fingerprint(name), original.fingerprint(name))
            assert registry.entry(name).family == original.entry(name).family


def test_export_unknown_name_writes_nothing(prints, tmp_path, capsys):
    source = _db_with(tmp_path / "a.sqlite", prints, ["llama"])
    out = tmp_path / "out" / "b.zip"
    code, _, err = _cli(capsys, "refs", "--refs", str(source), "export", str(out), "--name", "llama", "--name", "nope")
    assert code == 1
    _one_error_line(err, str(source), "'nope'")
    assert not out.exists()


def test_export_is_atomic(prints, tmp_path, capsys, monkeypatch):
    source = _db_with(tmp_path / "a.sqlite", prints, ["llama", "qwen2"])
    out = tmp_path / "b.zip"
    out.write_bytes(b"previous bundle")
    real = Registry.fingerprint_blob
    calls = []

    def failing(self, name):
        calls.append(name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, name)

    monkeypatch.setattr(Registry, "fingerprint_blob", failing)
    code, _, err = _cli(capsys, "refs", "--refs", str(source), "export", str(out))
    assert code == 1 and "No space left" in err
    assert out.read_bytes() == b"previous bundle"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("a.sqlite")) == ["b.zip"]


def test_import_refuses_clashes_all_or_nothing(prints, tmp_path, capsys):
    bundle = tmp_path / "b.zip"
    _cli(capsys, "refs", "--refs", str(_db_with(tmp_path / "a.sqlite", prints, ["llama", "qwen2"])), "export", str(bundle))
    target = tmp_path / "t.sqlite"
    with Registry(target) as registry:
        add_reference(registry, "qwen2", fingerprint_for(prints["gpt2"]))  # same name, other weights
    code, _, err = _cli(capsys, "refs", "--refs", str(target), "import", str(bundle))
    assert code == 1
    _one_error_line(err, str(target), "'qwen2'", "--replace")
    with Registry(target) as registry:
        assert registry.names() == ["qwen2"] and registry.revision == 1
        assert _same_fingerprint(registry.fingerprint("qwen2"), fingerprint_for(prints["gpt2"]))
    code, _, err = _cli(capsys, "refs", "--refs", str(target), "import", str(bundle), "--replace")
    assert code == 0, err
    with Registry(target) as registry:
        assert registry.names() == ["llama", "qwen2"] and registry.revision == 2
        assert _same_fingerprint(registry.fingerprint("qwen2"), fingerprint_for(prints["qwen2"]))


def _write_bundle(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def _good_members(prints, names=("llama", "qwen2")) -> tuple[dict, list[tuple[str, bytes]]]:
    from provenance.registry import fingerprint_to_bytes

    refs, members = [], []
    for index, name in enumerate(names):
        blob = fingerprint_to_bytes(fingerprint_for(prints[name]))
        file = f"fingerprints/{index:04d}.safetensors"
        refs.append({"name": name, "file": file, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)})
        members.append((file, blob))
    return {"schema": "provenance.refs-bundle/1", "references": refs}, members


def _hostile(case: str, prints) -> tuple[list[tuple[str, bytes]] | bytes, str]:
    """A damaged or malicious bundle and a fragment its one-line error must contain."""
    manifest, members = _good_members(prints)
    m = lambda: [("manifest.json", json.dumps(manifest).encode())]  # noqa: E731
    if case == "not-a-zip":
        return random.Random(1).randbytes(4096), "not a valid zip"
    if case == "no-manifest":
        return members, "no manifest.json"
    if case == "manifest-not-json":
        return [("manifest.json", b"{not json")] + members, "not valid JSON"
    if case == "future-schema":
        manifest["schema"] = "provenance.refs-bundle/9"
        return m() + members, "newer than this tool reads"
    if case == "escaping-member":
        return m() + members + [("../../evil.safetensors", members[0][1])], "unexpected member '../../evil.safetensors'"
    if case == "absolute-member":
        return m() + members + [("/tmp/evil.sh", b"rm -rf /")], "unexpected member '/tmp/evil.sh'"
    if case == "escaping-manifest-file":
        manifest["references"][0]["file"] = "../evil.safetensors"
        return m() + members, "is not of the form"
    if case == "unlisted-member":
        manifest["references"].pop()
        return m() + members, "not listed in manifest.json"
    if case == "missing-member":
        return m() + members[:1], "has no such member"
    if case == "duplicate-member":
        return m() + members + [members[0]], "appears twice"
    if case == "duplicate-name":
        manifest["references"][1]["name"] = "llama"
        return m() + members, "'llama' appears twice"
    if case == "control-characters-in-name":
        manifest["references"][0]["name"] = "evil\x1b[2J"
        return m() + members, "printable"
    if case == "wrong-size":
        manifest["references"][1]["bytes"] += 1
        return m() + members, "the manifest says"
    if case == "sha256-mismatch":  # the second member altered: the first must not stay added
        data = bytearray(members[1][1])
        data[-1] ^= 0xFF
        members[1] = (members[1][0], bytes(data))
        return m() + members, "differs from the manifest"
    if case == "hash-ok-but-not-a-fingerprint":
        junk = random.Random(2).randbytes(len(members[1][1]))
        manifest["references"][1]["sha256"] = hashlib.sha256(junk).hexdigest()
        members[1] = (members[1][0], junk)
        return m() + members, "fingerprints/0001.safetensors"
    raise AssertionError(case)


HOSTILE = ["not-a-zip", "no-manifest", "manifest-not-json", "future-schema", "escaping-member", "absolute-member",
           "escaping-manifest-file", "unlisted-member", "missing-member", "duplicate-member", "duplicate-name",
           "control-characters-in-name", "wrong-size", "sha256-mismatch", "hash-ok-but-not-a-fingerprint"]


@pytest.mark.parametrize("case", HOSTILE)
def test_import_refuses_hostile_bundles(case, prints, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    content, fragment = _hostile(case, prints)
    bundle = tmp_path / "bundle.zip"
    if isinstance(content, bytes):
        bundle.write_bytes(content)
    else:
        with pytest.warns(UserWarning) if case == "duplicate-member" else contextlib.nullcontext():
            _write_bundle(bundle, content)
    db = _db_with(tmp_path / "db.sqlite", prints, ["gpt2"])
    code, out, err = _cli(capsys, "refs", "--refs", str(db), "import", str(bundle))
    assert code == 1 and out == ""
    _one_error_line(err, str(bundle), fragment)
    with Registry(db) as registry:
        assert registry.names() == ["gpt2"] and registry.revision == 1  # nothing added, not even the valid first one
    assert _integrity(db) == "ok"
    assert list(work.iterdir()) == []  # nothing extracted anywhere
    assert not list(tmp_path.rglob("evil*")) and not Path("/tmp/evil.sh").exists()


def test_import_caps_member_size(prints, tmp_path, capsys, monkeypatch):
    manifest, members = _good_members(prints, ("llama",))
    bundle = _write_bundle(tmp_path / "b.zip", [("manifest.json", json.dumps(manifest).encode())] + members)
    monkeypatch.setattr(bundle_module, "MAX_MEMBER_BYTES", len(members[0][1]) - 1)
    db = tmp_path / "db.sqlite"
    code, _, err = _cli(capsys, "refs", "--refs", str(db), "import", str(bundle))
    assert code == 1
    _one_error_line(err, str(bundle), "over the", "limit")
    with Registry(db) as registry:
        assert registry.names() == []


def test_import_rejects_bundle_with_future_fingerprint_schema(prints, tmp_path, capsys):
    from provenance.fingerprint.store import Fingerprint

    fp = fingerprint_for(prints["llama"])
    future = Fingerprint(meta={**fp.meta, "schema": "provenance.fingerprint/7"}, arrays=fp.arrays)
    from provenance.registry import fingerprint_to_bytes

    blob = fingerprint_to_bytes(future)
    manifest = {"schema": "provenance.refs-bundle/1", "references": [
        {"name": "x", "file": "fingerprints/0000.safetensors", "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}]}
    bundle = _write_bundle(tmp_path / "b.zip", [("manifest.json", json.dumps(manifest).encode()),
                                                 ("fingerprints/0000.safetensors", blob)])
    code, _, err = _cli(capsys, "refs", "--refs", str(tmp_path / "db.sqlite"), "import", str(bundle))
    assert code == 1
    _one_error_line(err, str(bundle), "newer than this tool reads")


# --- damaged databases ------------------------------------------------------------------------------

def test_corrupt_database_is_one_line(prints, tmp_path, capsys):
    db = tmp_path / "refs.sqlite"
    db.write_bytes(random.Random(0).randbytes(16384))
    for args in (["refs", "--refs", str(db), "list"], ["audit", str(prints["llama"]), "--refs", str(db)]):
        code, out, err = _cli(capsys, *args)
        assert code == 1 and out == ""
        _one_error_line(err, str(db), "not a usable reference database")


def test_future_schema_database_is_one_line(prints, tmp_path, capsys):
    db = _db_with(tmp_path / "refs.sqlite", prints, ["llama"])
    connection = sqlite3.connect(str(db))
    connection.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    connection.commit()
    connection.close()
    for args in (["refs", "--refs", str(db), "list"], ["refs", "--refs", str(db), "add", str(prints["qwen2"]), "--name", "q"],
                 ["audit", str(prints["qwen2"]), "--refs", str(db)]):
        code, out, err = _cli(capsys, *args)
        assert code == 1 and out == ""
        _one_error_line(err, str(db), "schema 2 is newer")


# --- concurrency and kills (subprocesses) -----------------------------------------------------------

def _spawn(*args: str, pause: tuple[str, ...] = ()) -> subprocess.Popen:
    """The command line in a subprocess; with pause=(SECONDS[, RESUME_FILE]) its writes pause before COMMIT."""
    command = [*PAUSED_CLI, *pause, "--", *args] if pause else [*CLI, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _wait_for_pause(process: subprocess.Popen, timeout: float = 120) -> None:
    """Read the writer's stderr until the hook says it is inside the transaction."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 0.2)
        if ready:
            line = process.stderr.readline()
            seen += line
            if PAUSE_MARKER in line:
                return
            if not line and process.poll() is not None:
                break
    raise AssertionError(f"the writer never reached its transaction: {seen}")


def _finish(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


@pytest.mark.slow
def test_two_audits_and_an_add_at_once(models, prints, tmp_path):
    """Two audits and two `refs add` on one database, the first writer held inside its transaction."""
    db = _db_with(tmp_path / "refs.sqlite", prints, ["llama"])
    resume = tmp_path / "resume"
    writer = _spawn("refs", "--refs", str(db), "add", str(models["gpt2"]), "--name", "new", pause=("300", str(resume)))
    try:
        _wait_for_pause(writer)
        # The writer now holds the write lock with its row inserted but not committed.
        audit = ["audit", str(models["qwen2"]), "--refs", str(db), "--no-builtin", "--json"]
        second_writer = _spawn("refs", "--refs", str(db), "add", str(prints["qwen2"]), "--name", "second")
        readers = [_spawn(*audit), _spawn(*audit)]
        for reader in readers:
            code, out, err = _finish(reader)
            assert code == 0, err
            report = json.loads(out)
            assert [r["reference"] for r in report["references"]] == ["llama"]  # the uncommitted row is invisible
            assert report["database"]["revision"] == 1
        assert writer.poll() is None  # the readers finished while the writer was still inside its transaction
    finally:
        resume.write_text("go")
    assert _finish(writer)[0] == 0
    code, out, err = _finish(second_writer)  # waited for the lock (busy timeout), then wrote
    assert code == 0, err
    # Not a terminal: the one result line, no progress bar.
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("added second "), err
    assert _integrity(db) == "ok"
    with Registry(db) as registry:
        assert registry.names() == ["llama", "new", "second"] and registry.revision == 3
        assert _same_fingerprint(registry.fingerprint("new"), fingerprint_for(models["gpt2"]))


@pytest.mark.slow
def test_add_killed_mid_write_is_all_or_nothing(models, prints, tmp_path):
    """SIGKILL a `refs add` inside its transaction (pause of 300 s) and around its COMMIT (pause of 0.5 s,
    killed 0.45 and 0.55 s after it began, and once well after)."""
    source = fingerprint_for(models["qwen2"])
    plans = [("300", 0.0), ("0.5", 0.45), ("0.5", 0.55), ("0.5", 5.0)]
    runs = []
    for index, (pause, _) in enumerate(plans):
        db = _db_with(tmp_path / f"kill{index}.sqlite", prints, ["llama"])
        runs.append((db, _spawn("refs", "--refs", str(db), "add", str(models["qwen2"]), "--name", "victim",
                                pause=(pause,))))

    def kill_after_pause(process: subprocess.Popen, delay: float) -> None:
        try:
            _wait_for_pause(process)
            time.sleep(delay)
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=60)

    # One thread per writer, so each kill lands `delay` seconds after that writer's own pause began.
    killers = [threading.Thread(target=kill_after_pause, args=(process, delay))
               for (_, delay), (_, process) in zip(plans, runs)]
    for killer in killers:
        killer.start()
    for killer in killers:
        killer.join(timeout=300)
    outcomes = []
    for db, process in runs:
        assert process.returncode is not None
        assert _integrity(db) == "ok"
        with Registry(db) as registry:
            names = registry.names()
            if "victim" in names:
                stored = registry.fingerprint("victim")
                assert _same_fingerprint(stored, source)
                assert compare_fingerprints(stored, source).verdict == "identical"
                assert registry.revision == 2
                outcomes.append("complete")
            else:
                assert names == ["llama"] and registry.revision == 1
                outcomes.append("absent")
                add_reference(registry, "victim", source)  # the killed writer's lock died with it
                assert registry.names() == ["llama", "victim"]
    print(f"kill outcomes for (pause s, kill after s) {plans}: {outcomes}")
    assert outcomes[0] == "absent"  # killed 300 s before its COMMIT


# --- progress bar -----------------------------------------------------------------------------------

def test_no_progress_text_when_stderr_is_not_a_terminal(models, tmp_path):
    code, out, err = _finish(_spawn("fingerprint", str(models["llama"]), "-o", str(tmp_path / "fp.safetensors")))
    assert code == 0 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("wrote "), err
    assert "\r" not in err and "%|" not in err and "tensor/s" not in err


def _run_on_terminal(*args: str) -> str:
    """Run the CLI with stderr on a pseudo-terminal (100 columns); return what the terminal showed."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=120)
    os.close(master)
    assert process.returncode == 0, shown
    return shown.decode("utf-8", errors="replace")


def test_progress_bar_on_a_real_terminal(models, tmp_path):
    # --no-cache: the bar shows work being done, and the model may be in this run's fingerprint cache
    shown = _run_on_terminal("fingerprint", str(models["llama"]), "-o", str(tmp_path / "a.safetensors"), "--no-cache")
    assert "fingerprinting:" in shown and "tensor" in shown and "%|" in shown and "wrote " in shown


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("args, bar", [
    (["fingerprint", "{llama}", "-o", "{tmp}/a.safetensors"], True),
    (["fingerprint", "{llama}", "-o", "{tmp}/b.safetensors", "--no-progress"], False),
    (["audit", "{llama}", "--no-builtin", "--refs", "{tmp}/db.sqlite"], True),
    (["audit", "{llama}", "--no-builtin", "--refs", "{tmp}/db.sqlite", "--json"], False),
    (["audit", "{llama}", "--no-builtin", "--refs", "{tmp}/db.sqlite", "--no-progress"], False),
    (["refs", "--refs", "{tmp}/db.sqlite", "add", "{llama}", "--name", "x"], True),
    (["refs", "--refs", "{tmp}/db.sqlite", "add", "{llama}", "--name", "x", "--no-progress"], False),
    (["audit", "{llama_fp}", "--no-builtin", "--refs", "{tmp}/db.sqlite"], False),  # a saved fingerprint: no work to show
])
def test_progress_bar_only_when_wanted(args, bar, models, prints, tmp_path, monkeypatch):
    monkeypatch.setenv("PROVENANCE_NO_CACHE", "1")  # the bar shows fingerprinting work; a cache hit has none
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    values = {"llama": str(models["llama"]), "llama_fp": str(prints["llama"]), "tmp": str(tmp_path)}
    Registry(tmp_path / "db.sqlite").close()  # audits read only an existing database
    assert main([a.format(**values) for a in args]) == 0
    shown = terminal.getvalue()
    assert ("fingerprinting" in shown and "tensor" in shown) is bar, shown


def test_progress_helper(monkeypatch):
    from provenance import progress

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert progress.wanted() is True
    assert progress.wanted(json_output=True) is False and progress.wanted(disabled=True) is False
    with progress.tensor_progress("fingerprinting", True) as on_tensor:
        for done in range(1, 4):
            on_tensor(done, 3)
    shown = terminal.getvalue()
    assert "fingerprinting:" in shown and "/3 [" in shown and "tensor" in shown
    assert shown.endswith("\r") and shown.rstrip("\r").split("\r")[-1].strip() == ""  # erased when done
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress.wanted() is False
