"""Issue 24: the command line as a CI gate: exit codes it can trust, folders as users hold them, honest scope.

Each test runs `cli.main` in this process (tests/inprocess.py) on a tiny
LLaMA (hidden 32, 2 layers) and its database, with `--no-builtin` where the
built-in references add nothing but time.
"""

from __future__ import annotations

import contextlib
import os
import io
import json
import shutil
from pathlib import Path

import pytest

from provenance import cli
from provenance.registry import Registry
from provenance.gate import EXIT_CANDIDATE_ERRORS, EXIT_FAIL_ON, EXIT_INTERRUPTED, parse_fail_on

from .builders import llama_model
from .inprocess import run_cli

TINY = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny LLaMA `base` in a database, a copy of it, and an independent model."""
    root = tmp_path_factory.mktemp("gate")
    for name, seed in (("base", 0), ("other", 7)):
        model, _ = llama_model(seed, **TINY)
        model.save_pretrained(root / name)
    shutil.copytree(root / "base", root / "copy")
    db = root / "refs.sqlite"
    added = run_cli("refs", "--refs", db, "add", root / "base", "--name", "base", "--no-progress")
    assert added.returncode == 0, added.stderr
    Registry(root / "empty.sqlite", create=True).close()
    return {"root": root, "db": str(db), "empty": str(root / "empty.sqlite"), "base": str(root / "base"), "copy": str(root / "copy"),
            "other": str(root / "other")}


class _ClosedPipe(io.StringIO):
    """stdout whose reader has gone (`| true`, `| head -0`): every write fails as a closed pipe does."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def _main_with_closed_stdout(*args: str) -> int:
    with contextlib.redirect_stdout(_ClosedPipe()), contextlib.redirect_stderr(io.StringIO()):
        return cli.main([str(a) for a in args])


# -- exit codes a gate can trust ------------------------------------------------------------------------------


def test_closed_pipe_never_turns_an_accusation_into_a_pass(world):
    args = ("audit", world["copy"], "--refs", world["db"], "--no-builtin", "--no-progress", "--fail-on", "identical")
    assert run_cli(*args).returncode == EXIT_FAIL_ON
    assert _main_with_closed_stdout(*args) == EXIT_FAIL_ON
    assert _main_with_closed_stdout(*args[:-2]) == 0  # nothing to fail on: the lost output is no error


def test_scan_exits_4_when_a_candidate_could_not_be_audited(world, tmp_path):
    missing = tmp_path / "absent"
    done = run_cli("scan", missing, tmp_path / "absent2", "-o", tmp_path / "out.jsonl", "--workers", "0",
                   "--no-builtin", "--fail-on", "derived")
    assert done.returncode == EXIT_CANDIDATE_ERRORS, done.stderr
    assert "2 candidates could not be audited" in done.stderr
    # `error` named in --fail-on makes it a --fail-on exit, like any other name.
    again = run_cli("scan", missing, "-o", tmp_path / "out.jsonl", "--workers", "0", "--no-builtin", "--fail-on", "error")
    assert again.returncode == EXIT_FAIL_ON


def test_fail_on_names_are_case_insensitive_and_include_abstained_and_error(world):
    assert parse_fail_on(" DERIVED,Identical ,error,ABSTAINED") == {"derived", "identical", "error", "abstained"}
    with pytest.raises(ValueError, match="bogus"):
        parse_fail_on("derived,bogus")
    upper = run_cli("audit", world["copy"], "--refs", world["db"], "--no-builtin", "--no-progress", "--fail-on", "IDENTICAL")
    assert upper.returncode == EXIT_FAIL_ON, upper.stderr
    # No reference at all: nothing was decided, which `abstained` fails on and a verdict list does not.
    alone = ("audit", world["other"], "--no-builtin", "--no-progress", "--refs", world["empty"])
    assert run_cli(*alone, "--fail-on", "derived,identical").returncode == 0
    assert run_cli(*alone, "--fail-on", "Abstained").returncode == EXIT_FAIL_ON


def test_ctrl_c_exits_130_and_never_says_added(world, tmp_path, monkeypatch):
    from provenance.audit import shortlist

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shortlist, "add_reference", interrupted)
    db = tmp_path / "refs.sqlite"
    done = run_cli("refs", "--refs", db, "add", world["other"], "--name", "other", "--no-progress", "--create")
    assert done.returncode == EXIT_INTERRUPTED
    assert "added" not in done.stderr and "interrupted" in done.stderr
    monkeypatch.undo()
    assert "other" not in run_cli("refs", "--refs", db, "list").stdout


# -- tests never write outside their temporary folders ---------------------------------------------------------


def test_the_run_reads_and_writes_no_folder_of_the_user(world):
    from provenance.fingerprint.cache import default_directory
    from provenance.registry import default_path

    from .conftest import REAL_USER_FOLDERS, REAL_USER_STATE, TEST_HOME, folder_state

    assert default_path().is_relative_to(TEST_HOME)  # `refs add` without --refs writes here, not in ~/.local/share
    assert Path(os.environ["HF_HOME"]).is_relative_to(TEST_HOME) and Path.home().is_relative_to(TEST_HOME)
    assert not any(Path(default_directory()).is_relative_to(real) for real in REAL_USER_FOLDERS)
    assert folder_state(REAL_USER_FOLDERS) == REAL_USER_STATE  # nothing so far (the end of the run checks again)


# -- folders as users hold them ---------------------------------------------------------------------------------


def test_a_mistyped_local_path_never_goes_to_the_network(world, tmp_path, monkeypatch):
    from provenance.remote import hub

    def no_network(*args, **kwargs):
        raise AssertionError("a request left the machine")

    monkeypatch.setattr(hub, "hub_location", no_network)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fixtures").mkdir()
    done = run_cli("audit", "fixtures/suspec", "--no-builtin", "--no-progress", "--fail-on", "derived")
    assert done.returncode == 1
    assert "fixtures/suspec: no such file or directory" in done.stderr and "--hub" in done.stderr
    assert "hf://" not in done.stderr.split("write")[0]  # not read as hf://fixtures/suspec


def test_a_folder_holding_a_fingerprint_is_read_as_that_fingerprint(world, tmp_path):
    folder = tmp_path / "fpdir"
    folder.mkdir()
    made = run_cli("fingerprint", world["copy"], "-o", folder / "copy.safetensors", "--no-progress")
    assert made.returncode == 0, made.stderr
    gate = ("--refs", world["db"], "--no-builtin", "--no-progress", "--fail-on", "derived,identical,assembled", "--json")
    as_file = run_cli("audit", folder / "copy.safetensors", *gate)
    as_folder = run_cli("audit", folder, *gate)
    assert as_file.returncode == as_folder.returncode == EXIT_FAIL_ON, as_folder.stderr
    assert json.loads(as_folder.stdout)["verdict"] == json.loads(as_file.stdout)["verdict"] == "identical"
    shutil.copy(folder / "copy.safetensors", folder / "second.safetensors")
    two = run_cli("audit", folder, *gate)
    assert two.returncode == 1 and "2 fingerprint files" in two.stderr and "second.safetensors" in two.stderr


def test_scan_of_a_folder_of_model_folders_scans_each_model(world, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("base", "other"):
        shutil.copytree(world[name], models / name)
    (models / "notes").mkdir()
    out = tmp_path / "out.jsonl"
    done = run_cli("scan", models, "-o", out, "--workers", "0", "--refs", world["db"], "--no-builtin",
                   "--fail-on", "identical")
    assert done.returncode == EXIT_FAIL_ON, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["candidate"] for r in records) == [str(models / "base"), str(models / "other")]
    assert all(r["status"] == "ok" for r in records)
    assert "scanning its 2 model folders; 1 sub-folders without weights left out" in done.stderr
