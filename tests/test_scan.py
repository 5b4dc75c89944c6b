"""`provenance scan`: one line per candidate, errors as lines, the same audits as `provenance audit`,
resume and repair, a dead worker, the reference set read once per process, Ray == pool."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from provenance import batch as scan
from provenance import cli
from provenance.fingerprint.load import fingerprint_for
from provenance.gate import EXIT_CANDIDATE_ERRORS
from provenance.audit.shortlist import add_reference
from provenance.registry import Registry

from .builders import BUILDERS


def _variant(base: Path, out: Path, change) -> Path:
    """A copy of the checkpoint at `base` with every tensor passed through change(name, tensor)."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True)
    shutil.copy(base / "config.json", out / "config.json")
    state = load_file(str(base / "model.safetensors"))
    save_file({k: change(k, v).contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    return out


def _reseeded(seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed)
    return lambda name, t: torch.randn(t.shape, generator=generator).to(t.dtype)


def _noisy(scale: float):
    import torch

    generator = torch.Generator().manual_seed(7)
    return lambda name, t: t + scale * t.float().std() * torch.randn(t.shape, generator=generator).to(t.dtype)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small refs DB (two generated LLaMAs) and candidates: copies, a derivative, an independent model,
    a fingerprint file, a corrupt file and a missing path."""
    root = tmp_path_factory.mktemp("scan")
    base = BUILDERS["llama"](root / "base").path
    other = _variant(base, root / "other", _reseeded(11))
    db = root / "refs.sqlite"
    with Registry(db) as registry:
        add_reference(registry, "base", fingerprint_for(base))
        add_reference(registry, "other", fingerprint_for(other))
    copy = root / "candidates" / "copy"
    shutil.copytree(base, copy)
    noisy = _variant(base, root / "candidates" / "noisy", _noisy(0.2))
    fresh = _variant(base, root / "candidates" / "fresh", _reseeded(12))
    other_fp = fingerprint_for(other).save(root / "candidates" / "other.fp.safetensors")
    corrupt = root / "candidates" / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    missing = root / "candidates" / "missing-model"
    candidates = [str(p) for p in (copy, noisy, fresh, other_fp, corrupt, missing)]
    return {"root": root, "db": str(db), "candidates": candidates, "ok": candidates[:4],
            "corrupt": str(corrupt), "missing": str(missing)}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# Fields that measure the run rather than the candidate: timings, and whether this audit was the one that
# stored a missing screening signature in the database.
VOLATILE = {"seconds", "finished", "signatures_backfilled"}


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


@pytest.fixture(scope="module")
def pool_scan(corpus):
    """`provenance scan` on the default executor (a local process pool, 2 workers), through the CLI."""
    out = corpus["root"] / "pool.jsonl"
    listing = corpus["root"] / "list.txt"
    # The list file: comments, blank lines, a duplicate; the last two candidates as arguments.
    listing.write_text("# candidates\n\n" + "\n".join(corpus["candidates"][:4]) + "\n  \n" + corpus["candidates"][0] + "\n")
    code = cli.main(["scan", *corpus["candidates"][4:], "--from", str(listing), "-o", str(out),
                     "--refs", corpus["db"], "--workers", "2"])
    assert code == EXIT_CANDIDATE_ERRORS  # the corrupt and the missing candidate became error lines
    return out


def test_pool_writes_one_line_per_candidate_and_errors_as_lines(corpus, pool_scan):
    records = _lines(pool_scan)
    assert sorted(r["candidate"] for r in records) == sorted(corpus["candidates"])
    by_name = {r["candidate"]: r for r in records}
    assert {c for c, r in by_name.items() if r["status"] == "ok"} == set(corpus["ok"])
    corrupt, missing = by_name[corpus["corrupt"]], by_name[corpus["missing"]]
    assert corrupt["status"] == missing["status"] == "error"
    assert corrupt["error"].startswith(corpus["corrupt"]) and "\n" not in corrupt["error"]
    assert missing["error"].startswith(f"{corpus['missing']}: no such file or directory")  # the same words as audit
    # The copy is identical to the reference it was copied from; the fingerprint file to its own.
    assert (by_name[corpus["ok"][0]]["audit"]["verdict"], by_name[corpus["ok"][0]]["audit"]["best_reference"]) == ("identical", "base")
    assert (by_name[corpus["ok"][3]]["audit"]["verdict"], by_name[corpus["ok"][3]]["audit"]["best_reference"]) == ("identical", "other")


def test_pool_audits_equal_audit_one_by_one(corpus, pool_scan, capsys):
    by_name = {r["candidate"]: r for r in _lines(pool_scan)}
    for candidate in corpus["ok"]:
        capsys.readouterr()
        assert cli.main(["audit", candidate, "--refs", corpus["db"], "--json"]) == 0
        assert _stable(by_name[candidate]["audit"]) == _stable(json.loads(capsys.readouterr().out))
    for candidate in (corpus["corrupt"], corpus["missing"]):
        assert cli.main(["audit", candidate, "--refs", corpus["db"], "--json"]) == 1
        assert capsys.readouterr().err.strip() == f"provenance: error: {by_name[candidate]['error']}"


def test_rerun_skips_everything_and_fail_on(corpus, pool_scan, capsys):
    before = pool_scan.read_bytes()
    capsys.readouterr()
    # Nothing left to do: no pool is started, the file is unchanged; the copy reached `identical`.
    assert cli.main(["scan", *corpus["candidates"], "-o", str(pool_scan), "--refs", corpus["db"],
                     "--fail-on", "identical"]) == 3
    err = capsys.readouterr().err
    assert "0 audited now" in err and f"{len(corpus['candidates'])} skipped" in err
    assert pool_scan.read_bytes() == before
    assert cli.main(["scan", *corpus["ok"], "-o", str(pool_scan), "--refs", corpus["db"], "--fail-on", "error"]) == 0
    assert cli.main(["scan", *corpus["candidates"], "-o", str(pool_scan), "--refs", corpus["db"], "--fail-on", "error"]) == 3
    assert cli.main(["scan", *corpus["candidates"], "-o", str(pool_scan), "--refs", corpus["db"]]) == EXIT_CANDIDATE_ERRORS


class _CountingFingerprints:
    def __init__(self, monkeypatch):
        import provenance.fingerprint.load as load

        self.calls: list[str] = []
        original = load.fingerprint_for

        def counting(path, *args, **kwargs):
            self.calls.append(str(path))
            return original(path, *args, **kwargs)

        monkeypatch.setattr(load, "fingerprint_for", counting)


def test_resume_skips_done_repairs_partial_line_and_retries_errors(corpus, tmp_path, monkeypatch):
    counter = _CountingFingerprints(monkeypatch)
    settings = scan.AuditSettings(corpus["db"])
    inline = scan.executor(0, settings=settings)
    out = tmp_path / "out.jsonl"
    first, rest = corpus["candidates"][:2], corpus["candidates"][2:]
    summary = scan.scan(first, out, inline)
    assert (summary.audited, summary.skipped, counter.calls) == (2, 0, first)
    done = out.read_bytes()
    # A run killed in the middle of a write leaves a line without its newline.
    partial = b'{"candidate": "' + rest[0].encode() + b'", "status": "o'
    with open(out, "ab") as handle:
        handle.write(partial)
    counter.calls.clear()
    summary = scan.scan(corpus["candidates"], out, inline)
    assert summary.repaired_bytes == len(partial)
    assert (summary.audited, summary.skipped) == (len(rest), 2)
    # the cut-off candidate is audited again, the done ones are not (a missing path fails before fingerprinting)
    assert counter.calls == [c for c in rest if c != corpus["missing"]]
    text = out.read_bytes()
    assert text.startswith(done) and text.endswith(b"\n")
    records = _lines(out)
    assert [r["candidate"] for r in records] == corpus["candidates"]
    # Errors are done too, unless --retry-errors: then only they are audited again, and the last line counts.
    counter.calls.clear()
    assert scan.scan(corpus["candidates"], out, inline).audited == 0 and counter.calls == []
    summary = scan.scan(corpus["candidates"], out, inline, retry_errors=True)
    assert counter.calls == [corpus["corrupt"]]  # the missing path is tried again too, and fails before fingerprinting
    assert (summary.audited, summary.errors, len(_lines(out))) == (2, 2, len(corpus["candidates"]) + 2)


def test_output_that_is_not_a_scan_is_refused(tmp_path, capsys):
    out = tmp_path / "notes.jsonl"
    out.write_text('{"candidate": "a", "status": "ok"}\nhello\n')
    assert cli.main(["scan", "whatever", "-o", str(out), "--workers", "0"]) == 1
    assert capsys.readouterr().err.strip() == f"provenance: error: {out}: line 2 is not JSON; is this a scan output file?"
    assert out.read_text().endswith("hello\n")


def test_reference_set_is_read_once_per_process(corpus, tmp_path, monkeypatch):
    import provenance.audit.builtin as audit
    import provenance.registry.database as registry_module

    db = tmp_path / "refs.sqlite"
    shutil.copy(corpus["db"], db)
    reads = {"db": [], "builtin": 0}
    original_db, original_builtin = registry_module.Registry.fingerprint, audit.load_fingerprint

    def db_read(self, name):
        reads["db"].append(name)
        return original_db(self, name)

    def builtin_read(path):
        reads["builtin"] += 1
        return original_builtin(path)

    monkeypatch.setattr(registry_module.Registry, "fingerprint", db_read)
    monkeypatch.setattr(audit, "load_fingerprint", builtin_read)
    builtin_count = len(list(audit.builtin_references()))
    settings = scan.AuditSettings(str(db))
    records = list(scan.run_inline(corpus["ok"][:3], settings))
    assert [r["status"] for r in records] == ["ok"] * 3
    compared = [row["reference"] for r in records for row in r["audit"]["references"] if row["origin"] == str(db)]
    # Each database reference is read once, however many candidates it is compared with.
    assert sorted(reads["db"]) == sorted(set(compared)) and len(compared) > len(reads["db"])
    assert reads["builtin"] <= builtin_count
    # A reference added while the scan runs is seen by the next candidate (the revision changed).
    with Registry(db) as registry:
        add_reference(registry, "copy-of-base", fingerprint_for(corpus["ok"][0]))
        revision = registry.revision
    reads["db"].clear()
    record = scan.audit_candidate(corpus["ok"][0], settings)
    assert record["audit"]["database"]["revision"] == revision
    compared = [row["reference"] for row in record["audit"]["references"] if row["origin"] == str(db)]
    assert "copy-of-base" in compared and sorted(reads["db"]) == sorted(compared)


def _die_on_crash(candidate: str, settings: scan.AuditSettings) -> dict:
    """A task that kills its own worker process (as the kernel's OOM killer would) on `crash` candidates."""
    if "crash" in candidate:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"candidate": candidate, "status": "ok", "audit": {"verdict": "unrelated", "references": []}, "pid": os.getpid()}


def test_dead_worker_becomes_an_error_line_and_the_batch_goes_on(tmp_path):
    out = tmp_path / "out.jsonl"
    candidates = ["a", "b", "crash-1", "c", "d", "e", "crash-2", "f"]
    run = scan.executor(2, settings=scan.AuditSettings(), task=_die_on_crash, max_tasks_per_worker=2)
    summary = scan.scan(candidates, out, run)
    records = {r["candidate"]: r for r in _lines(out)}
    assert sorted(records) == sorted(candidates)
    assert {c for c, r in records.items() if r["status"] == "error"} == {"crash-1", "crash-2"}
    assert records["crash-1"]["error"] == f"crash-1: {scan.WORKER_DIED}"
    assert summary.errors == 2
    # Workers are replaced after max_tasks_per_worker candidates: more than two processes did the work.
    assert len({r["pid"] for r in records.values() if r["status"] == "ok"}) > 2


def test_candidate_list_parsing_and_usage_errors(tmp_path, capsys, monkeypatch):
    listing = tmp_path / "list.txt"
    listing.write_text("# header\n\n  a/model  \nhttps://example.org/org/model#main\n#b\nc.gguf\n")
    assert scan.read_candidate_list(str(listing)) == ["a/model", "https://example.org/org/model#main", "c.gguf"]
    out = str(tmp_path / "out.jsonl")
    assert cli.main(["scan", "--from", str(tmp_path / "nope.txt"), "-o", out]) == 1
    assert capsys.readouterr().err.strip() == f"provenance: error: {tmp_path / 'nope.txt'}: candidate list not found"
    assert cli.main(["scan", "-o", out]) == 2
    assert cli.main(["scan", "x", "-o", out, "--fail-on", "identical,bogus"]) == 2
    assert cli.main(["scan", "--ray", "x", "-o", out]) == 2  # `x` is a candidate, not a Ray address
    capsys.readouterr()
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if ray were not installed
    assert cli.main(["scan", "x", "-o", out, "--ray"]) == 1
    assert "pip install 'provenance[ray]'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.ray
def test_ray_gives_the_same_results_as_the_pool(corpus, pool_scan, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray.jsonl"
    summary = scan.scan(corpus["candidates"], out, scan.executor(2, use_ray=True,
                                                                  settings=scan.AuditSettings(corpus["db"])))
    assert summary.audited == len(corpus["candidates"])
    by_ray = {r["candidate"]: _stable(r) for r in _lines(out)}
    by_pool = {r["candidate"]: _stable(r) for r in _lines(pool_scan)}
    assert by_ray == by_pool
