"""Declared against detected lineage: every claim read into one record, and each of the five results.

The unit tests set claims against hand-made audit rows; the zoo slice at the
end audits tiny generated models whose files lie (or tell the truth) in each
way, through the command line, with two references in a database.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from provenance.audit import AuditRow
from provenance.audit.lineage_check import FAILING, RESULTS, check_lineage, found_relation, settle_command
from provenance.cli import main
from provenance.gate import LINEAGE_FAIL_ON
from provenance.compare import Comparison
from provenance.fingerprint import Fingerprint
from provenance.fingerprint.load import fingerprint_for
from provenance.formats.lineage import declared_lineage, lineage_claims
from provenance.registry import Registry


def _row(reference: str, verdict: str, abstained: bool = False, origin: str = "db.sqlite") -> AuditRow:
    result = Comparison(verdict=verdict, confidence=0.9, summary="", evidence=[], layers=[], renamed=[],
                        architecture_match="same-shapes", abstained=abstained)
    return AuditRow(reference, origin, result)


def _candidate(claims: list[tuple[str, str]], dtype: str = "BF16") -> Fingerprint:
    meta = {"tensors": {"embed.weight": {"shape": [4, 4], "dtype": dtype}},
            "lineage_claims": [{"where": w, "value": v} for w, v in claims]}
    return Fingerprint(meta=meta, arrays={})


# --- every claim read --------------------------------------------------------------------------------

def test_every_claim_is_read_into_one_record(tmp_path):
    card = ("---\nbase_model:\n- acme/base\nbase_model_relation: finetune\nlicense: apache-2.0\n---\n"
            "# Model\nWe fine-tuned it. 本模型从零训练。\n")
    adapter = tmp_path / "adapter_config.json"
    adapter.write_text(json.dumps({"base_model_name_or_path": "acme/adapter-base", "peft_type": "LORA"}))
    recipe = tmp_path / "mergekit_config.yml"
    recipe.write_text("merge_method: slerp\nbase_model: acme/one\nslices:\n- sources:\n  - model: acme/one\n"
                      "    layer_range: [0, 2]\n  - model: acme/two\n    layer_range: [0, 2]\n")
    moe = tmp_path / "mergekit_moe_config.yml"
    moe.write_text("base_model: acme/one\nexperts:\n- source_model: acme/three\n  positive_prompts: [x]\n")
    gguf = {"general.name": "Shell 7B", "general.source.repo_url": "https://huggingface.co/acme/src",
            "general.base_model.count": 1, "general.base_model.0.organization": "Acme",
            "general.base_model.0.name": "Grand"}
    claims = lineage_claims({"_name_or_path": "acme/self"}, card, gguf,
                            {"adapter_config.json": adapter, "mergekit_config.yml": recipe,
                             "mergekit_moe_config.yml": moe})
    declared = declared_lineage(claims)
    assert declared.parents == ("acme/base", "acme/adapter-base", "acme/one", "acme/two", "acme/three",
                                "https://huggingface.co/acme/src", "Acme / Grand")
    assert declared.relation == "finetune"  # the card's relation wins over the adapter's and the recipe's
    assert declared.license == "apache-2.0" and declared.original  # "从零训练"
    assert "acme/self" in declared.names and "Shell 7B" in declared.names
    assert ("mergekit_config.yml merge_method", "slerp") in {(c.where, c.value) for c in claims}
    # read back from the {where, value} dicts a fingerprint records: the same record
    assert declared_lineage([{"where": c.where, "value": c.value} for c in claims]).parents == declared.parents
    # without a card relation, an adapter config implies "adapter" and a recipe "merge"
    assert declared_lineage(lineage_claims(None, None, None, {"adapter_config.json": adapter})).relation == "adapter"
    assert declared_lineage(lineage_claims(None, None, None, {"mergekit_config.yml": recipe})).relation == "merge"


def test_a_bad_recipe_is_one_clear_error(tmp_path):
    from provenance.errors import ProvenanceError

    recipe = tmp_path / "mergekit_config.yml"
    recipe.write_text("models: [unclosed\n")
    with pytest.raises(ProvenanceError, match="mergekit_config.yml: merge recipe is not valid YAML"):
        lineage_claims(None, None, None, {"mergekit_config.yml": recipe})
    # a hostile tag is refused by the safe loader, never run
    recipe.write_text("models: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ProvenanceError, match="not valid YAML"):
        lineage_claims(None, None, None, {"mergekit_config.yml": recipe})


# --- each result against hand-made rows -------------------------------------------------------------

CARD = "model card base_model"
TEXT = "model card text"
RELATION = "model card base_model_relation"


@pytest.mark.parametrize("claims, rows, dtype, expected", [
    # consistent: the parent named, the relation allowed (or nothing claimed, nothing found)
    ([(CARD, "acme/base"), (RELATION, "finetune")], [_row("acme/base", "derived")], "BF16", "consistent"),
    ([(CARD, "acme/base"), (RELATION, "quantized")], [_row("acme/base", "identical")], "Q4_1", "consistent"),
    ([("GGUF general.name", "Acme Base")], [_row("acme/base", "identical")], "Q8_0", "consistent"),
    ([(TEXT, "We trained it from scratch.")], [_row("acme/base", "unrelated")], "BF16", "consistent"),
    ([], [_row("acme/base", "derived", abstained=True)], "BF16", "consistent"),
    # undeclared-parent: nothing named, or an original claimed
    ([], [_row("acme/base", "derived")], "BF16", "undeclared-parent"),
    ([(TEXT, "Independently developed by our lab.")], [_row("acme/base", "identical")], "BF16", "undeclared-parent"),
    ([(TEXT, "Unlike acme/base, it was trained from scratch.")], [_row("acme/base", "derived")], "BF16",
     "undeclared-parent"),
    ([(CARD, "acme/base"), (RELATION, "quantized")], [_row("acme/base", "identical")], "F8_E4M3", "consistent"),
    # wrong-parent: a reference named, the weights from another (or from none)
    ([(CARD, "acme/other")], [_row("acme/base", "derived"), _row("acme/other", "unrelated")], "BF16", "wrong-parent"),
    ([(CARD, "acme/other")], [_row("acme/other", "same-architecture")], "BF16", "wrong-parent"),
    # the weights' parent is shown (p < 1e-12): a named reference whose comparison merely abstained is still wrong
    ([(CARD, "acme/other")], [_row("acme/base", "derived"), _row("acme/other", "same-architecture", abstained=True)],
     "BF16", "wrong-parent"),
    ([(CARD, "acme/chat"), (RELATION, "finetune")], [_row("acme/base", "derived"), _row("acme/chat", "derived")],
     "BF16", "consistent"),  # acme/chat, itself a fine-tune of acme/base, is named and the weights descend from it
    # wrong-relation: finetune declared, copy found; merge declared, one parent found
    ([(CARD, "acme/base"), (RELATION, "finetune")], [_row("acme/base", "identical")], "BF16", "wrong-relation"),
    ([(CARD, "acme/base"), (RELATION, "finetune")], [_row("acme/base", "identical")], "Q4_0", "wrong-relation"),
    ([("mergekit_config.yml model", "acme/base"), ("mergekit_config.yml model", "acme/x")],
     [_row("acme/base", "derived"), _row("acme/x", "unrelated")], "BF16", "wrong-relation"),
    ([(CARD, "acme/base"), (RELATION, "merge")], [_row("acme/base", "derived")], "BF16", "wrong-relation"),
    # unverifiable: the declared parent is not a reference, or its comparison abstained
    ([(CARD, "acme/elsewhere")], [_row("acme/base", "derived")], "BF16", "unverifiable"),
    ([(CARD, "acme/elsewhere")], [_row("acme/base", "unrelated")], "BF16", "unverifiable"),
    ([(CARD, "acme/base")], [_row("acme/base", "unrelated", abstained=True)], "BF16", "unverifiable"),
])
def test_each_result(claims, rows, dtype, expected):
    check = check_lineage(_candidate(claims, dtype), rows)
    assert check.result == expected, check.reason
    assert check.to_dict()["result"] in RESULTS


def test_a_declared_merge_of_the_found_parents_is_consistent():
    claims = [("mergekit_config.yml model", "acme/a"), ("mergekit_config.yml model", "acme/b")]
    check = check_lineage(_candidate(claims), [_row("acme/a", "derived"), _row("acme/b", "derived")])
    assert (check.result, check.found_relation, check.found_parents) == ("consistent", "merge", ("acme/a", "acme/b"))
    assembled = check_lineage(_candidate(claims), [_row("acme/a", "assembled"), _row("acme/b", "assembled")])
    assert assembled.result == "consistent"


def test_an_adapter_alone_is_never_accused():
    """A PEFT adapter's weights are low-rank deltas: "unrelated" to its base says nothing about the base claim."""
    adapter = _candidate([("adapter_config.json base_model_name_or_path", "acme/base")])
    adapter.meta["stored_tensors"] = {f"base_model.model.layers.0.q_proj.lora_{x}.weight": {} for x in "AB"}
    check = check_lineage(adapter, [_row("acme/base", "unrelated")])
    assert check.result == "unverifiable" and "adapter" in check.reason and check.settle is None


def test_the_bit_exact_check_decides_a_quantized_relation():
    claims = [(CARD, "acme/base"), (RELATION, "quantized")]
    exact = check_lineage(_candidate(claims, "Q4_1"), [_row("acme/base", "identical")], {"exact_source": True})
    changed = check_lineage(_candidate(claims, "Q4_1"), [_row("acme/base", "identical")], {"exact_source": False})
    assert (exact.result, exact.found_relation) == ("consistent", "quantized")
    assert (changed.result, changed.found_relation) == ("wrong-relation", "changed-then-quantized")
    # without the check, a derived quantized file contradicts neither relation
    assert found_relation("derived", True, None) == "quantized-derived"


def test_settle_names_the_command():
    assert settle_command("meta-llama/Llama-2-7b-hf").startswith("provenance refs sync --only ")
    assert settle_command("nobody/unknown-model") == "provenance refs add hf://nobody/unknown-model --name nobody/unknown-model"


def test_the_command_line_gates_on_the_failing_results():
    assert set(LINEAGE_FAIL_ON) == set(FAILING)


# --- the zoo slice: tiny models whose files lie in each way -------------------------------------------

def _variant(base, folder, noise: float, seed: int = 3, files: dict[str, str] | None = None):
    folder.mkdir()
    shutil.copy(base / "config.json", folder / "config.json")
    generator = torch.Generator().manual_seed(seed)
    state = {k: v + noise * v.std() * torch.randn(v.shape, generator=generator)
             for k, v in load_file(str(base / "model.safetensors")).items()}
    save_file(state, str(folder / "model.safetensors"))
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, built_model):
    root = tmp_path_factory.mktemp("lineage-zoo")
    llama, qwen = built_model("llama").path, built_model("qwen2").path
    # an independent LLaMA of the same shapes and scale, and a linear merge of the two (as mergekit's `linear` makes)
    base = load_file(str(llama / "model.safetensors"))
    generator = torch.Generator().manual_seed(11)
    other = {k: v.mean() + v.std() * torch.randn(v.shape, generator=generator) for k, v in base.items()}
    for name, state in (("llama-b", other), ("merge", {k: 0.5 * base[k] + 0.5 * other[k] for k in base})):
        (root / name).mkdir()
        shutil.copy(llama / "config.json", root / name / "config.json")
        save_file(state, str(root / name / "model.safetensors"))
    (root / "merge" / "mergekit_config.yml").write_text("merge_method: linear\nmodels:\n- model: acme/tiny-llama\n"
                                                        "  parameters: {weight: 0.5}\n- model: acme/tiny-llama-b\n")
    db = root / "refs.sqlite"
    with Registry(db) as registry:
        registry.add("acme/tiny-llama", fingerprint_for(llama))
        registry.add("acme/tiny-qwen2", fingerprint_for(qwen))
        registry.add("acme/tiny-llama-b", fingerprint_for(root / "llama-b"))
    card = "---\nbase_model: {base}\nbase_model_relation: {relation}\n---\n"
    cases = {
        "honest-finetune": (0.05, {"README.md": card.format(base="acme/tiny-llama", relation="finetune")},
                            "consistent"),
        "from-scratch-shell": (0.05, {"README.md": "---\nlicense: mit\n---\nOur model was trained from scratch.\n"},
                               "undeclared-parent"),
        "wrong-base": (0.05, {"README.md": card.format(base="acme/tiny-qwen2", relation="finetune")}, "wrong-parent"),
        "peft-wrong-base": (0.05, {"adapter_config.json": json.dumps({"base_model_name_or_path": "acme/tiny-qwen2",
                                                                      "peft_type": "LORA"})}, "wrong-parent"),
        "copy-called-finetune": (0.0, {"README.md": card.format(base="acme/tiny-llama", relation="finetune")},
                                 "wrong-relation"),
        "merge-of-one": (0.05, {"mergekit_config.yml": "merge_method: linear\nmodels:\n- model: acme/tiny-llama\n"
                                                       "- model: acme/tiny-qwen2\n"}, "wrong-relation"),
        "unknown-base": (0.05, {"README.md": card.format(base="nobody/tiny-thing", relation="finetune")},
                         "unverifiable"),
    }
    made = {name: (_variant(llama, root / name, noise, files=files), expected)
            for name, (noise, files, expected) in cases.items()}
    made["honest-merge"] = (root / "merge", "consistent")
    return {"db": db, "cases": made, "qwen": qwen}


@pytest.mark.parametrize("name", ["honest-finetune", "honest-merge", "from-scratch-shell", "wrong-base",
                                  "peft-wrong-base", "copy-called-finetune", "merge-of-one", "unknown-base"])
def test_zoo_slice(zoo, name, capsys):
    path, expected = zoo["cases"][name]
    code = main(["audit", str(path), "--refs", str(zoo["db"]), "--no-builtin", "--json", "--fail-on", ",".join(FAILING)])
    report = json.loads(capsys.readouterr().out)
    assert report["lineage"]["result"] == expected, report["lineage"]["reason"]
    if name == "wrong-base":  # the declared parent was compared although screening would have left it out
        assert {r["reference"] for r in report["references"]} >= {"acme/tiny-qwen2", "acme/tiny-llama"}
        assert report["screening"]["compared"] == len(report["screening"]["shortlist"]) == len(report["references"])
    if name == "honest-merge":
        assert report["lineage"]["found"]["relation"] == "merge"
        assert sorted(report["lineage"]["found"]["parents"]) == ["acme/tiny-llama", "acme/tiny-llama-b"]
    assert code == (3 if expected in FAILING else 0)
    if expected == "wrong-relation":  # one case is enough for the schema (tests/test_schemas.py checks the rest)
        from provenance import schemas

        schemas.validate(report, "audit")
    if expected == "unverifiable":
        assert report["lineage"]["settle"] == "provenance refs add hf://nobody/tiny-thing --name nobody/tiny-thing"


# --- the attestation ---------------------------------------------------------------------------------

def test_attestation_validates_and_verify_fails_on_a_changed_file(zoo, tmp_path, capsys):
    from provenance import schemas

    path, _ = zoo["cases"]["from-scratch-shell"]
    candidate = tmp_path / "candidate"
    shutil.copytree(path, candidate)
    out, report = tmp_path / "statement.json", tmp_path / "report.html"
    assert main(["audit", str(candidate), "--refs", str(zoo["db"]), "--no-builtin", "--attest", str(out),
                 "--report", str(report), "--lang", "zh"]) == 0
    box = report.read_text(encoding="utf-8").split('<section id="claimed-found"', 1)[1].split("</section>", 1)[0]
    assert "自称 / 实测" in box and "undeclared-parent" in box and "acme/tiny-llama" in box
    assert "独立来源" in box  # the card claims "trained from scratch"
    statement = json.loads(out.read_text())
    schemas.validate(statement, "attestation")
    assert {s["name"] for s in statement["subject"]} == {"README.md", "config.json", "model.safetensors"}
    predicate = statement["predicate"]
    assert predicate["lineage"]["result"] == "undeclared-parent" and predicate["verdict"] == "derived"
    hashed = {r["name"]: r["fingerprint_sha256"] for r in predicate["references"] if r["kind"] == "weights"}
    assert "acme/tiny-llama" in hashed and all(len(h) == 64 for h in hashed.values())
    assert predicate["decisive_evidence"]
    capsys.readouterr()
    assert main(["verify", str(out), str(candidate)]) == 0
    assert "verified: 3 files unchanged" in capsys.readouterr().out
    # one changed file fails, before any audit is run
    (candidate / "README.md").write_text("---\nbase_model: acme/tiny-llama\n---\n")
    assert main(["verify", str(out), str(candidate)]) == 1
    assert "README.md changed" in capsys.readouterr().err
    # the same files against another reference under the attested name: the audit no longer reproduces
    (candidate / "README.md").write_text((path / "README.md").read_text())
    other = tmp_path / "other.sqlite"
    with Registry(other) as registry:
        registry.add("acme/tiny-llama", fingerprint_for(zoo["qwen"]))
    assert main(["verify", str(out), str(candidate), "--refs", str(other)]) == 1
    assert "no longer gives what was attested" in capsys.readouterr().err


# --- quantized files tied to their exact source ------------------------------------------------------

@pytest.fixture(scope="module")
def quantized_world(tmp_path_factory):
    """A floating-point reference folder, Q8_0 and Q4_1 GGUFs quantized from exactly it, and a Q8_0 GGUF quantized
    after a change about 24 times smaller than Q8_0's step (1e-3 of each tensor's std), and a Q4_K file (gguf-py
    cannot quantize it: random valid blocks); gguf-py writes them."""
    gguf = pytest.importorskip("gguf")
    from gguf import GGMLQuantizationType as Q

    from .test_gguf import build_case, llama_model, write_llama_gguf
    from .test_gguf import HEADS, HIDDEN, INTERMEDIATE, KV_HEADS, LAYERS, VOCAB

    root = tmp_path_factory.mktemp("quantized")
    model, _ = llama_model(0, vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                           num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                           rope_theta=50000.0, rms_norm_eps=1e-6)
    model.save_pretrained(root / "reference")
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(7)
    tuned = {k: v + 1e-3 * v.std() * torch.randn(v.shape, generator=generator) for k, v in state.items()}
    made = {}
    for name, source, qtype in (("exact-q8", state, Q.Q8_0), ("exact-q41", state, Q.Q4_1),
                                ("tuned-q8", tuned, Q.Q8_0), ("q4k", state, Q.Q4_K)):  # Q4_K: random valid blocks
        stored, _ = build_case(source, qtype)
        made[name] = write_llama_gguf(root / f"{name}.gguf", stored)
    assert gguf is not None
    return root / "reference", made


@pytest.mark.parametrize("name, exact", [("exact-q8", True), ("exact-q41", True), ("tuned-q8", False)])
def test_requantizing_the_reference_ties_a_gguf_to_its_exact_source(quantized_world, name, exact):
    from provenance.audit.quant_source import CHANGED_BELOW, compare_quantized

    reference, made = quantized_world
    found = compare_quantized(made[name], reference)
    assert found["method"] == "bit-exact" and found["exact_source"] is exact
    share = found["identical"] / found["blocks"]
    assert found["blocks"] > 100 and (share == 1.0 if exact else share < CHANGED_BELOW)
    assert ("quantized from exactly this reference" if exact else "changed, then quantized") in found["summary"]


def test_k_quants_get_a_tolerance_check_that_decides_nothing(quantized_world):
    from provenance.audit.quant_source import compare_quantized

    reference, made = quantized_world
    found = compare_quantized(made["q4k"], reference)
    assert found["method"] == "tolerance" and found["exact_source"] is None and found["types"] == ["Q4_K"]
    assert "tolerance check only" in found["summary"] and found["relative_error"] > 0.5  # random blocks


def test_the_audit_reports_a_change_hidden_under_quantization(quantized_world, tmp_path, capsys):
    reference, made = quantized_world
    db = tmp_path / "refs.sqlite"
    assert main(["refs", "add", str(reference), "--name", "acme/tiny-ref", "--refs", str(db)]) == 0
    assert main(["audit", str(made["tuned-q8"]), "--refs", str(db), "--no-builtin", "--json"]) == 0
    lineage = json.loads(capsys.readouterr().out)["lineage"]
    assert lineage["quantization"]["exact_source"] is False
    assert lineage["found"] == {"parents": ["acme/tiny-ref"], "hub_ids": ["acme/tiny-ref"],
                                "relation": "changed-then-quantized"}
    assert main(["audit", str(made["exact-q8"]), "--refs", str(db), "--no-builtin", "--json"]) == 0
    lineage = json.loads(capsys.readouterr().out)["lineage"]
    assert lineage["quantization"]["exact_source"] is True and lineage["found"]["relation"] == "quantized"
