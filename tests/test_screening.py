"""Screening of the reference database: recall among decoys, signature back-fill, audits unchanged.

A tiny LLaMA (random weights, a word tokenizer) is the true reference; its
derivatives are made with the zoo's own transforms (bench/zoo/transforms.py).
The database holds the base among 50 decoys: 5 freshly initialised models of
the same shapes and 45 scrambled fingerprints (bench/screening.py `scramble`:
the base's or a decoy's values with every alignment destroyed), the hardest
kind, since they share the base's shapes and statistics.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch

from bench.screening import scramble
from bench.zoo import models as M
from bench.zoo import transforms as T
from provenance.audit import run_audit
from provenance.compare import compare_fingerprints
from provenance.fingerprint import Fingerprint
from provenance.fingerprint.load import fingerprint_for
from provenance.registry import Registry, fingerprint_to_bytes
from provenance.report.audit_json import audit_to_json
from provenance.audit.shortlist import SIGNATURE_VERSION, add_reference, COMPONENTS, load_signatures, screen_registry, signature

VOCAB = 200
PARAMS = M.llama_params(VOCAB, 0, hidden=64, intermediate=172, layers=4, heads=4, kv_heads=2)
SCREEN_K = 2  # stricter than the default, so that recall means something among 51 references


def _words(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words: set[str] = set()
    while len(words) < count:
        words.add("Ġ" + "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=int(rng.integers(2, 8)))))
    return sorted(words)


def _tokenizer(vocab: list[str]) -> dict:
    return {"version": "1.0", "added_tokens": [], "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(vocab)}, "merges": []}}


def _fingerprint(directory, state: dict, params: dict = PARAMS, vocab: list[str] | None = None,
                 family: str = "llama") -> Fingerprint:
    M.save_model(directory, family, params, state, _tokenizer(vocab or WORDS))
    return fingerprint_for(directory)


WORDS = _words(VOCAB)


def _random_state(seed: int) -> dict:
    torch.manual_seed(seed)
    state = M.state_of(M.build_model("llama", PARAMS), "llama")
    generator = torch.Generator().manual_seed(seed)
    for key in [k for k in state if "norm" in k]:  # trained-looking norms, so that folding them matters
        state[key] = 1.0 + 0.3 * torch.randn(state[key].shape, generator=generator)
    return state


def _reindexed(state: dict, directory):
    order = torch.randperm(VOCAB, generator=torch.Generator().manual_seed(3))
    moved = dict(state)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        moved[key] = state[key][order]
    return _fingerprint(directory, moved, vocab=[WORDS[i] for i in order])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("screening")
    base = _random_state(0)
    base_fp = _fingerprint(root / "base", base)
    kept = [0, 1, 3]
    derivatives = {
        "noise-50": _fingerprint(root / "noise", T.add_noise(base, 0.5, 40)),
        "quant-int8": _fingerprint(root / "int8", T.quant_int8_per_channel("llama", base)),
        "perm-mlp": _fingerprint(root / "perm", T.permute_mlp("llama", PARAMS, base, 31)),
        "rotate-residual": _fingerprint(root / "rotate", T.rotate_residual(PARAMS, base, 34)),
        "prune-layers": _fingerprint(root / "prune", *T.assemble_layers("llama", PARAMS, base, [(base, i) for i in kept])[::-1]),
        "vocab-reindex": _reindexed(base, root / "reindex"),
    }
    decoys = {f"init-{seed}": _fingerprint(root / f"init-{seed}", _random_state(seed)) for seed in range(1, 6)}
    templates = [base_fp, *decoys.values()]
    for i in range(45):
        decoys[f"scrambled-{i:02d}"] = scramble(templates[i % len(templates)], 500 + i, f"scrambled-{i:02d}")
    db = root / "refs.sqlite"
    with Registry(db) as registry:
        add_reference(registry, "base", base_fp)
        for name, fp in decoys.items():
            add_reference(registry, name, fp)
    return {"root": root, "db": db, "base": base_fp, "derivatives": derivatives, "decoys": decoys}


@pytest.mark.parametrize("case", ["noise-50", "quant-int8", "perm-mlp", "rotate-residual", "prune-layers", "vocab-reindex"])
def test_true_reference_is_in_the_shortlist(world, case):
    with Registry(world["db"]) as registry:
        screen = screen_registry(world["derivatives"][case], registry, k=SCREEN_K)
    assert screen.references == 51
    assert "base" in screen.shortlist, screen.reasons
    assert len(screen.shortlist) <= SCREEN_K * len(COMPONENTS) < screen.references


def test_independent_models_do_not_rank_first(world):
    # The base's own decoys (fresh seeds) never outrank it for a derivative, in any component it has.
    with Registry(world["db"]) as registry:
        screen = screen_registry(world["derivatives"]["noise-50"], registry, k=1)
    assert screen.shortlist[0] == "base"
    assert all(reason.startswith(("weights", "units", "gram", "embedding")) for reason in screen.reasons["base"])


def test_a_remote_like_fingerprint_is_still_screened(world):
    # As a remote fingerprint: no unit signatures, no Gram matrices, no sketches of matrices (row samples only).
    full = world["derivatives"]["quant-int8"]
    assert any(k.startswith("rows/") for k in full.arrays)
    matrices = {f"sketch/{k}" for k, r in full.tensors.items() if len(r["shape"]) == 2}
    remote = Fingerprint(meta=full.meta, arrays={k: v for k, v in full.arrays.items()
                                                 if not k.startswith(("units/", "gram/")) and k not in matrices})
    vectors = signature(remote).vectors.astype(np.float32)
    present = dict(zip(COMPONENTS, np.linalg.norm(vectors, axis=1) > 0))
    assert present == {"weights": True, "units": False, "gram": False, "embedding": True}
    with Registry(world["db"]) as registry:
        screen = screen_registry(remote, registry, k=SCREEN_K)
    assert "base" in screen.shortlist
    assert not any(r.startswith(("units", "gram")) for reasons in screen.reasons.values() for r in reasons)


def test_signatures_are_back_filled_for_entries_added_without_one(world, tmp_path):
    db = tmp_path / "refs.sqlite"
    with Registry(db) as registry:
        add_reference(registry, "base", world["base"])
        add_reference(registry, "init-1", world["decoys"]["init-1"])
    with sqlite3.connect(db) as raw:
        raw.execute("DELETE FROM screening WHERE name = 'base'")  # as if added by an older version
        raw.execute("UPDATE refs SET added = 'changed' WHERE name = 'init-1'")  # a replaced fingerprint: stale
    with Registry(db) as registry:
        fresh = dict((name, bool(ok)) for name, ok, _, _ in registry.screening_rows(SIGNATURE_VERSION))
        assert fresh == {"base": False, "init-1": False}
        names, signatures, backfilled = load_signatures(registry)
        assert backfilled == 2
        assert all(ok for _, ok, _, _ in registry.screening_rows(SIGNATURE_VERSION))  # stored back
        stored = dict(zip(names, signatures))
        assert np.array_equal(stored["base"].vectors, signature(world["base"]).vectors)
        _, _, again = load_signatures(registry)
        assert again == 0


def test_a_database_made_before_screening_is_read_and_back_filled(world, tmp_path):
    db = tmp_path / "old.sqlite"
    fp = world["base"]
    with sqlite3.connect(db) as raw:  # the schema of the first release: meta and refs only
        raw.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        raw.execute("CREATE TABLE refs (name TEXT PRIMARY KEY, kind TEXT NOT NULL, family TEXT, architecture TEXT NOT NULL, "
                    "source TEXT NOT NULL, tool_version TEXT NOT NULL, schema TEXT NOT NULL, added TEXT NOT NULL, fingerprint BLOB)")
        raw.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('revision', '1')")
        raw.execute("INSERT INTO refs VALUES (?, 'weights', 'llama', ?, ?, '0.1.0', ?, '2026-01-01T00:00:00+00:00', ?)",
                    ("old-base", json.dumps(fp.architecture), json.dumps(fp.meta["source"]), fp.meta["schema"],
                     fingerprint_to_bytes(fp)))
    with Registry(db) as registry:
        assert [e.name for e in registry.entries()] == ["old-base"]
        screen = screen_registry(world["derivatives"]["perm-mlp"], registry)
        assert screen.backfilled == 1 and screen.shortlist == ["old-base"]
        assert registry.revision == 1  # a back-fill is derived data, not a change of the references


def test_audit_of_the_true_reference_is_unchanged_by_screening(world):
    candidate = world["derivatives"]["perm-mlp"]
    with Registry(world["db"]) as registry:
        screened = run_audit(candidate, registry, include_builtin=False)
        full = run_audit(candidate, registry, include_builtin=False, screen=False)
        report = audit_to_json(screened)
    by_name = {r.reference: r.result for r in full}
    assert len(by_name) == 51
    mine = {r.reference: r.result for r in screened}
    assert mine["base"].verdict == by_name["base"].verdict == "identical"
    assert mine["base"].confidence == by_name["base"].confidence
    assert screened[0].reference == full[0].reference == "base"
    summary = report["screening"]
    assert summary["references"] == 51
    assert summary["compared"] == len([r for r in screened if r.origin == str(world["db"])]) < 51
    assert summary["not_compared"] == 51 - summary["compared"]
    assert summary["shortlist"][0]["reference"] == "base"


@pytest.mark.parametrize("case", ["prune-layers", "rotate-residual", "vocab-reindex"])
def test_screened_audit_gives_the_full_comparison_verdict(world, case):
    candidate = world["derivatives"][case]
    with Registry(world["db"]) as registry:
        rows = run_audit(candidate, registry, include_builtin=False)
    row = next(r for r in rows if r.reference == "base")
    direct = compare_fingerprints(candidate, world["base"])
    assert (row.result.verdict, row.result.confidence) == (direct.verdict, direct.confidence)
    assert row.result.verdict in ("identical", "derived", "assembled")
