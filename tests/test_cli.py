"""The command line contract: exit codes, one-line errors, JSON on stdout.

Most tests run `cli.main` in this process (tests/inprocess.py); the first two
run the script itself, for what only a fresh process shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .builders import llama_model
from .inprocess import run_cli

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, timeout=300)


def test_help_does_not_import_torch():
    code = "import sys, provenance.cli as c; c.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "False"


def test_usage_error_exits_2():
    result = run_script("inspect")  # the script's own exit status
    assert result.returncode == 2
    result = run_cli("no-such-command")
    assert result.returncode == 2


def test_missing_path_is_one_line_exit_1(tmp_path):
    missing = tmp_path / "nothing-here"
    result = run_cli("inspect", str(missing))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(missing) in lines[0] and "no such file" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_debug_env_shows_traceback(tmp_path):
    import os

    env = dict(os.environ, PROVENANCE_DEBUG="1")
    (tmp_path / "bad.safetensors").write_bytes(b"\x01")
    result = run_cli("inspect", str(tmp_path / "bad.safetensors"), env=env)
    assert result.returncode == 1
    assert "Traceback" in result.stderr


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    model, _ = llama_model(0, vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2)
    path = tmp_path_factory.mktemp("llama")
    model.save_pretrained(path)
    (path / "README.md").write_text("---\nbase_model:\n- meta-llama/Llama-2-7b-hf\nlicense: mit\n---\n# my model\n")
    return path


def test_inspect_json_contract(tiny_llama):
    result = run_cli("inspect", str(tiny_llama), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["schema"] == "provenance.inspect/1"
    assert report["format"] == "safetensors"
    assert report["family"]["name"] == "llama"
    arch = report["architecture"]
    assert (arch["num_layers"], arch["hidden_size"], arch["num_heads"], arch["num_kv_heads"]) == (2, 32, 4, 2)
    assert all(len(f["sha256"]) == 64 for f in report["files"])
    roles = {r["role"] for r in report["roles"]}
    assert "layers.1.attn.q.weight" in roles and "embed.weight" in roles
    claims = {(c["where"], c["value"]) for c in report["lineage_claims"]}
    assert ("model card base_model", "meta-llama/Llama-2-7b-hf") in claims
    assert all(c["verified"] is False for c in report["lineage_claims"])


def test_inspect_text(tiny_llama):
    result = run_cli("inspect", str(tiny_llama), "--no-hash")
    assert result.returncode == 0, result.stderr
    assert "family: llama" in result.stdout
    assert "attn.q" in result.stdout and "layers 0-1" in result.stdout
    assert "unverified" in result.stdout


def test_fingerprint_and_compare_json_contract(tiny_llama, tmp_path):
    out = tmp_path / "tiny.fp.safetensors"
    result = run_cli("fingerprint", str(tiny_llama), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.is_file() and result.stdout == ""
    result = run_cli("compare", str(out), str(tiny_llama), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["schema"] == "provenance.compare/1"
    assert report["verdict"] == "identical"
    assert 0.0 <= report["confidence"] <= 1.0
    for side in ("candidate", "reference"):
        assert {"path", "format", "architecture"} <= set(report[side])
    assert report["evidence"] and all({"signal", "value", "p_value", "detail"} <= set(e) for e in report["evidence"])
    assert [row["candidate_layer"] for row in report["layers"]] == [0, 1]
    assert all({"candidate_layer", "reference_layer", "similarity", "p_value"} <= set(r) for r in report["layers"])
    assert isinstance(report["renamed_tensors"], list)
    text = run_cli("compare", str(out), str(tiny_llama))
    assert text.returncode == 0 and text.stdout.startswith("verdict: IDENTICAL")


def test_corrupt_fingerprint_is_one_line_error(tmp_path):
    from safetensors.numpy import save_file
    import numpy as np

    bad = tmp_path / "future.fp.safetensors"
    save_file({"x": np.zeros(3, dtype=np.float32)}, str(bad),
              metadata={"provenance": json.dumps({"schema": "provenance.fingerprint/99"})})
    result = run_cli("compare", str(bad), str(bad))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "newer" in result.stderr
