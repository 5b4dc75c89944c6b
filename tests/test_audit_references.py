"""Architecture-only and tokenizer references in `provenance audit` (provenance/audit/config_references.py, tokenizer_references.py).

What is real and what is not: the big shapes (Yi-34B, Llama-2-7B) are tensor
*lists* (names and shapes, no data) put through the real family detection and
descriptor (`map_checkpoint`), since a 34B checkpoint cannot be built here; the
audit pipeline itself (fingerprint, run_audit, JSON, terminal table) runs on
tiny generated checkpoints, with a tiny-shaped architecture reference added to
the shipped ones. Tokenizer matching runs on a tokenizer.json generated in the
test, turned into a reference signature by the function the npm script uses.
"""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest

from provenance.audit import config_references as ar
from provenance.audit import tokenizer_references as tr
from provenance.architectures.families import all_families
from provenance.architectures.mapping import map_checkpoint
from provenance.audit import SEVERITY, run_audit
from provenance.fingerprint import Fingerprint
from provenance.fingerprint.load import fingerprint_for
from provenance.formats.base import TensorInfo
from provenance.formats.tokenizer import from_tokenizer_json
from provenance.report.audit_json import audit_to_json
from provenance.report.audit_text import render_audit
from tests.builders import BUILDERS, HEAD_DIM, HEADS, HIDDEN, INTER, KV, LAYERS, VOCAB


def _llama_infos(layers, hidden, heads, kv, head_dim, inter, vocab, norms=("input_layernorm", "post_attention_layernorm")):
    """The stored tensor list of a LLaMA-layout checkpoint of these shapes (no data)."""
    def info(name, shape):
        return TensorInfo(name, shape, "BF16", 2 * math.prod(shape), "model.safetensors")

    infos = [info("model.embed_tokens.weight", (vocab, hidden)), info("model.norm.weight", (hidden,)),
             info("lm_head.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        infos += [info(p + norms[0] + ".weight", (hidden,)), info(p + norms[1] + ".weight", (hidden,)),
                  info(p + "self_attn.q_proj.weight", (heads * head_dim, hidden)),
                  info(p + "self_attn.k_proj.weight", (kv * head_dim, hidden)),
                  info(p + "self_attn.v_proj.weight", (kv * head_dim, hidden)),
                  info(p + "self_attn.o_proj.weight", (hidden, heads * head_dim)),
                  info(p + "mlp.gate_proj.weight", (inter, hidden)), info(p + "mlp.up_proj.weight", (inter, hidden)),
                  info(p + "mlp.down_proj.weight", (hidden, inter))]
    return infos


def _described(infos, config):
    """(family, architecture dict, canonical tensor records) as a fingerprint would hold them."""
    roles, arch = map_checkpoint(infos, config, None, "generated")
    tensors = {a.key.name: {"shape": list(a.shape), "dtype": "BF16", "source": a.source, "sha256": None, "stats": {}}
               for a in roles.assignments}
    return roles.family, arch.to_dict(), tensors


def _by_family(matches):
    return {m.family: m for m in matches}


YI_34B_CONFIG = {"architectures": ["YiForCausalLM"], "model_type": "Yi", "hidden_size": 7168, "intermediate_size": 20480,
                 "num_attention_heads": 56, "num_hidden_layers": 60, "num_key_value_heads": 8, "vocab_size": 64000}
LLAMA2_7B_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
                    "intermediate_size": 11008, "num_attention_heads": 32, "num_hidden_layers": 32,
                    "num_key_value_heads": 32, "vocab_size": 32000}


# --- the data file ------------------------------------------------------------------------------


def test_architecture_data_is_consistent():
    raw = json.loads((resources.files("provenance") / "references" / "architectures.json").read_text())
    assert raw["schema"] == ar.ARCHITECTURES_SCHEMA
    entries = raw["references"]
    refs = ar.architecture_references()
    assert len(refs) == len(entries) >= 50
    assert len({e["name"] for e in entries}) == len(entries)
    families = all_families()
    naming_of_family: dict[str, str] = {}
    for e in entries:
        name = e["name"]
        # Latent attention (DeepSeek-V3, Kimi K2) has no per-head key/value projection: no KV heads, no head size.
        head_fields = () if "latent_attention" in e else ("num_kv_heads", "head_dim")
        for field in ("num_layers", "hidden_size", "num_heads", *head_fields, "intermediate_size", "vocab_size"):
            assert isinstance(e[field], int) and e[field] > 0, (name, field)
        assert e["naming"] in families, name
        assert "/" in e["config"] and " " not in e["config"], name  # a hub repository id
        if head_fields:
            assert e["num_heads"] % e["num_kv_heads"] == 0, name
            if e.get("head_dim_declared"):
                assert e["head_dim"] * e["num_heads"] != e["hidden_size"], name  # only where it really differs
            else:
                assert e["head_dim"] * e["num_heads"] == e["hidden_size"], name
        # A dense MLP is wider than the model; an expert need not be (gpt-oss: 2880 and 2880).
        assert e["intermediate_size"] > e["hidden_size"] or "num_experts" in e, name
        if "num_experts" in e:
            assert e["num_experts"] > 1, name
        # one tensor naming per model line
        assert naming_of_family.setdefault(e["family"], e["naming"]) == e["naming"], name


def test_naming_groups_follow_pure_aliases_only():
    assert ar.naming_group("yi") == ar.naming_group("mistral") == ar.naming_group("llama") == "llama"
    assert ar.naming_group("qwen2") == "qwen2"  # adds tensors (q/k norms): its own layout
    assert ar.naming_group("gemma") == "gemma"  # +1 norms: its own defaults
    assert ar.naming_group(None) is None


# --- architecture matching ----------------------------------------------------------------------


def test_yi_34b_shapes_no_llama_checkpoint_has_them():
    family, arch, tensors = _described(_llama_infos(60, 7168, 56, 8, 128, 20480, 64000, ("ln1", "ln2")), YI_34B_CONFIG)
    assert family == "yi"
    matches = _by_family(ar.match_architecture(arch, family, tensors=tensors))
    llama = matches["LLaMA"]
    assert llama.status == "different" and not llama.abstained
    assert "LLaMA architecture; no LLaMA checkpoint has these shapes (closest: LLaMA-" in llama.summary
    assert "cannot be copied" in llama.summary
    for line in ("Llama-2", "Llama-3", "Mistral"):
        assert matches[line].status == "different"
    assert matches["Yi"].status == "same-shapes" and [r.name for r in matches["Yi"].references] == ["Yi-34B"]
    # No family with another naming is compared.
    assert not set(matches) & {"Qwen2", "Baichuan", "GPT-2", "Gemma"}


def test_yi_34b_shaped_fingerprint_through_the_audit():
    # A fingerprint holding only the descriptor and tensor shapes (no weight data: none exists here).
    family, arch, tensors = _described(_llama_infos(60, 7168, 56, 8, 128, 20480, 64000, ("ln1", "ln2")), YI_34B_CONFIG)
    candidate = Fingerprint(meta={"architecture": arch, "family": {"name": family}, "source": {"format": "safetensors"},
                                  "tensors": tensors, "vocabulary": None}, arrays={})
    report = audit_to_json(run_audit(candidate, candidate_path="yi-34b-shapes"))
    architecture = [r for r in report["references"] if r["kind"] == "architecture"]
    assert architecture[0]["reference"] == "Yi-34B"  # the same-shapes row ranks first among them
    llama = next(r for r in architecture if r["reference"] == "LLaMA (config only)")
    assert llama["verdict"] == "same-architecture" and not llama["abstained"]
    assert "no LLaMA checkpoint has these shapes" in llama["summary"]
    text = render_audit(report)
    assert "no LLaMA checkpoint has these shapes" in text
    assert "tokenizer: the candidate carries no tokenizer files" in text


def test_llama2_7b_shapes_same_shapes_and_how_to_compare_weights():
    family, arch, tensors = _described(_llama_infos(32, 4096, 32, 32, 128, 11008, 32000), LLAMA2_7B_CONFIG)
    matches = _by_family(ar.match_architecture(arch, family, tensors=tensors))
    llama2 = matches["Llama-2"]
    assert llama2.status == "same-shapes" and not llama2.abstained
    assert "same shapes as Llama-2-7B" in llama2.summary
    assert "add it with `provenance refs add`" in llama2.summary
    assert matches["LLaMA"].status == "same-shapes"  # LLaMA-7B has the same shapes
    assert matches["Llama-3"].status == "different"  # 8 KV heads, MLP 14336


def test_tensor_shapes_only_uses_the_widths_seen_in_the_tensors():
    # No config.json: the descriptor cannot know the head count, but the tensors give the widths.
    family, arch, tensors = _described(_llama_infos(32, 4096, 32, 32, 128, 11008, 32000), None)
    assert arch["num_heads"] is None
    llama2 = _by_family(ar.match_architecture(arch, family, tensors=tensors))["Llama-2"]
    assert llama2.status == "same-shapes" and "declares no heads or KV heads" in llama2.summary


def test_missing_fields_abstain_rather_than_claim():
    family, arch, _ = _described(_llama_infos(32, 4096, 32, 32, 128, 11008, 32000), None)
    # Without tensor records the attention widths are unknown: every known field fits Llama-2-7B.
    llama2 = _by_family(ar.match_architecture(arch, family))["Llama-2"]
    assert llama2.status == "undetermined" and llama2.abstained and "no claim" in llama2.summary
    # A field that is known and differs still settles it.
    yi = _by_family(ar.match_architecture(arch, family))["Yi"]
    assert yi.status == "undetermined"  # Yi-6B differs only in KV heads, which are unknown here
    llama3 = _by_family(ar.match_architecture(arch, family))["Llama-3"]
    assert llama3.status == "different"  # MLP 11008 vs 14336 is known


def test_disputed_fields_are_not_used():
    _, arch, tensors = _described(_llama_infos(32, 4096, 32, 32, 128, 11008, 32000), LLAMA2_7B_CONFIG)
    arch = dict(arch, disagreements=["num_layers: config.json says 32, tensors have 40"])
    llama2 = _by_family(ar.match_architecture(arch, "llama", tensors=tensors))["Llama-2"]
    assert llama2.status == "undetermined" and llama2.abstained and "layers" in llama2.summary


def test_same_layers_different_depth_is_a_possible_copy():
    config = dict(LLAMA2_7B_CONFIG, num_hidden_layers=40)
    family, arch, tensors = _described(_llama_infos(40, 4096, 32, 32, 128, 11008, 32000), config)
    llama2 = _by_family(ar.match_architecture(arch, family, tensors=tensors))["Llama-2"]
    assert llama2.status == "same-layers" and "40 layers instead of 32" in llama2.summary


def test_unknown_family_and_bert_get_no_architecture_rows():
    assert ar.match_architecture({"num_layers": 32, "hidden_size": 4096}, None) == []
    bert = {"num_layers": 2, "hidden_size": 32, "num_heads": 4, "num_kv_heads": 4, "head_dim": 8,
            "intermediate_size": 37, "vocab_size": 99}
    assert ar.match_architecture(bert, "bert") == []


def test_tiny_bert_audit_has_no_llama_row(built_model):
    candidate = fingerprint_for(built_model("bert").path)
    assert candidate.meta["family"]["name"] == "bert"
    rows = run_audit(candidate, None, include_builtin=True)
    assert not [r for r in rows if r.kind == "architecture"]
    assert not [r for r in rows if "LLaMA" in r.reference]


# --- the audit pipeline -------------------------------------------------------------------------


TINY = ar.ArchitectureReference(name="Tiny-LLaMA", family="TinyLine", naming="llama", config="test/tiny-llama",
                                num_layers=LAYERS, hidden_size=HIDDEN, num_heads=HEADS, num_kv_heads=KV,
                                head_dim=HEAD_DIM, intermediate_size=INTER, vocab_size=VOCAB)


def test_audit_rows_json_and_table(built_model, monkeypatch):
    shipped = ar.architecture_references()
    monkeypatch.setattr(ar, "architecture_references", lambda: shipped + (TINY,))
    candidate = fingerprint_for(built_model("llama").path)
    rows = run_audit(candidate, None, include_builtin=True)
    kinds = [r.kind for r in rows]
    assert "weights" in kinds and "architecture" in kinds
    # Weight rows rank above architecture rows of the same or a more serious verdict.
    for i, row in enumerate(rows):
        if row.kind == "architecture":
            assert row.result.verdict == "same-architecture"
            later = [r for r in rows[i + 1:] if r.kind == "weights"]
            assert all(SEVERITY[r.result.verdict] > SEVERITY["same-architecture"] for r in later)
    architecture = [r for r in rows if r.kind == "architecture"]
    assert architecture[0].reference == "Tiny-LLaMA"  # same shapes before naming-only matches
    report = audit_to_json(rows)
    entries = {r["reference"]: r for r in report["references"]}
    tiny = entries["Tiny-LLaMA"]
    assert tiny["kind"] == "architecture" and tiny["verdict"] == "same-architecture"
    assert tiny["architecture_reference"]["status"] == "same-shapes"
    assert "same shapes as Tiny-LLaMA" in tiny["summary"]
    assert entries["LLaMA (config only)"]["architecture_reference"]["status"] == "different"
    assert all(r["kind"] == "weights" for r in report["references"] if r["origin"] == "built-in")
    assert isinstance(report["tokenizers"], list)
    json.dumps(report)  # serialisable
    text = render_audit(report)
    assert "same shapes as Tiny-LLaMA" in text and "\ntokenizer: " in text
    # --no-builtin leaves the config-only references out too.
    assert not [r for r in run_audit(candidate, None, include_builtin=False) if r.kind == "architecture"]


# --- tokenizers ---------------------------------------------------------------------------------


def _write_tokenizer(path, tokens, merges):
    """A SentencePiece-style BPE tokenizer.json (LLaMA-2's layout) with these tokens and merges."""
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + tokens)}
    replace_space = {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
    data = {"version": "1.0", "added_tokens": [{"id": i, "content": t, "special": True} for i, t in enumerate(specials)],
            "normalizer": {"type": "Sequence", "normalizers": [replace_space]},
            "pre_tokenizer": None, "decoder": {"type": "Sequence", "decoders": []},
            "model": {"type": "BPE", "vocab": vocab, "merges": merges, "unk_token": "<unk>", "byte_fallback": True}}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _tokens(prefix, count):
    return [f"▁{prefix}{i}" for i in range(count)]


def test_tokenizer_matching_finds_the_same_tokenizer(tmp_path):
    words = _tokens("w", VOCAB - 3)
    merges = [f"▁ w{i}" for i in range(20)]
    built = BUILDERS["llama"](tmp_path / "cand")
    _write_tokenizer(built.path / "tokenizer.json", words, merges)
    candidate = fingerprint_for(built.path)
    vocabulary = candidate.meta["vocabulary"]
    assert vocabulary and vocabulary["size"] == VOCAB

    same = _write_tokenizer(tmp_path / "same.json", words, merges)
    extended = _write_tokenizer(tmp_path / "extended.json", words + _tokens("x", 40), merges)
    half = _write_tokenizer(tmp_path / "half.json", words[: len(words) // 2] + _tokens("y", len(words) // 2), ["▁ y0"])
    other = _write_tokenizer(tmp_path / "other.json", _tokens("z", 200), ["▁ z0"])
    refs = tuple({"name": name, "signature": tr.tokenizer_signature(from_tokenizer_json(path)),
                  "npm": {"package": f"test-{name}", "version": "0"}}
                 for name, path in (("Other", other), ("Half", half), ("Extended", extended), ("LLaMA-2", same)))
    found = tr.match_tokenizers(vocabulary, refs, limit=4)
    assert [m["reference"] for m in found][:2] == ["LLaMA-2", "Extended"]
    assert found[0]["identical"] and found[0]["same_merges"] and found[0]["summary"].startswith("identical to LLaMA-2's")
    assert not found[1]["identical"] and found[1]["same_merges"]
    by_name = {m["reference"]: m for m in found}
    # 30 shared of 91 strings (the 3 specials count too): Jaccard 0.33; 128 MinHashes give about +-0.04.
    assert 0.15 < by_name["Half"]["jaccard"] < 0.55
    assert by_name["Other"]["jaccard"] < 0.2
    line = tr.tokenizer_line(found, vocabulary)
    assert "identical to LLaMA-2's" in line and "not evidence of weight copying" in line


def test_tokenizer_evidence_never_changes_weight_rows(tmp_path, monkeypatch):
    built = BUILDERS["llama"](tmp_path / "cand")
    _write_tokenizer(built.path / "tokenizer.json", _tokens("w", VOCAB - 3), ["▁ w0"])
    candidate = fingerprint_for(built.path)
    with_refs = audit_to_json(run_audit(candidate, None, include_builtin=True, candidate_path="c"))
    monkeypatch.setattr(tr, "tokenizer_references", lambda: ())
    without = audit_to_json(run_audit(candidate, None, include_builtin=True, candidate_path="c"))
    assert without["tokenizers"] == []
    def rest(report):
        return {k: v for k, v in report.items() if k != "tokenizers"}

    assert rest(with_refs) == rest(without)


def test_shipped_tokenizer_references_are_signatures_with_their_npm_source():
    refs = tr.tokenizer_references()
    if not refs:
        pytest.skip("provenance/references/tokenizers.json not built (scripts/build_tokenizer_references.py)")
    names = {r["name"] for r in refs}
    assert "LLaMA-2" in names
    for ref in refs:
        sig, npm = ref["signature"], ref["npm"]
        assert npm["package"].startswith("@") and npm["version"] and len(npm["tarball_sha256"]) == 64
        assert len(sig["vocab_sha256"]) == 64 and len(sig["minhash"]) == 128 and sig["size"] > 1000
        assert "tokens" not in sig and "vocab" not in sig  # signatures only, no vocabularies
        # each reference matches itself exactly
        assert tr.match_tokenizers(sig, (ref,))[0]["identical"]
    llama2 = next(r for r in refs if r["name"] == "LLaMA-2")
    assert llama2["signature"]["size"] == 32000


def test_builtin_weight_references_are_made_by_this_builder():
    """The shipped fingerprints must be rebuilt when the fingerprint format changes (scripts/build_references.py):
    a reference of an older schema hashes differently, and exact-copy checks against it are skipped."""
    from provenance.audit.builtin import builtin_references
    from provenance.fingerprint.store import FINGERPRINT_SCHEMA
    from provenance.fingerprint.tensor_pass import HASH_NAME

    references = list(builtin_references())
    assert len(references) >= 2
    for name, fingerprint in references:
        assert fingerprint.meta["schema"] == FINGERPRINT_SCHEMA, name
        assert fingerprint.meta.get("value_hash") == HASH_NAME, name
