"""Regression gate: the small slice of the provenance zoo against its committed baseline.

Builds the slice (trained tiny LLaMA and GPT-2 bases and their derivatives,
about half a minute), runs every comparison, and fails if a case the baseline
got right goes wrong, if any independent pair is accused, or if a case that
lists the edit it shows gets a summary that does not name it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and trains the slice: the longest run of the suite

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "bench" / "zoo_baseline_small.json"
ACCUSATIONS = {"identical", "derived", "assembled"}


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    build = subprocess.run([sys.executable, "-m", "bench.zoo.build", "--out", str(out), "--slice", "small"],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-2000:]
    results = out / "results.json"
    run = subprocess.run([sys.executable, "bench/run_zoo.py", str(out), "--json", str(results)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    return out, {r["id"]: r for r in json.loads(results.read_text())["results"]}


@pytest.fixture(scope="module")
def small_zoo_results(small_zoo):
    return small_zoo[1]


def test_no_independent_pair_is_accused(small_zoo_results):
    accused = [case for case, r in small_zoo_results.items() if not r["positive"] and r["verdict"] in ACCUSATIONS]
    assert not accused


def test_no_regression_against_baseline(small_zoo_results):
    baseline = json.loads(BASELINE.read_text())["cases"]
    assert set(baseline) <= set(small_zoo_results), "cases disappeared from the slice"
    regressed = {case: (b["verdict"], small_zoo_results[case]["verdict"]) for case, b in baseline.items()
                 if b["correct"] and not small_zoo_results[case]["correct"]}
    assert not regressed


def test_every_case_that_lists_an_edit_names_it(small_zoo_results):
    """Cases with `edits` (bench/zoo/disguise.py, prune-layers, depth-upscale): the summary of a right verdict names
    the edit (width or depth pruning, experts partitioning the MLP, pooled KV heads, a replaced vocabulary, layers
    repeated or reordered)."""
    listed = {case: r for case, r in small_zoo_results.items() if r.get("expected_edits")}
    assert len(listed) >= 10
    unnamed = {case: r["summary"] for case, r in listed.items() if r["correct"] and not r["edits_named"]}
    assert not unnamed


def test_audit_names_the_true_reference_for_every_positive_case(small_zoo, tmp_path):
    """`audit` against a database of every reference model of the slice plus the built-in references
    ranks the true reference first for each identical/derived/assembled case the pairwise comparison gets."""
    from provenance.audit import run_audit
    from provenance.fingerprint.store import load_fingerprint
    from provenance.audit.shortlist import add_reference
    from provenance.registry import Registry

    out, results = small_zoo
    cases = json.loads((out / "cases.json").read_text())["cases"]
    cached = lambda name: load_fingerprint(out / "fingerprints" / f"{name}.safetensors")  # written by run_zoo.py
    positives = [c for c in cases if c["positive"] and results[c["id"]]["accused"]]
    assert positives
    with Registry(tmp_path / "refs.sqlite") as registry:
        for name in sorted({c["reference"] for c in cases}):
            add_reference(registry, name, cached(name))
        wrong = {}
        for case in positives:
            best = run_audit(cached(case["candidate"]), registry)[0]
            sources = {case["reference"], *(src for src, _ in case.get("layer_sources") or [])}  # assembled: any source
            if best.reference not in sources or best.result.verdict not in ACCUSATIONS:
                wrong[case["id"]] = (best.reference, best.result.verdict)
    assert not wrong
