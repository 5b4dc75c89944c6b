"""The Python API: provenance.compare_models / audit_model / fingerprint_model return the typed results the command
line renders; the old names in provenance.api still work, with a DeprecationWarning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import provenance
from provenance.cli import main

from .builders import build_llama, build_qwen2

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    return {"llama": build_llama(root / "llama").path, "qwen2": build_qwen2(root / "qwen2").path, "root": root}


def test_import_is_light_and_submodules_still_import():
    code = ("import sys, types, provenance; light = not ({'torch', 'numpy'} & set(sys.modules)); "
            "import provenance.audit as a; from provenance.compare import Comparison; "
            "import provenance.fingerprint.load as load; from provenance import audit; "
            "print(light, callable(provenance.compare_models), a.SCHEMA, audit.SCHEMA, Comparison.__name__, "
            "load.fingerprint_for.__name__, callable(provenance.audit_model), callable(provenance.fingerprint_model), "
            "all(isinstance(m, types.ModuleType) for m in (provenance.compare, provenance.audit, provenance.fingerprint)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "provenance.audit/1", "provenance.audit/1", "Comparison",
                                     "fingerprint_for", "True", "True", "True"]


def test_subpackages_are_reached_as_attributes_before_an_import():
    code = ("import provenance; print(provenance.compare.Comparison.__name__, provenance.audit.SCHEMA, "
            "provenance.fingerprint.Fingerprint.__name__, type(provenance.compare).__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Comparison", "provenance.audit/1", "Fingerprint", "module"]


def test_the_old_api_names_still_work_with_a_deprecation_warning(models):
    with pytest.warns(DeprecationWarning, match="provenance.fingerprint_model"):
        fp = provenance.api.fingerprint(models["llama"])
    with pytest.warns(DeprecationWarning, match="provenance.compare_models"):
        assert provenance.api.compare(fp, models["llama"]).verdict == "identical"
    with pytest.warns(DeprecationWarning, match="provenance.audit_model"):
        rows = provenance.api.audit(fp, include_builtin=False)
    assert len(rows) == 0 and rows.best is None


def test_fingerprint_returns_a_fingerprint(models, tmp_path):
    from provenance.fingerprint import Fingerprint

    fp = provenance.fingerprint_model(models["llama"])
    assert isinstance(fp, Fingerprint)
    assert fp.architecture["num_layers"] == 2 and fp.meta["source"]["path"] == str(models["llama"])
    saved = fp.save(tmp_path / "llama.fp.safetensors")
    again = provenance.fingerprint_model(saved)  # a saved fingerprint is read, not rebuilt
    assert again.meta == fp.meta


def test_compare_returns_a_comparison_like_the_command_line(models, capsys):
    from provenance.compare import Comparison

    same = provenance.compare_models(models["llama"], models["llama"])
    assert isinstance(same, Comparison) and same.verdict == "identical" and not same.abstained
    other = provenance.compare_models(models["llama"], models["qwen2"])
    assert other.verdict not in ("identical", "derived", "assembled")
    # Fingerprints are accepted too, and give the same verdict.
    fp = provenance.fingerprint_model(models["llama"])
    assert provenance.compare_models(fp, models["llama"]).verdict == "identical"
    # The JSON helper equals `provenance compare --json`.
    assert main(["compare", str(models["llama"]), str(models["qwen2"]), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    api = provenance.api.compare_json(str(models["llama"]), str(models["qwen2"]))
    assert api["verdict"] == cli["verdict"] == other.verdict
    assert api["evidence"] == cli["evidence"] and api["candidate"] == cli["candidate"]


def test_audit_returns_ranked_rows(models, tmp_path):
    from provenance.audit import AuditResult, AuditRow
    from provenance.errors import ProvenanceError
    from provenance.registry import Registry

    db = tmp_path / "refs.sqlite"
    with Registry(db) as registry:
        registry.add("tiny-llama", provenance.fingerprint_model(models["llama"]))
        registry.add("tiny-qwen2", provenance.fingerprint_model(models["qwen2"]))
    rows = provenance.audit_model(models["llama"], refs=db, include_builtin=False)
    assert all(isinstance(r, AuditRow) for r in rows)
    # an AuditResult, read as the documented row list, with the rest of the audit beside the rows
    assert isinstance(rows, AuditResult) and list(rows) == list(rows.rows) and len(rows) == 2
    assert rows.screening is not None and rows.database["path"] == str(db)
    assert rows.best is rows[0] and rows.best_match.row is rows[0] and rows.candidate_path == str(models["llama"])
    assert (rows[0].reference, rows[0].result.verdict) == ("tiny-llama", "identical")
    assert {r.reference for r in rows} == {"tiny-llama", "tiny-qwen2"}
    report = provenance.api.audit_json(str(models["llama"]), refs=db, include_builtin=False)
    assert report["verdict"] == "identical" and report["best_reference"] == "tiny-llama"
    with pytest.raises(ProvenanceError, match="no reference database"):
        provenance.audit_model(models["llama"], refs=tmp_path / "typo.sqlite")
    assert not (tmp_path / "typo.sqlite").exists()
    with pytest.raises(ProvenanceError, match="no such file"):
        provenance.compare_models(tmp_path / "nothing", models["llama"])
