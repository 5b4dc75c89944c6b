"""The attack corpus through the command line: every hostile or broken input fails cleanly and within bounds.

The corpus (tests/support/attack_corpus.py) is generated into a temporary
directory. Every command line of every case runs through `provenance.cli.main`
in one fresh interpreter under a 4 GiB address-space limit and a 60 s alarm
per run: an error must be exit 1 with exactly one stderr line naming the file
and the problem (no traceback, no "unexpected"), a valid oddity must succeed
without warnings, and no pickle payload may create its sentinel file. A few
cases also run as fresh `python cli.py` processes under the same limits.
tests/test_formats.py and tests/test_gguf.py check the error *types* of many
of the same breakages in-process; this file checks the user-visible contract
and the resource bounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.attack_corpus import check_cases, check_run, generate, limit_address_space, run_batch

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 4 << 30
RUN_TIMEOUT = 60

# Cases that fail today because of a file this suite does not own; each must still fail
# (remove it here once fixed: the test says so).
KNOWN_FAILURES = {
    "database/wrong_table_layout": "registry/database.py lets sqlite3.OperationalError ('no such column') through as "
                                   "'unexpected OperationalError' instead of a ProvenanceError",
}

# What the corpus must contain (a guard against cases silently dropped from the generator).
REQUIRED = {
    "safetensors/header_length_2_63", "safetensors/header_past_end", "safetensors/invalid_json",
    "safetensors/offsets_past_end", "safetensors/overlapping_offsets", "safetensors/reversed_offsets",
    "safetensors/header_order_not_data_order", "safetensors/dtype_shape_vs_bytes", "safetensors/duplicate_names",
    "safetensors/unknown_dtype", "safetensors/zero_sized_tensors", "safetensors/nan_and_inf",
    "safetensors/header_100MB",
    "pytorch/reduce_os_system", "pytorch/reduce_builtins_exec", "pytorch/reduce_builtins_eval",
    "pytorch/reduce_builtins___import__", "pytorch/zip_bomb_6GiB", "pytorch/zip_entry_claims_2GiB",
    "pytorch/zip_path_escape", "pytorch/legacy_benign", "pytorch/legacy_reduce_os_system",
    "gguf/bad_magic", "gguf/unsupported_version", "gguf/misaligned_tensor_data", "gguf/tensor_count_2_60",
    "gguf/kv_count_2_60", "gguf/string_length_2_40",
    "dir/symlink_to_outside", "dir/index_names_missing_shard", "dir/shard_listed_twice", "dir/malformed_config",
    "dir/config_over_8MiB", "dir/tokenizer_over_128MiB",
    "fingerprint/garbage", "fingerprint/truncated", "fingerprint/future_schema",
    "database/garbage", "database/future_schema",
    "quantized/gptq_g_idx_out_of_range", "quantized/bnb_quant_state_not_json", "quantized/ct_weight_shape_lies",
    "quantized/awq_gemv_packing",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    work = tmp_path_factory.mktemp("attack")
    cases = generate(work / "corpus")
    return work, cases


@pytest.fixture(scope="module")
def results(corpus):
    work, cases = corpus
    cwd = work / "cwd"  # nothing may be written to the working directory either
    cwd.mkdir()
    argvs = [list(run.argv) for case in cases for run in case.runs]
    return run_batch(argvs, memory_limit=MEMORY_LIMIT, per_run_timeout=RUN_TIMEOUT, cwd=cwd)


def test_corpus_has_every_required_case(corpus):
    _, cases = corpus
    names = [case.name for case in cases]
    assert len(names) == len(set(names))
    assert REQUIRED <= set(names), sorted(REQUIRED - set(names))
    assert sum(case.runs[0].expect == "error" for case in cases) > 60


def test_every_case_fails_cleanly_or_succeeds_as_expected(corpus, results):
    """Exit 1 + one line naming the file and the problem, or exit 0 for valid oddities; within 4 GiB and 60 s."""
    _, cases = corpus
    problems = check_cases(cases, results)
    known = {name: problems.pop(name) for name in list(problems) if name in KNOWN_FAILURES}
    assert not problems, json.dumps(problems, indent=1)
    fixed = set(KNOWN_FAILURES) - set(known)
    assert not fixed, f"now passing, remove from KNOWN_FAILURES: {sorted(fixed)}"


def test_no_payload_ran_and_nothing_was_left_behind(corpus, results):
    work, cases = corpus
    out = work / "corpus"
    assert list((out / "sentinels").iterdir()) == [], "a pickle payload ran"
    assert list((work / "cwd").iterdir()) == []
    assert not (work / "escaped_by_zip_entry").exists()
    assert not [p for p in (out / "outputs").iterdir() if not p.name.endswith(".fp.safetensors")], "stray temp files"


def test_valid_oddities_give_usable_fingerprints(corpus, results):
    """NaN/Inf: a fingerprint with a note, finite statistics, hashes of the stored values; zero-sized: a fingerprint."""
    from provenance.fingerprint.store import load_fingerprint

    work, _ = corpus
    outputs = work / "corpus" / "outputs"
    nan = load_fingerprint(outputs / "safetensors_nan_and_inf.fp.safetensors")
    assert any("NaN or infinite values in 4 tensor(s)" in note for note in nan.meta["notes"]), nan.meta.get("notes")
    assert nan.tensors["layers.1.mlp.down.weight"]["nonfinite"] == 32 * 48
    assert all(np.isfinite(a).all() for a in nan.arrays.values())
    clean = load_fingerprint(outputs / "safetensors_valid.fp.safetensors")
    assert "notes" not in clean.meta
    # Tensors without NaN hash the same as in the clean model; the NaN ones do not.
    assert nan.tensors["layers.0.attn.q.weight"]["sha256"] == clean.tensors["layers.0.attn.q.weight"]["sha256"]
    assert nan.tensors["layers.0.mlp.up.weight"]["sha256"] != clean.tensors["layers.0.mlp.up.weight"]["sha256"]

    empty = load_fingerprint(outputs / "safetensors_zero_sized_tensors.fp.safetensors")
    assert empty.tensors["layers.0.mlp.up.weight"]["shape"] == [0, 32]
    assert empty.tensors["layers.0.mlp.up.weight"]["stats"] == {"numel": 0}
    shuffled = load_fingerprint(outputs / "safetensors_header_order_not_data_order.fp.safetensors")
    assert {k: r["sha256"] for k, r in shuffled.tensors.items()} == {k: r["sha256"] for k, r in clean.tensors.items()}


def test_peak_memory_of_hostile_headers_stays_small(corpus, results):
    """Refusing a hostile header costs little memory: no run of an error case grows RSS by 1 GiB or more."""
    _, cases = corpus
    index, growth = 0, {}
    for case in cases:
        for run in case.runs:
            if run.expect == "error":
                growth[f"{case.name} [{run.argv[0]}]"] = results[index]["peak_rss_growth"]
            index += 1
    worst = max(growth, key=growth.get)
    assert growth[worst] < 1 << 30, (worst, growth[worst] >> 20)


FRESH_PROCESS_CASES = ["pytorch/zip_bomb_6GiB", "safetensors/header_100MB", "gguf/array_length_2_60"]


@pytest.mark.slow
@pytest.mark.parametrize("name", FRESH_PROCESS_CASES)
def test_fresh_process_under_limits(corpus, name):
    """`python cli.py ...` exactly as a user runs it, under RLIMIT_AS 4 GiB, with a 60 s timeout."""
    _, cases = corpus
    run = next(c for c in cases if c.name == name).runs[0]
    env = {k: v for k, v in os.environ.items() if k != "PROVENANCE_DEBUG"}
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *run.argv], capture_output=True, text=True,
                            timeout=RUN_TIMEOUT, env=env, preexec_fn=limit_address_space(MEMORY_LIMIT))
    problem = check_run(run, {"code": result.returncode, "stdout": result.stdout, "stderr": result.stderr})
    assert problem is None, (name, run.argv, problem)
